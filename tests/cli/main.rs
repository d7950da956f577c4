//! Integration tests: the real `converge` binary on temporary directories and
//! git repositories. One test binary; modules by area.

mod agent_check;
mod autonomy;
mod autonomy_loop;
mod beside;
mod claude;
mod codex;
mod commit_time;
mod corpus;
#[cfg(feature = "crash-points")]
mod crash;
mod dispatch;
mod fake_api;
mod gator;
mod git_layer;
mod github;
mod hints;
mod hostile;
mod housekeeping;
mod init;
mod invariants;
mod kill;
mod leftovers;
mod observe;
mod opencode;
mod plans;
mod policy;
mod race;
mod reconcile;
mod record;
mod runs;
mod schedule;
mod serve;
mod spec_source;
mod status_md;
mod support;
mod watch;
