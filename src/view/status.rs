//! `converge status --json` (and `GET /api/v1/state`): every task, its phase,
//! what happens next and the STATUS.md section it is shown in. STATUS.md
//! (status_md.rs) is a rendering of this value.

use std::collections::BTreeMap;

use serde::Serialize;

use super::QueueView;
use crate::decide::{ActionKind, Decision, Reason, TaskReport};
use crate::model::{CommitId, FailureCode};
use crate::spec::Spec;
use crate::status::{Failure, Phase, Status, TaskStatus};
use crate::time::Timestamp;

/// `converge status --json`: every task, its phase, and what happens next.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusView {
    pub base_branch: String,
    /// The planning commit read.
    pub spec_commit: String,
    pub tasks: Vec<TaskView>,
    pub invalid_plans: Vec<String>,
    /// The validation errors recorded for each invalid plan.
    pub plan_errors: BTreeMap<String, Vec<String>>,
    /// The conditions that are true, on any task (STATUS.md's Attention).
    pub conditions: Vec<ConditionView>,
    /// Queue items not yet promoted.
    pub queue: Vec<QueueView>,
    /// When the next change is expected without any event.
    pub wake_at: Option<Timestamp>,
}

impl StatusView {
    /// The dashboard of `decision`, with each task's recorded status.
    pub fn new(
        base_branch: &str,
        spec_commit: &str,
        spec: &Spec,
        status: &Status,
        decision: &Decision,
    ) -> StatusView {
        StatusView {
            base_branch: base_branch.to_owned(),
            spec_commit: spec_commit.to_owned(),
            tasks: decision
                .report
                .iter()
                .map(|r| TaskView::new(spec, r, status.task(&r.key.plan, &r.key.task)))
                .collect(),
            invalid_plans: spec.invalid_plans.clone(),
            plan_errors: spec
                .invalid_plans
                .iter()
                .filter_map(|plan| Some((plan.clone(), status.plans.get(plan)?.errors.clone())))
                .collect(),
            conditions: conditions(status),
            queue: decision
                .queue
                .iter()
                .map(|(item, action, reason)| QueueView::new(item, *action, reason))
                .collect(),
            wake_at: decision.wake_at,
        }
    }
}

/// Where STATUS.md shows a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Section {
    AwaitingApproval,
    Escalated,
    FailedRetrying,
    Running,
    Blocked,
    Ready,
    Queued,
    Merged,
}

impl Section {
    /// The section of a task of a decision.
    pub fn of(report: &TaskReport) -> Section {
        match report.phase {
            Phase::AwaitingApproval => Section::AwaitingApproval,
            Phase::Escalated => Section::Escalated,
            Phase::Failed if report.action == Some(ActionKind::Escalate) => Section::Escalated,
            Phase::Failed => Section::FailedRetrying,
            Phase::Running | Phase::Checking => Section::Running,
            Phase::Blocked => Section::Blocked,
            Phase::Merged => Section::Merged,
            Phase::Passed => match report.reason {
                Reason::PlanPaused | Reason::PlanDraft => Section::Queued,
                _ => Section::Ready,
            },
            Phase::Pending | Phase::Cancelled => match report.reason {
                Reason::Ready
                | Reason::MaxAgents { .. }
                | Reason::DispatchRateLimited { .. }
                | Reason::ActionsPerTick => Section::Ready,
                _ => Section::Queued,
            },
        }
    }
}

/// One task of the dashboard: its record and the decision about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskView {
    /// `PLAN/TASK`.
    pub task: String,
    pub phase: String,
    /// The STATUS.md section the task is shown in.
    pub section: Section,
    pub attempt: u32,
    pub failures: u32,
    /// The task's `retry_max` (0 when the spec no longer has it).
    pub retry_max: u32,
    pub head: Option<CommitId>,
    pub merged_as: Option<CommitId>,
    /// When its latest attempt ended.
    pub ended_at: Option<Timestamp>,
    /// The task's work branch, and the branch it merges into.
    pub branch: String,
    pub plan_base_branch: Option<String>,
    pub next_action: Option<String>,
    /// The stable reason code.
    pub reason: String,
    /// The reason in words.
    pub message: String,
    pub last_failure: Option<FailureView>,
}

impl TaskView {
    pub fn new(spec: &Spec, report: &TaskReport, st: Option<&TaskStatus>) -> TaskView {
        let key = &report.key;
        let plan = spec.plans.get(&key.plan);
        TaskView {
            task: key.to_string(),
            phase: report.phase.as_str().to_owned(),
            section: Section::of(report),
            attempt: st.map_or(0, |s| s.attempt),
            failures: st.map_or(0, |s| s.failures),
            retry_max: plan
                .and_then(|p| p.task(&key.task))
                .map_or(0, |t| t.retry_max),
            head: st.and_then(|s| s.head),
            merged_as: st.and_then(|s| s.merged_as),
            ended_at: st.and_then(|s| s.attempts.iter().filter_map(|a| a.ended_at).max()),
            branch: key.branch(),
            plan_base_branch: plan.map(|p| p.base_branch.clone()),
            next_action: report.action.map(|a| a.as_str().to_owned()),
            reason: report.reason.code().to_owned(),
            message: report.reason.to_string(),
            last_failure: st
                .and_then(|s| s.last_failure.as_ref())
                .map(FailureView::new),
        }
    }

    /// The plan and the task's name.
    pub fn plan_and_name(&self) -> (&str, &str) {
        self.task.split_once('/').unwrap_or(("", &self.task))
    }
}

/// A task's last failure, with the end of its output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailureView {
    pub attempt: u32,
    /// The failure's reason code.
    pub reason: FailureCode,
    pub message: String,
    /// The last lines of the failed command's output, as recorded.
    pub output_tail: Option<String>,
}

impl FailureView {
    pub fn new(f: &Failure) -> FailureView {
        FailureView {
            attempt: f.attempt,
            reason: f.reason,
            message: f.message.clone(),
            output_tail: f.output_tail.clone(),
        }
    }
}

/// A condition that is true on a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConditionView {
    /// `PLAN/TASK`.
    pub task: String,
    /// The condition's reason code.
    pub reason: String,
    pub message: String,
}

/// The true conditions of every task in `status`, by plan and task.
fn conditions(status: &Status) -> Vec<ConditionView> {
    status
        .plans
        .iter()
        .flat_map(|(plan, p)| {
            p.tasks.iter().flat_map(move |(task, t)| {
                t.conditions
                    .iter()
                    .filter(|c| c.status)
                    .map(move |c| ConditionView {
                        task: format!("{plan}/{task}"),
                        reason: c.reason.clone(),
                        message: c.message.clone(),
                    })
            })
        })
        .collect()
}
