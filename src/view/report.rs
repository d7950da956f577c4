//! `converge report`: tokens, cost and duration per attempt and harness, with
//! totals and the budgets they count against, from the attempt records in
//! status.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::Recorded;
use crate::spec::Spec;
use crate::status::Status;
use crate::time::Timestamp;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportView {
    /// Every attempt, by plan, task and attempt number.
    pub attempts: Vec<AttemptView>,
    /// Totals per harness, by harness name.
    pub harnesses: Vec<HarnessView>,
    pub total: TotalView,
    /// Each budget and how much of it is used, in words.
    pub budgets: Vec<String>,
}

/// One attempt, as reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptView {
    pub task: String,
    pub attempt: u32,
    /// `-` when the record names none.
    pub harness: String,
    pub started_at: String,
    /// How long it took; absent while it runs.
    pub seconds: Option<i64>,
    /// `running` while it runs; `unknown` when it ended and its record names
    /// no outcome converge knows (a hand edit, a later version's code).
    pub outcome: String,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_usd: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HarnessView {
    pub harness: String,
    pub attempts: usize,
    pub tokens: u64,
    pub cost_usd: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TotalView {
    pub attempts: usize,
    pub tokens: u64,
    pub cost_usd: f64,
}

impl ReportView {
    /// The report of every plan, or of `only`; budgets are counted at `now`.
    pub fn new(spec: &Spec, status: &Status, only: Option<&str>, now: Timestamp) -> ReportView {
        let mut attempts = Vec::new();
        for (plan, plan_status) in &status.plans {
            if only.is_some_and(|p| p != plan) {
                continue;
            }
            for (task, st) in &plan_status.tasks {
                for a in &st.attempts {
                    attempts.push(AttemptView {
                        task: format!("{plan}/{task}"),
                        attempt: a.number,
                        harness: a.harness.clone().unwrap_or_else(|| "-".into()),
                        started_at: a.started_at.to_string(),
                        seconds: a.ended_at.map(|end| end.unix() - a.started_at.unix()),
                        outcome: match (&a.outcome, a.ended_at) {
                            (Some(Recorded::Known(o)), _) => o.as_str().to_owned(),
                            // A later version's code: shown as it was recorded.
                            (Some(Recorded::Unknown(text)), _) => text.clone(),
                            (None, None) => "running".into(),
                            (None, Some(_)) => "unknown".into(),
                        },
                        tokens_in: a.tokens_in,
                        tokens_out: a.tokens_out,
                        cost_usd: a.cost_usd,
                    });
                }
            }
        }
        let tokens: u64 = attempts.iter().map(|r| r.tokens_in + r.tokens_out).sum();
        let cost: f64 = attempts.iter().map(|r| r.cost_usd).sum();
        let mut by_harness: BTreeMap<&str, (usize, u64, f64)> = BTreeMap::new();
        for r in &attempts {
            let e = by_harness.entry(r.harness.as_str()).or_default();
            e.0 += 1;
            e.1 += r.tokens_in + r.tokens_out;
            e.2 += r.cost_usd;
        }
        let harnesses = by_harness
            .into_iter()
            .map(|(h, (n, t, c))| HarnessView {
                harness: h.to_owned(),
                attempts: n,
                tokens: t,
                cost_usd: c,
            })
            .collect();
        ReportView {
            total: TotalView {
                attempts: attempts.len(),
                tokens,
                cost_usd: cost,
            },
            attempts,
            harnesses,
            budgets: budget_lines(spec, status, only, now),
        }
    }
}

/// The budgets and how much of each is used.
fn budget_lines(spec: &Spec, status: &Status, only: Option<&str>, now: Timestamp) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AttemptOutcome;
    use crate::spec::load::PlanningFiles;
    use crate::status::{AttemptRecord, PlanStatus, TaskStatus};

    #[test]
    fn an_attempt_is_running_until_it_ends_and_shows_the_outcome_it_recorded() {
        let spec = crate::spec::compile(&PlanningFiles::from_texts(vec![(
            "planning/goal.md",
            "Goal.",
        )]))
        .spec
        .expect("valid");
        let at = Timestamp::from_unix(1_800_000_000);
        let attempt = |number, ended: bool, outcome| AttemptRecord {
            number,
            generation: "g".into(),
            started_at: at,
            ended_at: ended.then_some(at),
            outcome,
            tokens_in: 0,
            tokens_out: 0,
            cost_usd: 0.0,
            harness: None,
            model: None,
            cooldown_until: None,
        };
        let mut plan = PlanStatus::default();
        plan.tasks.insert(
            "t".into(),
            TaskStatus {
                attempts: vec![
                    attempt(1, true, Some(AttemptOutcome::Passed.into())),
                    // A later version's code, kept as it was recorded.
                    attempt(2, true, Some(Recorded::Unknown("sandbox-oom".into()))),
                    // An ended attempt that names no outcome.
                    attempt(4, true, None),
                    attempt(3, false, None),
                ],
                ..TaskStatus::default()
            },
        );
        let mut status = Status::default();
        status.plans.insert("p".into(), plan);
        let view = ReportView::new(&spec, &status, None, at);
        let outcomes: Vec<&str> = view.attempts.iter().map(|a| a.outcome.as_str()).collect();
        assert_eq!(outcomes, ["passed", "sandbox-oom", "unknown", "running"]);
    }
}
