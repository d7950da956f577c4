//! Intents: decisions by people (or, later, machines) about the desired state,
//! each one commit on the base branch, by compare-and-swap from the tip the
//! caller read. The command line (`approve`, `reject`, `retry`, `pause`,
//! `resume`, `enqueue`) is one caller, the autonomy loop another; a web API or a schedule would be others.
//!
//! An intent checks its input against the spec and status the caller read
//! ([`Base`]), composes the file edit (`spec::edit`, pure) and records it with
//! `status::record` (the same CAS commit the tick uses). It returns what it
//! did; wording and hints for people are the caller's (`cli::error`).
//!
//! `converge invariant add` is not an intent: it edits converge.toml in the
//! working tree for a person to commit (an editing aid); its edit is
//! `spec::edit::add_invariant`.

pub mod enqueue;

pub use enqueue::{Enqueued, enqueue};

use gix::ObjectId;

use crate::git::{GitError, Repo};
use crate::model::CommitId;
use crate::model::TaskKey;
use crate::spec::edit::{self, ApprovalRecord, EditError};
use crate::spec::{PlanState, Spec};
use crate::status::record::{self, Change, Message, Outcome, RecordError};
use crate::status::{Phase, Status};
use crate::time::Timestamp;

/// What an intent is decided against: the base branch as the caller read it.
/// The commit lands only if the branch is still at `commit`.
#[derive(Debug, Clone, Copy)]
pub struct Base<'a> {
    /// The base branch's name.
    pub branch: &'a str,
    /// The tip read, which the spec was loaded from.
    pub commit: ObjectId,
    pub spec: &'a Spec,
    /// Status as it stands (brought in line with the spec).
    pub status: &'a Status,
}

#[derive(Debug, thiserror::Error)]
pub enum IntentError {
    #[error("there is no task `{key}` on {base}")]
    UnknownTask {
        key: TaskKey,
        base: String,
        /// Whether the plan exists (and only the task is unknown).
        plan_known: bool,
        /// `did you mean ...?`, when a name is close.
        suggestion: Option<String>,
    },
    #[error("there is no valid plan `{plan}`")]
    UnknownPlan {
        plan: String,
        suggestion: Option<String>,
    },
    #[error("a rejection needs a reason")]
    ReasonRequired,
    #[error("{key} has no branch to review")]
    NoBranch { key: TaskKey },
    #[error("{key} is merged{}; there is nothing to retry", merged_as.map_or_else(String::new, |c| format!(" as {}", c.short())))]
    Merged {
        key: TaskKey,
        merged_as: Option<CommitId>,
    },
    #[error("queue items have no `reset` to bump")]
    QueueHasNoReset { key: TaskKey },
    #[error("the `queue` plan is always active")]
    QueueAlwaysActive,
    #[error("{file} is not on {base}")]
    NotOnBase { file: String, base: String },
    #[error("{file} is not UTF-8")]
    NotUtf8 {
        file: String,
        #[source]
        source: std::string::FromUtf8Error,
    },
    #[error("{file} is not a valid queue item ({} problem{})", diagnostics.iter().filter(|d| d.is_error()).count(), if diagnostics.iter().filter(|d| d.is_error()).count() == 1 { "" } else { "s" })]
    InvalidItem {
        file: String,
        /// Errors first, each with file, line and column.
        diagnostics: Vec<crate::spec::Diagnostic>,
    },
    #[error("{file} is {bytes} bytes, over the 1 MiB a planning file may be")]
    ItemTooLarge { file: String, bytes: usize },
    #[error("queue item `{name}` exists already ({file})")]
    AlreadyQueued { name: String, file: String },
    #[error(transparent)]
    Edit(#[from] EditError),
    #[error("nothing to change: {base} already says so")]
    Unchanged { base: String },
    #[error("cannot commit the decision")]
    Record(#[source] RecordError),
    #[error(transparent)]
    Git(#[from] GitError),
}

/// Approve or reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Approve,
    Reject,
}

/// A decision on a task's reviewed commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review<'a> {
    pub verdict: Verdict,
    /// Why; required to reject (it is given to the next attempt's agent).
    pub reason: Option<&'a str>,
    /// The reviewed commit, as a revision; the task branch's tip when absent.
    pub commit: Option<&'a str>,
}

/// What [`review`] committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reviewed {
    /// The commit the decision is bound to.
    pub reviewed: ObjectId,
    /// The approval file written.
    pub path: String,
    /// The commit on the base branch.
    pub committed: ObjectId,
    /// The task's phase when decided: the decision takes effect once it
    /// awaits approval.
    pub phase: Phase,
}

/// `approve` / `reject`: writes `planning/approvals/<plan>/<task>.toml`, bound
/// to the reviewed commit, signed by the repository's committer `by`.
pub fn review(
    repo: &Repo,
    base: &Base<'_>,
    key: &TaskKey,
    review: &Review<'_>,
    now: Timestamp,
) -> Result<Reviewed, IntentError> {
    known_task(base, key)?;
    let reason = review.reason.filter(|r| !r.trim().is_empty());
    if review.verdict == Verdict::Reject && reason.is_none() {
        return Err(IntentError::ReasonRequired);
    }
    let reviewed = match review.commit {
        Some(rev) => repo.resolve_commit(rev)?,
        None => repo
            .branch_tip(&key.branch())?
            .ok_or_else(|| IntentError::NoBranch { key: key.clone() })?,
    };
    let phase = base
        .status
        .task(&key.plan, &key.task)
        .map_or(Phase::Pending, |s| s.phase);
    let signature = repo.signature();
    let by = format!("{} <{}>", signature.name, signature.email);
    let approve = review.verdict == Verdict::Approve;
    let text = edit::encode_approval(&ApprovalRecord {
        approve,
        commit: reviewed.to_string(),
        reason: reason.map(str::to_owned),
        by: by.clone(),
        at: now,
    })?;
    let path = edit::approval_path(&key.plan, &key.task);
    let action = if approve { "approve" } else { "reject" };
    let committed = commit(
        repo,
        base,
        vec![(path.clone(), Some(text.into_bytes()))],
        action,
        (Some(&key.plan), Some(&key.task)),
        vec![format!("{action} {key} at {reviewed} by {by}")],
    )?;
    Ok(Reviewed {
        reviewed,
        path,
        committed,
        phase,
    })
}

/// What [`retry`] committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retried {
    /// The task's new `reset`.
    pub reset: i64,
    /// The plan file edited.
    pub file: String,
    pub committed: ObjectId,
}

/// `retry`: bumps the task's `reset`, which changes its generation, so the
/// reconciler starts it afresh (a declarative retry). Merged tasks and queue
/// items are refused.
pub fn retry(repo: &Repo, base: &Base<'_>, key: &TaskKey) -> Result<Retried, IntentError> {
    known_task(base, key)?;
    let st = base.status.task(&key.plan, &key.task);
    if let Some(st) = st.filter(|s| s.phase == Phase::Merged) {
        return Err(IntentError::Merged {
            key: key.clone(),
            merged_as: st.merged_as,
        });
    }
    if key.plan == crate::spec::QUEUE_PLAN {
        return Err(IntentError::QueueHasNoReset { key: key.clone() });
    }
    let plan = &base.spec.plans[&key.plan];
    let text = file_text(repo, base, &plan.file)?;
    let (text, reset) = edit::bump_reset(&text, &plan.file, &key.task)?;
    let committed = commit(
        repo,
        base,
        vec![(plan.file.clone(), Some(text.into_bytes()))],
        "retry",
        (Some(&key.plan), Some(&key.task)),
        vec![format!("reset = {reset}: start {key} afresh")],
    )?;
    Ok(Retried {
        reset,
        file: plan.file.clone(),
        committed,
    })
}

/// What [`set_plan_state`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateChange {
    /// The plan was already in that state; nothing was committed.
    Already,
    Committed {
        commit: ObjectId,
    },
}

/// `pause` (state `paused`: nothing new starts; running attempts finish and are
/// checked) or `resume` (state `active`).
pub fn set_plan_state(
    repo: &Repo,
    base: &Base<'_>,
    plan_id: &str,
    state: PlanState,
) -> Result<StateChange, IntentError> {
    let Some(plan) = base.spec.plans.get(plan_id) else {
        return Err(IntentError::UnknownPlan {
            plan: plan_id.to_owned(),
            suggestion: crate::spec::suggest::did_you_mean(
                plan_id,
                base.spec.plans.keys().map(String::as_str),
            ),
        });
    };
    if plan.id == crate::spec::QUEUE_PLAN {
        return Err(IntentError::QueueAlwaysActive);
    }
    if plan.state == state {
        return Ok(StateChange::Already);
    }
    let text = file_text(repo, base, &plan.file)?;
    let text = edit::set_plan_state(&text, &plan.file, state.as_str())?;
    let action = if state == PlanState::Paused {
        "pause"
    } else {
        "resume"
    };
    let commit = commit(
        repo,
        base,
        vec![(plan.file.clone(), Some(text.into_bytes()))],
        action,
        (Some(&plan.id), None),
        vec![format!(
            "state = \"{}\" for plan {}",
            state.as_str(),
            plan.id
        )],
    )?;
    Ok(StateChange::Committed { commit })
}

/// Checks that the task exists in a valid plan of the spec.
fn known_task(base: &Base<'_>, key: &TaskKey) -> Result<(), IntentError> {
    let plan = base.spec.plans.get(&key.plan);
    if plan.is_some_and(|p| p.task(&key.task).is_some()) {
        return Ok(());
    }
    let suggestion = match plan {
        Some(p) => {
            crate::spec::suggest::did_you_mean(&key.task, p.tasks.iter().map(|t| t.name.as_str()))
        }
        None => crate::spec::suggest::did_you_mean(
            &key.plan,
            base.spec.plans.keys().map(String::as_str),
        ),
    };
    Err(IntentError::UnknownTask {
        key: key.clone(),
        base: base.branch.to_owned(),
        plan_known: plan.is_some(),
        suggestion,
    })
}

/// A planning file's text at the base commit.
fn file_text(repo: &Repo, base: &Base<'_>, file: &str) -> Result<String, IntentError> {
    let bytes = repo
        .read_blob_at(base.commit, file)?
        .ok_or_else(|| IntentError::NotOnBase {
            file: file.to_owned(),
            base: base.branch.to_owned(),
        })?;
    String::from_utf8(bytes).map_err(|source| IntentError::NotUtf8 {
        file: file.to_owned(),
        source,
    })
}

/// Commits `files` on the base branch as a person's decision, compare-and-swap
/// from the tip the caller read.
fn commit(
    repo: &Repo,
    base: &Base<'_>,
    files: Vec<(String, Option<Vec<u8>>)>,
    action: &str,
    (plan, task): (Option<&str>, Option<&str>),
    body: Vec<String>,
) -> Result<ObjectId, IntentError> {
    commit_as(
        repo,
        base,
        files,
        (action, plan, task),
        body,
        &crate::git::Signer::Person,
    )
}

/// [`commit`] as `signer` (the autonomy loop commits as converge).
fn commit_as(
    repo: &Repo,
    base: &Base<'_>,
    files: Vec<(String, Option<Vec<u8>>)>,
    (action, plan, task): (&str, Option<&str>, Option<&str>),
    body: Vec<String>,
    signer: &crate::git::Signer,
) -> Result<ObjectId, IntentError> {
    let changes: Vec<Change> = files
        .into_iter()
        .map(|(path, content)| Change { path, content })
        .collect();
    let message = Message {
        action: action.to_owned(),
        plan: plan.map(str::to_owned),
        task: task.map(str::to_owned),
        attempt: None,
        spec: base.commit.to_string(),
        body,
        summary: None,
    };
    match record::record(repo, base.branch, base.commit, &changes, &message, signer) {
        Ok(Outcome::Committed { commit, .. }) => Ok(commit),
        Ok(Outcome::Unchanged) => Err(IntentError::Unchanged {
            base: base.branch.to_owned(),
        }),
        Err(e) => Err(IntentError::Record(e)),
    }
}
