//! Status brought in line with a decision: the part of the task state machine
//! that follows from what was read, not from what an action did.
//!
//! After acting (or instead of acting, for `converge status`), the tick calls
//! [`derive`] with the spec, the decision of what comes next, the observation it
//! was made from and the planning diagnostics. Every task of a valid plan gets an
//! entry (with the spec's generation while it has not started); the phases that
//! are derived (pending, blocked, merged, awaiting approval) follow the decision
//! for tasks nobody acts on; tasks and plans that are gone for good are dropped;
//! invalid plans carry their errors; ended attempts give up their claims; forged
//! events are noted on their task. Pure: no IO, no clock (`now` is passed in).

use crate::model::TaskKey;
use crate::observe::{Observation, RunState};
use crate::spec::{Diagnostic, Severity, Spec};
use crate::status::{Condition, Phase, Status, TaskStatus};
use crate::time::Timestamp;

use super::Decision;

/// The condition a task carries while its current attempt's run directory holds
/// events whose token did not verify (forged, or meant for another attempt):
/// they were ignored, and a human should know someone tried.
pub const EVENTS_REJECTED: crate::model::ConditionKind =
    crate::model::ConditionKind::EventsRejected;

/// What status is derived from.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub spec: &'a Spec,
    /// What the next tick would do, decided from `observation`.
    pub decision: &'a Decision,
    pub observation: &'a Observation,
    /// Diagnostics of the planning files: an invalid plan's errors.
    pub diagnostics: &'a [Diagnostic],
    /// The planning commit read (hex), written as a plan's `spec` when its
    /// status changes.
    pub spec_commit: &'a str,
    /// When a new condition starts.
    pub now: Timestamp,
}

/// Brings `status` in line with `input`. `before` is status as the tick read
/// it: a plan's `spec` commit moves only when something else about the plan
/// changed since then.
pub fn derive(status: &mut Status, before: &Status, input: &Inputs<'_>) {
    add_tasks(status, input.spec);
    correct_unbacked(status, before, input.observation, input.now);
    follow_decision(status, input.decision, input.observation);
    note_hands_off(status, input.decision);
    note_updates(status, input.observation);
    drop_gone(status, input);
    release_ended_claims(status);
    stamp_spec(status, before, input.spec_commit);
    note_rejected_events(status, input.observation, input.now);
}

/// Every task of a valid plan has an entry; one that has not started takes the
/// spec's generation (an escalated one keeps the generation it escalated at, so
/// that only an edit restarts it). A valid plan has no errors.
fn add_tasks(status: &mut Status, spec: &Spec) {
    for plan in spec.plans.values() {
        let plan_status = status.plans.entry(plan.id.clone()).or_default();
        plan_status.errors.clear();
        for task in &plan.tasks {
            let st = plan_status.tasks.entry(task.name.clone()).or_default();
            if st.attempt == 0 && st.phase != Phase::Escalated {
                st.generation = task.generation.clone();
            }
        }
    }
}

/// The derived phases follow the decision for tasks without an action this
/// tick; a cancelled task stays cancelled rather than pending.
fn follow_decision(status: &mut Status, decision: &Decision, obs: &Observation) {
    for report in &decision.report {
        let derived = matches!(
            report.phase,
            Phase::Pending | Phase::Blocked | Phase::Merged | Phase::AwaitingApproval
        );
        if !derived || report.action.is_some() {
            continue;
        }
        let Some(st) = status
            .plans
            .get_mut(&report.key.plan)
            .and_then(|p| p.tasks.get_mut(&report.key.task))
        else {
            continue;
        };
        if st.phase != report.phase
            && !(report.phase == Phase::Pending && st.phase == Phase::Cancelled)
        {
            st.phase = report.phase;
        }
        // A merge found in git (after a crash lost the merge's status) is
        // recorded: its merge commit, found on the base branch's history.
        if report.phase == Phase::Merged && st.merged_as.is_none() {
            st.merged_as = obs.task(&report.key).and_then(|o| o.merged_as);
        }
    }
}

/// Someone else pushed to a task's branch on the forge: status says so (and
/// so STATUS.md, which is written only with a change of status), and
/// converge keeps its hands off the change from then on.
fn note_hands_off(status: &mut Status, decision: &Decision) {
    for report in &decision.report {
        let crate::decide::Reason::HandsOff { number, why } = &report.reason else {
            continue;
        };
        let change = status
            .plans
            .get_mut(&report.key.plan)
            .and_then(|p| p.tasks.get_mut(&report.key.task))
            .and_then(|st| st.change.as_mut())
            .filter(|c| c.number == *number && c.hands_off.is_none());
        if let Some(change) = change {
            change.hands_off = Some(why.clone());
            change.waiting = None;
        }
    }
}

/// converge's update of a change with the base branch that the forge
/// recognised but status does not record (converge stopped between pushing
/// and recording it): status records it, as if the update had been recorded.
fn note_updates(status: &mut Status, obs: &Observation) {
    for (key, ob) in &obs.tasks {
        let Some(change) = ob.change.as_ref().filter(|c| c.update_of.is_some()) else {
            continue;
        };
        let record = status
            .plans
            .get_mut(&key.plan)
            .and_then(|p| p.tasks.get_mut(&key.task))
            .and_then(|st| st.change.as_mut())
            .filter(|r| r.number == change.number && r.hands_off.is_none());
        if let Some(record) = record
            && record.updated != Some(change.head)
        {
            record.updated = Some(change.head);
            record.waiting = None;
        }
    }
}

/// The condition a task carries once status claimed it merged and git did not
/// back the claim: until it merges for real, a human should know someone
/// edited status by hand, or the base branch lost a merge.
pub const STATUS_UNBACKED: crate::model::ConditionKind =
    crate::model::ConditionKind::StatusUnbacked;

/// Corrects what status as the tick read it (`before`) claimed about merges
/// and git does not back: a `merged_as` that is not converge's merge commit of
/// the task in the base branch is replaced by the one git shows (or cleared),
/// and a phase `merged` without such a commit becomes `pending`; the task
/// notes [`STATUS_UNBACKED`] with why. What an action of this tick recorded
/// (a merge, a new attempt) is not touched.
fn correct_unbacked(status: &mut Status, before: &Status, obs: &Observation, now: Timestamp) {
    for (plan_id, plan) in &mut status.plans {
        for (task, st) in &mut plan.tasks {
            let key = TaskKey::new(plan_id.as_str(), task.as_str());
            let ob = obs.task(&key);
            let (merged, merged_as) = ob.map_or((false, None), |o| (o.merged, o.merged_as));
            let Some(read) = before.task(plan_id, task) else {
                continue;
            };
            // A merge only the forge can confirm waits for its answer.
            if read.change.is_some() && super::change::forge_unanswered(&obs.forge).is_some() {
                continue;
            }
            let bad_commit = read.merged_as.is_some() && read.merged_as != merged_as;
            let bad_phase = read.phase == Phase::Merged && !merged;
            if bad_commit || bad_phase {
                if bad_commit && st.merged_as == read.merged_as {
                    st.merged_as = merged_as;
                }
                if bad_phase && st.phase == Phase::Merged && st.merged_as.is_none() {
                    st.phase = Phase::Pending;
                }
                let why = ob.and_then(|o| o.unbacked.clone()).unwrap_or_else(|| {
                    format!("status records {key} as merged, and git does not show converge's merge of it")
                });
                note_condition(st, STATUS_UNBACKED, format!("{why}; corrected"), now);
            } else if merged {
                st.conditions.retain(|c| c.kind != STATUS_UNBACKED);
            }
        }
    }
}

/// Invalid plans carry their errors and keep their tasks; tasks gone from a
/// valid plan are dropped once nothing of theirs lingers (worktree, branch,
/// running agent); plans gone from the spec are dropped once they have no task.
fn drop_gone(status: &mut Status, input: &Inputs<'_>) {
    let (spec, obs) = (input.spec, input.observation);
    for (plan_id, plan_status) in &mut status.plans {
        if spec.invalid_plans.contains(plan_id) {
            plan_status.errors = plan_errors(plan_id, input.diagnostics);
            continue;
        }
        let plan = spec.plans.get(plan_id);
        plan_status.tasks.retain(|task, _| {
            let in_spec = plan.is_some_and(|p| p.task(task).is_some());
            let key = TaskKey::new(plan_id.as_str(), task.as_str());
            let lingering = obs.task(&key).is_some_and(|o| {
                o.worktree
                    || o.branch_head.is_some()
                    || matches!(
                        o.run.as_ref().map(|r| &r.state),
                        Some(RunState::Running { .. })
                    )
            });
            in_spec || lingering
        });
    }
    for plan in &spec.invalid_plans {
        let entry = status.plans.entry(plan.clone()).or_default();
        if entry.errors.is_empty() {
            entry.errors.push(format!(
                "planning/plans/{plan}.toml does not validate; `converge plan validate` lists why"
            ));
        }
    }
    status.plans.retain(|id, p| {
        spec.plans.contains_key(id) || spec.invalid_plans.contains(id) || !p.tasks.is_empty()
    });
}

/// The errors of an invalid plan's file, as `file:line:column: message`.
fn plan_errors(plan_id: &str, diagnostics: &[Diagnostic]) -> Vec<String> {
    let file = format!("planning/plans/{plan_id}.toml");
    diagnostics
        .iter()
        .filter(|d| d.file == file && d.severity == Severity::Error)
        .map(|d| match &d.location {
            Some(l) => format!("{}:{}:{}: {}", d.file, l.line, l.column, d.message),
            None => format!("{}: {}", d.file, d.message),
        })
        .collect()
}

/// A claim ends with its attempt: failed, escalated, merged or cancelled
/// attempts are free for any reconciler to take up again.
fn release_ended_claims(status: &mut Status) {
    for st in status.plans.values_mut().flat_map(|p| p.tasks.values_mut()) {
        let ended = matches!(
            st.phase,
            Phase::Pending
                | Phase::Failed
                | Phase::Escalated
                | Phase::Merged
                | Phase::Blocked
                | Phase::Cancelled
        );
        if ended && st.claim.as_ref().is_some_and(|c| c.attempt <= st.attempt) {
            st.claim = None;
        }
    }
}

/// `spec` says which planning commit a plan's status was computed from; it
/// moves only when something else about the plan changed.
fn stamp_spec(status: &mut Status, before: &Status, spec_commit: &str) {
    // The commit read is a commit id: a `spec` that is none reads as absent.
    let spec_commit = spec_commit.parse().ok();
    for (id, plan_status) in &mut status.plans {
        let previous = before.plans.get(id);
        let mut comparable = plan_status.clone();
        comparable.spec = previous.and_then(|p| p.spec);
        if previous != Some(&comparable) {
            plan_status.spec = spec_commit;
        } else {
            plan_status.spec = comparable.spec;
        }
    }
}

/// Notes [`EVENTS_REJECTED`] on every task whose current attempt's run saw
/// events with a bad token, and clears it from the others.
fn note_rejected_events(status: &mut Status, obs: &Observation, now: Timestamp) {
    for (plan_id, plan) in &mut status.plans {
        for (task, st) in &mut plan.tasks {
            let key = TaskKey::new(plan_id.as_str(), task.as_str());
            let rejected = obs
                .task(&key)
                .and_then(|o| o.run.as_ref())
                .filter(|r| r.attempt == st.attempt && r.rejected_events > 0)
                .map(|r| r.rejected_events);
            // Run records outlive their attempt, so the condition stays until
            // the next attempt starts.
            match rejected {
                Some(count) => note_rejected(st, count, now),
                None => st.conditions.retain(|c| c.kind != EVENTS_REJECTED),
            }
        }
    }
}

fn note_rejected(st: &mut TaskStatus, count: u32, now: Timestamp) {
    let message = format!(
        "{count} event(s) of attempt {} carried a token that does not verify for it and were ignored",
        st.attempt
    );
    note_condition(st, EVENTS_REJECTED, message, now);
}

/// Sets the condition `kind` with `message` (its `since` stays while it holds).
fn note_condition(
    st: &mut TaskStatus,
    kind: crate::model::ConditionKind,
    message: String,
    now: Timestamp,
) {
    match st.conditions.iter_mut().find(|c| c.kind == kind) {
        Some(c) if c.message == message => {}
        Some(c) => c.message = message,
        None => st.conditions.push(Condition {
            kind,
            status: true,
            reason: kind.reason().to_owned(),
            message,
            since: now,
        }),
    }
}

#[cfg(test)]
#[path = "derive_tests.rs"]
mod tests;
