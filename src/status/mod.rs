//! Status: the record converge keeps in `planning/status/` (model and encoding).
//! Recording status commits builds on this; `STATUS.md` is a view
//! (`crate::view::status_md`).

pub mod load;
pub mod model;
pub mod record;
pub mod transition;

pub use model::{
    AttemptRecord, CHECKS_WAIT, ChangeRecord, ChangeWait, Claim, Condition, Evidence, Failure,
    Phase, PlanStatus, Status, TaskStatus,
};
