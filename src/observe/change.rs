//! What the forge reports: each task's change (a pull request) and whether
//! the forge could be asked at all. Plain values, filled by `crate::forge`.

use crate::model::CommitId;
use crate::time::Timestamp;

/// The forge as observed this tick.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ForgeObs {
    /// The local forge: no changes; merges happen here.
    #[default]
    Local,
    /// The forge answered; `open` changes of converge's are open.
    Observed { open: u32 },
    /// The forge could not be asked (a rate limit, an outage): nothing that
    /// needs it happens before `until`.
    Unavailable {
        why: String,
        until: Option<Timestamp>,
    },
    /// Not asked (a read-only command): what status recorded stands.
    NotAsked,
}

/// A task's change on the forge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeObs {
    pub number: u64,
    /// Its head now.
    pub head: CommitId,
    pub state: ChangeState,
    /// The commit it merged as (for a squash or rebase merge, not the head).
    pub merged_as: Option<CommitId>,
    /// A reviewer with write access approved the change at its head.
    pub approved_by: Option<String>,
    /// A reviewer with write access asked for changes at its head: who, and
    /// what they said (the review and its line comments).
    pub changes_requested: Option<Feedback>,
    /// Its head is converge's merge of the base branch into this commit, a
    /// head converge stands behind, though status does not record the
    /// update (converge stopped between pushing and recording it).
    pub update_of: Option<CommitId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeState {
    Open,
    Merged,
    Closed,
}

/// A review asking for changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feedback {
    pub by: String,
    /// The review's body, then each line comment as `path:line: text`.
    pub text: String,
}
