//! converge: a declarative reconciler for fleets of LLM coding agents.
//!
//! See `docs/architecture.md` for the bird's-eye view and the code map.

#[cfg(test)]
mod structure_tests;

pub mod act;
pub mod agent;
pub mod check;
pub mod cli;
pub mod crash;
pub mod daemon;
pub mod decide;
pub mod forge;
pub mod git;
pub mod harness;
pub mod intent;
pub mod model;
pub mod observe;
pub mod rundir;
pub mod runtime;
pub mod spec;
pub mod status;
pub mod time;
pub mod view;
