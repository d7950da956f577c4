//! `converge reconcile --json`: one tick as one object. The runtime's records
//! (what was applied, what was recorded) arrive as plain values; the decision
//! parts are built here.

use serde::Serialize;

use crate::decide::{Action, ActionKind, Decision, Reason, TaskReport};

/// One tick: what was decided and done, and how the tasks stand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TickView {
    pub base_branch: String,
    pub status_branch: String,
    pub spec_commit: String,
    /// The actions decided, in priority order.
    pub actions: Vec<ActionView>,
    /// What each action did.
    pub applied: Vec<AppliedView>,
    /// Why acting stopped early.
    pub failed: Option<String>,
    pub recorded: RecordedView,
    /// Every task, with its reason.
    pub tasks: Vec<TaskReportView>,
    /// Queue items not yet promoted.
    pub queue: Vec<QueueView>,
    pub wake_at: Option<String>,
    pub invalid_plans: Vec<String>,
    pub remote: Vec<String>,
    pub push_rejected: Option<String>,
    pub recovered: Vec<String>,
    /// What the autonomy loop did before the tick (docs/autonomy.md).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub autonomy: Vec<String>,
    /// Why the autonomy loop started no planner attempt: its reason code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autonomy_waits: Option<String>,
    /// The tasks `--fail-on` matched; absent when it was not asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail_on: Option<Vec<FailOnView>>,
}

impl TickView {
    /// The parts of a tick's view that come from its decision: `actions`,
    /// `tasks`, `queue` and `wake_at` are filled; the rest is empty.
    pub fn of_decision(decision: &Decision) -> TickView {
        TickView {
            base_branch: String::new(),
            status_branch: String::new(),
            spec_commit: String::new(),
            actions: decision.actions.iter().map(ActionView::new).collect(),
            applied: Vec::new(),
            failed: None,
            recorded: RecordedView::Unchanged,
            autonomy: Vec::new(),
            autonomy_waits: None,
            tasks: decision.report.iter().map(TaskReportView::new).collect(),
            queue: decision
                .queue
                .iter()
                .map(|(item, action, reason)| QueueView::new(item, *action, reason))
                .collect(),
            wake_at: decision.wake_at.map(|w| w.to_string()),
            invalid_plans: Vec::new(),
            remote: Vec::new(),
            push_rejected: None,
            recovered: Vec::new(),
            fail_on: None,
        }
    }
}

/// A decided action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionView {
    pub kind: String,
    /// `PLAN/TASK`, for actions on a task.
    pub task: Option<String>,
    /// The action in words (see [`describe`]).
    pub text: String,
}

impl ActionView {
    pub fn new(action: &Action) -> ActionView {
        ActionView {
            kind: action.kind().as_str().to_owned(),
            task: action.key().map(ToString::to_string),
            text: action.to_string(),
        }
    }
}

/// What one action did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedView {
    pub text: String,
    pub deferred: Option<String>,
    pub failed: Option<String>,
}

/// What the tick recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RecordedView {
    Committed { commit: String },
    Unchanged,
    DryRun { diff: String },
    Deferred { reason: String },
}

/// One task of a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskReportView {
    pub task: String,
    pub phase: String,
    pub action: Option<String>,
    pub reason: String,
    pub message: String,
}

impl TaskReportView {
    pub fn new(r: &TaskReport) -> TaskReportView {
        TaskReportView {
            task: r.key.to_string(),
            phase: r.phase.as_str().to_owned(),
            action: r.action.map(|a| a.as_str().to_owned()),
            reason: r.reason.code().to_owned(),
            message: r.reason.to_string(),
        }
    }
}

/// A queue item waiting for promotion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueView {
    pub item: String,
    pub action: Option<String>,
    pub reason: String,
    pub message: String,
}

impl QueueView {
    pub fn new(item: &str, action: Option<ActionKind>, reason: &Reason) -> QueueView {
        QueueView {
            item: item.to_owned(),
            action: action.map(|a| a.as_str().to_owned()),
            reason: reason.code().to_owned(),
            message: reason.to_string(),
        }
    }
}

/// A task in a state `reconcile --fail-on` asked about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailOnView {
    pub task: String,
    /// `escalated` or `awaiting-approval`.
    pub state: String,
    pub phase: String,
    /// The reason code of the task in the decision after the tick.
    pub reason: String,
}
