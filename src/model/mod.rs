//! The words every layer shares: task keys and commit ids ([`ids`]), and the
//! stable codes converge records and explains itself with ([`codes`]).
//!
//! Pure: no IO, no git. A code's spelling is part of the record format
//! (status TOML, `--json`, STATUS.md), so each vocabulary is one enum whose
//! serde name and [`as_str`](FailureCode::as_str) are the same string, listed
//! once in `ALL`, in the order the documentation lists it.

pub mod codes;
pub mod ids;

pub use codes::{AttemptOutcome, ConditionKind, EventKind, FailureCode, LoopCode, UnknownCode};
pub use ids::{CommitId, CommitIdError, PLANNER_PLAN, TaskKey};
