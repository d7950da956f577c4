//! Status against git and the run records: merges the base branch does not
//! contain, runs no agent is alive for, plans that do not validate.

use std::collections::BTreeSet;

use crate::git::Repo;
use crate::model::TaskKey;
use crate::status::Phase;

use super::{DoctorError, Finding, Level, Snapshot};

pub(super) fn check(_repo: &Repo, report: &Snapshot) -> Result<Vec<Finding>, DoctorError> {
    let mut out = tasks(report);
    for plan in &report.spec.invalid_plans {
        out.push(
            Finding::new(
                "status",
                Level::Warning,
                format!("plan `{plan}` does not validate and is not acted on"),
            )
            .hint(format!(
                "`converge plan validate planning/plans/{plan}.toml` lists why"
            )),
        );
    }
    if out.is_empty() {
        out.push(Finding::ok(
            "status",
            "status agrees with git and the run records",
        ));
    }
    Ok(out)
}

/// Tasks whose status disagrees with git or the run records.
fn tasks(report: &Snapshot) -> Vec<Finding> {
    // An orphan's run is the orphans check's to report.
    let orphans: BTreeSet<&TaskKey> = super::orphans::orphan_tasks(report)
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    let mut out = Vec::new();
    for (plan, plan_status) in &report.status.plans {
        for (task, st) in &plan_status.tasks {
            let key = TaskKey::new(plan, task);
            let obs = report.observation.task(&key);
            let merged = obs.is_some_and(|o| o.merged);
            if st.phase == Phase::Merged && !merged {
                out.push(
                    Finding::new(
                        "status",
                        Level::Problem,
                        format!("status says {key} is merged, but the base branch does not contain its work"),
                    )
                    .hint(format!("if the merge was reverted on purpose, `converge retry {key}` does it again")),
                );
            }
            let running = obs.and_then(|o| o.run.as_ref()).is_some_and(|r| {
                r.attempt == st.attempt
                    && matches!(r.state, crate::observe::RunState::Running { .. })
            });
            if st.phase == Phase::Running && !running && !orphans.contains(&key) {
                out.push(
                    Finding::new(
                        "status",
                        Level::Warning,
                        format!(
                            "status says attempt {} of {key} runs, but no agent is alive for it",
                            st.attempt
                        ),
                    )
                    .hint("the next tick gates or reaps it"),
                );
            }
        }
    }
    out
}
