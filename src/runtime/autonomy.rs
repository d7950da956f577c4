//! The autonomy loop (issue #17; docs/autonomy.md): planner attempts that
//! propose the next queue item from the goal and capabilities, refresh
//! capabilities.md after merges and review every few merges.
//!
//! - `decide.rs` (pure): which planner run is due, or why none is;
//! - `state.rs` (pure): the loop's record on the status branch and how task
//!   status moves its items;
//! - `hand.rs`: a person's pause, resume or unblock, as one commit of the
//!   record under the reconciler lock;
//! - `step.rs`: one step per tick, before the tick's spec is read: read the
//!   finished planner attempt back (validate, file, commit) or start the
//!   next one, and record the loop's state;
//! - `record.rs`: the loop's record on the status branch: read, shown,
//!   saved, and a crash's unrecorded planner attempt adopted.

pub mod decide;
pub mod hand;
mod harvest;
pub mod prompt;
pub mod record;
pub mod state;
pub mod step;
pub mod view;

pub use decide::{Next, Wait, next, proposal_hash};
pub use state::{Hand, LoopPhase, LoopState, Refusal, RunKind};
pub use step::Stepped;
pub(crate) use step::step;
