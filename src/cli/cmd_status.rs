//! `converge status [PLAN]`: the dashboard, computed now (the same as
//! STATUS.md after the next tick).

use super::human::{short, snapshot};
use super::source::open_repo;
use super::{CliError, CliResult, Ctx, StatusArgs, print};
use crate::status::render::status_md;

pub fn run(ctx: &Ctx, args: &StatusArgs) -> CliResult {
    let repo = open_repo(ctx)?;
    let report = snapshot(&repo)?;
    // Decided as STATUS.md is: under the real limits, not one tick's budget.
    let limits = crate::decide::Limits::from(&report.spec.config.reconcile).for_dashboard();
    let mut decision = crate::decide::decide(
        &report.spec,
        &report.observation,
        &report.status,
        crate::time::Timestamp::now(),
        &limits,
    );
    if let Some(plan) = &args.plan {
        if !report.spec.plans.contains_key(plan) && !report.spec.invalid_plans.contains(plan) {
            let hint = crate::spec::suggest::did_you_mean(
                plan,
                report.spec.plans.keys().map(String::as_str),
            )
            .unwrap_or_else(|| "`converge plan show` lists the plans".to_owned());
            return Err(CliError::bad_input(format!("there is no plan `{plan}`")).hint(hint));
        }
        decision.report.retain(|r| &r.key.plan == plan);
        decision.queue.clear();
    }
    if args.json {
        let tasks: Vec<serde_json::Value> = decision
            .report
            .iter()
            .map(|r| {
                let st = report.status.task(&r.key.plan, &r.key.task);
                serde_json::json!({
                    "task": r.key.to_string(),
                    "phase": r.phase.as_str(),
                    "attempt": st.map_or(0, |s| s.attempt),
                    "failures": st.map_or(0, |s| s.failures),
                    "head": st.and_then(|s| s.head.clone()),
                    "merged_as": st.and_then(|s| s.merged_as.clone()),
                    "next_action": r.action.map(|a| a.as_str()),
                    "reason": r.reason.code(),
                    "message": r.reason.to_string(),
                    "last_failure": st.and_then(|s| s.last_failure.as_ref()).map(|f| serde_json::json!({
                        "attempt": f.attempt, "reason": f.reason, "message": f.message,
                    })),
                })
            })
            .collect();
        let value = serde_json::json!({
            "base_branch": report.base_branch,
            "spec_commit": report.spec_commit.to_string(),
            "tasks": tasks,
            "invalid_plans": report.spec.invalid_plans,
        });
        return print(&format!("{value:#}\n"));
    }
    let mut text = format!(
        "{} at {} (planning/ as converge reads it)\n\n",
        report.base_branch,
        short(&report.spec_commit.to_string())
    );
    text.push_str(&status_md(&report.spec, &report.status, &decision));
    print(&text)
}
