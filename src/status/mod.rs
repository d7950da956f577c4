//! Status: the record converge keeps in `planning/status/` (model and encoding).
//! Rendering `STATUS.md` and recording status commits build on this.

pub mod load;
pub mod model;
pub mod record;
pub mod render;
pub mod transition;

pub use model::{
    AttemptRecord, Claim, Condition, Evidence, Failure, Phase, PlanStatus, Status, TaskStatus,
};
