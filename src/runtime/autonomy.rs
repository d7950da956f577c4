//! The autonomy loop (issue #17; docs/autonomy.md): planner attempts that
//! propose the next queue item from the goal and capabilities, refresh
//! capabilities.md after merges and review every few merges. `decide.rs` is
//! the loop's pure decision: which planner run is due, or why none is. The
//! executor (dispatching planner attempts, reading their proposals back,
//! recording the loop's state on the status branch) is not in this build;
//! `[autonomy] enabled = true` is refused until it is.

pub mod decide;

pub use decide::{Counters, LoopPhase, LoopState, Next, Seen, Wait, next, proposal_hash};
