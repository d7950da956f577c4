//! A run's processes: liveness by pid and start time (a recycled pid is not the
//! process a lease names), the processes of a run found by containment (its
//! PID namespace, the supervisor's descendants), process groups, and killing
//! what is left of a run.

use std::path::Path;

use super::RunError;
use super::records::{self, ExitRecord};
use crate::time::Timestamp;

/// Kills every process of the run: the init of its PID namespace (the kernel
/// then kills the rest of the namespace), what the supervisor left running,
/// the agent's process group, and then the supervisor.
pub fn kill_run(dir: &Path) -> Result<(), RunError> {
    let lease = records::read_lease(dir)?;
    let kill = rustix::process::Signal::KILL;
    if let Some(agent) = lease.as_ref().and_then(|l| l.agent_pid)
        && is_group_leader(agent)
    {
        signal_group(agent, kill);
    }
    // A process forked between a look and its kill is reparented to the
    // supervisor (a subreaper, killed last) and found by the next look.
    kill_stragglers(dir);
    if let Some(lease) = lease
        && process_alive(lease.pid, lease.start_ticks)
    {
        signal_group(lease.pid, kill);
    }
    Ok(())
}

/// Kills what is left of a run whose supervisor is gone: its PID namespace,
/// and processes naming it in their environment.
pub fn kill_stragglers(dir: &Path) {
    for _ in 0..KILL_ROUNDS {
        let left = processes_of_run(dir);
        if left.is_empty() {
            return;
        }
        for pid in left {
            kill_pid(pid);
        }
    }
}

/// How many times a kill looks again for what is left.
const KILL_ROUNDS: usize = 20;

/// Kills every live descendant of `root` (not `root` itself), looking again
/// until none is left: the supervisor's sweep when its agent has exited.
pub fn kill_descendants(root: u32) {
    for _ in 0..KILL_ROUNDS {
        let left: Vec<u32> = descendants(&process_table(), &[root])
            .into_iter()
            .filter(|pid| process_alive(*pid, None))
            .collect();
        if left.is_empty() {
            return;
        }
        for pid in left {
            kill_pid(pid);
        }
    }
}

fn kill_pid(pid: u32) {
    if let Some(raw) = pid_of(pid) {
        let _ = rustix::process::kill_process(raw, rustix::process::Signal::KILL);
    }
}

/// Every process's parent, from `/proc/<pid>/stat`: `(pid, ppid)`.
fn process_table() -> Vec<(u32, u32)> {
    all_pids()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let after_name = &stat[stat.rfind(')')? + 2..];
            let ppid = after_name.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect()
}

fn all_pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
}

/// The descendants of `roots` in `table` (the roots excluded).
fn descendants(table: &[(u32, u32)], roots: &[u32]) -> Vec<u32> {
    let mut out = Vec::new();
    let mut frontier = roots.to_vec();
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid) in table {
            if ppid == parent && pid != parent && !out.contains(&pid) && !roots.contains(&pid) {
                out.push(pid);
                frontier.push(pid);
            }
        }
    }
    out
}

/// The command line of `pid`, split at its NULs.
fn cmdline(pid: u32) -> Vec<Vec<u8>> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| {
            bytes
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(<[u8]>::to_vec)
                .collect()
        })
        .unwrap_or_default()
}

/// The inits of `run_dir`'s PID namespaces: converge's `__sandbox --init`
/// for that run, and PID 1 of a namespace of its own (`NSpid` ends in 1).
fn namespace_inits(run_dir: &Path) -> Vec<u32> {
    all_pids()
        .filter(|pid| {
            let line = cmdline(*pid);
            let parts: Vec<&[u8]> = line.iter().map(Vec::as_slice).collect();
            crate::act::contain::is_init_of(&parts, run_dir) && pid_one_of_namespace(*pid)
        })
        .filter(|pid| process_alive(*pid, None))
        .collect()
}

fn pid_one_of_namespace(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .is_some_and(|ids| {
                let ids: Vec<&str> = ids.split_whitespace().collect();
                ids.len() >= 2 && ids.last() == Some(&"1")
            })
    })
}

/// The run's supervisor, when the lease names a live `converge __supervise`
/// of this run (never a process that merely took its pid).
fn supervisor(run_dir: &Path) -> Option<u32> {
    use std::os::unix::ffi::OsStrExt;
    let lease = records::read_lease(run_dir).ok().flatten()?;
    let line = cmdline(lease.pid);
    let ours = matches!(line.as_slice(), [_, cmd, dir, ..]
        if cmd == b"__supervise" && dir.as_slice() == run_dir.as_os_str().as_bytes());
    (ours && process_alive(lease.pid, lease.start_ticks)).then_some(lease.pid)
}

/// Whether `pid` is alive and leads its own process group (as converge's agents
/// do), so that signalling the group cannot hit an unrelated process.
fn is_group_leader(pid: u32) -> bool {
    let Some(raw) = pid_of(pid) else {
        return false;
    };
    process_alive(pid, None) && rustix::process::getpgid(Some(raw)).is_ok_and(|group| group == raw)
}

/// Writes the exit record the supervisor could not write (its processes were
/// killed, `timed_out` when at their deadline).
pub fn write_exit(dir: &Path, now: Timestamp, timed_out: bool) -> Result<(), RunError> {
    // No run directory: status said "running" but the run left no record here
    // (it was cleaned up, or started on another machine). Nothing to close.
    if !dir.exists() || records::read_exit(dir)?.is_some() {
        return Ok(());
    }
    let record = ExitRecord {
        exit_code: None,
        signal: Some(9),
        ended_at: now,
        timed_out,
        spawn_error: None,
    };
    records::write_exit(dir, &record)
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

/// A process's start time in clock ticks since boot, from `/proc/<pid>/stat`.
pub fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is parenthesized and may contain spaces.
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts at field 3 (state); field 22 is starttime.
    fields.get(19)?.parse().ok()
}

/// The live processes of an attempt, its supervisor excepted, found by
/// containment: the init of the attempt's PID namespace and everything in it,
/// everything the supervisor started (what an agent left running without a
/// namespace is reparented to the supervisor); and, for an agent whose
/// supervisor died without a namespace, the processes whose environment names
/// `run_dir` as `CONVERGE_RUN_DIR` (only processes of converge's user are
/// readable, which is enough: agents run as converge's user).
pub fn processes_of_run(run_dir: &Path) -> Vec<u32> {
    let table = process_table();
    let mut roots = namespace_inits(run_dir);
    let mut out = roots.clone();
    roots.extend(supervisor(run_dir));
    out.extend(descendants(&table, &roots));
    let wanted = format!("CONVERGE_RUN_DIR={}", run_dir.display());
    out.extend(table.iter().map(|(pid, _)| *pid).filter(|pid| {
        std::fs::read(format!("/proc/{pid}/environ"))
            .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == wanted.as_bytes()))
    }));
    out.retain(|pid| process_alive(*pid, None));
    out.sort_unstable();
    out.dedup();
    out
}

/// Whether the process that noted itself as `pid` started at `start_ticks` is
/// alive, seen from here or from inside a PID namespace: a converge process
/// in an attempt's namespace (an agent's `converge` command) knows itself by
/// its pid there, which is another process here. The same process shows here
/// with the same start time and that pid as the last of its `NSpid`.
pub fn noted_process_alive(pid: u32, start_ticks: Option<u64>) -> bool {
    if process_alive(pid, start_ticks) {
        return true;
    }
    let Some(ticks) = start_ticks else {
        return false;
    };
    let inner = pid.to_string();
    all_pids().any(|here| {
        process_start_ticks(here) == Some(ticks)
            && process_alive(here, Some(ticks))
            && std::fs::read_to_string(format!("/proc/{here}/status")).is_ok_and(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("NSpid:"))
                    .is_some_and(|ids| ids.split_whitespace().last() == Some(inner.as_str()))
            })
    })
}

/// Whether `pid` is alive, not a zombie, and (when known) started at `start_ticks`.
pub fn process_alive(pid: u32, start_ticks: Option<u64>) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat.rfind(')').and_then(|i| stat[i + 2..].chars().next());
    if matches!(state, Some('Z' | 'X' | 'x')) {
        return false;
    }
    match start_ticks {
        Some(expected) => process_start_ticks(pid) == Some(expected),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_recycled_pid_is_not() {
        let me = std::process::id();
        let ticks = process_start_ticks(me);
        assert!(ticks.is_some());
        assert!(process_alive(me, ticks));
        assert!(
            !process_alive(me, ticks.map(|t| t + 1)),
            "a different start time means another process"
        );
        assert!(!process_alive(u32::MAX - 7, None));
    }
}
