//! `converge doctor`: consistency checks of what converge keeps outside git's
//! history (worktrees, task branches, run records, processes, the secret) and of
//! the machine, each with the fix; `--fix` applies the safe ones.
//!
//! Each check is a function in [`CHECKS`], in the order the findings are
//! shown; [`diagnose`] runs them in turn. The checks live beside this file:
//! `orphans`, `processes`, `status` (status against git), `checkouts`,
//! `machine` (the secret, agent CLIs, git, Landlock), `crash` (what killed
//! processes left); `fix` applies the findings' fixes.

mod checkouts;
mod crash;
mod fix;
mod machine;
mod orphans;
mod processes;
mod status;

use std::path::PathBuf;

use crate::git::Repo;
use crate::model::TaskKey;
use crate::observe::runs;

use super::prepare::Snapshot;

use crate::model::short;
pub use crash::{check_leftovers, fix_leftovers};
pub use fix::{fix, fix_secret};
pub use machine::check_secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    Warning,
    Problem,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warning => "warning",
            Level::Problem => "problem",
        }
    }
}

/// What `--fix` would do about a finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fix {
    /// Remove the task's worktree and branch, keeping unmerged work under
    /// `refs/converge/attempts/`.
    Retire { key: TaskKey, attempt: u32 },
    /// Remove a directory converge made and git does not know.
    RemoveDir(PathBuf),
    /// Kill the processes of a run that nothing will look at again.
    Kill { run_dir: PathBuf },
    /// `chmod 600` the secret.
    SecretMode(PathBuf),
    /// Forget worktree registrations whose directory is gone (`git worktree prune`).
    Prune,
    /// Finish the interrupted updates of checked-out branches that can be finished.
    FinishCheckouts,
    /// Forget a note of paths an update left as a person had changed them
    /// (they were shown; what to do with them is the person's call).
    ForgetLeftAlone(PathBuf),
    /// Remove what a killed process left: a stale ref lock, an unfinished
    /// worktree (see [`crate::runtime::recover`]).
    Recover(crate::runtime::recover::Found),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub check: &'static str,
    pub level: Level,
    pub message: String,
    /// What a person can do, when `--fix` cannot.
    pub hint: Option<String>,
    pub fix: Option<Fix>,
}

impl Finding {
    fn ok(check: &'static str, message: impl Into<String>) -> Finding {
        Finding {
            check,
            level: Level::Ok,
            message: message.into(),
            hint: None,
            fix: None,
        }
    }

    fn new(check: &'static str, level: Level, message: impl Into<String>) -> Finding {
        Finding {
            check,
            level,
            message: message.into(),
            hint: None,
            fix: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Finding {
        self.hint = Some(hint.into());
        self
    }

    fn fix(mut self, fix: Fix) -> Finding {
        self.fix = Some(fix);
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
    #[error(transparent)]
    Run(#[from] runs::RunError),
    #[error(transparent)]
    Act(#[from] crate::act::ActError),
    #[error(transparent)]
    Recover(#[from] crate::runtime::recover::RecoverError),
    #[error("cannot fix {what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// One check: its findings about what a snapshot (the read-only half of a
/// tick) saw, an ok finding when there is nothing to say.
type Check = fn(&Repo, &Snapshot) -> Result<Vec<Finding>, DoctorError>;

/// Every check [`diagnose`] runs, in the order their findings are shown.
const CHECKS: &[Check] = &[
    orphans::check,
    processes::check,
    status::check,
    machine::secret,
    checkouts::check,
    machine::agent_clis,
    machine::git,
    machine::landlock,
    machine::user,
];

/// Runs every check against the state a snapshot (the read-only half of a tick) saw.
pub fn diagnose(repo: &Repo, report: &Snapshot) -> Result<Vec<Finding>, DoctorError> {
    let mut out = Vec::new();
    for check in CHECKS {
        out.extend(check(repo, report)?);
    }
    Ok(out)
}

/// Whether a valid plan has the task.
fn in_spec(report: &Snapshot, key: &TaskKey) -> bool {
    report
        .spec
        .plans
        .get(&key.plan)
        .is_some_and(|p| p.task(&key.task).is_some())
}

/// Whether the task's plan failed validation (and is left alone).
fn set_aside(report: &Snapshot, key: &TaskKey) -> bool {
    report.spec.invalid_plans.contains(&key.plan)
}
