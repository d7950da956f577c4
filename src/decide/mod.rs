//! `decide`: the pure heart of the reconciler.
//!
//! `decide(spec, observation, status, now, limits)` derives, for every task, the
//! next step and the reason for it, then picks at most `actions_per_tick` actions
//! in a fixed priority order under the limits. It does no IO and reads no clock:
//! the same inputs always give the same decision. Every task that is not acted on
//! gets a reason with a stable code, shown by `--explain` and in STATUS.md.
//!
//! The parts: [`action`] (what `act` is asked to do), [`reason`] (why, with its
//! stable code), [`classify`] (the per-task rule chain), [`limits`] (what an
//! action waits for beyond its task), [`derive`] (status brought in line with
//! the decision). This file: candidates → pick under limits → [`Decision`].
//!
//! No gix, tokio, `std::fs` or `std::process` here; side effects live in `act`
//! (`purity_tests.rs` checks every file of the pure layers).

mod action;
mod change;
mod classify;
pub mod derive;
mod limits;
mod reason;

use std::collections::BTreeMap;

use crate::model::TaskKey;
use crate::observe::{Observation, RunState, TaskObs};
use crate::spec::Spec;
use crate::status::{Phase, Status, TaskStatus};
use crate::time::Timestamp;

pub use action::{Action, ActionKind};
pub use limits::{Limits, Spending, spending};
pub use reason::Reason;

use classify::{Subject, classify, held_after_action_failure};
use limits::{ChangeMeter, Meter, cooldowns};

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
    /// The earliest such time of converge's own making (a backoff, a
    /// deadline, the dispatch rate limit, a harness's cooldown): what
    /// `reconcile --wait` waits for. Waits on people and other systems (a
    /// pull request's checks and reviews, the forge's limits and cooldown,
    /// another reconciler's claim, whose agent does not die with this
    /// process) are the next run's, not this one's.
    pub settle_at: Option<Timestamp>,
}

/// One task's derived state before limits are applied.
struct Candidate {
    key: TaskKey,
    phase: Phase,
    step: Result<Action, Reason>,
    reason: Reason,
}

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
    let mut wake = Wake {
        now,
        at: None,
        own: None,
    };
    let mut candidates = planned(spec, obs, status, now);
    candidates.extend(removed(spec, obs, status, now));
    for c in &candidates {
        wake.for_reason(&c.reason);
    }
    let picked = pick(spec, obs, status, now, limits, &candidates, &mut wake);
    let report = report(candidates, picked.deferred);
    Decision {
        actions: picked.actions,
        report,
        queue: picked.queue,
        wake_at: wake.at,
        settle_at: wake.own,
    }
}

/// The earliest time something changes without any event, for watchers.
struct Wake {
    now: Timestamp,
    at: Option<Timestamp>,
    /// Of converge's own making ([`Decision::settle_at`]).
    own: Option<Timestamp>,
}

impl Wake {
    fn at(&mut self, t: Timestamp) {
        if t > self.now {
            self.at = Some(self.at.map_or(t, |w| w.min(t)));
            self.own = Some(self.own.map_or(t, |w| w.min(t)));
        }
    }

    /// A wake time that is not converge's own: a forge's.
    fn external(&mut self, t: Timestamp) {
        if t > self.now {
            self.at = Some(self.at.map_or(t, |w| w.min(t)));
        }
    }

    /// When a task waiting for `reason` may go on by itself: a backoff ends,
    /// a deadline passes, a claim or a cooldown lapses, a daily budget renews.
    fn for_reason(&mut self, reason: &Reason) {
        match reason {
            Reason::Backoff { until } | Reason::ActionFailed { until, .. } => self.at(*until),
            Reason::Running { deadline } => self.at(*deadline),
            Reason::AwaitingChecks { until, .. }
            | Reason::ChangeRateLimited { next_at: until, .. }
            | Reason::ForgeCooling {
                until: Some(until), ..
            } => self.external(*until),
            Reason::ClaimedElsewhere { until, .. } => self.external(*until),
            Reason::HarnessCooling { until, .. } => self.at(*until),
            Reason::BudgetSpent {
                until: Some(until), ..
            } => self.at(*until),
            _ => {}
        }
    }
}

/// Every task of the valid plans, classified, in plan and task order.
fn planned(spec: &Spec, obs: &Observation, status: &Status, now: Timestamp) -> Vec<Candidate> {
    let default_status = TaskStatus::default();
    let default_obs = TaskObs::default();
    let cooling = cooldowns(status, now);
    let mut out = Vec::new();
    for plan in spec.plans.values() {
        for task in &plan.tasks {
            let key = TaskKey::new(&plan.id, &task.name);
            out.push(classify(&Subject {
                spec,
                plan,
                task,
                key: &key,
                st: status.task(&plan.id, &task.name).unwrap_or(&default_status),
                ob: obs.task(&key).unwrap_or(&default_obs),
                obs,
                status,
                cooling: &cooling,
                now,
            }));
        }
    }
    out
}

/// Things that exist for tasks no valid plan has: a running agent is
/// cancelled, a worktree or branch cleaned up. Plans that failed validation
/// are left alone: an invalid edit must not cancel running work.
fn removed(spec: &Spec, obs: &Observation, status: &Status, now: Timestamp) -> Vec<Candidate> {
    let mut out = Vec::new();
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
            out.push(Candidate {
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
            // An open change is closed only when status knows it as the
            // task's: a pull request from a `converge/…` branch that no
            // task of status had (a person's, or one reopened after converge
            // closed it) is not converge's to close, and would be cleaned up
            // again every tick.
            _ if ob.worktree
                || ob.branch_head.is_some()
                || ob.change.as_ref().is_some_and(|c| {
                    c.state == crate::observe::ChangeState::Open
                        && status
                            .task(&key.plan, &key.task)
                            .and_then(|st| st.change.as_ref())
                            .is_some_and(|r| r.number == c.number)
                }) =>
            {
                Ok(Action::Cleanup { key: key.clone() })
            }
            _ => continue,
        };
        out.push(Candidate {
            key: key.clone(),
            phase: Phase::Cancelled,
            step,
            reason: Reason::RemovedFromPlan,
        });
    }
    out
}

/// What [`pick`] chose.
struct Picked {
    actions: Vec<Action>,
    /// Candidates (by index) whose action waits for a limit, and which.
    deferred: BTreeMap<usize, Reason>,
    queue: Vec<(String, Option<ActionKind>, Reason)>,
}

/// Every possible action, task actions and promotions alike, in priority
/// order (then by task or item name), picked under the limits.
fn pick(
    spec: &Spec,
    obs: &Observation,
    status: &Status,
    now: Timestamp,
    limits: &Limits,
    candidates: &[Candidate],
    wake: &mut Wake,
) -> Picked {
    let mut possible: Vec<(Action, Option<usize>)> = candidates
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.step.as_ref().ok().map(|a| (a.clone(), Some(i))))
        .collect();
    for name in spec.queue.keys().filter(|n| !obs.promoted.contains(*n)) {
        possible.push((Action::Promote { item: name.clone() }, None));
    }
    // Merges of pull requests go oldest first (by number); everything else,
    // and merges without one, by plan and task name.
    possible.sort_by(|(a, _), (b, _)| {
        let name = |x: &Action| match x {
            Action::Promote { item } => (String::new(), item.clone()),
            other => other
                .key()
                .map(|k| (k.plan.clone(), k.task.clone()))
                .unwrap_or_default(),
        };
        let change = |x: &Action| match x {
            Action::Merge { key, .. } => limits::change_number(status, key),
            _ => None,
        };
        (a.kind(), change(a), name(a)).cmp(&(b.kind(), change(b), name(b)))
    });
    let mut meter = Meter::new(limits, status, obs, now);
    let mut changes = ChangeMeter::new(spec, status, obs, now);
    let mut out = Picked {
        actions: Vec::new(),
        deferred: BTreeMap::new(),
        queue: Vec::new(),
    };
    for (action, index) in possible {
        let verdict = meter
            .admits(&action)
            .and_then(|()| changes.as_ref().map_or(Ok(()), |c| c.admits(&action)));
        if let Action::Promote { item } = &action {
            let (taken, reason) = match &verdict {
                Ok(()) => (Some(ActionKind::Promote), Reason::Queued),
                Err(why) => (None, why.clone()),
            };
            out.queue.push((item.clone(), taken, reason));
        }
        match (verdict, index) {
            (Ok(()), _) => {
                meter.take(&action);
                if let Some(c) = changes.as_mut() {
                    c.take(&action, status);
                }
                out.actions.push(action);
            }
            (Err(why), Some(i)) => {
                // Nothing else may change by then: a watcher wakes when the
                // rate limit lets the next attempt start.
                match &why {
                    Reason::DispatchRateLimited { next_at, .. } => wake.at(*next_at),
                    Reason::ChangeRateLimited { next_at, .. } => wake.external(*next_at),
                    _ => {}
                }
                out.deferred.insert(i, why);
            }
            (Err(_), None) => {}
        }
    }
    out.queue.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Every task with its phase, and its action or the reason there is none.
fn report(candidates: Vec<Candidate>, mut deferred: BTreeMap<usize, Reason>) -> Vec<TaskReport> {
    candidates
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
        .collect()
}

#[cfg(test)]
mod forge_tests;
#[cfg(test)]
mod purity_tests;
#[cfg(test)]
mod tests;
