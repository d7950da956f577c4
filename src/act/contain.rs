//! Containment of an attempt's processes: every process an agent starts dies
//! with its attempt, and the agent sees no process but its own.
//!
//! The supervisor starts `converge __sandbox <run-dir> -- <agent...>` (the
//! *outer* stage), which:
//!
//! 1. unshares a PID and a mount namespace for its children (first a user
//!    namespace, mapping root inside to converge's user, when converge is not
//!    root or may not unshare them as root);
//! 2. starts `converge __sandbox --init <run-dir> -- <agent...>`, PID 1 of the
//!    new namespace (the *init*), which makes its mounts private, mounts a
//!    `/proc` of the namespace's own over `/proc` (so the agent sees no
//!    process outside the attempt, and no other process's environment), gives
//!    up root (a second user namespace mapping converge's user back, when
//!    converge is not root), and starts `converge __sandbox --exec <run-dir>
//!    -- <agent...>`, which restricts itself with the run's Landlock policy
//!    (when there is one) and executes the agent;
//! 3. the init forwards TERM, INT and HUP to the agent, reaps whatever is
//!    orphaned into the namespace, and when the agent exits reports how (on
//!    its stdin, a pipe from the outer stage) and exits: the kernel then kills
//!    every other process of the namespace, `setsid` daemons, double forks and
//!    `env -i` included. The outer stage exits as the agent did.
//!
//! Where namespaces cannot be made (no user namespaces, a seccomp filter), the
//! outer stage warns in `agent.log` and becomes the exec stage itself; the
//! supervisor, a child subreaper, then kills every descendant it is left with
//! when the agent exits (see [`crate::rundir::procs::kill_descendants`]).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// The `__sandbox` stages, by the flag that selects them.
pub const INIT_FLAG: &str = "--init";
pub const EXEC_FLAG: &str = "--exec";

/// How the agent ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Signaled(i32),
}

impl Ended {
    fn of(status: WaitStatus) -> Option<Ended> {
        match status {
            WaitStatus::Exited(_, code) => Some(Ended::Exited(code)),
            WaitStatus::Signaled(_, signal, _) => Some(Ended::Signaled(signal as i32)),
            _ => None,
        }
    }

    /// The line the init writes for the outer stage.
    pub fn line(self) -> String {
        match self {
            Ended::Exited(code) => format!("exit {code}\n"),
            Ended::Signaled(signal) => format!("signal {signal}\n"),
        }
    }

    pub fn parse(line: &str) -> Option<Ended> {
        let (kind, number) = line.trim().split_once(' ')?;
        let number = number.parse().ok()?;
        match kind {
            "exit" => Some(Ended::Exited(number)),
            "signal" => Some(Ended::Signaled(number)),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ContainError {
    #[error("cannot set up the attempt's user namespace ({what})")]
    UserNamespace {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start `{program}`")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot wait for the attempt's processes")]
    Wait(#[source] Errno),
}

/// The arguments of `converge __sandbox` at `stage` (`None`: the outer one).
pub fn stage_args(
    stage: Option<&str>,
    run_dir: &Path,
    agent: &[String],
) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = vec!["__sandbox".into()];
    args.extend(stage.map(Into::into));
    args.push(run_dir.into());
    args.push("--".into());
    args.extend(agent.iter().map(Into::into));
    args
}

/// Whether a command line (`/proc/<pid>/cmdline`, split at NULs) is the init
/// of `run_dir`'s attempt.
pub fn is_init_of(cmdline: &[&[u8]], run_dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    matches!(cmdline, [_, cmd, flag, dir, ..]
        if *cmd == b"__sandbox" && *flag == INIT_FLAG.as_bytes()
            && *dir == run_dir.as_os_str().as_bytes())
}

/// The signals the outer stage and the init handle themselves (blocked, and
/// taken with `sigwait`: PID 1 of a namespace gets no signal it has no
/// handler for, but blocked ones wait for it).
fn handled() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGCHLD,
    ] {
        set.add(signal);
    }
    set
}

/// Unshares PID and mount namespaces for this process's future children.
/// `Ok(false)`, with the reason, when the kernel refuses (nothing changed);
/// an error when a user namespace was made but could not be set up.
/// Must be called while the process has one thread.
pub fn unshare() -> Result<Result<(), String>, ContainError> {
    use nix::sched::{CloneFlags, unshare};
    let flags = CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS;
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    if uid == 0 && unshare(flags).is_ok() {
        return Ok(Ok(()));
    }
    if let Err(e) = unshare(flags | CloneFlags::CLONE_NEWUSER) {
        return Ok(Err(format!("cannot create a PID namespace: {e}")));
    }
    map_ids(0, uid, 0, gid)?;
    Ok(Ok(()))
}

/// Maps `inside` ids of this process's (new) user namespace to `outside` ones.
fn map_ids(uid_in: u32, uid_out: u32, gid_in: u32, gid_out: u32) -> Result<(), ContainError> {
    let write = |file: &str, text: String| {
        std::fs::write(format!("/proc/self/{file}"), text).map_err(|source| {
            ContainError::UserNamespace {
                what: format!("/proc/self/{file}"),
                source,
            }
        })
    };
    // Needed before an unprivileged gid_map; refused when already denied above.
    let _ = write("setgroups", "deny".into());
    write("uid_map", format!("{uid_in} {uid_out} 1\n"))?;
    write("gid_map", format!("{gid_in} {gid_out} 1\n"))
}

/// The outer stage, after [`unshare`] succeeded: starts the init and waits for
/// it, forwarding signals; returns how the agent ended.
pub fn run_outer(run_dir: &Path, agent: &[String]) -> Result<Ended, ContainError> {
    let exe = std::env::current_exe().map_err(|source| spawn_error("converge", source))?;
    let (mut reader, writer) = std::io::pipe().map_err(|source| spawn_error("converge", source))?;
    handled().thread_block().map_err(ContainError::Wait)?;
    let mut command = Command::new(exe);
    command
        .args(stage_args(Some(INIT_FLAG), run_dir, agent))
        .stdin(Stdio::from(writer));
    let child = command
        .spawn()
        .map_err(|source| spawn_error("converge __sandbox --init", source))?;
    drop(command);
    let own = forward_until_exit(child.id())?;
    let mut report = String::new();
    let _ = reader.read_to_string(&mut report);
    Ok(Ended::parse(&report).unwrap_or(own))
}

/// The init (PID 1 of the attempt's namespace): a `/proc` of its own, root
/// given up, the exec stage started and waited for; reports how the agent
/// ended on stdin. Returns when the agent has exited.
pub fn run_init(run_dir: &Path, agent: &[String]) -> Result<(), ContainError> {
    handled().thread_block().map_err(ContainError::Wait)?;
    // Who we are outside, before /proc changes: root inside a user namespace
    // made for an ordinary user gives that user back to the agent.
    let outside = |file: &str| -> Option<u32> {
        let text = std::fs::read_to_string(format!("/proc/self/{file}")).ok()?;
        let fields: Vec<&str> = text.split_whitespace().collect();
        match fields.as_slice() {
            ["0", out, "1"] => out.parse().ok(),
            _ => None,
        }
    };
    let (uid, gid) = (outside("uid_map"), outside("gid_map"));
    if let Err(e) = own_proc() {
        warn(
            run_dir,
            &format!(
                "cannot mount a /proc of the attempt's own ({e}); the agent can see other processes"
            ),
        );
    }
    if let (Some(uid), Some(gid)) = (uid, gid)
        && uid != 0
    {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).map_err(|e| {
            ContainError::UserNamespace {
                what: "unshare".into(),
                source: e.into(),
            }
        })?;
        map_ids(uid, 0, gid, 0)?;
    }
    // With a Landlock policy, the exec stage restricts itself and becomes the
    // agent (the init stays outside the agent's domain, out of its reach);
    // without one, the agent is started directly.
    let mut command = match (sandboxed(run_dir), agent) {
        (false, [program, args @ ..]) => {
            let mut command = Command::new(program);
            command.args(args);
            command
        }
        _ => {
            let exe = std::env::current_exe().map_err(|source| spawn_error("converge", source))?;
            let mut command = Command::new(exe);
            command.args(stage_args(Some(EXEC_FLAG), run_dir, agent));
            command
        }
    };
    let child = command
        .stdin(Stdio::null())
        .spawn()
        .map_err(|source| spawn_error(agent.first().map_or("", String::as_str), source))?;
    let ended = forward_until_exit(child.id())?;
    // The outer stage reads this once we are gone (a write to a closed pipe
    // fails, which is fine: nobody asks any more).
    let stdin = std::io::stdin();
    if let Ok(fd) = std::os::fd::AsFd::as_fd(&stdin).try_clone_to_owned() {
        let _ = std::fs::File::from(fd).write_all(ended.line().as_bytes());
    }
    Ok(())
}

/// Whether the run's plan has a sandbox policy (when in doubt, yes: the exec
/// stage reads the plan again and says what is wrong with it).
fn sandboxed(run_dir: &Path) -> bool {
    std::fs::read(crate::rundir::layout::run_plan(run_dir))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<super::run::RunPlan>(&bytes).ok())
        .is_none_or(|plan| plan.sandbox.is_some())
}

/// Makes this mount namespace's mounts private (nothing mounted here reaches
/// the machine's namespace) and mounts a fresh `/proc`, which shows this PID
/// namespace's processes only.
fn own_proc() -> Result<(), Errno> {
    use nix::mount::{MsFlags, mount};
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )?;
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
}

/// Waits for `child` to exit, forwarding TERM, INT and HUP to it and reaping
/// every other child (orphans reparented here); the caller has blocked
/// [`handled`] signals before starting `child`.
fn forward_until_exit(child: u32) -> Result<Ended, ContainError> {
    let child = Pid::from_raw(i32::try_from(child).unwrap_or(i32::MAX));
    let set = handled();
    loop {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => break,
                Ok(status) if status.pid() == Some(child) => {
                    if let Some(ended) = Ended::of(status) {
                        return Ok(ended);
                    }
                }
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(ContainError::Wait(e)),
            }
        }
        match set.wait() {
            Ok(Signal::SIGCHLD) | Err(_) => {}
            Ok(signal) => {
                let _ = nix::sys::signal::kill(child, signal);
            }
        }
    }
}

/// Ends this process as the agent ended: with its exit code, or by its signal
/// (its exit code as a shell reports it when the signal does not end us).
pub fn exit_like(ended: Ended) -> ! {
    match ended {
        Ended::Exited(code) => std::process::exit(code),
        Ended::Signaled(number) => {
            let _ = SigSet::all().thread_unblock();
            if let Ok(signal) = Signal::try_from(number) {
                let _ = nix::sys::signal::raise(signal);
            }
            std::process::exit(128 + number)
        }
    }
}

/// A warning about the machine, in the run's `supervisor.log` (`agent.log`
/// is the agent's output); on stderr when that cannot be written.
pub fn warn(run_dir: &Path, message: &str) {
    let line = format!("converge: warning: {message}\n");
    let written = std::fs::OpenOptions::new()
        .append(true)
        .open(crate::rundir::layout::supervisor_log(run_dir))
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if written.is_err() {
        eprint!("{line}");
    }
}

fn spawn_error(program: &str, source: std::io::Error) -> ContainError {
    ContainError::Spawn {
        program: program.into(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_init_reports_how_the_agent_ended() {
        for ended in [Ended::Exited(0), Ended::Exited(3), Ended::Signaled(15)] {
            assert_eq!(Ended::parse(&ended.line()), Some(ended));
        }
        assert_eq!(Ended::parse(""), None);
        assert_eq!(Ended::parse("signal x"), None);
        assert_eq!(Ended::parse("maybe 1"), None);
    }

    #[test]
    fn an_init_is_recognized_by_its_command_line_and_run_directory() {
        let run = Path::new("/repo/.git/converge/runs/p/a/1");
        let args = stage_args(Some(INIT_FLAG), run, &["sh".into(), "-c".into()]);
        let mut line: Vec<Vec<u8>> = vec![b"/usr/bin/converge".to_vec()];
        line.extend(args.iter().map(|a| a.as_encoded_bytes().to_vec()));
        let parts: Vec<&[u8]> = line.iter().map(Vec::as_slice).collect();
        assert!(is_init_of(&parts, run));
        assert!(!is_init_of(
            &parts,
            Path::new("/repo/.git/converge/runs/p/a/2")
        ));
        let outer = stage_args(None, run, &["sh".into()]);
        let mut line: Vec<Vec<u8>> = vec![b"converge".to_vec()];
        line.extend(outer.iter().map(|a| a.as_encoded_bytes().to_vec()));
        let parts: Vec<&[u8]> = line.iter().map(Vec::as_slice).collect();
        assert!(!is_init_of(&parts, run), "the outer stage is not the init");
    }
}
