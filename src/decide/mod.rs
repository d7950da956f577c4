//! `decide`: the pure heart of the reconciler.
//!
//! `decide(spec, observation, status, now, limits)` derives, for every task, the
//! next step and the reason for it, then picks at most `actions_per_tick` actions
//! in a fixed priority order under the limits. It does no IO and reads no clock:
//! the same inputs always give the same decision. Every task that is not acted on
//! gets a reason with a stable code, shown by `--explain` and in STATUS.md.
//!
//! No gix, tokio, `std::fs` or `std::process` here; side effects live in `act`
//! (`purity_tests.rs` checks every file of the pure layers).

pub mod derive;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::observe::{Availability, Observation, RunState, TaskKey, TaskObs};
use crate::spec::{Decision as Verdict, Gate, Plan, PlanState, Reconcile, Spec, Task};
use crate::status::{Claim, Phase, Status, TaskStatus};
use crate::time::Timestamp;

/// The limits a tick runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub actions_per_tick: u32,
    pub max_agents: u32,
    pub dispatches_per_hour: u32,
}

impl From<&Reconcile> for Limits {
    fn from(r: &Reconcile) -> Self {
        Limits {
            actions_per_tick: r.actions_per_tick,
            max_agents: r.max_agents,
            dispatches_per_hour: r.dispatches_per_hour,
        }
    }
}

impl Limits {
    /// The limits the dashboard (STATUS.md, `converge status`) is decided
    /// under: without the one-tick `actions_per_tick` budget, so that a task
    /// shows the limit it really waits for.
    pub fn for_dashboard(self) -> Self {
        Limits {
            actions_per_tick: u32::MAX,
            ..self
        }
    }
}

/// A side effect for `act` to carry out. Every action is idempotent there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Kill a run past its deadline or record one whose agent vanished.
    Reap {
        key: TaskKey,
        attempt: u32,
        reason: Reason,
    },
    /// Stop a run whose task was removed or edited.
    Cancel {
        key: TaskKey,
        attempt: u32,
        reason: Reason,
    },
    /// Check a finished attempt: leftovers, paths, invariants.
    Gate { key: TaskKey, attempt: u32 },
    /// Merge the passed work at `head` into the base branch.
    Merge { key: TaskKey, head: String },
    /// Start attempt `attempt` after a failure, a rejection or an edit.
    Retry {
        key: TaskKey,
        attempt: u32,
        reason: Reason,
    },
    /// Stop retrying: a human decides.
    Escalate { key: TaskKey, reason: Reason },
    /// Start the first attempt of a ready task.
    Dispatch { key: TaskKey, attempt: u32 },
    /// Move a queue item into the `queue` plan.
    Promote { item: String },
    /// Remove the worktree and branch of a merged or removed task.
    Cleanup { key: TaskKey },
}

/// Action kinds in priority order, highest first (design §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ActionKind {
    Reap,
    Cancel,
    Gate,
    Merge,
    Retry,
    Escalate,
    /// Before dispatch: a merged task's worktree is freed before a new one is
    /// made, so that a steady stream of work never lets finished worktrees
    /// pile up (they made every tick slower, and fill the disk).
    Cleanup,
    Dispatch,
    Promote,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Reap => "reap",
            ActionKind::Cancel => "cancel",
            ActionKind::Gate => "gate",
            ActionKind::Merge => "merge",
            ActionKind::Retry => "retry",
            ActionKind::Escalate => "escalate",
            ActionKind::Dispatch => "dispatch",
            ActionKind::Promote => "promote",
            ActionKind::Cleanup => "cleanup",
        }
    }
}

impl Action {
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::Reap { .. } => ActionKind::Reap,
            Action::Cancel { .. } => ActionKind::Cancel,
            Action::Gate { .. } => ActionKind::Gate,
            Action::Merge { .. } => ActionKind::Merge,
            Action::Retry { .. } => ActionKind::Retry,
            Action::Escalate { .. } => ActionKind::Escalate,
            Action::Dispatch { .. } => ActionKind::Dispatch,
            Action::Promote { .. } => ActionKind::Promote,
            Action::Cleanup { .. } => ActionKind::Cleanup,
        }
    }

    pub fn key(&self) -> Option<&TaskKey> {
        match self {
            Action::Reap { key, .. }
            | Action::Cancel { key, .. }
            | Action::Gate { key, .. }
            | Action::Merge { key, .. }
            | Action::Retry { key, .. }
            | Action::Escalate { key, .. }
            | Action::Dispatch { key, .. }
            | Action::Cleanup { key } => Some(key),
            Action::Promote { .. } => None,
        }
    }

    /// Whether the action starts an agent (and so counts against the agent limits).
    pub fn starts_agent(&self) -> bool {
        matches!(self, Action::Retry { .. } | Action::Dispatch { .. })
    }
}

/// Why a task is, or is not, acted on. The code is stable (STATUS.md, `--explain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    // Reasons for acting.
    Timeout,
    AgentVanished,
    AgentFinished,
    RemovedFromPlan,
    SpecChanged,
    GatePassed,
    Approved,
    Rejected,
    FailedBefore {
        failures: u32,
    },
    AttemptsExhausted {
        failures: u32,
    },
    /// The harness's rate limit has passed; the attempt it cost is not counted.
    RateLimitOver {
        harness: String,
    },
    Ready,
    Queued,
    CleanupAfterMerge,
    ClaimExpired {
        by: String,
    },
    // Reasons for waiting.
    Running {
        deadline: Timestamp,
    },
    PlanDraft,
    PlanPaused,
    /// Every dependency not merged yet, in `depends_on` order.
    WaitingOnDependency {
        tasks: Vec<String>,
    },
    DependencyBlocked {
        task: String,
    },
    Backoff {
        until: Timestamp,
    },
    /// One of converge's actions on the task failed (the condition
    /// `ActionFailed` says which and why); the task waits out a backoff so
    /// that it does not come first again and hold back the others.
    ActionFailed {
        message: String,
        until: Timestamp,
    },
    AwaitingApproval,
    ApprovalStale {
        approved: String,
        head: String,
    },
    Escalated,
    Merged,
    MergeLost,
    ClaimedElsewhere {
        by: String,
        until: Timestamp,
    },
    SandboxUnavailable {
        reason: String,
    },
    /// An attempt on this harness hit a rate limit or usage window.
    HarnessCooling {
        harness: String,
        until: Timestamp,
    },
    BudgetSpent {
        budget: String,
        used: String,
        until: Option<Timestamp>,
    },
    // Reasons for deferring an action this tick.
    MaxAgents {
        running: u32,
    },
    /// `dispatches_per_hour` attempts started in the last hour; the next can
    /// start at `next_at`, when the oldest of them is an hour old.
    DispatchRateLimited {
        last_hour: u32,
        limit: u32,
        next_at: Timestamp,
    },
    ActionsPerTick,
}

impl Reason {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::Timeout => "timeout",
            Reason::AgentVanished => "agent-vanished",
            Reason::AgentFinished => "agent-finished",
            Reason::RemovedFromPlan => "removed-from-plan",
            Reason::SpecChanged => "spec-changed",
            Reason::GatePassed => "gate-passed",
            Reason::Approved => "approved",
            Reason::Rejected => "rejected",
            Reason::FailedBefore { .. } => "retry-after-failure",
            Reason::AttemptsExhausted { .. } => "attempts-exhausted",
            Reason::Ready => "ready",
            Reason::Queued => "queued",
            Reason::CleanupAfterMerge => "cleanup-after-merge",
            Reason::ClaimExpired { .. } => "claim-expired",
            Reason::ClaimedElsewhere { .. } => "claimed-elsewhere",
            Reason::SandboxUnavailable { .. } => "sandbox-unavailable",
            Reason::HarnessCooling { .. } => "harness-cooling",
            Reason::RateLimitOver { .. } => "rate-limit-over",
            Reason::BudgetSpent { .. } => "budget-spent",
            Reason::Running { .. } => "running",
            Reason::PlanDraft => "plan-draft",
            Reason::PlanPaused => "plan-paused",
            Reason::WaitingOnDependency { .. } => "waiting-on-dependency",
            Reason::DependencyBlocked { .. } => "dependency-blocked",
            Reason::Backoff { .. } => "backoff",
            Reason::ActionFailed { .. } => "action-failed",
            Reason::AwaitingApproval => "awaiting-approval",
            Reason::ApprovalStale { .. } => "approval-stale",
            Reason::Escalated => "escalated",
            Reason::Merged => "merged",
            Reason::MergeLost => "merge-lost",
            Reason::MaxAgents { .. } => "max-agents",
            Reason::DispatchRateLimited { .. } => "dispatch-rate-limited",
            Reason::ActionsPerTick => "actions-per-tick",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Timeout => f.write_str("the attempt ran past its deadline"),
            Reason::AgentVanished => {
                f.write_str("the agent's process is gone and it never reported done")
            }
            Reason::AgentFinished => f.write_str("the agent finished; its work is checked next"),
            Reason::RemovedFromPlan => f.write_str("the task is no longer in its plan"),
            Reason::SpecChanged => {
                f.write_str("the task's spec changed since this attempt started")
            }
            Reason::GatePassed => f.write_str("its invariants passed"),
            Reason::Approved => f.write_str("a human approved the reviewed commit"),
            Reason::Rejected => f.write_str(
                "a human rejected the reviewed commit; the reason goes to the next attempt",
            ),
            Reason::FailedBefore { failures } => {
                write!(f, "{failures} failed attempt(s); retry {failures} follows")
            }
            Reason::AttemptsExhausted { failures } => {
                write!(
                    f,
                    "{failures} failed attempt(s): the first and every retry `retry_max` allows"
                )
            }
            Reason::Ready => f.write_str("its plan is active and its dependencies are merged"),
            Reason::Queued => f.write_str("a queue item waits to join the `queue` plan"),
            Reason::CleanupAfterMerge => {
                f.write_str("merged; its worktree and branch are no longer needed")
            }
            Reason::ClaimExpired { by } => write!(
                f,
                "reconciler `{by}` claimed it and did not finish by the claim's deadline"
            ),
            Reason::ClaimedElsewhere { by, until } => write!(
                f,
                "reconciler `{by}` owns the attempt (claim valid until {until}, or until it passes its gate and merges)"
            ),
            Reason::Running { deadline } => {
                write!(f, "an agent is working on it (deadline {deadline})")
            }
            Reason::BudgetSpent {
                budget,
                used,
                until,
            } => match until {
                Some(until) => write!(
                    f,
                    "the {budget} is spent ({used}); dispatch resumes at {until}"
                ),
                None => write!(
                    f,
                    "the {budget} is spent ({used}); raise it to go on (`converge report` shows the spending)"
                ),
            },
            Reason::HarnessCooling { harness, until } => write!(
                f,
                "harness `{harness}` hit a rate limit or usage window; no agent starts on it until {until}"
            ),
            Reason::RateLimitOver { harness } => write!(
                f,
                "the rate limit of harness `{harness}` has passed; trying again (the limited attempt is not counted)"
            ),
            Reason::SandboxUnavailable { reason } => write!(
                f,
                "`[sandbox] required` and the sandbox cannot be enforced here: {reason}"
            ),
            Reason::PlanDraft => {
                f.write_str("its plan is a draft; set `state = \"active\"` to start")
            }
            Reason::PlanPaused => write!(
                f,
                "its plan is paused: nothing of it starts or merges; `converge resume` continues it"
            ),
            Reason::WaitingOnDependency { tasks } => {
                let names: Vec<String> = tasks.iter().map(|t| format!("`{t}`")).collect();
                let list = match names.split_last() {
                    Some((last, [])) => last.clone(),
                    Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
                    None => "its dependencies".to_owned(),
                };
                write!(f, "waiting for {list} to merge")
            }
            Reason::DependencyBlocked { task } => {
                write!(f, "dependency `{task}` escalated or is blocked")
            }
            Reason::Backoff { until } => write!(f, "backing off after a failure until {until}"),
            Reason::ActionFailed { message, until } => {
                write!(f, "{message}; tried again after {until}")
            }
            Reason::AwaitingApproval => {
                f.write_str("waiting for a human: `converge approve` or `converge reject`")
            }
            Reason::ApprovalStale { approved, head } => write!(
                f,
                "the approval is for {}, but the branch is at {}; review it again",
                short(approved),
                short(head)
            ),
            Reason::Escalated => f.write_str("needs a human: `converge retry` starts it again"),
            Reason::Merged => f.write_str("merged"),
            Reason::MergeLost => {
                f.write_str("status says merged but the base branch does not contain the work")
            }
            Reason::MaxAgents { running } => {
                write!(f, "{running} agent(s) running, the `max_agents` limit")
            }
            Reason::DispatchRateLimited {
                last_hour,
                limit,
                next_at,
            } => {
                write!(
                    f,
                    "dispatches_per_hour {limit}/h reached ({last_hour} started in the last hour), next dispatch at {next_at}"
                )
            }
            Reason::ActionsPerTick => f.write_str("this tick's `actions_per_tick` is used up"),
        }
    }
}

fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

/// For one task: its phase as derived this tick, and either the action chosen
/// for it or the reason there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskReport {
    pub key: TaskKey,
    pub phase: Phase,
    /// The action taken this tick, if any.
    pub action: Option<ActionKind>,
    /// Why it is acted on, waiting, or deferred.
    pub reason: Reason,
}

/// The outcome of one `decide`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// At most `actions_per_tick` actions, in priority order.
    pub actions: Vec<Action>,
    /// Every task, with its reason, in plan and task order.
    pub report: Vec<TaskReport>,
    /// Queue items and the reason they are or are not promoted.
    pub queue: Vec<(String, Option<ActionKind>, Reason)>,
    /// The earliest time something changes without any event (a backoff ends, a
    /// deadline passes), for watchers.
    pub wake_at: Option<Timestamp>,
}

/// One task's derived state before limits are applied.
struct Candidate {
    key: TaskKey,
    phase: Phase,
    step: Result<Action, Reason>,
    reason: Reason,
}

const HOUR: Duration = Duration::from_secs(3600);

/// The condition of a task one of whose actions failed: the action and the
/// error chain (reason code `action-failed`). The tick records it; a success
/// of any action on the task clears it.
pub const ACTION_FAILED: crate::model::ConditionKind = crate::model::ConditionKind::ActionFailed;

pub fn decide(
    spec: &Spec,
    obs: &Observation,
    status: &Status,
    now: Timestamp,
    limits: &Limits,
) -> Decision {
    let default_status = TaskStatus::default();
    let default_obs = TaskObs::default();
    let mut candidates = Vec::new();
    let cooling = cooldowns(status, now);
    let mut wake_at: Option<Timestamp> = None;
    let mut wake = |t: Timestamp| {
        if t > now {
            wake_at = Some(wake_at.map_or(t, |w| w.min(t)));
        }
    };

    for plan in spec.plans.values() {
        for task in &plan.tasks {
            let key = TaskKey::new(&plan.id, &task.name);
            let st = status.task(&plan.id, &task.name).unwrap_or(&default_status);
            let ob = obs.task(&key).unwrap_or(&default_obs);
            let candidate = classify(spec, plan, task, &key, st, ob, obs, status, &cooling, now);
            match &candidate.reason {
                Reason::Backoff { until } | Reason::ActionFailed { until, .. } => wake(*until),
                Reason::Running { deadline } => wake(*deadline),
                Reason::ClaimedElsewhere { until, .. } | Reason::HarnessCooling { until, .. } => {
                    wake(*until);
                }
                Reason::BudgetSpent {
                    until: Some(until), ..
                } => wake(*until),
                _ => {}
            }
            candidates.push(candidate);
        }
    }
    // Things that exist for tasks no valid plan has. Plans that failed validation
    // are left alone: an invalid edit must not cancel running work.
    for (key, ob) in &obs.tasks {
        let in_spec = spec
            .plans
            .get(&key.plan)
            .is_some_and(|p| p.task(&key.task).is_some());
        if in_spec || spec.invalid_plans.contains(&key.plan) {
            continue;
        }
        // A removed task whose cleanup (or cancel) keeps failing is held
        // like any other task, or it would take a slot every tick.
        if let Some((phase, why)) = status
            .task(&key.plan, &key.task)
            .and_then(|st| held_after_action_failure(st, now))
        {
            if let Reason::ActionFailed { until, .. } = &why {
                wake(*until);
            }
            candidates.push(Candidate {
                key: key.clone(),
                phase: if phase == Phase::Escalated {
                    phase
                } else {
                    Phase::Cancelled
                },
                step: Err(why.clone()),
                reason: why,
            });
            continue;
        }
        let step = match &ob.run {
            Some(run) if matches!(run.state, RunState::Running { .. }) => Ok(Action::Cancel {
                key: key.clone(),
                attempt: run.attempt,
                reason: Reason::RemovedFromPlan,
            }),
            _ if ob.worktree || ob.branch_head.is_some() => {
                Ok(Action::Cleanup { key: key.clone() })
            }
            _ => continue,
        };
        candidates.push(Candidate {
            key: key.clone(),
            phase: Phase::Cancelled,
            step,
            reason: Reason::RemovedFromPlan,
        });
    }

    // Every possible action, task actions and promotions alike, in priority order
    // (then by task or item name), picked under the limits.
    let mut possible: Vec<(Action, Option<usize>)> = candidates
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.step.as_ref().ok().map(|a| (a.clone(), Some(i))))
        .collect();
    for name in spec.queue.keys().filter(|n| !obs.promoted.contains(*n)) {
        possible.push((Action::Promote { item: name.clone() }, None));
    }
    possible.sort_by(|(a, _), (b, _)| {
        let name = |x: &Action| match x {
            Action::Promote { item } => (String::new(), item.clone()),
            other => other
                .key()
                .map(|k| (k.plan.clone(), k.task.clone()))
                .unwrap_or_default(),
        };
        (a.kind(), name(a)).cmp(&(b.kind(), name(b)))
    });
    let running =
        u32::try_from(obs.running()).unwrap_or(u32::MAX) + claimed_elsewhere(status, obs, now);
    // Start times in the last hour, oldest first; this tick's starts join them.
    let mut recent = starts_since(status, now.minus(HOUR));
    let mut started_last_hour = u32::try_from(recent.len()).unwrap_or(u32::MAX);
    let mut agents = running;
    let mut actions = Vec::new();
    let mut deferred: BTreeMap<usize, Reason> = BTreeMap::new();
    let mut queue = Vec::new();
    for (action, index) in possible {
        let verdict = if actions.len() >= limits.actions_per_tick as usize {
            Err(Reason::ActionsPerTick)
        } else if action.starts_agent() && agents >= limits.max_agents {
            Err(Reason::MaxAgents { running: agents })
        } else if action.starts_agent() && started_last_hour >= limits.dispatches_per_hour {
            // A slot frees when enough of the starts are an hour old that
            // fewer than the limit remain.
            let over = (started_last_hour - limits.dispatches_per_hour) as usize;
            let next_at = recent.get(over).map_or(now, |t| t.plus(HOUR));
            Err(Reason::DispatchRateLimited {
                last_hour: started_last_hour,
                limit: limits.dispatches_per_hour,
                next_at,
            })
        } else {
            Ok(())
        };
        if let Action::Promote { item } = &action {
            let (taken, reason) = match &verdict {
                Ok(()) => (Some(ActionKind::Promote), Reason::Queued),
                Err(why) => (None, why.clone()),
            };
            queue.push((item.clone(), taken, reason));
        }
        match (verdict, index) {
            (Ok(()), _) => {
                if action.starts_agent() {
                    agents += 1;
                    started_last_hour += 1;
                    recent.push(now);
                }
                actions.push(action);
            }
            (Err(why), Some(i)) => {
                // Nothing else may change by then: a watcher wakes when the
                // rate limit lets the next attempt start.
                if let Reason::DispatchRateLimited { next_at, .. } = &why {
                    wake(*next_at);
                }
                deferred.insert(i, why);
            }
            (Err(_), None) => {}
        }
    }
    queue.sort_by(|a, b| a.0.cmp(&b.0));

    let report = candidates
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let (action, reason) = match (&c.step, deferred.remove(&i)) {
                (Ok(_), Some(why)) => (None, why),
                (Ok(a), None) => (Some(a.kind()), c.reason),
                (Err(why), _) => (None, why.clone()),
            };
            TaskReport {
                key: c.key,
                phase: c.phase,
                action,
                reason,
            }
        })
        .collect();
    Decision {
        actions,
        report,
        queue,
        wake_at,
    }
}

/// A claim on the task by another reconciler, when reconcilers share a remote.
fn foreign_claim<'a>(st: &'a TaskStatus, obs: &Observation) -> Option<&'a Claim> {
    let me = obs.reconciler.as_ref()?;
    st.claim.as_ref().filter(|c| c.by != *me)
}

/// Agents other reconcilers run or are about to start: their live claims on
/// tasks that are not past their gate. They count against `max_agents`.
fn claimed_elsewhere(status: &Status, obs: &Observation, now: Timestamp) -> u32 {
    let count = status
        .plans
        .values()
        .flat_map(|p| p.tasks.values())
        .filter(|st| {
            foreign_claim(st, obs).is_some_and(|c| {
                now < c.until
                    && (matches!(st.phase, Phase::Running | Phase::Checking)
                        || c.attempt > st.attempt)
            })
        })
        .count();
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// Attempts started since `since`, from the attempt records in status.
/// The start times of the attempts started after `since`, oldest first.
fn starts_since(status: &Status, since: Timestamp) -> Vec<Timestamp> {
    let mut starts: Vec<Timestamp> = status
        .plans
        .values()
        .flat_map(|p| p.tasks.values())
        .flat_map(|t| &t.attempts)
        .map(|a| a.started_at)
        .filter(|t| *t > since)
        .collect();
    starts.sort();
    starts
}

#[allow(clippy::too_many_arguments)]
fn classify(
    spec: &Spec,
    plan: &Plan,
    task: &Task,
    key: &TaskKey,
    st: &TaskStatus,
    ob: &TaskObs,
    obs: &Observation,
    status: &Status,
    cooling: &BTreeMap<&str, Timestamp>,
    now: Timestamp,
) -> Candidate {
    let act = |phase: Phase, action: Action, reason: Reason| Candidate {
        key: key.clone(),
        phase,
        step: Ok(action),
        reason,
    };
    let wait = |phase: Phase, reason: Reason| Candidate {
        key: key.clone(),
        phase,
        step: Err(reason.clone()),
        reason,
    };
    // A run record newer than status means the tick that started it crashed
    // before recording: adopt it rather than start another.
    let attempt = ob
        .run
        .as_ref()
        .map_or(st.attempt, |r| r.attempt.max(st.attempt));
    // A task that never started has no generation to be stale against, unless
    // it was escalated before its first attempt (its harness could not start).
    let started = st.attempt > 0 || st.phase == Phase::Escalated;
    let edited = started && st.generation != task.generation;

    // An action of converge's own failed on this task: it waits out its
    // backoff (else, decide being deterministic, the same action would come
    // first again every tick and hold back everything of lower priority), and
    // failures in a row escalated it. An edit (`converge retry`) starts over.
    if !edited && let Some((phase, why)) = held_after_action_failure(st, now) {
        return wait(phase, why);
    }

    // Merged is read from git, not from status. The branch is cleaned up only
    // once status records the merge: until then it is the only proof (a crash
    // right after merging loses the tick's status).
    if ob.merged {
        if (ob.worktree || ob.branch_head.is_some()) && st.merged_as.is_some() {
            return act(
                Phase::Merged,
                Action::Cleanup { key: key.clone() },
                Reason::CleanupAfterMerge,
            );
        }
        return wait(Phase::Merged, Reason::Merged);
    }

    // Another reconciler owns the attempt: it runs, gates and merges it. Its
    // claim lapses at `until` while no gate has passed (the machine is gone);
    // a passed attempt's commits live only there, so only an edit (`converge
    // retry`) takes it over.
    let gated_phase = matches!(st.phase, Phase::Passed | Phase::AwaitingApproval);
    let in_flight = matches!(st.phase, Phase::Running | Phase::Checking);
    if let Some(claim) =
        foreign_claim(st, obs).filter(|c| c.attempt > st.attempt || in_flight || gated_phase)
    {
        let expired = now >= claim.until;
        if expired && in_flight {
            return act(
                Phase::Running,
                Action::Reap {
                    key: key.clone(),
                    attempt,
                    reason: Reason::ClaimExpired {
                        by: claim.by.clone(),
                    },
                },
                Reason::ClaimExpired {
                    by: claim.by.clone(),
                },
            );
        }
        let released = (expired && !gated_phase) || (edited && !in_flight);
        if !released {
            return wait(
                st.phase,
                Reason::ClaimedElsewhere {
                    by: claim.by.clone(),
                    until: claim.until,
                },
            );
        }
    }

    if let Some(run) = ob.run.as_ref().filter(|r| r.attempt == attempt) {
        // Whether this run answers a spec that was edited since: by the
        // generation its lease names; without one, by status when status
        // knows this attempt (a run newer than status, adopted after a
        // crash, is not the status entry's to judge).
        let superseded = match run.generation.as_deref() {
            Some(generation) => generation != task.generation,
            None => edited && attempt == st.attempt,
        };
        let cancel = || {
            act(
                Phase::Running,
                Action::Cancel {
                    key: key.clone(),
                    attempt,
                    reason: Reason::SpecChanged,
                },
                Reason::SpecChanged,
            )
        };
        match &run.state {
            RunState::Running { deadline } => {
                if now >= *deadline {
                    return act(
                        Phase::Running,
                        Action::Reap {
                            key: key.clone(),
                            attempt,
                            reason: Reason::Timeout,
                        },
                        Reason::Timeout,
                    );
                }
                if superseded {
                    return cancel();
                }
                return wait(
                    Phase::Running,
                    Reason::Running {
                        deadline: *deadline,
                    },
                );
            }
            RunState::Vanished if !gated(st, attempt) => {
                return act(
                    Phase::Running,
                    Action::Reap {
                        key: key.clone(),
                        attempt,
                        reason: Reason::AgentVanished,
                    },
                    Reason::AgentVanished,
                );
            }
            // An attempt at a spec that was edited since it started is
            // superseded: it is closed as cancelled (and the task starts
            // afresh), never gated nor offered for approval.
            RunState::Exited { .. } if !gated(st, attempt) && superseded => {
                return cancel();
            }
            RunState::Exited { .. } if !gated(st, attempt) => {
                return act(
                    Phase::Checking,
                    Action::Gate {
                        key: key.clone(),
                        attempt,
                    },
                    Reason::AgentFinished,
                );
            }
            _ => {}
        }
    } else if matches!(st.phase, Phase::Running | Phase::Checking) {
        // Status says an agent runs, but there is no run record for it.
        return act(
            Phase::Running,
            Action::Reap {
                key: key.clone(),
                attempt,
                reason: Reason::AgentVanished,
            },
            Reason::AgentVanished,
        );
    }

    let next = attempt + 1;
    let start = |reason: Reason, first: bool| -> Candidate {
        if let Some(why) = plan_blocks_start(plan) {
            return wait(st.phase, why);
        }
        if let Some(why) = sandbox_blocks_start(spec, obs) {
            return wait(st.phase, why);
        }
        if let Some(why) = budget_blocks_start(spec, plan, status, now) {
            return wait(st.phase, why);
        }
        if let Some(until) = cooling.get(task.harness.as_str()) {
            return wait(
                st.phase,
                Reason::HarnessCooling {
                    harness: task.harness.clone(),
                    until: *until,
                },
            );
        }
        let action = if first {
            Action::Dispatch {
                key: key.clone(),
                attempt: next,
            }
        } else {
            Action::Retry {
                key: key.clone(),
                attempt: next,
                reason: reason.clone(),
            }
        };
        act(st.phase, action, reason)
    };

    match st.phase {
        Phase::Passed | Phase::AwaitingApproval => {
            if edited {
                return start(Reason::SpecChanged, false);
            }
            let head = st
                .head
                .clone()
                .or_else(|| ob.branch_head.clone())
                .unwrap_or_default();
            let approval = spec.approvals.get(&(key.plan.clone(), key.task.clone()));
            let reason = match task.gate {
                Gate::Auto => Reason::GatePassed,
                Gate::HumanReview | Gate::HumanApprove => match approval {
                    None => return wait(Phase::AwaitingApproval, Reason::AwaitingApproval),
                    Some(a) if a.commit != head => {
                        return wait(
                            Phase::AwaitingApproval,
                            Reason::ApprovalStale {
                                approved: a.commit.clone(),
                                head,
                            },
                        );
                    }
                    Some(a) if a.decision == Verdict::Reject => {
                        // `retry_max` counts retries after the first
                        // attempt (gator's meaning): this rejection is the
                        // last allowed when no retry is left.
                        if st.failures >= task.retry_max {
                            return act(
                                Phase::Failed,
                                Action::Escalate {
                                    key: key.clone(),
                                    reason: Reason::Rejected,
                                },
                                Reason::Rejected,
                            );
                        }
                        return start(Reason::Rejected, false);
                    }
                    Some(_) => Reason::Approved,
                },
            };
            let waiting = unmerged_dependencies(plan, task, obs);
            if !waiting.is_empty() {
                return wait(st.phase, Reason::WaitingOnDependency { tasks: waiting });
            }
            // `pause` is an emergency brake: attempts still finish and are
            // gated (the evidence is ready at resume), nothing merges.
            if let Some(why) = plan_blocks_start(plan) {
                return wait(st.phase, why);
            }
            act(
                st.phase,
                Action::Merge {
                    key: key.clone(),
                    head,
                },
                reason,
            )
        }
        Phase::Failed => {
            if edited {
                return start(Reason::SpecChanged, false);
            }
            // `retry_max` retries after the first attempt: `retry_max + 1`
            // failed attempts escalate.
            if st.failures > task.retry_max {
                return act(
                    Phase::Failed,
                    Action::Escalate {
                        key: key.clone(),
                        reason: Reason::AttemptsExhausted {
                            failures: st.failures,
                        },
                    },
                    Reason::AttemptsExhausted {
                        failures: st.failures,
                    },
                );
            }
            if let Some(until) = st.next_eligible_at.filter(|t| now < *t) {
                return wait(Phase::Failed, Reason::Backoff { until });
            }
            let limited = st.attempts.iter().find(|a| a.number == attempt);
            if let Some(harness) = limited
                .filter(|a| a.cooldown_until.is_some())
                .and_then(|a| a.harness.clone())
            {
                return start(Reason::RateLimitOver { harness }, false);
            }
            start(
                Reason::FailedBefore {
                    failures: st.failures,
                },
                false,
            )
        }
        Phase::Escalated => {
            if edited {
                start(Reason::SpecChanged, false)
            } else {
                wait(Phase::Escalated, Reason::Escalated)
            }
        }
        Phase::Merged => wait(Phase::Merged, Reason::MergeLost),
        Phase::Running | Phase::Checking => {
            // The attempt's run exists but was already gated (a record raced):
            // nothing to do until status catches up.
            wait(st.phase, Reason::AgentFinished)
        }
        Phase::Pending | Phase::Blocked | Phase::Cancelled => {
            if let Some(dep) = blocked_dependency(plan, task, obs, status) {
                return wait(Phase::Blocked, Reason::DependencyBlocked { task: dep });
            }
            let waiting = unmerged_dependencies(plan, task, obs);
            if !waiting.is_empty() {
                return wait(
                    Phase::Pending,
                    Reason::WaitingOnDependency { tasks: waiting },
                );
            }
            if let Some(why) = plan_blocks_start(plan) {
                return wait(Phase::Pending, why);
            }
            if attempt == 0 {
                start(Reason::Ready, true)
            } else {
                start(Reason::SpecChanged, false)
            }
        }
    }
}

/// Why a task one of whose actions failed is not acted on now: it waits out
/// the backoff, or failures in a row escalated it.
fn held_after_action_failure(st: &TaskStatus, now: Timestamp) -> Option<(Phase, Reason)> {
    if st.action_failures == 0 {
        return None;
    }
    if st.phase == Phase::Escalated {
        return Some((Phase::Escalated, Reason::Escalated));
    }
    let until = st.next_eligible_at.filter(|t| now < *t)?;
    let message = st
        .conditions
        .iter()
        .find(|c| c.kind == ACTION_FAILED)
        .map_or_else(|| "an action failed".to_owned(), |c| c.message.clone());
    Some((st.phase, Reason::ActionFailed { message, until }))
}

/// Whether the attempt's outcome was already recorded by a gate.
fn gated(st: &TaskStatus, attempt: u32) -> bool {
    st.attempt == attempt && !matches!(st.phase, Phase::Pending | Phase::Running | Phase::Checking)
}

const DAY: i64 = 24 * 60 * 60;

/// What the attempts recorded in status spent, for the budgets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spending {
    /// Tokens of all attempts of the plan asked about.
    pub plan_tokens: u64,
    /// Tokens and cost of all attempts (every plan) started this UTC day.
    pub today_tokens: u64,
    pub today_usd: f64,
    /// When this UTC day began, and when the next begins.
    pub day_start: Timestamp,
    pub next_day: Timestamp,
}

/// Counts `plan`'s tokens and today's (UTC) tokens and cost across all plans.
pub fn spending(status: &Status, plan: Option<&str>, now: Timestamp) -> Spending {
    let day_start = Timestamp::from_unix(now.unix() - now.unix().rem_euclid(DAY));
    let mut out = Spending {
        plan_tokens: 0,
        today_tokens: 0,
        today_usd: 0.0,
        day_start,
        next_day: Timestamp::from_unix(day_start.unix() + DAY),
    };
    for (id, p) in &status.plans {
        for a in p.tasks.values().flat_map(|t| &t.attempts) {
            let tokens = a.tokens_in + a.tokens_out;
            if plan == Some(id.as_str()) {
                out.plan_tokens += tokens;
            }
            if a.started_at >= day_start {
                out.today_tokens += tokens;
                out.today_usd += a.cost_usd;
            }
        }
    }
    out
}

/// A spent budget: the plan's `token_budget` (tokens of all its attempts), or
/// `[budget]` per UTC day (tokens or USD of the attempts started that day,
/// across all plans). Counted from the attempt records in status.
fn budget_blocks_start(
    spec: &Spec,
    plan: &Plan,
    status: &Status,
    now: Timestamp,
) -> Option<Reason> {
    let budget = &spec.config.budget;
    if plan.token_budget.is_none()
        && budget.tokens_per_day.is_none()
        && budget.usd_per_day.is_none()
    {
        return None;
    }
    let spent = spending(status, Some(&plan.id), now);
    if let Some(limit) = plan.token_budget.filter(|l| spent.plan_tokens >= *l) {
        return Some(Reason::BudgetSpent {
            budget: "plan's `token_budget`".to_owned(),
            used: format!("{} of {limit} tokens", spent.plan_tokens),
            until: None,
        });
    }
    if let Some(limit) = budget.tokens_per_day.filter(|l| spent.today_tokens >= *l) {
        return Some(Reason::BudgetSpent {
            budget: "daily token budget (`[budget] tokens_per_day`)".into(),
            used: format!("{} of {limit} tokens today", spent.today_tokens),
            until: Some(spent.next_day),
        });
    }
    if let Some(limit) = budget.usd_per_day.filter(|l| spent.today_usd >= *l) {
        return Some(Reason::BudgetSpent {
            budget: "daily cost budget (`[budget] usd_per_day`)".into(),
            used: format!("${:.2} of ${limit:.2} today", spent.today_usd),
            until: Some(spent.next_day),
        });
    }
    None
}

/// Harnesses cooling down after a rate limit or usage window, until when: the
/// latest `cooldown_until` of their attempts that is still ahead.
fn cooldowns(status: &Status, now: Timestamp) -> BTreeMap<&str, Timestamp> {
    let mut out: BTreeMap<&str, Timestamp> = BTreeMap::new();
    for a in status
        .plans
        .values()
        .flat_map(|p| p.tasks.values())
        .flat_map(|t| &t.attempts)
    {
        if let (Some(until), Some(harness)) = (a.cooldown_until, a.harness.as_deref())
            && until > now
        {
            let slot = out.entry(harness).or_insert(until);
            *slot = (*slot).max(until);
        }
    }
    out
}

/// `[sandbox] required`, and Landlock does not work here: no agent starts.
fn sandbox_blocks_start(spec: &Spec, obs: &Observation) -> Option<Reason> {
    let sandbox = &spec.config.sandbox;
    match &obs.sandbox {
        Some(Availability::Unavailable { reason }) if sandbox.enabled && sandbox.required => {
            Some(Reason::SandboxUnavailable {
                reason: reason.clone(),
            })
        }
        _ => None,
    }
}

fn plan_blocks_start(plan: &Plan) -> Option<Reason> {
    match plan.state {
        PlanState::Active => None,
        PlanState::Draft => Some(Reason::PlanDraft),
        PlanState::Paused => Some(Reason::PlanPaused),
    }
}

/// The task a dependency names: a task of the same plan, or `plan/task` (queue
/// items may depend on any plan's task).
fn dependency_key(plan: &Plan, dep: &str) -> TaskKey {
    match dep.split_once('/') {
        Some((p, t)) => TaskKey::new(p, t),
        None => TaskKey::new(&plan.id, dep),
    }
}

/// The first dependency whose work is not on the base branch yet.
/// Every dependency whose work is not merged yet.
fn unmerged_dependencies(plan: &Plan, task: &Task, obs: &Observation) -> Vec<String> {
    task.depends_on
        .iter()
        .filter(|dep| {
            !obs.task(&dependency_key(plan, dep))
                .is_some_and(|o| o.merged)
        })
        .cloned()
        .collect()
}

/// The first dependency that escalated or is itself blocked. (A dependency's
/// attempt that was cancelled because its spec changed restarts: not blocking.)
fn blocked_dependency(
    plan: &Plan,
    task: &Task,
    obs: &Observation,
    status: &Status,
) -> Option<String> {
    task.depends_on
        .iter()
        .find(|dep| {
            let key = dependency_key(plan, dep);
            let merged = obs.task(&key).is_some_and(|o| o.merged);
            let phase = status.task(&key.plan, &key.task).map(|s| s.phase);
            !merged && matches!(phase, Some(Phase::Escalated | Phase::Blocked))
        })
        .cloned()
}

#[cfg(test)]
mod purity_tests;
#[cfg(test)]
mod tests;
