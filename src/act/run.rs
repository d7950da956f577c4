//! Detached agent runs.
//!
//! Dispatch writes `run.json` (what to run, where, with which environment, until
//! when) into the run directory and starts `converge __supervise <run-dir>` in a
//! new process group. The supervisor:
//!
//! 1. writes `lease.json` with its own pid and start time **before** starting the
//!    agent, so a crash anywhere after this point leaves a record that `observe`
//!    can see and `reap` can act on;
//! 2. starts the agent through `converge __sandbox` (which contains its
//!    processes in a PID namespace and confines it, see [`super::contain`]) in
//!    its own process group, stdin closed, with exactly the environment in
//!    `run.json`; its stdout and stderr go through a pipe to `agent.log`, with
//!    the token and sensitive values masked and at most [`LOG_CAP`] bytes kept
//!    (the oldest half is dropped when it is reached);
//! 3. kills the agent's whole process group at the deadline (TERM, then KILL);
//! 4. kills whatever is left of the agent's processes (as a child subreaper,
//!    it inherits what an agent without a PID namespace left running), then
//!    writes `exit.json`, atomically.
//!
//! The supervisor's environment is `PATH` and the agent's sensitive values,
//! never `CONVERGE_SECRET`.
//!
//! The reconciler does not wait for the agent: `reconcile --once` returns while
//! the agent works, and a later tick observes the outcome.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::model::CommitId;
use crate::rundir::procs::{process_start_ticks, signal_group};
use crate::rundir::records::{self, ExitRecord, Lease, pretty};
use crate::rundir::{RunError, layout};
use crate::time::Timestamp;

/// What the supervisor runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunPlan {
    pub program: String,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    /// The agent's whole environment (built from an allowlist; never the secret).
    pub env: Vec<(String, String)>,
    /// Variables of `env` whose values are sensitive (the token, `*KEY*`,
    /// `*TOKEN*`, `*SECRET*`): `run.json` holds them empty, and the supervisor
    /// gets their values through its own environment, so that they are never
    /// written to disk.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_env: Vec<String>,
    /// Run the agent under this Landlock policy (`converge __sandbox`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<super::sandbox::Policy>,
    pub deadline: Timestamp,
    /// Copied into the lease. Read leniently, as the lease's own is: text
    /// that is no commit id is no fork (the gate then falls back on the fork
    /// note, or refuses), and the rest of the plan still runs.
    #[serde(deserialize_with = "crate::model::lenient")]
    pub fork: Option<CommitId>,
    pub generation: String,
    pub harness: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    /// A record of the run directory (the run plan, the lease, the exit
    /// record, the supervisor's log) cannot be read or written.
    #[error(transparent)]
    Record(#[from] RunError),
    #[error("cannot start the run supervisor")]
    Spawn(#[source] std::io::Error),
    #[error("the run supervisor exited before writing its lease (see {})", log.display())]
    NoLease { log: PathBuf },
}

/// How long `start` waits for the supervisor's lease.
const LEASE_WAIT: Duration = Duration::from_secs(10);
/// Between TERM and KILL at the deadline.
const GRACE: Duration = Duration::from_secs(5);

/// Starts the supervisor for `plan` in `run_dir`, detached, and returns its pid
/// once its lease exists.
pub fn start(run_dir: &Path, plan: &RunPlan, converge: &Path) -> Result<u32, SuperviseError> {
    let mut recorded = plan.clone();
    let mut sensitive = Vec::new();
    for (name, value) in &mut recorded.env {
        if crate::agent::redact::is_sensitive_name(name) {
            sensitive.push((name.clone(), std::mem::take(value)));
            recorded.secret_env.push(name.clone());
        }
    }
    records::write_file(&layout::run_plan(run_dir), &pretty(&recorded))?;
    let log = layout::supervisor_log(run_dir);
    let log_file = std::fs::File::create(&log).map_err(|source| RunError::Write {
        path: log.clone(),
        source,
    })?;
    let log_err = log_file.try_clone().map_err(|source| RunError::Write {
        path: log.clone(),
        source,
    })?;
    let mut child = {
        use std::os::unix::process::CommandExt;
        Command::new(converge)
            .arg("__supervise")
            .arg(run_dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(
                std::env::var_os(crate::crash::ENV)
                    .filter(|_| cfg!(feature = "crash-points"))
                    .map(|v| (crate::crash::ENV, v)),
            )
            .envs(sensitive.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .process_group(0)
            .spawn()
            .map_err(SuperviseError::Spawn)?
    };
    let lease = layout::lease(run_dir);
    let started = Instant::now();
    while started.elapsed() < LEASE_WAIT {
        if lease.exists() {
            let pid = child.id();
            tracing::info!(run = %run_dir.display(), pid, "agent started");
            // Reap the supervisor when it exits, so that a long-running
            // reconciler (`--until-idle`, `--wait`) does not collect zombies.
            std::thread::spawn(move || {
                let _ = child.wait();
            });
            return Ok(pid);
        }
        if let Ok(Some(_)) = child.try_wait() {
            // It may have written the lease just before exiting.
            if lease.exists() {
                return Ok(child.id());
            }
            return Err(SuperviseError::NoLease { log });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(SuperviseError::NoLease { log })
}

/// The run plan dispatch wrote in `run_dir` (its sensitive values empty).
pub fn read_plan(run_dir: &Path) -> Result<RunPlan, RunError> {
    records::read_required(&layout::run_plan(run_dir), "run plan")
}

/// The body of `converge __supervise <run-dir>`: returns the exit code of the
/// supervisor itself (0 when it recorded the agent's exit, whatever it was).
pub fn supervise(run_dir: &Path) -> Result<(), SuperviseError> {
    let mut plan = read_plan(run_dir)?;
    for (name, value) in &mut plan.env {
        if plan.secret_env.contains(name) {
            *value = std::env::var(name.as_str()).unwrap_or_default();
        }
    }
    // What the agent leaves running is reparented here, not to the
    // machine's init, so that it can be killed when the agent exits.
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let me = std::process::id();
    let mut lease = Lease {
        pid: me,
        start_ticks: process_start_ticks(me),
        started_at: Timestamp::now(),
        deadline: plan.deadline,
        fork: plan.fork,
        generation: plan.generation.clone(),
        harness: plan.harness.clone(),
        agent_pid: None,
    };
    records::write_lease(run_dir, &lease)?;

    let log_path = layout::agent_log(run_dir);
    let mut copier = None;
    let exit = match spawn_agent(&plan, &log_path).map(|(child, c)| {
        copier = Some(c);
        child
    }) {
        Err(error) => ExitRecord {
            exit_code: None,
            signal: None,
            ended_at: Timestamp::now(),
            timed_out: false,
            spawn_error: Some(format!("cannot start `{}`: {error}", plan.program)),
        },
        Ok(mut child) => {
            crate::crash::point("after-spawn");
            lease.agent_pid = Some(child.id());
            records::write_lease(run_dir, &lease)?;
            wait_with_deadline(&mut child, plan.deadline)
        }
    };
    // Nothing the agent started outlives it: its PID namespace ended with it;
    // without one, what it left running was reparented here.
    crate::rundir::procs::kill_descendants(me);
    reap_children();
    // The agent's output is in the log before its exit is recorded.
    if let Some(copier) = copier {
        let until = Instant::now() + Duration::from_secs(2);
        while !copier.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Ok(records::write_exit(run_dir, &exit)?)
}

/// Collects the exit status of every child that has exited (orphans
/// reparented to the supervisor and killed), so none is left a zombie.
fn reap_children() {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

/// Bytes of agent output kept in `agent.log`. When a flood reaches it, the
/// oldest half is dropped (and a line says how much), so the tail survives.
pub const LOG_CAP: u64 = 8 * 1024 * 1024;

/// The longest piece of output redacted at once: lines longer than this are
/// cut, and a value split across the cut is not masked.
const LINE_MAX: u64 = 64 * 1024;

/// Copies the agent's output to the log, line by line, masked and capped.
/// If the log cannot be written, the rest of the output is read and dropped,
/// so that the agent never blocks on a full pipe.
fn copy_output(
    reader: impl std::io::Read,
    log: std::fs::File,
    log_path: &Path,
    redactor: &crate::agent::Redactor,
    cap: u64,
) {
    let mut reader = std::io::BufReader::with_capacity(LINE_MAX as usize, reader);
    if copy_lines(&mut reader, log, log_path, redactor, cap).is_err() {
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    }
}

fn copy_lines(
    reader: &mut impl std::io::BufRead,
    mut log: std::fs::File,
    log_path: &Path,
    redactor: &crate::agent::Redactor,
    cap: u64,
) -> std::io::Result<()> {
    use std::io::{BufRead, Read, Write};
    let mut written = log.metadata()?.len();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader
            .by_ref()
            .take(LINE_MAX)
            .read_until(b'\n', &mut line)?
            == 0
        {
            return Ok(());
        }
        let masked = redactor.redact_bytes(&line);
        log.write_all(&masked)?;
        written += masked.len() as u64;
        if written > cap {
            written = keep_tail(&mut log, log_path, written, cap / 2)?;
        }
    }
}

/// Shrinks the log to its last `keep` bytes (from a line start), after a line
/// saying how much was dropped. Returns the new length.
fn keep_tail(
    log: &mut std::fs::File,
    log_path: &Path,
    len: u64,
    keep: u64,
) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut tail = Vec::with_capacity(keep as usize);
    let mut file = std::fs::File::open(log_path)?;
    file.seek(SeekFrom::Start(len.saturating_sub(keep)))?;
    file.read_to_end(&mut tail)?;
    let start = memchr::memchr(b'\n', &tail).map_or(0, |i| i + 1);
    let kept = &tail[start..];
    let dropped = len - kept.len() as u64;
    log.set_len(0)?;
    let marker = format!("[converge: {dropped} earlier bytes of output were dropped]\n");
    log.write_all(marker.as_bytes())?;
    log.write_all(kept)?;
    Ok((marker.len() + kept.len()) as u64)
}

fn spawn_agent(
    plan: &RunPlan,
    log_path: &Path,
) -> std::io::Result<(std::process::Child, std::thread::JoinHandle<()>)> {
    use std::os::unix::process::CommandExt;
    // The wrapper would start and then fail to execute a missing agent:
    // say so as a spawn error, as starting it directly would.
    let path = plan
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str());
    let program = if plan.program.contains('/') {
        plan.cwd.join(&plan.program).to_string_lossy().into_owned()
    } else {
        plan.program.clone()
    };
    if (path.is_some() || program.contains('/'))
        && !crate::harness::env::program_exists(&program, path)
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such program",
        ));
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)?;
    let (reader, writer) = std::io::pipe()?;
    let writer_err = writer.try_clone()?;
    // The wrapper contains the agent's processes, restricts itself (with a
    // sandbox policy), then becomes the agent (see `super::contain`).
    let mut agent = vec![plan.program.clone()];
    agent.extend(plan.args.iter().cloned());
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(super::contain::stage_args(
            None,
            log_path.parent().unwrap_or(Path::new(".")),
            &agent,
        ))
        .current_dir(&plan.cwd)
        .env_clear()
        .envs(plan.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer_err)
        .process_group(0);
    let child = command.spawn()?;
    // The agent holds the only write ends now: EOF comes when it (and what it
    // started) close them.
    drop(command);
    // The agent's token and sensitive variables, and the supervisor's own
    // (`CONVERGE_SECRET` when the secret comes from the environment).
    let redactor =
        crate::agent::Redactor::from_env(plan.env.iter().cloned().chain(std::env::vars()), []);
    let log_path = log_path.to_owned();
    let copier =
        std::thread::spawn(move || copy_output(reader, log, &log_path, &redactor, LOG_CAP));
    Ok((child, copier))
}

fn wait_with_deadline(child: &mut std::process::Child, deadline: Timestamp) -> ExitRecord {
    use std::os::unix::process::ExitStatusExt;
    let record = |status: Option<std::process::ExitStatus>, timed_out: bool| ExitRecord {
        exit_code: status.and_then(|s| s.code()),
        signal: status.and_then(|s| s.signal()),
        ended_at: Timestamp::now(),
        timed_out,
        spawn_error: None,
    };
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return record(Some(status), false),
            Ok(None) => {}
            Err(_) => return record(None, false),
        }
        if Timestamp::now() >= deadline {
            signal_group(child.id(), rustix::process::Signal::TERM);
            let grace_end = Instant::now() + GRACE;
            while Instant::now() < grace_end {
                if let Ok(Some(status)) = child.try_wait() {
                    signal_group(child.id(), rustix::process::Signal::KILL);
                    return record(Some(status), true);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            signal_group(child.id(), rustix::process::Signal::KILL);
            let status = child.wait().ok();
            return record(status, true);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(input: &[u8], cap: u64) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("log");
        let redactor = crate::agent::Redactor::from_env(
            [
                ("CONVERGE_AGENT_TOKEN", "cvg1.p.t.1.abcdef"),
                ("ANTHROPIC_API_KEY", "sk-ant-0123456789"),
            ],
            [],
        );
        copy_output(input, log, &path, &redactor, cap);
        std::fs::read_to_string(&path).expect("read")
    }

    #[test]
    fn agent_output_is_masked() {
        let out = copy(
            b"token cvg1.p.t.1.abcdef\nkey=sk-ant-0123456789 and more\nplain\n",
            LOG_CAP,
        );
        assert_eq!(out, "token [redacted]\nkey=[redacted] and more\nplain\n");
    }

    #[test]
    fn a_flood_keeps_the_tail_under_the_cap() {
        let mut flood = Vec::new();
        for i in 0..10_000 {
            flood.extend_from_slice(format!("line {i:05} sk-ant-0123456789\n").as_bytes());
        }
        let out = copy(&flood, 64 * 1024);
        assert!(out.len() as u64 <= 64 * 1024, "{} bytes kept", out.len());
        assert!(
            out.starts_with("[converge: ") && out.contains("earlier bytes of output were dropped]"),
            "{}",
            &out[..200]
        );
        assert!(out.ends_with("line 09999 [redacted]\n"), "the tail is kept");
        assert!(!out.contains("sk-ant"));
        // Whole lines only after the marker.
        let second = out.lines().nth(1).expect("a kept line");
        assert!(second.starts_with("line "), "{second}");
    }
}
