//! Run records: `<git-common-dir>/converge/runs/<plan>/<task>/<attempt>/`.
//!
//! ```text
//! lease.json     written at dispatch: pid, process start time, deadline, fork commit
//! exit.json      written by the run's supervisor when the agent exits
//! events.jsonl   appended by agent-mode commands (`converge progress|done`)
//! agent.log      the agent's output
//! ```
//!
//! Runtime scratch, not durable state (design §1.1): status and git remain the
//! record. A lease is trusted only while its process is alive *and* started at
//! the recorded time, so a recycled pid is never mistaken for the agent.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{RunObs, RunState, TaskKey};
use crate::agent::Secret;
use crate::time::Timestamp;

// Process liveness lives with the rest of a run's processes.
pub use crate::rundir::procs::{process_alive, process_start_ticks, processes_of_run};

/// The directory of all runs, under the git common dir.
pub fn runs_root(common_dir: &Path) -> PathBuf {
    common_dir.join("converge").join("runs")
}

pub fn run_dir(common_dir: &Path, key: &TaskKey, attempt: u32) -> PathBuf {
    runs_root(common_dir)
        .join(&key.plan)
        .join(&key.task)
        .join(attempt.to_string())
}

/// Written when an attempt is dispatched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The process that owns the attempt (the run's supervisor).
    pub pid: u32,
    /// Its start time in clock ticks since boot (`/proc/<pid>/stat` field 22),
    /// to tell it from a later process that reuses the pid.
    pub start_ticks: Option<u64>,
    pub started_at: Timestamp,
    pub deadline: Timestamp,
    /// The base commit the task branch was created from.
    pub fork: String,
    pub generation: String,
    pub harness: String,
    /// The agent's process (leader of its own process group), once spawned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_pid: Option<u32>,
}

/// Written by the supervisor when the agent exits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub ended_at: Timestamp,
    /// The supervisor killed the agent at its deadline.
    #[serde(default)]
    pub timed_out: bool,
    /// The agent could not be started; the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spawn_error: Option<String>,
}

/// One line of `events.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// `progress`, `done`, or a harness event kind.
    #[serde(rename = "type")]
    pub kind: String,
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Timestamp>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a valid run record: {message}", path.display())]
    Parse { path: PathBuf, message: String },
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, RunError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| RunError::Parse {
                path: path.to_owned(),
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(RunError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Where the fork of a task's current attempt is noted: written before the task
/// branch moves, so that a crash between moving the branch and writing the
/// run's lease can never make a fresh branch at the base tip look merged.
pub fn fork_marker(common_dir: &Path, key: &TaskKey) -> PathBuf {
    common_dir
        .join("converge")
        .join("forks")
        .join(&key.plan)
        .join(&key.task)
}

/// The fork noted for a task, if any.
pub fn read_fork(common_dir: &Path, key: &TaskKey) -> Option<String> {
    let text = std::fs::read_to_string(fork_marker(common_dir, key)).ok()?;
    Some(text.trim().to_owned()).filter(|t| !t.is_empty())
}

/// The newest attempt with a run directory, per task.
pub fn latest_attempts(common_dir: &Path) -> Result<Vec<(TaskKey, u32, PathBuf)>, RunError> {
    let root = runs_root(common_dir);
    let mut out = Vec::new();
    for plan in sorted_dirs(&root)? {
        for task in sorted_dirs(&root.join(&plan))? {
            let dir = root.join(&plan).join(&task);
            let newest = sorted_dirs(&dir)?
                .into_iter()
                .filter_map(|a| a.parse::<u32>().ok())
                .max();
            if let Some(attempt) = newest {
                out.push((
                    TaskKey::new(&plan, &task),
                    attempt,
                    dir.join(attempt.to_string()),
                ));
            }
        }
    }
    Ok(out)
}

/// The names of the directories in `dir`, sorted (none if `dir` is missing).
pub fn sorted_dirs(dir: &Path) -> Result<Vec<String>, RunError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(RunError::Read {
                path: dir.to_owned(),
                source,
            });
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// The exit record of a run, if the supervisor wrote one.
pub fn read_exit(dir: &Path) -> Result<Option<ExitRecord>, RunError> {
    read_json(&dir.join("exit.json"))
}

/// The lease of a run, if one was written.
pub fn read_lease(dir: &Path) -> Result<Option<Lease>, RunError> {
    read_json(&dir.join("lease.json"))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    pub obs: RunObs,
    pub lease: Option<Lease>,
}

/// What one run directory says, with the lease checked against the live process
/// and `done` events checked against the attempt's token.
pub fn read_run(
    dir: &Path,
    key: &TaskKey,
    attempt: u32,
    secret: &Secret,
) -> Result<RunRecord, RunError> {
    let lease: Option<Lease> = read_json(&dir.join("lease.json"))?;
    let exit: Option<ExitRecord> = read_json(&dir.join("exit.json"))?;
    let (done, rejected_events) = read_events(&dir.join("events.jsonl"), key, attempt, secret)?;
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
    path: &Path,
    key: &TaskKey,
    attempt: u32,
    secret: &Secret,
) -> Result<(bool, u32), RunError> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((false, 0)),
        Err(source) => {
            return Err(RunError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let mut done = false;
    let mut rejected = 0u32;
    for line in std::io::BufReader::new(file).lines() {
        let line = line.map_err(|source| RunError::Read {
            path: path.to_owned(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let Ok(event) = serde_json::from_str::<Event>(&line) else {
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
        done |= event.kind == "done";
    }
    Ok((done, rejected))
}

#[cfg(test)]
mod tests {
    use super::*;

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
            fork: "f".repeat(40),
            generation: "g".into(),
            harness: "sim".into(),
            agent_pid: None,
        })
        .expect("json")
    }

    #[test]
    fn a_live_lease_is_running_a_dead_one_vanished_an_exit_record_exited() {
        let common = tempfile::tempdir().expect("dir");
        let key = TaskKey::new("p", "a");
        let s = secret();
        let dir = run_dir(common.path(), &key, 1);
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
    fn the_newest_attempt_of_each_task_is_found() {
        let common = tempfile::tempdir().expect("dir");
        for (plan, task, attempt) in [
            ("p", "a", 1),
            ("p", "a", 10),
            ("p", "a", 2),
            ("p", "b", 1),
            ("q", "c", 3),
        ] {
            std::fs::create_dir_all(run_dir(common.path(), &TaskKey::new(plan, task), attempt))
                .expect("mkdir");
        }
        let found: Vec<(String, u32)> = latest_attempts(common.path())
            .expect("reads")
            .into_iter()
            .map(|(k, a, _)| (k.to_string(), a))
            .collect();
        assert_eq!(
            found,
            [
                ("p/a".to_owned(), 10),
                ("p/b".to_owned(), 1),
                ("q/c".to_owned(), 3)
            ]
        );
    }

    #[test]
    fn corrupt_records_name_their_file() {
        let common = tempfile::tempdir().expect("dir");
        let key = TaskKey::new("p", "a");
        let dir = run_dir(common.path(), &key, 1);
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
        let dir = run_dir(common.path(), &key, 1);
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
