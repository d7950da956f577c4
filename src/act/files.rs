//! Writing files so that readers never see a half-written one: the helper
//! lives with the run-directory protocol, whose records need it most.

pub use crate::rundir::atomic::write_atomically;
