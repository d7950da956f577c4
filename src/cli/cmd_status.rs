//! `converge status [PLAN]`: the dashboard, computed now (the same as
//! STATUS.md after the next tick).

use super::human::{short, snapshot};
use super::source::open_repo;
use super::{CliError, CliResult, Ctx, print, print_json};
use crate::view::StatusView;
use crate::view::status_md::status_md;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Only this plan.
    pub plan: Option<String>,
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, args: &StatusArgs) -> CliResult {
    let repo = open_repo(ctx)?;
    let report = snapshot(&repo)?;
    // Decided as STATUS.md is (and as `converge watch` serves it).
    let mut decision = report.dashboard_decision(crate::time::Timestamp::now());
    if let Some(plan) = &args.plan {
        if !report.spec.plans.contains_key(plan) && !report.spec.invalid_plans.contains(plan) {
            return Err(CliError::no_plan(plan, &report.spec));
        }
        decision.report.retain(|r| &r.key.plan == plan);
        decision.queue.clear();
    }
    let view = StatusView::new(
        &report.base_branch,
        &report.spec_commit.to_string(),
        &report.spec,
        &report.status,
        &decision,
    );
    if args.json {
        return print_json(&view, true);
    }
    let mut text = format!(
        "{} at {} (planning/ as converge reads it)\n\n",
        report.base_branch,
        short(&report.spec_commit.to_string())
    );
    let (_, tip) =
        crate::runtime::autonomy::record::status_branch(&repo, &report.spec, &report.base_branch)?;
    let autonomy = match &args.plan {
        Some(_) => None,
        None => crate::runtime::autonomy::record::view_at(
            &repo,
            &report.spec,
            tip.unwrap_or(report.spec_commit),
            Some(&report.status),
            crate::time::Timestamp::now(),
        )?,
    };
    text.push_str(&status_md(&view, autonomy.as_ref()));
    print(&text)
}
