//! `Action`: a side effect for `act` to carry out, and `ActionKind`, the
//! priority order actions are picked in. `impl Display for Action` is the
//! one rendering of an action (`--explain`, the tick's summary).

use std::fmt;

use crate::model::CommitId;
use crate::model::TaskKey;

use super::Reason;

/// A side effect for `act` to carry out. Every action is idempotent there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Kill a run past its deadline or record one whose agent vanished.
    Reap {
        key: TaskKey,
        attempt: u32,
        reason: Reason,
    },
    /// Stop a run whose task was removed or edited.
    Cancel {
        key: TaskKey,
        attempt: u32,
        reason: Reason,
    },
    /// Check a finished attempt: leftovers, paths, invariants.
    Gate { key: TaskKey, attempt: u32 },
    /// Merge the passed work at `head` into the base branch.
    Merge { key: TaskKey, head: CommitId },
    /// Push the passed work at `head` to the forge and open or update its
    /// change (a pull request); `opens`: no change of the task is open.
    Propose {
        key: TaskKey,
        head: CommitId,
        opens: bool,
    },
    /// Start attempt `attempt` after a failure, a rejection or an edit.
    Retry {
        key: TaskKey,
        attempt: u32,
        reason: Reason,
    },
    /// Stop retrying: a human decides.
    Escalate { key: TaskKey, reason: Reason },
    /// Start the first attempt of a ready task.
    Dispatch { key: TaskKey, attempt: u32 },
    /// Move a queue item into the `queue` plan.
    Promote { item: String },
    /// Remove the worktree and branch of a merged or removed task.
    Cleanup { key: TaskKey },
}

/// Action kinds in priority order, highest first (design §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ActionKind {
    Reap,
    Cancel,
    Gate,
    Merge,
    Propose,
    Retry,
    Escalate,
    /// Before dispatch: a merged task's worktree is freed before a new one is
    /// made, so that a steady stream of work never lets finished worktrees
    /// pile up (they made every tick slower, and fill the disk).
    Cleanup,
    Dispatch,
    Promote,
}

impl ActionKind {
    /// Every kind, in priority order (the label values of `/metrics`).
    pub const ALL: &'static [ActionKind] = &[
        ActionKind::Reap,
        ActionKind::Cancel,
        ActionKind::Gate,
        ActionKind::Merge,
        ActionKind::Propose,
        ActionKind::Retry,
        ActionKind::Escalate,
        ActionKind::Cleanup,
        ActionKind::Dispatch,
        ActionKind::Promote,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Reap => "reap",
            ActionKind::Cancel => "cancel",
            ActionKind::Gate => "gate",
            ActionKind::Merge => "merge",
            ActionKind::Propose => "propose",
            ActionKind::Retry => "retry",
            ActionKind::Escalate => "escalate",
            ActionKind::Dispatch => "dispatch",
            ActionKind::Promote => "promote",
            ActionKind::Cleanup => "cleanup",
        }
    }
}

impl Action {
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::Reap { .. } => ActionKind::Reap,
            Action::Cancel { .. } => ActionKind::Cancel,
            Action::Gate { .. } => ActionKind::Gate,
            Action::Merge { .. } => ActionKind::Merge,
            Action::Propose { .. } => ActionKind::Propose,
            Action::Retry { .. } => ActionKind::Retry,
            Action::Escalate { .. } => ActionKind::Escalate,
            Action::Dispatch { .. } => ActionKind::Dispatch,
            Action::Promote { .. } => ActionKind::Promote,
            Action::Cleanup { .. } => ActionKind::Cleanup,
        }
    }

    pub fn key(&self) -> Option<&TaskKey> {
        match self {
            Action::Reap { key, .. }
            | Action::Cancel { key, .. }
            | Action::Gate { key, .. }
            | Action::Merge { key, .. }
            | Action::Propose { key, .. }
            | Action::Retry { key, .. }
            | Action::Escalate { key, .. }
            | Action::Dispatch { key, .. }
            | Action::Cleanup { key } => Some(key),
            Action::Promote { .. } => None,
        }
    }

    /// Whether the action starts an agent (and so counts against the agent limits).
    pub fn starts_agent(&self) -> bool {
        matches!(self, Action::Retry { .. } | Action::Dispatch { .. })
    }
}

/// An action in words: `dispatch auth/login (attempt 1)`.
impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Reap {
                key,
                attempt,
                reason,
            } => write!(f, "reap {key} (attempt {attempt}): {reason}"),
            Action::Cancel {
                key,
                attempt,
                reason,
            } => write!(f, "cancel {key} (attempt {attempt}): {reason}"),
            Action::Gate { key, attempt } => write!(f, "gate {key} (attempt {attempt})"),
            Action::Merge { key, head } => {
                write!(f, "merge {key} at {}", head.short())
            }
            Action::Propose { key, head, opens } => {
                let verb = if *opens { "open" } else { "update" };
                write!(
                    f,
                    "propose {key} at {} ({verb} its pull request)",
                    head.short()
                )
            }
            Action::Retry {
                key,
                attempt,
                reason,
            } => write!(f, "retry {key} (attempt {attempt}): {reason}"),
            Action::Escalate { key, reason } => write!(f, "escalate {key}: {reason}"),
            Action::Dispatch { key, attempt } => write!(f, "dispatch {key} (attempt {attempt})"),
            Action::Promote { item } => write!(f, "promote queue item {item}"),
            Action::Cleanup { key } => write!(f, "cleanup {key}"),
        }
    }
}
