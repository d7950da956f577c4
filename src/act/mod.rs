//! Side effects. For now: running commands with deadlines (invariants).

pub mod exec;
