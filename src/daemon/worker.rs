//! The tick thread: it owns the repository and runs, for each batch of
//! triggers, exactly the tick `converge reconcile --once` runs (the reconciler
//! lock, recovery, the tick), synchronously. It tells the loop when it is done
//! and what the decision asks for next.

use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use crate::git::Repo;
use crate::runtime::{self, LockError, LoopError, LoopOptions, Recorded, TickReport, Until};
use crate::time::Timestamp;

use super::board::{Publisher, TickLine, TickResult};
use super::triggers::{Cause, Finished, Jitter, jittered};

/// The resync interval before the first tick has read `[reconcile] interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
/// How soon a tick that found the lock held is tried again.
const BUSY_RETRY: Duration = Duration::from_secs(1);
/// The longest wait before a failed tick is tried again.
const MAX_ERROR_RETRY: Duration = Duration::from_secs(60);

/// What the tick thread needs besides the repository.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub converge: PathBuf,
    /// `CONVERGE_NOW` (test-only): every tick's clock, fixed.
    pub now: Option<Timestamp>,
}

/// Runs ticks until the request channel closes; after each, publishes what
/// the HTTP endpoints show through `publisher`.
pub fn serve(
    repo: &Repo,
    options: &WorkerOptions,
    requests: &Receiver<Vec<Cause>>,
    done: &dyn Fn(Finished),
    publisher: Publisher,
) {
    let mut state = State {
        ticks: 0,
        failures: 0,
        interval: DEFAULT_INTERVAL,
        jitter: Jitter::new(seed()),
        publisher,
        cache: runtime::Cache::default(),
    };
    while let Ok(causes) = requests.recv() {
        let finished = state.tick(repo, options, &causes);
        done(finished);
    }
}

struct State {
    ticks: u64,
    failures: u32,
    interval: Duration,
    jitter: Jitter,
    publisher: Publisher,
    /// What earlier ticks compiled and verified (runtime::cache).
    cache: runtime::Cache,
}

impl State {
    fn tick(&mut self, repo: &Repo, options: &WorkerOptions, causes: &[Cause]) -> Finished {
        self.ticks += 1;
        let causes: Vec<&str> = causes.iter().map(|c| c.as_str()).collect();
        let causes = causes.join(",");
        tracing::debug!(tick = self.ticks, causes, "tick started");
        let started = Instant::now();
        let env = |name: &str| std::env::var(name).ok();
        let fixed = options.now;
        let clock = move || fixed.unwrap_or_else(Timestamp::now);
        let loop_options = LoopOptions {
            until: Until::Once,
            dry_run: false,
            converge: options.converge.clone(),
            env: &env,
            lock_wait: Duration::ZERO,
            max_ticks: 1,
            clock: &clock,
            cache: &self.cache,
        };
        let mut report = None;
        let publisher = &mut self.publisher;
        let result = runtime::reconcile(repo, &loop_options, &mut |r| {
            publisher.count_actions(r);
            report = Some(summary(r));
        });
        let elapsed = started.elapsed();
        let duration_ms = elapsed.as_millis() as u64;
        // In the log, to the microsecond.
        let took_ms = (elapsed.as_micros() as f64) / 1000.0;
        let (result_kind, error) = match (&result, &report) {
            (Ok(_), Some(_)) => (TickResult::Ok, None),
            (Err(LoopError::Lock(LockError::Busy { .. })), _) => (TickResult::Busy, None),
            (Err(e), _) => (TickResult::Failed, Some(chain(e))),
            (Ok(_), None) => (
                TickResult::Failed,
                Some("the tick reported nothing".to_owned()),
            ),
        };
        let line = TickLine {
            number: self.ticks,
            at: Timestamp::now(),
            causes: causes.clone(),
            duration_ms,
            actions: report.as_ref().map_or(0, |s| s.actions),
            result: result_kind,
            error,
        };
        self.publisher.tick_ended(repo, line, elapsed);
        let resync_in = jittered(self.interval, self.jitter.draw());
        match (result, report) {
            (Ok(_), Some(s)) => {
                self.failures = 0;
                self.interval = s.interval;
                tracing::info!(
                    tick = self.ticks,
                    causes,
                    duration_ms = took_ms,
                    actions = s.actions,
                    failed = s.failed,
                    recorded = s.recorded,
                    agents_running = s.running,
                    wake_at = s.wake_at.map(|w| w.to_string()),
                    "tick"
                );
                Finished {
                    again: s.again,
                    // On the ticks' clock (fixed by CONVERGE_NOW in tests).
                    wake_in: s.wake_at.map(|w| clock().until(w)),
                    resync_in: jittered(s.interval, self.jitter.draw()),
                    retry: false,
                }
            }
            (Err(LoopError::Lock(LockError::Busy { .. })), _) => {
                tracing::info!(
                    tick = self.ticks,
                    causes,
                    duration_ms = took_ms,
                    "tick skipped: another reconciler holds the lock; trying again shortly"
                );
                Finished {
                    again: false,
                    wake_in: Some(BUSY_RETRY),
                    resync_in,
                    retry: true,
                }
            }
            (result, _) => {
                self.failures = self.failures.saturating_add(1);
                let wait = Duration::from_secs(1u64 << self.failures.min(6)).min(MAX_ERROR_RETRY);
                let error = match result {
                    Err(e) => chain(&e),
                    Ok(_) => "the tick reported nothing".to_owned(),
                };
                tracing::error!(
                    tick = self.ticks,
                    causes,
                    duration_ms = took_ms,
                    error,
                    retry_in_s = wait.as_secs(),
                    "tick failed"
                );
                Finished {
                    again: false,
                    wake_in: Some(wait),
                    resync_in,
                    retry: true,
                }
            }
        }
    }
}

/// What the loop and the log need of a tick's report.
struct Summary {
    actions: usize,
    failed: usize,
    recorded: &'static str,
    running: usize,
    wake_at: Option<Timestamp>,
    again: bool,
    interval: Duration,
}

fn summary(report: &TickReport) -> Summary {
    let acted = report.acted();
    Summary {
        actions: report.applied.len(),
        failed: report.applied.iter().filter(|a| a.failed.is_some()).count(),
        recorded: match report.recorded {
            Recorded::Committed { .. } => "committed",
            Recorded::Unchanged => "unchanged",
            Recorded::DryRun { .. } => "dry-run",
            Recorded::Deferred { .. } => "deferred",
        },
        running: report.observation.running(),
        // The decision's wake time, or a schedule's next fire time if sooner.
        wake_at: report
            .schedules
            .fired
            .iter()
            .filter_map(|f| f.next)
            .chain(report.next.wake_at)
            .chain(report.autonomy.wake_at)
            .min(),
        // As `reconcile --until-idle`: a tick that acted, or lost a push race,
        // is followed at once by the next one while there is work to do.
        again: report.failed.is_none()
            && ((acted && !report.next.actions.is_empty())
                || report.autonomy.recorded.is_some()
                || report.push_rejected.is_some()),
        interval: report.spec.config.reconcile.interval,
    }
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    u64::from(std::process::id()) << 32 | u64::from(nanos)
}
