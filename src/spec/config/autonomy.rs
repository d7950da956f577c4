//! `[autonomy]`: the gap-analysis loop (docs/autonomy.md). Read after the
//! harnesses, so that the planner's harness is checked against them.

use super::super::diag::Code;
use super::super::model::{Autonomy, Config, PlannerSim};
use super::super::toml_walk::{Ctx, Table};
use super::{resolve_harness, to_u32};

const KEYS: &[&str] = &[
    "enabled",
    "harness",
    "model",
    "max_items_per_day",
    "max_runs_per_day",
    "review_every",
    "budget_share",
    "max_consecutive_escalations",
    "stop_when_goal_met",
    "sim",
];

const SIM_KEYS: &[&str] = &[
    "usd_per_run",
    "duplicate_runs",
    "invalid_runs",
    "rate_limited_runs",
    "failing",
    "fail_first",
];

pub(super) fn read(ctx: &mut Ctx<'_>, root: &Table<'_, '_>, config: &Config) -> Option<Autonomy> {
    let t = root.table(ctx, "autonomy", "[autonomy]", KEYS)?;
    let mut a = Autonomy::default();
    if let Some(b) = t.boolean(ctx, "enabled") {
        // The loop files items and records its state on local branches; with
        // a remote, two machines' loops would each file them. Refused, never
        // accepted and ignored.
        if *b.get_ref() && config.reconcile.remote.is_some() {
            super::not_supported(
                ctx,
                b.span(),
                "the autonomy loop runs on one machine's branches: `enabled = true` in [autonomy] does not work with `[reconcile] remote` yet",
                "run the loop where `[reconcile] remote` is unset, or file items with `converge enqueue` meanwhile",
            );
        }
        a.enabled = b.into_inner();
    }
    if let Some(name) = t.string(ctx, "harness") {
        a.harness = resolve_harness(ctx, &name, &config.harnesses);
    }
    if let Some(model) = t.string(ctx, "model") {
        a.model = Some(model.into_inner());
    }
    if let Some(n) = t.integer_in(ctx, "max_items_per_day", 1, 1000) {
        a.max_items_per_day = to_u32(n.into_inner());
    }
    if let Some(n) = t.integer_in(ctx, "max_runs_per_day", 1, 10_000) {
        a.max_runs_per_day = to_u32(n.into_inner());
    }
    if let Some(n) = t.integer_in(ctx, "review_every", 0, 1000) {
        a.review_every = to_u32(n.into_inner());
    }
    if let Some(n) = t.integer_in(ctx, "max_consecutive_escalations", 1, 100) {
        a.max_consecutive_escalations = to_u32(n.into_inner());
    }
    if let Some(b) = t.boolean(ctx, "stop_when_goal_met") {
        a.stop_when_goal_met = b.into_inner();
    }
    if let Some(share) = t.number(ctx, "budget_share") {
        let span = share.span();
        let share = share.into_inner();
        if share > 0.0 && share <= 1.0 {
            a.budget_share = share;
        } else {
            ctx.error(
                Code::InvalidValue,
                span,
                format!("`budget_share` in [autonomy] must be more than 0 and at most 1, not {share}"),
            )
            .hint = Some(
                "it is the part of `[budget] usd_per_day` planner attempts may spend, for example `budget_share = 0.25`".into(),
            );
        }
    }
    if let Some(sim) = t.table(ctx, "sim", "[autonomy.sim]", SIM_KEYS) {
        a.sim = read_sim(ctx, &sim);
        sim.finish(ctx);
    }
    if a.enabled && config.budget.usd_per_day.is_none() {
        ctx.warning(
            Code::InvalidValue,
            t.span(),
            "[autonomy] is enabled without `[budget] usd_per_day`: nothing bounds what the loop spends but its item and run caps",
        )
        .hint = Some("set `usd_per_day` in [budget]; `budget_share` of it goes to planner attempts".into());
    }
    t.finish(ctx);
    Some(a)
}

/// `[autonomy.sim]`, the `sim` planner's script.
fn read_sim(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> PlannerSim {
    let mut sim = PlannerSim::default();
    if let Some(usd) = t.number(ctx, "usd_per_run") {
        let span = usd.span();
        let usd = usd.into_inner();
        if (0.0..=100.0).contains(&usd) {
            sim.usd_per_run = usd;
        } else {
            ctx.error(
                Code::InvalidValue,
                span,
                format!("`usd_per_run` in [autonomy.sim] must be between 0 and 100, not {usd}"),
            )
            .hint = Some("for example `usd_per_run = 0.05`".into());
        }
    }
    for (key, out) in [
        ("duplicate_runs", &mut sim.duplicate_runs),
        ("invalid_runs", &mut sim.invalid_runs),
        ("rate_limited_runs", &mut sim.rate_limited_runs),
    ] {
        if let Some(runs) = t.integer_array(ctx, key, 1, 100_000) {
            *out = runs
                .into_inner()
                .into_iter()
                .map(|n| to_u32(n.into_inner()))
                .collect();
        }
    }
    for (key, out) in [
        ("failing", &mut sim.failing),
        ("fail_first", &mut sim.fail_first),
    ] {
        if let Some(titles) = t.string_array(ctx, key) {
            *out = titles
                .into_inner()
                .into_iter()
                .map(|s| s.into_inner())
                .collect();
        }
    }
    sim
}

#[cfg(test)]
mod tests {
    use super::super::{CONFIG_PATH, compile};
    use crate::spec::toml_walk::SourceFile;

    fn compile_text(text: &str) -> (super::super::CompiledConfig, Vec<crate::spec::Diagnostic>) {
        let file = SourceFile {
            path: CONFIG_PATH.into(),
            text: text.into(),
        };
        let mut diags = Vec::new();
        let c = compile(&file, &[], &mut diags);
        (c, diags)
    }

    #[test]
    fn reads_the_loop_settings() {
        let (c, diags) = compile_text(
            "[budget]\nusd_per_day = 20.0\n[autonomy]\nenabled = true\nharness = \"sim\"\nmodel = \"m\"\nmax_items_per_day = 4\nmax_runs_per_day = 9\nreview_every = 3\nbudget_share = 0.5\nmax_consecutive_escalations = 2\nstop_when_goal_met = false\n[autonomy.sim]\nusd_per_run = 0.5\nduplicate_runs = [3]\ninvalid_runs = [5, 6]\nrate_limited_runs = [8]\nfailing = [\"Export\"]\nfail_first = [\"Login\"]\n",
        );
        assert!(diags.is_empty(), "{diags:?}");
        let a = &c.config.autonomy;
        assert!(a.enabled && !a.stop_when_goal_met);
        assert_eq!(a.harness.as_deref(), Some("sim"));
        assert_eq!(a.model.as_deref(), Some("m"));
        assert_eq!(
            (
                a.max_items_per_day,
                a.max_runs_per_day,
                a.review_every,
                a.max_consecutive_escalations
            ),
            (4, 9, 3, 2)
        );
        assert!((a.budget_share - 0.5).abs() < f64::EPSILON);
        assert_eq!(a.sim.duplicate_runs, [3]);
        assert_eq!(a.sim.invalid_runs, [5, 6]);
        assert_eq!(a.sim.rate_limited_runs, [8]);
        assert_eq!(a.sim.failing, ["Export"]);
        assert_eq!(a.sim.fail_first, ["Login"]);
        assert!((a.sim.usd_per_run - 0.5).abs() < f64::EPSILON);
    }

    #[test]
    fn the_loop_is_refused_with_a_remote_and_a_bad_sim_is_located() {
        let (c, diags) = compile_text(
            "[reconcile]\nremote = \"origin\"\n[budget]\nusd_per_day = 1.0\n[autonomy]\nenabled = true\n[autonomy.sim]\ninvalid_runs = [0, \"x\"]\nfailng = []\n",
        );
        assert!(!c.valid);
        let all: Vec<String> = diags.iter().map(ToString::to_string).collect();
        let all = all.join("\n");
        assert!(
            all.contains("planning/converge.toml:6:11: error[not-supported]"),
            "{all}"
        );
        assert!(all.contains("planning/converge.toml:8:17: error"), "{all}");
        assert!(all.contains("planning/converge.toml:8:20: error"), "{all}");
        assert!(all.contains("failng"), "{all}");
    }

    #[test]
    fn bad_values_are_located_with_a_hint() {
        let (c, diags) = compile_text(
            "[autonomy]\nenabled = true\nharness = \"claud-code\"\nbudget_share = 1.5\nmax_items_per_day = 0\nreveiw_every = 2\n",
        );
        assert!(!c.valid);
        let shown: Vec<String> = diags.iter().map(ToString::to_string).collect();
        let all = shown.join("\n");
        assert!(
            all.contains("planning/converge.toml:3:11: error[unknown-harness]"),
            "{all}"
        );
        assert!(
            all.contains("planning/converge.toml:4:16: error[invalid-value]"),
            "{all}"
        );
        assert!(all.contains("budget_share = 0.25"), "{all}");
        assert!(
            all.contains("planning/converge.toml:5:21: error[invalid-value]"),
            "{all}"
        );
        assert!(all.contains("review_every"), "{all}");
        // Enabled with no daily budget: a warning says nothing bounds cost.
        assert!(all.contains("without `[budget] usd_per_day`"), "{all}");
    }
}
