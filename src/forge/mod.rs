//! The forge: where proposed work becomes merged work. [`Forge`] is the seam;
//! [`local::LocalForge`] merges into the local base branch (a trial merge,
//! `[merge].invariants` on the result, a compare-and-swap advance of the base),
//! which is all converge does today. A forge with pull requests (GitHub) fills
//! the same calls over its API: `propose` opens or updates a change, `merge`
//! merges it at the head the gate judged (its compare-and-swap), `observe`
//! reports changes, checks and reviews. The forge never writes status: the
//! executor turns what it reports into an outcome.
//!
//! Calls are synchronous: the tick owns the repository and the forge on one
//! thread.

pub mod github;
pub mod local;

use std::collections::BTreeMap;

use crate::git::{GitError, Signer};
use crate::model::CommitId;
use crate::model::TaskKey;
use crate::observe::{ChangeObs, ForgeObs};
use crate::status::Evidence;

/// A task that may have a change: the change status records, and whether
/// its reviews are needed this tick (a human gate waiting for approval).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub key: TaskKey,
    pub number: Option<u64>,
    pub reviews: bool,
    /// The heads converge stands behind on the change's branch: the gated
    /// head first, then what it pushed and its update with the base
    /// branch, as status records them.
    pub heads: Vec<CommitId>,
}

/// Work to propose: the task branch at `head`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub key: TaskKey,
    pub head: CommitId,
    /// The head converge pushed last (the lease: any other head on the
    /// forge's branch is someone else's), and its change.
    pub pushed: Option<CommitId>,
    pub number: Option<u64>,
    pub base_branch: String,
    pub title: String,
    pub body: String,
    /// The gate's evidence in a line (what the `converge/gate` status says).
    pub gate: String,
}

/// What proposing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proposed {
    /// The head is on the forge's branch, and change `number` shows it.
    Change { number: u64 },
    /// The forge's branch is not where converge left it: someone else pushed.
    HandsOff { why: String },
}

/// Merge the task's work at `head` into `base_branch`, which is at `base`.
#[derive(Debug)]
pub struct MergeRequest<'a> {
    pub key: &'a TaskKey,
    pub attempt: u32,
    /// The task's change (a pull request), where the forge has them.
    pub change: Option<u64>,
    /// Since when its merge has waited (checks), if it has.
    pub waiting_since: Option<crate::time::Timestamp>,
    /// The head the gate judged; a branch that moved since does not merge.
    pub head: CommitId,
    /// converge's merge of the base into `head` on the change's branch
    /// ([`MergeOutcome::Updated`]), which merges in its place.
    pub updated: Option<CommitId>,
    pub base_branch: &'a str,
    pub base: gix::ObjectId,
    /// The merge commit's message (trailers included).
    pub message: &'a str,
    pub signer: &'a Signer,
}

/// What a merge did, with the evidence of the checks that ran on its result
/// (by invariant name; the local forge's `[merge].invariants`).
#[derive(Debug, Clone, PartialEq)]
pub struct Merging {
    pub outcome: MergeOutcome,
    pub evidence: BTreeMap<String, Evidence>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOutcome {
    /// The base branch now points at `commit`.
    Merged { commit: gix::ObjectId },
    /// The work conflicts with the base in `paths`.
    Conflict { paths: Vec<String> },
    /// A check on the merge result failed: how it ended, its output's tail.
    ChecksFailed {
        name: String,
        ending: String,
        tail: String,
    },
    /// The base moved since the tick read it: nothing merged.
    BaseMoved,
    /// The task branch is not at the head that passed its gate.
    HeadMoved,
    /// The merge cannot happen now, for this reason; it is tried again.
    Deferred(String),
    /// The change waits for `why` (required checks, reviews); looked at
    /// again at `until`.
    Waiting {
        why: String,
        until: crate::time::Timestamp,
    },
    /// A required check never finished within `checks_timeout`: a human
    /// decides (the diagnosis says what to look at).
    TimedOut { why: String },
    /// The change had to be up to date with the base: converge merged the
    /// base into it as `head` (the gated work, no other change) and pushed
    /// it; the change merges at `head` once its checks pass again.
    Updated { head: CommitId, why: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Github(Box<github::client::ClientError>),
    #[error("this forge has no changes to {0}")]
    NoChanges(&'static str),
}

impl From<github::client::ClientError> for ForgeError {
    fn from(e: github::client::ClientError) -> Self {
        ForgeError::Github(Box::new(e))
    }
}

impl ForgeError {
    /// The forge is cooling down (a rate limit, an outage): nothing failed,
    /// the action waits until then.
    pub fn cooling(&self) -> Option<(String, crate::time::Timestamp)> {
        match self {
            ForgeError::Github(e) => match e.as_ref() {
                github::client::ClientError::Cooling { until, why } => Some((why.clone(), *until)),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Proposed work → merged work.
pub trait Forge {
    /// What the forge says of the tasks' changes: whether it could be asked,
    /// and the change of each task that has one.
    fn observe(&self, wanted: &[Wanted]) -> (ForgeObs, BTreeMap<TaskKey, ChangeObs>);
    /// Pushes the work and opens or updates its change.
    fn propose(&self, proposal: &Proposal) -> Result<Proposed, ForgeError>;
    /// Merges, by compare-and-swap on the base and on the head.
    fn merge(&self, request: &MergeRequest<'_>) -> Result<Merging, ForgeError>;
    /// Closes the change of a task that is gone, saying `why`, and deletes
    /// its branch on the forge if it is still at `tip` (converge's last
    /// head); with `tip` `None` (hands-off: the branch holds someone else's
    /// commits) only says `why` and leaves both alone.
    fn close(
        &self,
        key: &TaskKey,
        number: u64,
        tip: Option<CommitId>,
        why: &str,
    ) -> Result<(), ForgeError>;
}
