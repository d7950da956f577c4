//! What a run directory says about an attempt: its records (the formats and
//! paths are in [`crate::rundir`]) read into a [`RunObs`], with the lease
//! checked against the live process and every event's token verified.
//!
//! A lease is trusted only while its process is alive *and* started at the
//! recorded time, so a recycled pid is never mistaken for the agent.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{RunObs, RunState, TaskKey};
use crate::agent::Secret;
use crate::rundir::records;

// The run-directory protocol, as callers that have not switched to
// `crate::rundir` still name it (runtime::doctor, runtime::recover, git, the
// integration tests).
pub use crate::rundir::RunError;
pub use crate::rundir::procs::{process_alive, process_start_ticks, processes_of_run};
pub use crate::rundir::records::{Event, ExitRecord, Lease, read_exit, read_lease, sorted_dirs};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    pub obs: RunObs,
    pub lease: Option<Lease>,
}

/// The verdicts on runs' event logs (is there a valid `done`, how many events
/// were rejected), kept while a log keeps its length, modification and change
/// times and inode ([`Stamp`]):
/// the daemon does not verify an agent's whole log again on every tick. The
/// lease and the exit record are read, and the process checked, every time.
#[derive(Debug, Default)]
pub struct EventCache {
    logs: RefCell<HashMap<PathBuf, Verdict>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Verdict {
    attempt: u32,
    stamp: Option<Stamp>,
    done: bool,
    rejected: u32,
}

/// What changes when a log is written: its length and modification time
/// (which the agent can set back), its change time (which it cannot) and its
/// inode (a log replaced by another file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: SystemTime,
    changed: (i64, i64),
    inode: u64,
}

impl Stamp {
    fn of(log: &Path) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(log).ok()?;
        Some(Stamp {
            len: m.len(),
            modified: m.modified().ok()?,
            changed: (m.ctime(), m.ctime_nsec()),
            inode: m.ino(),
        })
    }
}

impl EventCache {
    /// Forgets the logs of run directories not in `dirs` (removed runs).
    pub fn keep_only<'a>(&self, dirs: impl IntoIterator<Item = &'a Path>) {
        let current: std::collections::HashSet<&Path> = dirs.into_iter().collect();
        self.logs
            .borrow_mut()
            .retain(|dir, _| current.contains(dir.as_path()));
    }

    fn verdict(
        &self,
        dir: &Path,
        key: &TaskKey,
        attempt: u32,
        secret: &Secret,
    ) -> Result<(bool, u32), RunError> {
        let stamp = Stamp::of(&crate::rundir::layout::events(dir));
        if let Some(v) = self.logs.borrow().get(dir)
            && v.attempt == attempt
            && v.stamp.is_some()
            && v.stamp == stamp
        {
            return Ok((v.done, v.rejected));
        }
        let (done, rejected) = read_events(dir, key, attempt, secret)?;
        self.logs.borrow_mut().insert(
            dir.to_path_buf(),
            Verdict {
                attempt,
                stamp,
                done,
                rejected,
            },
        );
        Ok((done, rejected))
    }
}

/// What one run directory says, with the lease checked against the live process
/// and `done` events checked against the attempt's token.
pub fn read_run(
    dir: &Path,
    key: &TaskKey,
    attempt: u32,
    secret: &Secret,
) -> Result<RunRecord, RunError> {
    read_run_cached(dir, key, attempt, secret, &EventCache::default())
}

/// [`read_run`], reusing `cache`'s verdict on an unchanged event log.
pub fn read_run_cached(
    dir: &Path,
    key: &TaskKey,
    attempt: u32,
    secret: &Secret,
    cache: &EventCache,
) -> Result<RunRecord, RunError> {
    let lease = read_lease(dir)?;
    let exit = read_exit(dir)?;
    let (done, rejected_events) = cache.verdict(dir, key, attempt, secret)?;
    let state = match (&exit, &lease) {
        (Some(exit), _) => RunState::Exited {
            done,
            exit_code: exit.exit_code,
        },
        (None, Some(lease)) if process_alive(lease.pid, lease.start_ticks) => RunState::Running {
            deadline: lease.deadline,
        },
        // The supervisor died, but its agent still works: running until its
        // deadline, when it is reaped (found by its environment).
        (None, Some(lease)) if !processes_of_run(dir).is_empty() => RunState::Running {
            deadline: lease.deadline,
        },
        // The supervisor died, and the agent reported done before it ended:
        // finished, with its exit code unknown. Counting that as a failure
        // would charge the task for converge's crash.
        (None, Some(_)) if done => RunState::Exited {
            done: true,
            exit_code: None,
        },
        // No exit record and no live process (or no lease at all: the dispatch
        // crashed before writing it).
        (None, _) => RunState::Vanished,
    };
    Ok(RunRecord {
        obs: RunObs {
            attempt,
            state,
            rejected_events,
            generation: lease.as_ref().map(|l| l.generation.clone()),
        },
        lease,
    })
}

/// Whether a valid `done` event exists, and how many events carried a token that
/// does not verify for this attempt (ignored, and reported).
fn read_events(
    dir: &Path,
    key: &TaskKey,
    attempt: u32,
    secret: &Secret,
) -> Result<(bool, u32), RunError> {
    let mut done = false;
    let mut rejected = 0u32;
    for event in records::read_events(dir)? {
        let Some(event) = event else {
            rejected = rejected.saturating_add(1);
            continue;
        };
        if secret
            .verify(&event.token, &key.plan, &key.task, attempt)
            .is_err()
        {
            rejected = rejected.saturating_add(1);
            continue;
        }
        done |= event.kind == crate::model::EventKind::Done.as_str();
    }
    Ok((done, rejected))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    fn secret() -> Secret {
        Secret::from_bytes(b"test secret of sufficient length".to_vec())
    }

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::create_dir_all(dir).expect("mkdir");
        std::fs::write(dir.join(name), text).expect("write");
    }

    fn lease(pid: u32, start_ticks: Option<u64>) -> String {
        serde_json::to_string(&Lease {
            pid,
            start_ticks,
            started_at: Timestamp::from_unix(1_000),
            deadline: Timestamp::from_unix(2_000),
            fork: Some("f".repeat(40).parse().expect("hex")),
            generation: "g".into(),
            harness: "sim".into(),
            agent_pid: None,
        })
        .expect("json")
    }

    #[test]
    fn an_event_log_is_verified_again_only_when_it_changed() {
        let common = tempfile::tempdir().expect("dir");
        let dir = common.path().join("run");
        let key = TaskKey::new("p", "t");
        let s = secret();
        let token = s.mint("p", "t", 1);
        let event = |kind: &str| format!("{{\"type\":\"{kind}\",\"token\":\"{token}\"}}\n");
        write(&dir, "events.jsonl", &event("progress"));
        let cache = EventCache::default();
        assert_eq!(cache.verdict(&dir, &key, 1, &s).expect("reads"), (false, 0));
        // An append changes the length: read again, and the done is seen.
        let mut log = event("progress");
        log.push_str(&event("done"));
        write(&dir, "events.jsonl", &log);
        assert_eq!(cache.verdict(&dir, &key, 1, &s).expect("reads"), (true, 0));
        // The same length written again with its old modification time (an
        // agent can set it back): its change time gives it away.
        let path = dir.join("events.jsonl");
        let modified = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .expect("mtime");
        std::thread::sleep(std::time::Duration::from_millis(20));
        let forged = log.replace("\"done\"", "\"dont\"");
        assert_eq!(forged.len(), log.len());
        std::fs::write(&path, &forged).expect("write");
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(modified))
            .expect("set mtime");
        assert_eq!(cache.verdict(&dir, &key, 1, &s).expect("reads"), (false, 0));
        // Another attempt in the same place is never answered from the cache.
        assert_eq!(cache.verdict(&dir, &key, 2, &s).expect("reads"), (false, 2));
        cache.keep_only([]);
        assert!(cache.logs.borrow().is_empty());
    }

    #[test]
    fn a_live_lease_is_running_a_dead_one_vanished_an_exit_record_exited() {
        let common = tempfile::tempdir().expect("dir");
        let key = TaskKey::new("p", "a");
        let s = secret();
        let dir = crate::rundir::Layout::new(common.path()).run(&key, 1);
        let me = std::process::id();
        write(&dir, "lease.json", &lease(me, process_start_ticks(me)));
        let record = read_run(&dir, &key, 1, &s).expect("reads");
        assert_eq!(
            record.obs.state,
            RunState::Running {
                deadline: Timestamp::from_unix(2_000)
            }
        );

        write(&dir, "lease.json", &lease(me, Some(1)));
        assert_eq!(
            read_run(&dir, &key, 1, &s).expect("reads").obs.state,
            RunState::Vanished
        );

        let token = s.mint("p", "a", 1);
        let forged =
            Secret::from_bytes(b"some other secret, long enough".to_vec()).mint("p", "a", 1);
        let stale = s.mint("p", "a", 0);
        write(
            &dir,
            "events.jsonl",
            &format!(
                "{{\"type\":\"progress\",\"token\":\"{token}\",\"message\":\"half way\"}}\nnot json\n{{\"type\":\"done\",\"token\":\"{forged}\"}}\n{{\"type\":\"done\",\"token\":\"{stale}\"}}\n"
            ),
        );
        write(
            &dir,
            "exit.json",
            "{\"exit_code\":0,\"signal\":null,\"ended_at\":\"2026-01-01T00:00:00Z\"}",
        );
        let record = read_run(&dir, &key, 1, &s).expect("reads");
        assert_eq!(
            record.obs.state,
            RunState::Exited {
                done: false,
                exit_code: Some(0)
            }
        );
        assert_eq!(record.obs.rejected_events, 3);

        std::fs::write(
            dir.join("events.jsonl"),
            format!("{{\"type\":\"done\",\"token\":\"{token}\"}}\n"),
        )
        .expect("write");
        let record = read_run(&dir, &key, 1, &s).expect("reads");
        assert_eq!(
            record.obs.state,
            RunState::Exited {
                done: true,
                exit_code: Some(0)
            }
        );
    }

    #[test]
    fn corrupt_records_name_their_file() {
        let common = tempfile::tempdir().expect("dir");
        let key = TaskKey::new("p", "a");
        let dir = crate::rundir::Layout::new(common.path()).run(&key, 1);
        write(&dir, "lease.json", "{not json");
        let error = read_run(&dir, &key, 1, &secret()).expect_err("corrupt");
        assert!(
            error
                .to_string()
                .contains("lease.json is not a valid run record"),
            "{error}"
        );
    }

    #[test]
    fn an_agent_that_reported_done_counts_when_its_supervisor_died() {
        // Found by crash injection: a supervisor that died right after starting
        // its agent left a finished, done-reporting agent looking vanished, and
        // the task was charged a failure for converge's crash.
        let common = tempfile::tempdir().expect("dir");
        let key = TaskKey::new("p", "a");
        let s = secret();
        let dir = crate::rundir::Layout::new(common.path()).run(&key, 1);
        write(&dir, "lease.json", &lease(std::process::id(), Some(1)));
        write(
            &dir,
            "events.jsonl",
            &format!(
                "{{\"type\":\"done\",\"token\":\"{}\"}}\n",
                s.mint("p", "a", 1)
            ),
        );
        assert_eq!(
            read_run(&dir, &key, 1, &s).expect("reads").obs.state,
            RunState::Exited {
                done: true,
                exit_code: None
            }
        );
    }
}
