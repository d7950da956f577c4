//! Views: what converge shows, as serializable values. The CLI prints them as
//! JSON (`status --json`, `reconcile --json`, `report --json`, `doctor
//! --json`, `autonomy status --json`), STATUS.md (status_md.rs) is a rendering
//! of the status view and the autonomy loop's, and `converge watch`'s web API
//! serves the status view as `status --json` prints it.
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
pub mod status;
pub mod status_md;
pub mod tick;

use serde::Serialize;

pub use crate::model::short;
pub use doctor::{FindingLevel, FindingView};
pub use report::{AttemptView, HarnessView, ReportView, TotalView};
pub use status::{ConditionView, FailureView, Section, StatusView, TaskView};
pub use tick::{
    ActionView, AppliedView, FailOnView, QueueView, RecordedView, TaskReportView, TickView,
};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::Decision;

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
