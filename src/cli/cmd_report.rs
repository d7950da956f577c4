//! `converge report [PLAN] [--json]`: tokens, cost and duration per task,
//! attempt and harness, from the attempt records in status, with totals and
//! the budgets they count against.

use super::source::open_repo;
use super::{CliError, CliResult, Ctx, ReportArgs, print};
use crate::time::Timestamp;

/// One attempt, as reported.
struct Row {
    task: String,
    attempt: u32,
    harness: String,
    started: Timestamp,
    seconds: Option<i64>,
    outcome: String,
    tokens_in: u64,
    tokens_out: u64,
    cost: f64,
}

pub fn run(ctx: &Ctx, args: &ReportArgs) -> CliResult {
    let repo = open_repo(ctx)?;
    let report = super::human::snapshot(&repo)?;
    if let Some(plan) = &args.plan
        && !report.status.plans.contains_key(plan)
        && !report.spec.plans.contains_key(plan)
    {
        let hint =
            crate::spec::suggest::did_you_mean(plan, report.spec.plans.keys().map(String::as_str))
                .unwrap_or_else(|| "`converge plan show` lists the plans".to_owned());
        return Err(CliError::bad_input(format!("there is no plan `{plan}`")).hint(hint));
    }
    let mut rows = Vec::new();
    for (plan, plan_status) in &report.status.plans {
        if args.plan.as_ref().is_some_and(|p| p != plan) {
            continue;
        }
        for (task, st) in &plan_status.tasks {
            for a in &st.attempts {
                rows.push(Row {
                    task: format!("{plan}/{task}"),
                    attempt: a.number,
                    harness: a.harness.clone().unwrap_or_else(|| "-".into()),
                    started: a.started_at,
                    seconds: a.ended_at.map(|end| end.unix() - a.started_at.unix()),
                    outcome: a.outcome.clone().unwrap_or_else(|| "running".into()),
                    tokens_in: a.tokens_in,
                    tokens_out: a.tokens_out,
                    cost: a.cost_usd,
                });
            }
        }
    }
    let tokens: u64 = rows.iter().map(|r| r.tokens_in + r.tokens_out).sum();
    let cost: f64 = rows.iter().map(|r| r.cost).sum();
    let mut by_harness: std::collections::BTreeMap<&str, (usize, u64, f64)> =
        std::collections::BTreeMap::new();
    for r in &rows {
        let e = by_harness.entry(r.harness.as_str()).or_default();
        e.0 += 1;
        e.1 += r.tokens_in + r.tokens_out;
        e.2 += r.cost;
    }
    let budgets = budget_lines(&report.spec, &report.status, args.plan.as_deref());
    if args.json {
        let attempts: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "task": r.task, "attempt": r.attempt, "harness": r.harness,
                    "started_at": r.started.to_string(), "seconds": r.seconds,
                    "outcome": r.outcome, "tokens_in": r.tokens_in,
                    "tokens_out": r.tokens_out, "cost_usd": r.cost,
                })
            })
            .collect();
        let harnesses: Vec<serde_json::Value> = by_harness
            .iter()
            .map(|(h, (n, t, c))| serde_json::json!({"harness": h, "attempts": n, "tokens": t, "cost_usd": c}))
            .collect();
        let value = serde_json::json!({
            "attempts": attempts,
            "harnesses": harnesses,
            "total": {"attempts": rows.len(), "tokens": tokens, "cost_usd": cost},
            "budgets": budgets,
        });
        return print(&format!("{value:#}\n"));
    }
    if rows.is_empty() {
        return print("no attempts yet\n");
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.task.clone(),
                r.attempt.to_string(),
                r.harness.clone(),
                r.started.to_string(),
                r.seconds.map_or_else(|| "-".into(), |s| format!("{s}s")),
                r.outcome.clone(),
                r.tokens_in.to_string(),
                r.tokens_out.to_string(),
                format!("{:.4}", r.cost),
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
    for (harness, (n, t, c)) in &by_harness {
        out.push_str(&format!("{harness}: {n} attempt(s), {t} tokens, ${c:.4}\n"));
    }
    out.push_str(&format!(
        "total: {} attempt(s), {tokens} tokens, ${cost:.4}\n",
        rows.len()
    ));
    for line in &budgets {
        out.push_str(line);
        out.push('\n');
    }
    print(&out)
}

/// The budgets and how much of each is used.
fn budget_lines(
    spec: &crate::spec::Spec,
    status: &crate::status::Status,
    only: Option<&str>,
) -> Vec<String> {
    let now = Timestamp::now();
    let mut lines = Vec::new();
    for plan in spec.plans.values() {
        if only.is_some_and(|p| p != plan.id) {
            continue;
        }
        if let Some(limit) = plan.token_budget {
            let used = crate::decide::spending(status, Some(&plan.id), now).plan_tokens;
            lines.push(format!(
                "budget: plan `{}` token_budget: {used} of {limit} tokens",
                plan.id
            ));
        }
    }
    let budget = &spec.config.budget;
    let today = crate::decide::spending(status, None, now);
    if let Some(limit) = budget.tokens_per_day {
        lines.push(format!(
            "budget: today (UTC) {} of {limit} tokens",
            today.today_tokens
        ));
    }
    if let Some(limit) = budget.usd_per_day {
        lines.push(format!(
            "budget: today (UTC) ${:.2} of ${limit:.2}",
            today.today_usd
        ));
    }
    lines
}
