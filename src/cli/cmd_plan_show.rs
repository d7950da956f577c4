//! `converge plan show [PLAN]`: the tasks converge will act on.

use super::source::{self, Default};
use super::table::{self, list};
use super::{CliResult, Ctx, print};
use crate::spec::{Plan, Spec, duration};

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The plan id (file stem under planning/plans/); all plans when omitted.
    pub plan: Option<String>,
    #[command(flatten)]
    pub source: source::SourceArgs,
}

pub fn run(ctx: &Ctx, args: &ShowArgs) -> CliResult {
    let loaded = source::load(ctx, &args.source, Default::Base)?;
    let (spec, loaded) = source::require_spec(loaded)?;
    let plans = source::select_plans(&spec, &loaded, args.plan.as_deref())?;
    let mut out = format!("# {}\n", loaded.origin);
    if plans.is_empty() && spec.invalid_plans.is_empty() {
        out.push_str(
            "\nno plans yet: add one as planning/plans/<id>.toml (see docs/plan-format.md)\n",
        );
    }
    if plans.is_empty() && !spec.invalid_plans.is_empty() {
        out.push_str("\nno valid plans: fix the errors above (`converge plan validate`)\n");
    }
    for plan in plans {
        out.push('\n');
        out.push_str(&render(&spec, plan));
    }
    print(&out)
}

fn render(spec: &Spec, plan: &Plan) -> String {
    let mut out = format!("plan {} — {}\n", plan.id, plan.name);
    let mut facts = vec![
        format!("state {}", plan.state.as_str()),
        format!("base {}", plan.base_branch),
    ];
    if let Some(budget) = plan.token_budget {
        facts.push(format!("token budget {budget}"));
    }
    if plan.isolation == crate::spec::Isolation::Sandbox {
        facts.push("isolation sandbox".into());
    }
    out.push_str(&format!(
        "{}; {} tasks\n\n",
        facts.join(", "),
        plan.tasks.len()
    ));
    let rows: Vec<Vec<String>> = plan
        .tasks
        .iter()
        .map(|t| {
            let model = t.model.clone().or_else(|| {
                spec.config
                    .harnesses
                    .get(&t.harness)
                    .and_then(|h| h.models.get(&t.scope).cloned())
            });
            let harness = match model {
                Some(m) => format!("{} ({m})", t.harness),
                None => t.harness.clone(),
            };
            let timeout = t.timeout.unwrap_or(spec.config.reconcile.task_timeout);
            vec![
                t.name.clone(),
                t.scope.as_str().into(),
                t.gate.as_str().into(),
                list(&t.depends_on),
                list(&t.invariants),
                harness,
                format!("{}/{}", t.retry_max, duration::format(timeout)),
            ]
        })
        .collect();
    out.push_str(&table::render(
        &[
            "TASK",
            "SCOPE",
            "GATE",
            "DEPENDS ON",
            "INVARIANTS",
            "HARNESS",
            "RETRIES/TIMEOUT",
        ],
        &rows,
    ));
    out
}
