//! The executor: side effects only. Each action has its file (`reap`, `start`,
//! `gate`, `merge`, `promote`, `cleanup`; `cancel` and `escalate` beside
//! them); [`apply`] carries one out and reports what happened to its task as
//! [`Outcome`]s, which the tick folds into status through
//! [`crate::status::transition`] — the executor never edits status. An
//! action's error goes through [`policy`], which says how the task answers it.
//!
//! Below the actions: the detached agent run under a supervisor (`run`,
//! `dispatch`), the sandbox. Invariants run through [`crate::check`], which
//! the forge uses too.

mod cleanup;
pub mod contain;
mod context;
pub mod dispatch;
mod escalate;
mod gate;
pub mod import;
mod judge;
mod merge;
pub mod planner;
pub mod policy;
mod promote;
mod propose;
mod reap;
pub mod run;
pub mod sandbox;
mod start;

use std::path::{Path, PathBuf};

use gix::ObjectId;

use crate::agent::Secret;
use crate::decide::Action;
use crate::forge::{Forge, ForgeError};
use crate::git::{GitError, Repo};
use crate::harness;
use crate::model::TaskKey;
use crate::observe::Availability;
use crate::spec::{Plan, Spec, Task};
use crate::status::Status;
use crate::time::Timestamp;

pub use crate::status::transition::{Outcome, UNCONFINED};
pub use cleanup::retire;
pub use merge::MERGE_EVIDENCE;

/// Everything the actions of one tick share.
pub struct ActCtx<'a> {
    pub repo: &'a Repo,
    pub spec: &'a Spec,
    pub secret: &'a Secret,
    /// Where passed work merges.
    pub forge: &'a dyn Forge,
    /// The converge executable (supervisor and `sim` agent).
    pub converge: &'a Path,
    pub now: Timestamp,
    /// Where the agent's allowed environment variables are read from.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub base_branch: String,
    /// The base tip; moves when this tick merges.
    pub base_tip: ObjectId,
    /// Masks the secret and sensitive environment values in what acts write.
    pub redactor: crate::agent::Redactor,
    /// Whether Landlock works here, when `[sandbox] enabled` asked.
    pub sandbox: Option<Availability>,
    /// Where task worktrees live (`[reconcile] worktree_root`, resolved).
    pub worktree_root: PathBuf,
}

impl ActCtx<'_> {
    /// Who converge's own commits are written as (see [`crate::spec::Reconcile::signer`]).
    pub fn signer(&self) -> crate::git::Signer {
        self.spec.config.reconcile.signer(self.env)
    }
}

impl std::fmt::Debug for ActCtx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActCtx")
            .field("base_branch", &self.base_branch)
            .field("base_tip", &self.base_tip)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// What an action did, for the tick's output and commit message.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// One line for people: `dispatch auth/login (attempt 1)`.
    pub line: String,
    /// Files the status commit must also change (queue moves).
    pub files: Vec<(String, Option<Vec<u8>>)>,
    /// Set when the action could not proceed and changed nothing.
    pub deferred: Option<String>,
    /// Set when the action failed with this error (chain); the failure is
    /// recorded on its task (see [`policy`]).
    pub failed: Option<String>,
    /// What happened to the action's task, in order, for the transition.
    pub outcomes: Vec<Outcome>,
}

impl Applied {
    fn done(line: String, outcomes: Vec<Outcome>) -> Applied {
        Applied {
            line,
            files: Vec::new(),
            deferred: None,
            failed: None,
            outcomes,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ActError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Forge(#[from] ForgeError),
    #[error(transparent)]
    Dispatch(#[from] dispatch::DispatchError),
    #[error(transparent)]
    Run(#[from] crate::rundir::RunError),
    #[error(transparent)]
    Supervise(#[from] run::SuperviseError),
    #[error(transparent)]
    Harness(#[from] harness::HarnessError),
    /// A commit of the action's own on the base branch (a promotion with a
    /// status branch of its own).
    #[error(transparent)]
    Record(#[from] crate::status::record::RecordError),
    /// `kept`: what happened before the base moved (the evidence of
    /// `[merge].invariants`), which status keeps.
    #[error("the base branch {branch} moved while merging; the tick is recomputed")]
    BaseMoved { branch: String, kept: Vec<Outcome> },
    #[error("task {key} is not in the spec")]
    UnknownTask { key: TaskKey },
}

/// Carries out one action. `status` is read, never written: what happened to
/// the action's task is in [`Applied::outcomes`].
pub fn apply(ctx: &mut ActCtx<'_>, status: &Status, action: &Action) -> Result<Applied, ActError> {
    match action {
        Action::Reap {
            key,
            attempt,
            reason,
        } => reap::reap(ctx, key, *attempt, reason),
        Action::Cancel {
            key,
            attempt,
            reason,
        } => reap::cancel(ctx, key, *attempt, reason),
        Action::Gate { key, attempt } => gate::gate(ctx, status, key, *attempt),
        Action::Merge { key, head } => merge::merge(ctx, status, key, *head),
        Action::Propose { key, head, opens } => propose::propose(ctx, status, key, *head, *opens),
        Action::Retry {
            key,
            attempt,
            reason,
        } => start::start(ctx, status, key, *attempt, Some(reason)),
        Action::Escalate { key, reason } => Ok(escalate::escalate(ctx, status, key, reason)),
        Action::Dispatch { key, attempt } => start::start(ctx, status, key, *attempt, None),
        Action::Promote { item } => promote::promote(ctx, item),
        Action::Cleanup { key } => cleanup::cleanup(ctx, status, key),
    }
}

fn task_of<'s>(spec: &'s Spec, key: &TaskKey) -> Result<(&'s Plan, &'s Task), ActError> {
    spec.plans
        .get(&key.plan)
        .and_then(|p| p.task(&key.task).map(|t| (p, t)))
        .ok_or_else(|| ActError::UnknownTask { key: key.clone() })
}

/// What proposing and merging a passed task start from: the task (and its
/// plan) in the spec, its attempt and its change record (a pull request
/// converge opened) in status.
struct PassedTask<'s> {
    plan: &'s Plan,
    task: &'s Task,
    attempt: u32,
    change: Option<&'s crate::status::ChangeRecord>,
}

fn passed_task<'s>(
    spec: &'s Spec,
    status: &'s Status,
    key: &TaskKey,
) -> Result<PassedTask<'s>, ActError> {
    let (plan, task) = task_of(spec, key)?;
    let st = status.task(&key.plan, &key.task);
    Ok(PassedTask {
        plan,
        task,
        attempt: st.map_or(0, |s| s.attempt),
        change: st.and_then(|s| s.change.as_ref()),
    })
}

/// The last `lines` lines of the file at `path`, if any are not blank.
fn tail_of(path: &Path, lines: usize) -> Option<String> {
    let text = std::fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&text);
    let kept = crate::check::exec::last_lines(&text, lines).join("\n");
    (!kept.trim().is_empty()).then_some(kept)
}
