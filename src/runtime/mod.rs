//! The tick loop: one tick (`--once`), ticks until nothing is left to do
//! without waiting (`--until-idle`), or until running agents and backoffs are
//! over too (`--wait`). Each tick takes the reconciler lock.

use std::time::Duration;

pub mod autonomy;
pub(crate) mod base;
pub mod cache;
pub mod claim;
pub mod doctor;
pub mod gc;
pub mod lock;
pub mod prepare;
pub mod record;
pub mod recover;
pub mod remote;
pub mod schedule;
pub mod tick;

use crate::git::Repo;
use crate::time::Timestamp;

pub use cache::Cache;
pub use lock::{Lock, LockError};
pub use prepare::{Snapshot, snapshot};
pub use tick::{Recorded, TickError, TickOptions, TickReport, tick};

/// How long ticks repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// One tick.
    Once,
    /// Repeat while a tick acts.
    Idle,
    /// Repeat while a tick acts, and also wait out running agents and backoffs.
    Settled,
}

#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Tick(#[from] TickError),
    #[error(transparent)]
    Recover(#[from] recover::RecoverError),
    #[error("stopped after {ticks} ticks without settling (`--max-ticks`)")]
    TooManyTicks { ticks: u32 },
}

/// Options of the loop.
#[allow(missing_debug_implementations)] // holds closures
pub struct LoopOptions<'a> {
    pub until: Until,
    pub dry_run: bool,
    pub converge: std::path::PathBuf,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// How long to wait for another reconciler's lock.
    pub lock_wait: Duration,
    pub max_ticks: u32,
    /// The clock; tests and the demo may substitute their own.
    pub clock: &'a dyn Fn() -> Timestamp,
    /// Kept across ticks: by the loop, and by the daemon across loops.
    pub cache: &'a Cache,
}

/// Polling interval while waiting for agents.
const POLL: Duration = Duration::from_millis(100);

/// Runs ticks; `on_tick` sees every report as it happens.
pub fn reconcile(
    repo: &Repo,
    options: &LoopOptions<'_>,
    on_tick: &mut dyn FnMut(&TickReport),
) -> Result<u32, LoopError> {
    let mut ticks = 0u32;
    loop {
        let report = {
            let _lock = Lock::acquire(repo.common_dir(), options.lock_wait)?;
            // The base branch, chosen once for recovery and the tick
            // (`base.rs`); an error is the tick's, after recovery.
            let base = base::TickBase::choose(repo);
            // The lock proves no other reconciler runs here: what a killed one
            // left behind is removed before the tick looks.
            let recovered = if options.dry_run {
                Vec::new()
            } else {
                recover::recover(repo, base.as_ref().ok().map(base::TickBase::read))?
            };
            let mut report = tick::tick_on(
                repo,
                &TickOptions {
                    dry_run: options.dry_run,
                    converge: options.converge.clone(),
                    now: (options.clock)(),
                    env: options.env,
                    cache: options.cache,
                },
                base,
            )?;
            report.recovered = recovered;
            report
        };
        ticks += 1;
        on_tick(&report);
        if options.until == Until::Once || options.dry_run || report.failed.is_some() {
            return Ok(ticks);
        }
        if ticks >= options.max_ticks {
            return Err(LoopError::TooManyTicks { ticks });
        }
        if report.progressed() || report.push_rejected.is_some() {
            continue;
        }
        if options.until == Until::Idle {
            return Ok(ticks);
        }
        // Settled: wait while agents run or a backoff is pending (not for a
        // pull request's checks and reviews, nor for another reconciler's
        // claim to lapse: the next run takes those up).
        let running = report.observation.running() > 0 || report.autonomy.running.is_some();
        let wake = report.decision.settle_at;
        if !running && wake.is_none() {
            return Ok(ticks);
        }
        wait_for_change(repo, &report, options);
    }
}

/// Sleeps until a running agent exits or the decision's wake time passes.
fn wait_for_change(repo: &Repo, report: &TickReport, options: &LoopOptions<'_>) {
    let rundir = crate::rundir::Layout::new(repo.common_dir());
    let runs: Vec<std::path::PathBuf> = report
        .observation
        .tasks
        .iter()
        .filter_map(|(key, t)| {
            let run = t.run.as_ref()?;
            matches!(run.state, crate::observe::RunState::Running { .. })
                .then(|| crate::rundir::layout::exit(&rundir.run(key, run.attempt)))
        })
        .chain(report.autonomy.running.clone())
        .collect();
    loop {
        if runs.iter().any(|p| p.exists()) {
            return;
        }
        if report
            .decision
            .settle_at
            .is_some_and(|w| (options.clock)() >= w)
        {
            return;
        }
        if runs.is_empty() && report.decision.settle_at.is_none() {
            return;
        }
        std::thread::sleep(POLL);
    }
}
