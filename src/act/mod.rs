//! Side effects: running commands with deadlines (invariants), detached agent
//! runs under a supervisor; the reconcile actions build on these.

pub mod apply;
pub mod check;
pub mod dispatch;
pub mod exec;
pub mod files;
pub mod run;
