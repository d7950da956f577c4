//! Integration tests: the real `converge` binary on temporary directories and
//! git repositories. One test binary; modules by area.

mod claude;
mod codex;
mod corpus;
#[cfg(feature = "crash-points")]
mod crash;
mod dispatch;
mod fake_api;
mod git_layer;
mod init;
mod invariants;
mod kill;
mod leftovers;
mod observe;
mod opencode;
mod plans;
mod race;
mod reconcile;
mod record;
mod runs;
mod spec_source;
mod status_md;
mod support;
