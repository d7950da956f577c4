//! Detached agent runs.
//!
//! Dispatch writes `run.json` (what to run, where, with which environment, until
//! when) into the run directory and starts `converge __supervise <run-dir>` in a
//! new process group. The supervisor:
//!
//! 1. writes `lease.json` with its own pid and start time **before** starting the
//!    agent, so a crash anywhere after this point leaves a record that `observe`
//!    can see and `reap` can act on;
//! 2. starts the agent in its own process group, stdin closed, stdout and stderr
//!    to `agent.log`, with exactly the environment in `run.json`;
//! 3. kills the agent's whole process group at the deadline (TERM, then KILL);
//! 4. writes `exit.json`, atomically.
//!
//! The reconciler does not wait for the agent: `reconcile --once` returns while
//! the agent works, and a later tick observes the outcome.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::observe::runs::{ExitRecord, Lease, process_start_ticks};
use crate::time::Timestamp;

/// What the supervisor runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunPlan {
    pub program: String,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    /// The agent's whole environment (built from an allowlist; never the secret).
    pub env: Vec<(String, String)>,
    pub deadline: Timestamp,
    pub fork: String,
    pub generation: String,
    pub harness: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a valid run plan: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("cannot start the run supervisor")]
    Spawn(#[source] std::io::Error),
    #[error("the run supervisor exited before writing its lease (see {})", log.display())]
    NoLease { log: PathBuf },
}

/// How long `start` waits for the supervisor's lease.
const LEASE_WAIT: Duration = Duration::from_secs(10);
/// Between TERM and KILL at the deadline.
const GRACE: Duration = Duration::from_secs(5);

/// [`super::files::write_atomically`] for run records.
pub fn write_record(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    super::files::write_atomically(path, bytes).map_err(|source| RunError::Write {
        path: path.to_owned(),
        source,
    })
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail.
    serde_json::to_vec_pretty(value).unwrap_or_default()
}

/// Starts the supervisor for `plan` in `run_dir`, detached, and returns its pid
/// once its lease exists.
pub fn start(run_dir: &Path, plan: &RunPlan, converge: &Path) -> Result<u32, RunError> {
    write_record(&run_dir.join("run.json"), &json(plan))?;
    let log = run_dir.join("supervisor.log");
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
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .process_group(0)
            .spawn()
            .map_err(RunError::Spawn)?
    };
    let lease = run_dir.join("lease.json");
    let started = Instant::now();
    while started.elapsed() < LEASE_WAIT {
        if lease.exists() {
            let pid = child.id();
            // Reap the supervisor when it exits, so that a long-running
            // reconciler (`--until-idle`, `watch`) does not collect zombies.
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
            return Err(RunError::NoLease { log });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(RunError::NoLease { log })
}

/// The body of `converge __supervise <run-dir>`: returns the exit code of the
/// supervisor itself (0 when it recorded the agent's exit, whatever it was).
pub fn supervise(run_dir: &Path) -> Result<(), RunError> {
    let plan_path = run_dir.join("run.json");
    let bytes = std::fs::read(&plan_path).map_err(|source| RunError::Read {
        path: plan_path.clone(),
        source,
    })?;
    let plan: RunPlan = serde_json::from_slice(&bytes).map_err(|e| RunError::Invalid {
        path: plan_path.clone(),
        message: e.to_string(),
    })?;
    let me = std::process::id();
    let mut lease = Lease {
        pid: me,
        start_ticks: process_start_ticks(me),
        started_at: Timestamp::now(),
        deadline: plan.deadline,
        fork: plan.fork.clone(),
        generation: plan.generation.clone(),
        harness: plan.harness.clone(),
        agent_pid: None,
    };
    let lease_path = run_dir.join("lease.json");
    write_record(&lease_path, &json(&lease))?;

    let log_path = run_dir.join("agent.log");
    let exit = match spawn_agent(&plan, &log_path) {
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
            write_record(&lease_path, &json(&lease))?;
            wait_with_deadline(&mut child, plan.deadline)
        }
    };
    write_record(&run_dir.join("exit.json"), &json(&exit))
}

fn spawn_agent(plan: &RunPlan, log_path: &Path) -> std::io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)?;
    let log_err = log.try_clone()?;
    Command::new(&plan.program)
        .args(&plan.args)
        .current_dir(&plan.cwd)
        .env_clear()
        .envs(plan.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .spawn()
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

/// Sends `signal` to the process group led by `pid` (gone already is fine).
pub fn signal_group(pid: u32, signal: rustix::process::Signal) {
    if let Some(pid) = pid_of(pid) {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

/// A process id as the kernel calls take it (none for 0 or out of range).
pub fn pid_of(pid: u32) -> Option<rustix::process::Pid> {
    i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
}
