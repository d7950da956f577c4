//! The records of a run directory (see [`super::layout`] for where each
//! lives): their formats, and reading and writing them. JSON records are
//! written whole and atomically (never seen half-written); events are appended
//! one line per `write`.
//!
//! ```text
//! lease.json     written by the supervisor before it starts the agent: pid,
//!                process start time, deadline, fork commit
//! exit.json      written by the supervisor when the agent exits
//! events.jsonl   appended by agent-mode commands (`converge progress|done`)
//! brief.json     written at dispatch: what the agent-mode commands need
//! forks/…        the fork of a task's current attempt, noted before its branch moves
//! ```
//!
//! Runtime scratch, not durable state (design §1.1): status and git remain the
//! record.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::RunError;
use super::layout::{self, Layout};
use crate::model::{CommitId, TaskKey};
use crate::spec::{Invariant, Sim};
use crate::time::Timestamp;

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
    /// The base commit the task branch was created from: `None` when the
    /// recorded text is not a commit id ([`crate::model::lenient`]; the
    /// field is still required).
    #[serde(deserialize_with = "crate::model::lenient")]
    pub fork: Option<CommitId>,
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

/// What an agent's commands know about its attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Brief {
    /// `plan/task`.
    pub task: String,
    pub attempt: u32,
    /// The task's invariants, as the base branch defines them.
    pub invariants: Vec<Invariant>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim: Option<Sim>,
    /// A planner attempt of the autonomy loop: what it is asked and given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planner: Option<PlannerBrief>,
}

/// What a planner attempt of the autonomy loop knows (docs/autonomy.md):
/// its kind and inputs, and where in its worktree it leaves its output
/// ([`PLANNER_OUT`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannerBrief {
    /// `gap-analysis`, `capability-update` or `review`.
    pub kind: String,
    /// The loop's run number (from 1 over its life).
    pub run: u32,
    pub goal: String,
    pub capabilities: String,
    /// A capability update: the merged item's title and description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged: Option<(String, String)>,
    /// A capability update: the merged item's name (`queue/<item>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    /// A review: its lens (architecture, tests, security).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lens: Option<String>,
    /// Gaps the loop will not file again (their items escalated twice).
    #[serde(default)]
    pub blocked: Vec<String>,
    /// Gaps whose items escalated at least once.
    #[serde(default)]
    pub escalated: Vec<String>,
    /// The loop's previous proposal, as filed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// The invariant names an item may list.
    #[serde(default)]
    pub invariants: Vec<String>,
    /// The `sim` planner's script (`[autonomy.sim]`).
    #[serde(default)]
    pub sim: crate::spec::PlannerSim,
}

/// Where a planner attempt leaves its output, relative to its worktree:
/// `item.md`, `goal-met.md`, `capabilities.md` or `review.md`.
pub const PLANNER_OUT: &str = ".converge-planner";

impl Brief {
    /// The brief of the run in `run`.
    pub fn read(run: &Path) -> Result<Brief, RunError> {
        read_required(&layout::brief(run), "brief")
    }
}

/// What the records are called in errors.
const RUN_RECORD: &str = "run record";

/// A JSON record, if the file exists; `what` names it in errors.
pub fn read_json<T: for<'de> Deserialize<'de>>(
    path: &Path,
    what: &'static str,
) -> Result<Option<T>, RunError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| RunError::Parse {
                path: path.to_owned(),
                what,
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(RunError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// A JSON record that must exist (a missing file is an error too); `what`
/// names it in errors.
pub fn read_required<T: for<'de> Deserialize<'de>>(
    path: &Path,
    what: &'static str,
) -> Result<T, RunError> {
    let bytes = std::fs::read(path).map_err(|source| RunError::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| RunError::Parse {
        path: path.to_owned(),
        what,
        message: e.to_string(),
    })
}

/// Writes `bytes` to `path` atomically (creating its directory).
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    super::atomic::write_atomically(path, bytes).map_err(|source| RunError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Creates a directory of the run directory's (and its parents).
pub fn create_dir(dir: &Path) -> Result<(), RunError> {
    std::fs::create_dir_all(dir).map_err(|source| RunError::Write {
        path: dir.to_owned(),
        source,
    })
}

/// Pretty JSON, as the run records are written.
pub fn pretty<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail.
    serde_json::to_vec_pretty(value).unwrap_or_default()
}

/// The lease of a run, if one was written.
pub fn read_lease(run: &Path) -> Result<Option<Lease>, RunError> {
    read_json(&layout::lease(run), RUN_RECORD)
}

pub fn write_lease(run: &Path, lease: &Lease) -> Result<(), RunError> {
    write_file(&layout::lease(run), &pretty(lease))
}

/// The exit record of a run, if the supervisor wrote one.
pub fn read_exit(run: &Path) -> Result<Option<ExitRecord>, RunError> {
    read_json(&layout::exit(run), RUN_RECORD)
}

pub fn write_exit(run: &Path, exit: &ExitRecord) -> Result<(), RunError> {
    write_file(&layout::exit(run), &pretty(exit))
}

/// The events of a run, one per non-blank line, in order: `None` for a line
/// that is not an event. (Whether an event's token is genuine is for the
/// reader to check.)
pub fn read_events(run: &Path) -> Result<Vec<Option<Event>>, RunError> {
    let path = layout::events(run);
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(RunError::Read { path, source }),
    };
    let mut out = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line.map_err(|source| RunError::Read {
            path: path.clone(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str::<Event>(&line).ok());
    }
    Ok(out)
}

/// One event of `events.jsonl`, parsed, if `line` is one.
pub fn parse_event(line: &str) -> Option<Event> {
    serde_json::from_str(line).ok()
}

/// Appends one event. The line is written with a single `write` on a file
/// opened for appending, so concurrent writers do not interleave lines.
pub fn append_event(run: &Path, event: &Event) -> Result<(), RunError> {
    let path = layout::events(run);
    let mut line = serde_json::to_vec(event).unwrap_or_default();
    line.push(b'\n');
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| file.write_all(&line));
    appended.map_err(|source| RunError::Append { path, source })
}

/// A note of converge's that holds one commit id (the fork note, the forge's
/// merge note): `None` when there is none, or its text is no commit id.
fn read_commit_note(path: &Path) -> Option<CommitId> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Writes a note of one commit id: its 40 hex digits, atomically (creating
/// the note's directory).
fn write_commit_note(path: &Path, commit: CommitId) -> Result<(), RunError> {
    write_file(path, commit.to_string().as_bytes())
}

/// The fork noted for a task, if any: a note that is not a commit id is none.
pub fn read_fork(layout: &Layout, key: &TaskKey) -> Option<CommitId> {
    read_commit_note(&layout.fork_marker(key))
}

/// Notes the fork of a task's next attempt (see [`Layout::fork_marker`]).
pub fn write_fork(layout: &Layout, key: &TaskKey, fork: CommitId) -> Result<(), RunError> {
    write_commit_note(&layout.fork_marker(key), fork)
}

/// The fork of a task's current attempt: the one noted before its branch
/// last moved wins over `lease`'s (the attempt's lease), because it is
/// written first, so it is right even when a crash kept the lease from being
/// written. The note is converge's, outside every agent's reach.
pub fn attempt_fork(layout: &Layout, key: &TaskKey, lease: Option<CommitId>) -> Option<CommitId> {
    read_fork(layout, key).or(lease)
}

/// The commit the forge merged the task's change as, if it noted one (a
/// note that is no commit id reads as none).
pub fn read_forge_merge(layout: &Layout, key: &TaskKey) -> Option<CommitId> {
    read_commit_note(&layout.forge_merge_note(key))
}

/// Notes that the forge merged the task's change as `commit`.
pub fn write_forge_merge(layout: &Layout, key: &TaskKey, commit: CommitId) -> Result<(), RunError> {
    write_commit_note(&layout.forge_merge_note(key), commit)
}

/// The newest attempt with a run directory, per task.
pub fn latest_attempts(layout: &Layout) -> Result<Vec<(TaskKey, u32, PathBuf)>, RunError> {
    let root = layout.runs();
    let mut out = Vec::new();
    for plan in sorted_dirs(&root)? {
        for task in sorted_dirs(&root.join(&plan))? {
            let key = TaskKey::new(&plan, &task);
            let newest = sorted_dirs(&layout.task_runs(&key))?
                .into_iter()
                .filter_map(|a| a.parse::<u32>().ok())
                .max();
            if let Some(attempt) = newest {
                let dir = layout.run(&key, attempt);
                out.push((key, attempt, dir));
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

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;
