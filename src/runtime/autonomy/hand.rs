//! A person's hand on the loop as a library operation (`converge autonomy
//! pause|resume|unblock` is its one caller): under the reconciler lock, the
//! record is read from the status branch, changed by the pure
//! [`LoopState::take_hand`] and written back with one compare-and-swap
//! commit, as a tick would. The record lives on the status branch, not the
//! base, so this is not an `intent`: it stops the loop or clears its own
//! guards, and what the loop may do still comes from the base branch alone.

use std::time::Duration;

use gix::ObjectId;

use super::record::{self, Saved};
use super::state::{Hand, LoopState, Refusal};
use crate::git::{GitError, Repo, Signer};
use crate::runtime::{Lock, LockError, TickError};
use crate::spec::Spec;
use crate::time::Timestamp;

/// How long the operation waits for a running tick's lock.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// What a [`Hand`] did: the history line, and the commit that records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    pub line: String,
    pub commit: ObjectId,
}

#[derive(Debug, thiserror::Error)]
pub enum HandError {
    #[error("cannot take the reconciler lock")]
    Lock(#[source] LockError),
    #[error("the base branch {0} has no commit")]
    NoBase(String),
    #[error("the loop's record cannot be read: {0}")]
    Damaged(String),
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("the status branch moved; nothing was recorded")]
    Moved,
    #[error("nothing was recorded")]
    Deferred(#[source] crate::status::record::RecordError),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("cannot record the loop's state")]
    Record(#[source] TickError),
}

/// Takes `hand` on the loop whose record `spec` (read from `base_rev`) places.
pub fn take(
    repo: &Repo,
    spec: &Spec,
    base_rev: &str,
    hand: &Hand,
    now: Timestamp,
    signer: &Signer,
) -> Result<Handled, HandError> {
    let _lock = Lock::acquire(repo.common_dir(), LOCK_WAIT).map_err(HandError::Lock)?;
    let (_, tip) = record::status_branch(repo, spec, base_rev).map_err(HandError::Record)?;
    let base = repo
        .branch_tip(base_rev)?
        .ok_or_else(|| HandError::NoBase(base_rev.to_owned()))?;
    let (mut st, problem): (LoopState, _) =
        record::load(repo, tip.unwrap_or(base)).map_err(HandError::Record)?;
    if let Some(problem) = problem {
        return Err(HandError::Damaged(problem));
    }
    let line = st.take_hand(hand, now)?;
    st.note(now, line.clone());
    let lines = vec![format!("autonomy: {line}")];
    match record::record_state(repo, spec, base_rev, &st, &lines, signer)
        .map_err(HandError::Record)?
    {
        Saved::Committed(commit) => Ok(Handled { line, commit }),
        // The edit always adds a history line, so the record never stays
        // the same; were it to, nothing was recorded either.
        Saved::Moved | Saved::Unchanged => Err(HandError::Moved),
        Saved::Deferred(e) => Err(HandError::Deferred(e)),
    }
}
