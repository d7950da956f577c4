//! The one place an action's result changes a task's status.
//!
//! The executor (`act`) carries out an action's side effects and reports what
//! happened as a list of [`Outcome`]s; [`apply`] folds each into the task's
//! [`TaskStatus`]: the phase, the attempt and its record, the failure count and
//! its backoff, escalation, the conditions. It is pure (no IO, the clock comes
//! in as `now`), so every rule is table-tested below, and the tick applies an
//! action's outcomes only once the action succeeded: an action that fails
//! changes nothing but what the error policy (`act::policy`) reports as
//! [`Outcome::ActionFailed`].
//!
//! `Outcome` uses only model, status and spec types (`model::CommitId` for
//! commits), so that status stays below act and the forge.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::model::{AttemptOutcome, CommitId, ConditionKind, FailureCode};
use crate::spec::Backoff;
use crate::time::Timestamp;

use super::model::{AttemptRecord, Condition, Evidence, Failure, Phase, Status, TaskStatus};

/// The condition of a task whose attempt runs without the sandbox it asked
/// for, as recorded.
pub const UNCONFINED: &str = ConditionKind::Unconfined.as_str();

/// What an action did to its task, as the executor reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// An attempt started (a dispatch or a retry).
    Started(Start),
    /// The attempt's agent exited at `at` (the supervisor's exit record): the
    /// attempt's run ended then, whenever it is judged.
    RunEnded { attempt: u32, at: Timestamp },
    /// What the attempt's agent CLI reported it used (priced when it did not).
    Usage {
        attempt: u32,
        tokens_in: u64,
        tokens_out: u64,
        cost_usd: f64,
    },
    /// The gate judged the attempt at `head` by its invariants (`evidence`).
    Gated {
        attempt: u32,
        head: CommitId,
        evidence: BTreeMap<String, Evidence>,
        verdict: Verdict,
    },
    /// The attempt failed (before or without invariants, or its merge did);
    /// `head`, when known, is the commit it was judged at. Counts against
    /// `retry_max` and backs off.
    Failed {
        attempt: u32,
        head: Option<CommitId>,
        failure: Failure,
    },
    /// The attempt's harness hit its rate limit: it cools down until `until`,
    /// and the attempt does not count.
    RateLimited {
        attempt: u32,
        head: CommitId,
        until: Timestamp,
        failure: Failure,
    },
    /// The model API refused the agent's credentials: the attempt counts and a
    /// human decides.
    Refused {
        attempt: u32,
        head: CommitId,
        failure: Failure,
    },
    /// The task's harness cannot run here (not installed, no launch): a human
    /// decides after fixing the configuration; nothing started.
    Unavailable {
        generation: String,
        failure: Failure,
    },
    /// `decide` escalated the task; a human's rejection counts as a failure.
    Escalated { rejection: Option<Failure> },
    /// Evidence of `[merge].invariants` on the merge result, added to the gate's.
    MergeEvidence(BTreeMap<String, Evidence>),
    /// The attempt's work merged into the base as `commit`.
    Merged { attempt: u32, commit: CommitId },
    /// The attempt's work was pushed as `head` to change `number` (opened
    /// now when status knew none, or another one).
    Proposed { number: u64, head: CommitId },
    /// The change's merge waits for `why`; it is looked at again at `until`.
    MergeWaiting { why: String, until: Timestamp },
    /// Someone else pushed to the change's branch: converge leaves it alone.
    HandsOff { why: String },
    /// converge merged the base branch into the change's branch as `head`
    /// (the forge requires it up to date); its checks run again.
    ChangeUpdated { head: CommitId },
    /// Cleanup found the task's head in the base, with no merge recorded (a
    /// crash right after merging): `commit` is the merge record.
    FoundMerged { commit: CommitId },
    /// The attempt was stopped (its task was edited, or its plan paused).
    Cancelled { attempt: u32 },
    /// The task is gone from its plan: so is its status.
    Forgotten,
    /// The action on the task failed (see `act::policy`).
    ActionFailed(ActionFailure),
    /// An action on the task succeeded: failures of earlier actions are over.
    ActionSucceeded,
}

/// How a gate that ran its invariants ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Passed,
    AwaitingApproval,
    /// A blocking invariant failed.
    Failed(Failure),
}

/// A started attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Start {
    pub attempt: u32,
    /// The task's spec generation the attempt runs.
    pub generation: String,
    pub harness: String,
    pub model: Option<String>,
    pub branch: String,
    /// The base commit the attempt forked from.
    pub fork: CommitId,
    /// The task's spec changed since status last saw it: failures count afresh.
    pub edited: bool,
    /// It was restarted because of that edit: the last failure was of another spec.
    pub spec_changed: bool,
    /// A human's rejection it was restarted for, counted as a failure.
    pub rejection: Option<Failure>,
    /// Why the attempt runs without the sandbox `[sandbox] enabled` asks for.
    pub unconfined: Option<String>,
}

/// A failed action, as the error policy judged it.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionFailure {
    /// Failures of actions on the task in a row, this one included.
    pub count: u32,
    /// The message of the `ActionFailed` condition.
    pub message: String,
    pub then: AfterFailure,
}

/// What follows a failed action.
#[derive(Debug, Clone, PartialEq)]
pub enum AfterFailure {
    /// Tried again from `until` on.
    Retry { until: Timestamp },
    /// A human decides; `generation` is the task's (none when it left its plan).
    Escalate {
        generation: Option<String>,
        failure: Failure,
    },
}

/// The wait before retry `failures + 1`: `base * factor^(failures-1)`, at most `max`.
pub fn backoff_delay(backoff: &Backoff, failures: u32) -> Duration {
    let exponent = i32::try_from(failures.saturating_sub(1)).unwrap_or(i32::MAX);
    let secs = backoff.base.as_secs_f64() * backoff.factor.powi(exponent);
    let max = backoff.max.as_secs_f64();
    Duration::from_secs_f64(if secs.is_finite() { secs.min(max) } else { max })
}

/// Applies `outcomes` to task `plan`/`task` of `status`, in order. The task's
/// entry is created when missing, except that [`Outcome::ActionSucceeded`]
/// touches only an existing one and [`Outcome::Forgotten`] removes it.
pub fn apply_to(
    status: &mut Status,
    (plan, task): (&str, &str),
    outcomes: &[Outcome],
    now: Timestamp,
    backoff: &Backoff,
) {
    for outcome in outcomes {
        match outcome {
            Outcome::Forgotten => {
                if let Some(p) = status.plans.get_mut(plan) {
                    p.tasks.remove(task);
                }
            }
            Outcome::ActionSucceeded => {
                if let Some(st) = status
                    .plans
                    .get_mut(plan)
                    .and_then(|p| p.tasks.get_mut(task))
                {
                    apply(st, outcome, now, backoff);
                }
            }
            _ => {
                let st = status
                    .plans
                    .entry(plan.to_owned())
                    .or_default()
                    .tasks
                    .entry(task.to_owned())
                    .or_default();
                apply(st, outcome, now, backoff);
            }
        }
    }
}

/// Applies one outcome to a task's status. [`Outcome::Forgotten`] concerns the
/// plan's table, not the task's entry: here it changes nothing (see [`apply_to`]).
///
/// One arm per outcome, each a function of its family below: the attempt's
/// run, its verdict, the human's turn, its merge, its change on the forge,
/// converge's own actions.
pub fn apply(st: &mut TaskStatus, outcome: &Outcome, now: Timestamp, backoff: &Backoff) {
    match outcome {
        Outcome::Started(start) => started(st, start, now),
        Outcome::RunEnded { attempt, at } => run_ended(st, *attempt, *at),
        Outcome::Usage {
            attempt,
            tokens_in,
            tokens_out,
            cost_usd,
        } => used(st, *attempt, (*tokens_in, *tokens_out, *cost_usd)),
        Outcome::Gated {
            attempt,
            head,
            evidence,
            verdict,
        } => gated(st, (*attempt, *head), evidence, verdict, (now, backoff)),
        Outcome::Failed {
            attempt,
            head,
            failure,
        } => {
            judged(st, *attempt, *head);
            fail(st, *attempt, failure, now, backoff);
        }
        Outcome::RateLimited {
            attempt,
            head,
            until,
            failure,
        } => rate_limited(st, (*attempt, *head), *until, failure, now),
        Outcome::Refused {
            attempt,
            head,
            failure,
        } => refused(st, (*attempt, *head), failure, now),
        Outcome::Unavailable {
            generation,
            failure,
        } => unavailable(st, generation, failure),
        Outcome::Escalated { rejection } => escalated(st, rejection.as_ref()),
        Outcome::MergeEvidence(evidence) => merge_evidence(st, evidence),
        Outcome::Merged { attempt, commit } => merged(st, *attempt, *commit, now),
        Outcome::FoundMerged { commit } => found_merged(st, *commit),
        Outcome::Cancelled { attempt } => cancelled(st, *attempt, now),
        Outcome::Proposed { number, head } => proposed(st, *number, *head, now),
        Outcome::ChangeUpdated { head } => change_updated(st, *head),
        Outcome::MergeWaiting { why, until } => merge_waiting(st, why, *until, now),
        Outcome::HandsOff { why } => hands_off(st, why),
        Outcome::Forgotten => {}
        Outcome::ActionFailed(failure) => action_failed(st, failure, now),
        Outcome::ActionSucceeded => action_succeeded(st),
    }
}

// The attempt's run: its start ([`started`]), its end, what it used.

fn run_ended(st: &mut TaskStatus, attempt: u32, at: Timestamp) {
    if let Some(run) = record(st, attempt) {
        run.ended_at.get_or_insert(at);
    }
}

fn used(st: &mut TaskStatus, attempt: u32, (tokens_in, tokens_out, cost_usd): (u64, u64, f64)) {
    if let Some(run) = record(st, attempt) {
        run.tokens_in = tokens_in;
        run.tokens_out = tokens_out;
        run.cost_usd = cost_usd;
    }
}

// The attempt's verdict: the gate's, a failure ([`fail`]), a rate limit, a
// refusal of its credentials.

fn gated(
    st: &mut TaskStatus,
    (attempt, head): (u32, CommitId),
    evidence: &BTreeMap<String, Evidence>,
    verdict: &Verdict,
    (now, backoff): (Timestamp, &Backoff),
) {
    judged(st, attempt, Some(head));
    st.gate = evidence.clone();
    match verdict {
        Verdict::Failed(failure) => fail(st, attempt, failure, now, backoff),
        Verdict::Passed | Verdict::AwaitingApproval => {
            st.phase = if *verdict == Verdict::Passed {
                Phase::Passed
            } else {
                Phase::AwaitingApproval
            };
            st.next_eligible_at = None;
            finish_attempt(st, attempt, now, AttemptOutcome::Passed);
        }
    }
}

fn rate_limited(
    st: &mut TaskStatus,
    (attempt, head): (u32, CommitId),
    until: Timestamp,
    failure: &Failure,
    now: Timestamp,
) {
    judged(st, attempt, Some(head));
    st.phase = Phase::Failed;
    st.next_eligible_at = Some(until);
    finish_attempt(
        st,
        attempt,
        now,
        AttemptOutcome::Failed(FailureCode::RateLimited),
    );
    if let Some(run) = record(st, attempt) {
        run.cooldown_until = Some(until);
    }
    st.last_failure = Some(failure.clone());
}

fn refused(
    st: &mut TaskStatus,
    (attempt, head): (u32, CommitId),
    failure: &Failure,
    now: Timestamp,
) {
    judged(st, attempt, Some(head));
    st.failures += 1;
    st.phase = Phase::Escalated;
    finish_attempt(
        st,
        attempt,
        now,
        AttemptOutcome::Failed(FailureCode::Authentication),
    );
    st.last_failure = Some(failure.clone());
}

// A human's turn: the harness cannot run here, or the task escalated.

fn unavailable(st: &mut TaskStatus, generation: &str, failure: &Failure) {
    st.phase = Phase::Escalated;
    st.generation = generation.to_owned();
    st.last_failure = Some(failure.clone());
}

fn escalated(st: &mut TaskStatus, rejection: Option<&Failure>) {
    if let Some(failure) = rejection {
        st.failures += 1;
        st.last_failure = Some(failure.clone());
    }
    st.phase = Phase::Escalated;
    st.next_eligible_at = None;
}

// The merge: its invariants' evidence, the merge, one found without its
// record, or the attempt cancelled instead.

fn merge_evidence(st: &mut TaskStatus, evidence: &BTreeMap<String, Evidence>) {
    st.gate
        .extend(evidence.iter().map(|(k, v)| (k.clone(), v.clone())));
}

fn merged(st: &mut TaskStatus, attempt: u32, commit: CommitId, now: Timestamp) {
    st.phase = Phase::Merged;
    st.merged_as = Some(commit);
    st.next_eligible_at = None;
    finish_attempt(st, attempt, now, AttemptOutcome::Merged);
}

fn found_merged(st: &mut TaskStatus, commit: CommitId) {
    st.merged_as = Some(commit);
    st.phase = Phase::Merged;
}

fn cancelled(st: &mut TaskStatus, attempt: u32, now: Timestamp) {
    st.phase = Phase::Cancelled;
    finish_attempt(st, attempt, now, AttemptOutcome::Cancelled);
}

// The task's change on the forge: proposed, updated, waiting, hands off.

fn proposed(st: &mut TaskStatus, number: u64, head: CommitId, now: Timestamp) {
    let opened_at = st
        .change
        .as_ref()
        .filter(|c| c.number == number)
        .map_or(now, |c| c.opened_at);
    st.change = Some(crate::status::ChangeRecord {
        number,
        pushed: head,
        opened_at,
        waiting: None,
        hands_off: None,
        updated: None,
    });
}

fn change_updated(st: &mut TaskStatus, head: CommitId) {
    if let Some(change) = st.change.as_mut() {
        change.updated = Some(head);
        change.waiting = None;
    }
}

fn merge_waiting(st: &mut TaskStatus, why: &str, until: Timestamp, now: Timestamp) {
    if let Some(change) = st.change.as_mut() {
        let since = change
            .waiting
            .as_ref()
            .filter(|w| w.goes_on_as(why))
            .map_or(now, |w| w.since);
        change.waiting = Some(crate::status::ChangeWait {
            why: why.to_owned(),
            since,
            until,
        });
    }
}

fn hands_off(st: &mut TaskStatus, why: &str) {
    if let Some(change) = st.change.as_mut() {
        change.hands_off = Some(why.to_owned());
        change.waiting = None;
    }
}

// converge's own actions: one failed ([`action_failed`]), or one succeeded.

fn action_succeeded(st: &mut TaskStatus) {
    if st.action_failures > 0 {
        st.action_failures = 0;
        st.conditions
            .retain(|c| c.kind != ConditionKind::ActionFailed);
    }
}

fn record(st: &mut TaskStatus, attempt: u32) -> Option<&mut AttemptRecord> {
    st.attempts.iter_mut().find(|a| a.number == attempt)
}

/// The attempt was judged (at `head`, when known).
fn judged(st: &mut TaskStatus, attempt: u32, head: Option<CommitId>) {
    st.attempt = st.attempt.max(attempt);
    if let Some(head) = head {
        st.head = Some(head);
    }
}

/// Records a failed attempt: the failure, the count, the backoff.
fn fail(st: &mut TaskStatus, attempt: u32, failure: &Failure, now: Timestamp, backoff: &Backoff) {
    st.failures += 1;
    st.phase = Phase::Failed;
    st.next_eligible_at = Some(now.plus(backoff_delay(backoff, st.failures)));
    finish_attempt(st, attempt, now, AttemptOutcome::Failed(failure.reason));
    st.last_failure = Some(Failure {
        attempt,
        ..failure.clone()
    });
}

fn finish_attempt(st: &mut TaskStatus, attempt: u32, now: Timestamp, outcome: AttemptOutcome) {
    if let Some(record) = record(st, attempt) {
        record.ended_at.get_or_insert(now);
        record.outcome = Some(outcome.into());
    }
}

fn started(st: &mut TaskStatus, start: &Start, now: Timestamp) {
    st.conditions
        .retain(|c| c.kind != ConditionKind::Unconfined);
    if let Some(message) = &start.unconfined {
        st.conditions.push(Condition {
            kind: ConditionKind::Unconfined,
            status: true,
            reason: ConditionKind::Unconfined.reason().to_owned(),
            message: message.clone(),
            since: now,
        });
    }
    if start.edited {
        st.failures = 0;
        if start.spec_changed {
            st.last_failure = None;
        }
    }
    if let Some(failure) = &start.rejection {
        st.failures += 1;
        st.last_failure = Some(failure.clone());
    }
    if let Some(change) = st.change.as_mut() {
        change.waiting = None;
    }
    st.phase = Phase::Running;
    st.attempt = start.attempt;
    st.generation = start.generation.clone();
    st.branch = Some(start.branch.clone());
    st.head = Some(start.fork);
    st.merged_as = None;
    st.next_eligible_at = None;
    st.gate.clear();
    if !st.attempts.iter().any(|a| a.number == start.attempt) {
        st.attempts.push(AttemptRecord {
            number: start.attempt,
            generation: start.generation.clone(),
            started_at: now,
            ended_at: None,
            outcome: None,
            tokens_in: 0,
            tokens_out: 0,
            cost_usd: 0.0,
            harness: Some(start.harness.clone()),
            model: start.model.clone(),
            cooldown_until: None,
        });
    }
}

/// The condition `ActionFailed` names the failed action; the task backs off,
/// or escalates once its failures in a row reach the limit.
fn action_failed(st: &mut TaskStatus, failure: &ActionFailure, now: Timestamp) {
    st.action_failures = failure.count;
    match st
        .conditions
        .iter_mut()
        .find(|c| c.kind == ConditionKind::ActionFailed)
    {
        Some(c) => c.message = failure.message.clone(),
        None => st.conditions.push(Condition {
            kind: ConditionKind::ActionFailed,
            status: true,
            reason: ConditionKind::ActionFailed.reason().to_owned(),
            message: failure.message.clone(),
            since: now,
        }),
    }
    match &failure.then {
        AfterFailure::Retry { until } => st.next_eligible_at = Some(*until),
        AfterFailure::Escalate {
            generation,
            failure,
        } => {
            st.phase = Phase::Escalated;
            st.next_eligible_at = None;
            if let Some(generation) = generation {
                st.generation = generation.clone();
            }
            st.last_failure = Some(failure.clone());
        }
    }
}

#[cfg(test)]
#[path = "transition_tests.rs"]
mod tests;
