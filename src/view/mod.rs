//! Views: what converge shows, as serializable values. The CLI prints them as
//! JSON (`status --json`, `reconcile --json`, `report --json`, `doctor
//! --json`), STATUS.md is rendered here (status_md.rs), and a web API or
//! metrics would serve the same values.
//!
//! Pure: views are built from the spec, the status, decisions and plain values
//! the runtime hands over; no IO, no clock (the caller passes `now`). View sits
//! above decide (it explains decisions) and below runtime and cli.
//!
//! JSON goes through `serde_json::Value`, whose objects keep their keys sorted,
//! so the order of fields in these structs does not change the output.

pub mod autonomy;
pub mod doctor;
pub mod report;
pub mod status_md;
pub mod tick;

use serde::Serialize;

use crate::model::{CommitId, FailureCode};

use crate::decide::{Decision, TaskReport};
use crate::spec::Spec;
use crate::status::{Failure, Status, TaskStatus};

pub use doctor::{FindingLevel, FindingView};
pub use report::{AttemptView, HarnessView, ReportView, TotalView};
pub use tick::{
    ActionView, AppliedView, FailOnView, QueueView, RecordedView, TaskReportView, TickView,
};

/// `converge status --json`: every task, its phase, and what happens next.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusView {
    pub base_branch: String,
    /// The planning commit read.
    pub spec_commit: String,
    pub tasks: Vec<TaskView>,
    pub invalid_plans: Vec<String>,
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
                .map(|r| TaskView::new(r, status.task(&r.key.plan, &r.key.task)))
                .collect(),
            invalid_plans: spec.invalid_plans.clone(),
        }
    }
}

/// One task of the dashboard: its record and the decision about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskView {
    /// `PLAN/TASK`.
    pub task: String,
    pub phase: String,
    pub attempt: u32,
    pub failures: u32,
    pub head: Option<CommitId>,
    pub merged_as: Option<CommitId>,
    pub next_action: Option<String>,
    /// The stable reason code.
    pub reason: String,
    /// The reason in words.
    pub message: String,
    pub last_failure: Option<FailureView>,
}

impl TaskView {
    pub fn new(report: &TaskReport, st: Option<&TaskStatus>) -> TaskView {
        TaskView {
            task: report.key.to_string(),
            phase: report.phase.as_str().to_owned(),
            attempt: st.map_or(0, |s| s.attempt),
            failures: st.map_or(0, |s| s.failures),
            head: st.and_then(|s| s.head),
            merged_as: st.and_then(|s| s.merged_as),
            next_action: report.action.map(|a| a.as_str().to_owned()),
            reason: report.reason.code().to_owned(),
            message: report.reason.to_string(),
            last_failure: st
                .and_then(|s| s.last_failure.as_ref())
                .map(FailureView::new),
        }
    }
}

/// A task's last failure, without its output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailureView {
    pub attempt: u32,
    /// The failure's reason code.
    pub reason: FailureCode,
    pub message: String,
}

impl FailureView {
    pub fn new(f: &Failure) -> FailureView {
        FailureView {
            attempt: f.attempt,
            reason: f.reason,
            message: f.message.clone(),
        }
    }
}

/// A view as JSON (object keys sorted).
pub fn to_json(view: &impl Serialize) -> Result<serde_json::Value, serde_json::Error> {
    serde_json::to_value(view)
}

/// `text` with its first letter in upper case.
pub fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map_or_else(String::new, |c| c.to_uppercase().chain(chars).collect())
}

/// The first seven characters of a commit id.
pub fn short(id: &str) -> &str {
    id.get(..7).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keys_are_sorted_and_fail_on_appears_only_when_asked() {
        let mut view = TickView::of_decision(&Decision {
            actions: Vec::new(),
            report: Vec::new(),
            queue: Vec::new(),
            wake_at: None,
            settle_at: None,
        });
        view.recorded = RecordedView::DryRun { diff: "d".into() };
        let text = to_json(&view).expect("ok").to_string();
        assert!(
            text.starts_with("{\"actions\":[],\"applied\":[],\"base_branch\":\"\""),
            "{text}"
        );
        assert!(
            text.contains("\"recorded\":{\"diff\":\"d\",\"kind\":\"dry_run\"}"),
            "{text}"
        );
        assert!(!text.contains("fail_on"));
        view.fail_on = Some(Vec::new());
        assert!(
            to_json(&view)
                .expect("ok")
                .to_string()
                .contains("\"fail_on\":[]")
        );
    }

    #[test]
    fn doctor_findings_render_with_hint_fix_and_counts() {
        let findings = [FindingView {
            check: "secret".into(),
            level: FindingLevel::Problem,
            message: "readable by others".into(),
            hint: Some("chmod 600".into()),
            fixable: true,
        }];
        let text = doctor::render(&findings);
        assert!(
            text.starts_with("problem  secret     readable by others\n"),
            "{text}"
        );
        assert!(text.ends_with("\n1 problem(s), 0 warning(s)\n"), "{text}");
        assert_eq!(
            to_json(&findings[0]).expect("ok")["level"],
            serde_json::json!("problem")
        );
    }
}
