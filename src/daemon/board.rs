//! What the HTTP endpoints show, published by the tick thread after each tick
//! (`Publisher`), read by the handlers (`Board`) without ever touching the
//! repository: the state view `converge status --json` prints, what the
//! dashboard adds to it (running agents, recent ticks, budgets) and the
//! metrics' values.
//!
//! The tick thread owns the `Publisher` and sends each new `Board` through a
//! `tokio::sync::watch` channel; a handler clones the `Arc` it holds.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::decide::ActionKind;
use crate::git::Repo;
use crate::model::{AttemptOutcome, FailureCode, TaskKey};
use crate::observe::RunState;
use crate::runtime::{Snapshot, TickReport};
use crate::status::Phase;
use crate::time::Timestamp;
use crate::view::{ReportView, StatusView};

/// How many ticks the dashboard lists.
pub const RECENT_TICKS: usize = 20;

/// The upper bounds of the tick duration histogram, in seconds.
pub const TICK_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// How a tick ended: the `result` label of `converge_ticks_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickResult {
    Ok,
    /// Another reconciler held the lock: the tick did not run.
    Busy,
    Failed,
}

impl TickResult {
    pub const ALL: &'static [TickResult] = &[TickResult::Ok, TickResult::Busy, TickResult::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            TickResult::Ok => "ok",
            TickResult::Busy => "busy",
            TickResult::Failed => "failed",
        }
    }
}

/// What became of an action: the `result` label of `converge_actions_total`.
pub const ACTION_RESULTS: &[&str] = &["done", "deferred", "failed"];

/// One tick, as the dashboard lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct TickLine {
    pub number: u64,
    pub at: Timestamp,
    pub causes: String,
    pub duration_ms: u64,
    pub actions: usize,
    pub result: TickResult,
    /// Why it failed.
    pub error: Option<String>,
}

/// An agent at work.
#[derive(Debug, Clone, PartialEq)]
pub struct RunningAgent {
    pub task: String,
    pub attempt: u32,
    pub harness: Option<String>,
    pub deadline: Timestamp,
    /// Its latest `converge progress` message (tokens verified) and when.
    pub progress: Option<(String, Option<Timestamp>)>,
}

/// Counters since the daemon started.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Counters {
    /// By `ActionKind::ALL` index, then `ACTION_RESULTS` index.
    pub actions: Vec<[u64; 3]>,
    /// By `TickResult::ALL` index.
    pub ticks: [u64; 3],
    /// Cumulative counts per `TICK_BUCKETS` bound (not per bucket).
    pub tick_buckets: Vec<u64>,
    pub tick_seconds_sum: f64,
    pub tick_seconds_count: u64,
}

/// Values read from the state at the last tick.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Gauges {
    /// By `Phase::ALL` index.
    pub tasks: Vec<u64>,
    pub agents_running: u64,
    /// Seconds since this daemon first saw the oldest task that is ready and
    /// waits (for an agent slot, the rate limit, a budget, a harness).
    pub oldest_ready_seconds: f64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_usd: f64,
    /// Failed attempts recorded in status, by `FailureCode::ALL` index.
    pub failures: Vec<u64>,
    pub last_tick_unix: Option<i64>,
}

/// Everything the endpoints show.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Board {
    /// `[serve] listen` as the last good tick read it.
    pub listen: Option<SocketAddr>,
    /// The JSON of `converge status --json`; `None` before the first good tick.
    pub state: Option<serde_json::Value>,
    /// When `state` was read.
    pub state_at: Option<Timestamp>,
    pub running: Vec<RunningAgent>,
    /// Newest first.
    pub ticks: VecDeque<TickLine>,
    /// Each budget and how much of it is used, in words (`converge report`).
    pub budgets: Vec<String>,
    pub counters: Counters,
    pub gauges: Gauges,
}

/// The tick thread's side: keeps the counters and publishes a board per tick.
#[derive(Debug)]
pub struct Publisher {
    board: Board,
    /// When each ready task was first seen ready.
    ready_since: BTreeMap<String, Instant>,
    tx: watch::Sender<Arc<Board>>,
}

/// Why a task is ready but waits: capacity, not dependencies or people.
const READY_REASONS: &[&str] = &[
    "ready",
    "max-agents",
    "dispatch-rate-limited",
    "actions-per-tick",
    "budget-spent",
    "harness-cooling",
    "rate-limit-over",
    "sandbox-unavailable",
];

impl Publisher {
    pub fn new() -> (Publisher, watch::Receiver<Arc<Board>>) {
        let board = Board {
            counters: Counters {
                actions: vec![[0; 3]; ActionKind::ALL.len()],
                tick_buckets: vec![0; TICK_BUCKETS.len()],
                ..Counters::default()
            },
            gauges: Gauges {
                tasks: vec![0; Phase::ALL.len()],
                failures: vec![0; FailureCode::ALL.len()],
                ..Gauges::default()
            },
            ..Board::default()
        };
        let (tx, rx) = watch::channel(Arc::new(board.clone()));
        (
            Publisher {
                board,
                ready_since: BTreeMap::new(),
                tx,
            },
            rx,
        )
    }

    /// Counts the actions of a tick's report (called as the tick reports).
    pub fn count_actions(&mut self, report: &TickReport) {
        self.board.listen = report.spec.config.serve.listen;
        for (action, applied) in report.decision.actions.iter().zip(&report.applied) {
            let Some(kind) = ActionKind::ALL.iter().position(|k| *k == action.kind()) else {
                continue;
            };
            let result = if applied.failed.is_some() {
                2
            } else if applied.deferred.is_some() {
                1
            } else {
                0
            };
            self.board.counters.actions[kind][result] += 1;
        }
    }

    /// Records a tick that ended and publishes the board. With `[serve]` on,
    /// a good tick also reads the state again as `converge status` would
    /// (after the tick's own commits), for `/api/v1/state` and the page.
    pub fn tick_ended(&mut self, repo: &Repo, line: TickLine, elapsed: Duration) {
        let c = &mut self.board.counters;
        let seconds = elapsed.as_secs_f64();
        if line.result != TickResult::Busy {
            for (bound, count) in TICK_BUCKETS.iter().zip(c.tick_buckets.iter_mut()) {
                if seconds <= *bound {
                    *count += 1;
                }
            }
            c.tick_seconds_sum += seconds;
            c.tick_seconds_count += 1;
        }
        if let Some(i) = TickResult::ALL.iter().position(|r| *r == line.result) {
            c.ticks[i] += 1;
        }
        self.board.gauges.last_tick_unix = Some(line.at.unix());
        let good = line.result == TickResult::Ok;
        self.board.ticks.push_front(line);
        self.board.ticks.truncate(RECENT_TICKS);
        if good && self.board.listen.is_some() {
            let now = Timestamp::now();
            match crate::runtime::snapshot(repo, now) {
                Ok(snapshot) => self.read_state(repo, &snapshot, now),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the state for the HTTP endpoints");
                }
            }
        }
        self.tx.send_replace(Arc::new(self.board.clone()));
    }

    fn read_state(&mut self, repo: &Repo, snapshot: &Snapshot, now: Timestamp) {
        let decision = snapshot.dashboard_decision(now);
        let view = StatusView::new(
            &snapshot.base_branch,
            &snapshot.spec_commit.to_string(),
            &snapshot.spec,
            &snapshot.status,
            &decision,
        );
        match crate::view::to_json(&view) {
            Ok(json) => self.board.state = Some(json),
            Err(e) => tracing::warn!(error = %e, "cannot render the state as JSON"),
        }
        self.board.state_at = Some(now);
        let g = &mut self.board.gauges;
        g.tasks = Phase::ALL
            .iter()
            .map(|p| view.tasks.iter().filter(|t| t.phase == p.as_str()).count() as u64)
            .collect();
        g.agents_running = snapshot.observation.running() as u64;
        let seen = Instant::now();
        let ready: Vec<&str> = view
            .tasks
            .iter()
            .filter(|t| t.phase == Phase::Pending.as_str() && READY_REASONS.contains(&&*t.reason))
            .map(|t| t.task.as_str())
            .collect();
        self.ready_since.retain(|k, _| ready.contains(&k.as_str()));
        for task in ready {
            self.ready_since.entry(task.to_owned()).or_insert(seen);
        }
        g.oldest_ready_seconds = self
            .ready_since
            .values()
            .min()
            .map_or(0.0, |t| seen.duration_since(*t).as_secs_f64());
        let (mut tokens_in, mut tokens_out, mut cost) = (0u64, 0u64, 0f64);
        let mut failures = vec![0u64; FailureCode::ALL.len()];
        for plan in snapshot.status.plans.values() {
            for task in plan.tasks.values() {
                for a in &task.attempts {
                    tokens_in += a.tokens_in;
                    tokens_out += a.tokens_out;
                    cost += a.cost_usd;
                    if let Some(AttemptOutcome::Failed(code)) = a.outcome()
                        && let Some(i) = FailureCode::ALL.iter().position(|c| *c == code)
                    {
                        failures[i] += 1;
                    }
                }
            }
        }
        (g.tokens_in, g.tokens_out, g.cost_usd, g.failures) =
            (tokens_in, tokens_out, cost, failures);
        self.board.budgets = ReportView::new(&snapshot.spec, &snapshot.status, None, now).budgets;
        self.board.running = running_agents(repo, snapshot);
    }
}

/// The agents at work, each with its latest verified progress message.
fn running_agents(repo: &Repo, snapshot: &Snapshot) -> Vec<RunningAgent> {
    let layout = crate::rundir::Layout::new(repo.common_dir());
    let secret = crate::agent::Secret::load_or_create(repo.common_dir()).ok();
    let mut out = Vec::new();
    for (key, t) in &snapshot.observation.tasks {
        let Some(run) = &t.run else { continue };
        let RunState::Running { deadline } = run.state else {
            continue;
        };
        let harness = snapshot
            .status
            .task(&key.plan, &key.task)
            .and_then(|s| s.attempts.iter().rev().find(|a| a.number == run.attempt))
            .and_then(|a| a.harness.clone());
        out.push(RunningAgent {
            task: key.to_string(),
            attempt: run.attempt,
            harness,
            deadline,
            progress: secret
                .as_ref()
                .and_then(|s| latest_progress(&layout.run(key, run.attempt), key, run.attempt, s)),
        });
    }
    out
}

fn latest_progress(
    run: &std::path::Path,
    key: &TaskKey,
    attempt: u32,
    secret: &crate::agent::Secret,
) -> Option<(String, Option<Timestamp>)> {
    let events = crate::rundir::records::read_events(run).ok()?;
    events.into_iter().rev().flatten().find_map(|e| {
        let genuine = secret
            .verify(&e.token, &key.plan, &key.task, attempt)
            .is_ok();
        (genuine && e.kind == crate::model::EventKind::Progress.as_str())
            .then(|| (e.message.unwrap_or_default(), e.at))
    })
}
