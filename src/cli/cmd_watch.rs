//! `converge watch`: the daemon (`crate::daemon`).

use super::logging::{self, LogFormat};
use super::source::open_repo;
use super::{CliError, CliResult, Ctx};
use crate::daemon::{self, WorkerOptions};

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// How log lines are written to standard error.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, value_name = "FORMAT")]
    pub log_format: LogFormat,
}

pub fn run(ctx: &Ctx, args: &WatchArgs) -> CliResult {
    logging::init(args.log_format, "info");
    let mut repo = open_repo(ctx)?;
    repo.cache_objects();
    let converge = super::cmd_reconcile::converge_exe()?;
    // CONVERGE_NOW (test-only) fixes the ticks' clock, as for `reconcile`.
    let env = |name: &str| std::env::var(name).ok();
    let now = super::cmd_reconcile::fixed_now(&env)?;
    match daemon::run(repo, WorkerOptions { converge, now }) {
        Ok(daemon::Ended::Stopped) => Ok(()),
        Err(e) => {
            tracing::error!(error = %e, "the daemon stopped");
            Err(CliError::failure("converge watch stopped").source(e))
        }
    }
}
