//! A run's processes: liveness by pid and start time (a recycled pid is not the
//! process a lease names), the processes of a run found by their environment,
//! process groups, and killing what is left of a run.

use std::path::Path;

use super::RunError;
use super::records::{self, ExitRecord};
use crate::time::Timestamp;

/// Kills the run's supervisor and agent process groups, if they are still the
/// processes the lease names.
pub fn kill_run(dir: &Path) -> Result<(), RunError> {
    let Some(lease) = records::read_lease(dir)? else {
        kill_stragglers(dir);
        return Ok(());
    };
    let kill = rustix::process::Signal::KILL;
    if let Some(agent) = lease.agent_pid
        && is_group_leader(agent)
    {
        signal_group(agent, kill);
    }
    if process_alive(lease.pid, lease.start_ticks) {
        signal_group(lease.pid, kill);
    }
    kill_stragglers(dir);
    Ok(())
}

/// Kills what is left of a run by its environment: an agent whose pid never
/// reached the lease (its supervisor died first), or a process that left the
/// agent's group.
pub fn kill_stragglers(dir: &Path) {
    for pid in processes_of_run(dir) {
        if let Some(raw) = pid_of(pid) {
            let _ = rustix::process::kill_process(raw, rustix::process::Signal::KILL);
        }
    }
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

/// Live processes whose environment names `run_dir` as `CONVERGE_RUN_DIR`: an
/// attempt's agent and everything it started, even processes that left its
/// process group, and even when the supervisor died before recording the
/// agent's pid. (Only processes of the same user are readable, which is enough:
/// agents run as converge's user.)
pub fn processes_of_run(run_dir: &Path) -> Vec<u32> {
    let wanted = format!("CONVERGE_RUN_DIR={}", run_dir.display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out: Vec<u32> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == wanted.as_bytes()))
        })
        .filter(|pid| process_alive(*pid, None))
        .collect();
    out.sort_unstable();
    out
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
