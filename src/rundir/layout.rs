//! Every path converge keeps outside `planning/`: the only place one is
//! spelled. Pure path arithmetic; nothing here touches the disk.
//!
//! ```text
//! <git-common-dir>/converge/
//!   runs/<plan>/<task>/<attempt>/   one attempt (see the run files below)
//!   forks/<plan>/<task>             the fork of the task's current attempt
//!   gates/<plan>/<task>/<n>.json    a gate's kept results
//!   merge-checks/<plan>.<task>/     the merge result, checked out for [merge].invariants
//!   checkouts/<branch>.json         the journal of a checked-out branch's update
//!   checkouts/left-alone/<branch>@<commit>.json   paths an update left alone
//!   intents/                        the locks converge is about to take
//!   worktrees/<plan>/<task>/        task worktrees of earlier versions and bare repositories
//!   lock  secret  reconciler-id
//! <checkout>/.converge/worktrees/<plan>/<task>/   task worktrees (the default root)
//!
//! a run directory:
//!   run.json  supervisor.log  lease.json  exit.json  events.jsonl  brief.json
//!   prompt.md  agent.log  gate/<invariant>.log  merge/<invariant>.log
//!   check/  tmp/  claude/  codex/  opencode/
//! ```
//!
//! Names in `<plan>` and `<task>` never contain `.` or `/` (see
//! `spec::names`), so every path above is unambiguous.

use std::path::{Path, PathBuf};

use crate::model::TaskKey;

/// The paths under one repository's git common directory (and the checkout
/// that holds it, if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    common: PathBuf,
}

impl Layout {
    pub fn new(common_dir: impl Into<PathBuf>) -> Layout {
        Layout {
            common: common_dir.into(),
        }
    }

    /// The git common directory.
    pub fn common(&self) -> &Path {
        &self.common
    }

    /// `<git-common-dir>/converge`: runtime scratch, never durable state.
    pub fn root(&self) -> PathBuf {
        self.common.join("converge")
    }

    /// The directory of all runs.
    pub fn runs(&self) -> PathBuf {
        self.root().join("runs")
    }

    /// The runs of one task: one directory per attempt, named by its number.
    pub fn task_runs(&self, key: &TaskKey) -> PathBuf {
        self.runs().join(&key.plan).join(&key.task)
    }

    /// The run directory of one attempt of a task.
    pub fn run(&self, key: &TaskKey, attempt: u32) -> PathBuf {
        self.task_runs(key).join(attempt.to_string())
    }

    /// Where the fork of a task's current attempt is noted: written before the
    /// task branch moves, so that a crash between moving the branch and
    /// writing the run's lease can never make a fresh branch at the base tip
    /// look merged.
    pub fn fork_marker(&self, key: &TaskKey) -> PathBuf {
        self.root().join("forks").join(&key.plan).join(&key.task)
    }

    /// Where a worktree whose repository converge refused to import from is
    /// set aside instead of deleted (see `act::import`).
    pub fn quarantine(&self, key: &TaskKey, attempt: u32) -> PathBuf {
        self.root()
            .join("quarantine")
            .join(&key.plan)
            .join(&key.task)
            .join(attempt.to_string())
    }

    /// What the last import of a task's worktree saw (see `act::import`).
    pub fn import_note(&self, key: &TaskKey) -> PathBuf {
        self.root().join("imports").join(&key.plan).join(&key.task)
    }

    /// The kept gate results of all tasks.
    pub fn gates(&self) -> PathBuf {
        self.root().join("gates")
    }

    /// The kept gate results of one task: one directory per task (names may
    /// contain `-`, so joining them with a separator could collide).
    pub fn task_gates(&self, key: &TaskKey) -> PathBuf {
        self.gates().join(&key.plan).join(&key.task)
    }

    /// The kept results of one attempt's gate.
    pub fn gate_record(&self, key: &TaskKey, attempt: u32) -> PathBuf {
        self.task_gates(key).join(format!("{attempt}.json"))
    }

    /// Where merge results are checked out for `[merge].invariants`.
    pub fn merge_checks(&self) -> PathBuf {
        self.root().join("merge-checks")
    }

    /// The merge check of one task: `<plan>.<task>` (names never contain `.`,
    /// so no two tasks share one; a `--` could: plan `a`, task `b--c` and plan
    /// `a--b`, task `c`).
    pub fn merge_check(&self, key: &TaskKey) -> PathBuf {
        self.merge_checks()
            .join(format!("{}.{}", key.plan, key.task))
    }

    /// The journals of checked-out branches' updates.
    pub fn checkouts(&self) -> PathBuf {
        self.root().join("checkouts")
    }

    /// The journal of an update of the checkout of `branch`.
    pub fn checkout_journal(&self, branch: &str) -> PathBuf {
        self.checkouts()
            .join(format!("{}.json", escape_branch(branch)))
    }

    /// The notes of paths updates left as a person had changed them.
    pub fn left_alone(&self) -> PathBuf {
        self.checkouts().join("left-alone")
    }

    /// The note of the paths an update of `branch` to `to` left alone.
    pub fn left_alone_note(&self, branch: &str, to: &str) -> PathBuf {
        self.left_alone()
            .join(format!("{}@{to}.json", escape_branch(branch)))
    }

    /// The notes of locks converge is about to take.
    pub fn intents(&self) -> PathBuf {
        self.root().join("intents")
    }

    /// The GitHub forge's own state: its cache of conditional requests
    /// (`cache.json`) and its rate-limit cooldown (`limits.json`).
    pub fn forge(&self) -> PathBuf {
        self.root().join("forge")
    }

    /// The note that the forge merged the task's change as a commit (a merge
    /// without converge's trailers, such as a rebase merge or one made on
    /// GitHub by a person): what backs status's `merged_as` for it.
    pub fn forge_merge_note(&self, key: &TaskKey) -> PathBuf {
        self.forge().join("merged").join(&key.plan).join(&key.task)
    }

    /// The reconciler lock (`flock`).
    pub fn lock(&self) -> PathBuf {
        self.root().join("lock")
    }

    /// The secret agent tokens are minted from.
    pub fn secret(&self) -> PathBuf {
        self.root().join("secret")
    }

    /// This reconciler's id for claims.
    pub fn reconciler_id(&self) -> PathBuf {
        self.root().join("reconciler-id")
    }

    /// Where earlier versions kept every worktree (and where they still live
    /// for bare repositories).
    pub fn legacy_worktrees(&self) -> PathBuf {
        self.root().join("worktrees")
    }

    /// The checkout whose `.git` is the common directory, if it is one (not a
    /// bare repository, not a submodule's `.git/modules/..`).
    pub fn checkout(&self) -> Option<&Path> {
        checkout_of(&self.common)
    }

    /// Where task worktrees live by default: `<checkout>/.converge/worktrees`,
    /// else (no checkout) [`Layout::legacy_worktrees`].
    pub fn default_worktree_root(&self) -> PathBuf {
        match self.checkout() {
            Some(checkout) => checkout.join(".converge").join("worktrees"),
            None => self.legacy_worktrees(),
        }
    }
}

/// The checkout whose `.git` is `common_dir`, if it is one (see
/// [`Layout::checkout`]).
pub fn checkout_of(common_dir: &Path) -> Option<&Path> {
    match (common_dir.file_name(), common_dir.parent()) {
        (Some(name), Some(checkout)) if name == ".git" && !checkout.as_os_str().is_empty() => {
            Some(checkout)
        }
        _ => None,
    }
}

/// How `.git/info/exclude` lists the default worktree root.
pub const DEFAULT_ROOT_EXCLUDE: &str = "/.converge/";

/// A task's worktree under a worktree root.
pub fn worktree(root: &Path, key: &TaskKey) -> PathBuf {
    root.join(&key.plan).join(&key.task)
}

/// A branch name as one file name.
fn escape_branch(branch: &str) -> String {
    branch.replace('/', "%2F")
}

// The files of a run directory.

/// What the supervisor runs (written by dispatch).
pub fn run_plan(run: &Path) -> PathBuf {
    run.join("run.json")
}

/// The supervisor's own output.
pub fn supervisor_log(run: &Path) -> PathBuf {
    run.join("supervisor.log")
}

/// Written by the supervisor before it starts the agent.
pub fn lease(run: &Path) -> PathBuf {
    run.join("lease.json")
}

/// Written by the supervisor when the agent exits.
pub fn exit(run: &Path) -> PathBuf {
    run.join("exit.json")
}

/// Appended by the agent-mode commands.
pub fn events(run: &Path) -> PathBuf {
    run.join("events.jsonl")
}

/// What the agent-mode commands know about the attempt.
pub fn brief(run: &Path) -> PathBuf {
    run.join("brief.json")
}

/// The agent's prompt.
pub fn prompt(run: &Path) -> PathBuf {
    run.join("prompt.md")
}

/// The agent's output, masked and capped.
pub fn agent_log(run: &Path) -> PathBuf {
    run.join("agent.log")
}

/// The logs of the gate's invariants.
pub fn gate_logs(run: &Path) -> PathBuf {
    run.join("gate")
}

/// The logs of `[merge].invariants` on the attempt's merge result.
pub fn merge_logs(run: &Path) -> PathBuf {
    run.join("merge")
}

/// The log of one invariant in a directory of logs ([`gate_logs`],
/// [`merge_logs`]).
pub fn invariant_log(logs: &Path, invariant: &str) -> PathBuf {
    logs.join(format!("{invariant}.log"))
}

/// What `converge check`'s invariants changed in the worktree, kept.
pub fn check_keep(run: &Path) -> PathBuf {
    run.join("check")
}

/// A sandboxed agent's private temporary directory.
pub fn tmp(run: &Path) -> PathBuf {
    run.join("tmp")
}

/// An agent CLI's home in the run directory (`claude`, `codex`, `opencode`).
pub fn harness_home(run: &Path, name: &str) -> PathBuf {
    run.join(name)
}

// Temporary files.

/// The throwaway git directory converge stages an agent's leftovers with
/// (process `pid`), under `root` ([`Layout::root`]).
pub fn leftovers_git_dir(root: &Path, pid: u32) -> PathBuf {
    root.join("tmp").join(format!("leftovers-{pid}.git"))
}

/// The temporary file an atomic write of `path` by process `pid` goes through.
pub fn atomic_temp(path: &Path, pid: u32) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.parent()
        .unwrap_or(Path::new("."))
        .join(format!(".{name}.converge-tmp-{pid}"))
}

/// The temporary file a new secret is written to before it is linked into
/// place.
pub fn secret_temp(secret: &Path, pid: u32) -> PathBuf {
    secret.with_extension(format!("{pid}.tmp"))
}

/// The temporary name beside `target` that `pid` writes a checkout's new
/// content to. Not derived from the target's name: a name near the file
/// system's limit (255 bytes) would make a longer one impossible to create.
pub fn checkout_temp(target: &Path, pid: &str) -> PathBuf {
    target.with_file_name(format!(".converge-{pid}.tmp"))
}

/// The process that wrote a file named by [`checkout_temp`], if `name` is one.
pub fn checkout_temp_pid(name: &str) -> Option<u32> {
    name.strip_prefix(".converge-")
        .and_then(|rest| rest.strip_suffix(".tmp"))
        .and_then(|pid| pid.parse().ok())
}

#[cfg(test)]
#[path = "layout_tests.rs"]
mod tests;
