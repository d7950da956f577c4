//! `converge report [PLAN] [--json]`: tokens, cost and duration per task,
//! attempt and harness (`view::ReportView`), as a table or as JSON.

use super::source::open_repo;
use super::{CliError, CliResult, Ctx, print, print_json};
use crate::time::Timestamp;
use crate::view::ReportView;

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Only this plan.
    pub plan: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, args: &ReportArgs) -> CliResult {
    let repo = open_repo(ctx)?;
    let report = super::human::snapshot(&repo)?;
    if let Some(plan) = &args.plan
        && !report.status.plans.contains_key(plan)
        && !report.spec.plans.contains_key(plan)
    {
        return Err(CliError::no_plan(plan, &report.spec));
    }
    let view = ReportView::new(
        &report.spec,
        &report.status,
        args.plan.as_deref(),
        Timestamp::now(),
    );
    if args.json {
        return print_json(&view, true);
    }
    print(&text(&view))
}

/// The report for people: a table of attempts, then the totals and budgets.
fn text(view: &ReportView) -> String {
    if view.attempts.is_empty() {
        return "no attempts yet\n".to_owned();
    }
    let table: Vec<Vec<String>> = view
        .attempts
        .iter()
        .map(|r| {
            vec![
                r.task.clone(),
                r.attempt.to_string(),
                r.harness.clone(),
                r.started_at.clone(),
                r.seconds.map_or_else(|| "-".into(), |s| format!("{s}s")),
                r.outcome.clone(),
                r.tokens_in.to_string(),
                r.tokens_out.to_string(),
                format!("{:.4}", r.cost_usd),
            ]
        })
        .collect();
    let mut out = super::table::render(
        &[
            "TASK",
            "ATTEMPT",
            "HARNESS",
            "STARTED",
            "TOOK",
            "OUTCOME",
            "TOKENS IN",
            "TOKENS OUT",
            "USD",
        ],
        &table,
    );
    out.push('\n');
    for h in &view.harnesses {
        out.push_str(&format!(
            "{}: {} attempt(s), {} tokens, ${:.4}\n",
            h.harness, h.attempts, h.tokens, h.cost_usd
        ));
    }
    out.push_str(&format!(
        "total: {} attempt(s), {} tokens, ${:.4}\n",
        view.total.attempts, view.total.tokens, view.total.cost_usd
    ));
    for line in &view.budgets {
        out.push_str(line);
        out.push('\n');
    }
    out
}
