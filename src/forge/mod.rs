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

pub mod local;

use std::collections::BTreeMap;

use crate::git::{GitError, Signer};
use crate::model::CommitId;
use crate::model::TaskKey;
use crate::status::Evidence;

/// A change on the forge (a pull request's number). The local forge has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChangeRef(pub u64);

/// Work to propose: the task branch at `head`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub key: TaskKey,
    pub head: CommitId,
    pub title: String,
    pub body: String,
}

/// A change as the forge reports it. Nothing fills it yet: the local forge has
/// no changes (its merges are recorded in status as `merged_as`). Reserved for
/// a forge with pull requests: checks and reviews, added with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeObs {
    pub number: u64,
    pub head: CommitId,
    pub state: ChangeState,
    /// The commit the change merged as, which for a squash or rebase merge is
    /// not the head.
    pub merged_as: Option<CommitId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeState {
    Open,
    Merged,
    Closed,
}

/// Merge the task's work at `head` into `base_branch`, which is at `base`.
#[derive(Debug)]
pub struct MergeRequest<'a> {
    pub key: &'a TaskKey,
    pub attempt: u32,
    /// The head the gate judged; a branch that moved since does not merge.
    pub head: CommitId,
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
}

#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    #[error(transparent)]
    Git(#[from] GitError),
}

/// Proposed work → merged work.
pub trait Forge {
    /// The changes of `tasks` (task, head), for those that have one.
    fn observe(
        &self,
        tasks: &[(TaskKey, String)],
    ) -> Result<BTreeMap<TaskKey, ChangeObs>, ForgeError>;
    /// Opens or updates the change of the proposal; `None` where there are no
    /// changes (the local forge).
    fn propose(&self, proposal: &Proposal) -> Result<Option<ChangeRef>, ForgeError>;
    /// Merges, by compare-and-swap on the base and on the head.
    fn merge(&self, request: &MergeRequest<'_>) -> Result<Merging, ForgeError>;
    /// Closes a change without merging it.
    fn close(&self, change: ChangeRef, why: &str) -> Result<(), ForgeError>;
}
