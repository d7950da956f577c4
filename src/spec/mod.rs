//! The spec layer: the files of `planning/`, validated into a [`Spec`].
//!
//! Raw files are gathered by [`load::PlanningFiles`] (from a working tree) or by
//! [`crate::git`] (from a commit), then [`load::compile`] parses every file with
//! spans and reports **all** problems at once as [`Diagnostic`]s.

pub mod approval;
pub mod base;
pub mod config;
pub mod dag;
pub mod diag;
pub mod duration;
pub mod edit;
#[cfg(test)]
mod fuzz;
pub mod generation;
pub mod load;
pub mod model;
pub mod names;
pub mod paths;
pub mod plan;
pub mod queue;
pub mod suggest;
pub mod toml_walk;

pub use diag::{Code, Diagnostic, Severity};
pub use load::{Loaded, PlanningFiles, compile};
pub use model::*;
