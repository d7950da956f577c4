//! `[autonomy]`: the gap-analysis loop (docs/autonomy.md). Read after the
//! harnesses, so that the planner's harness is checked against them.

use super::super::diag::Code;
use super::super::model::{Autonomy, Config};
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
];

pub(super) fn read(ctx: &mut Ctx<'_>, root: &Table<'_, '_>, config: &Config) -> Option<Autonomy> {
    let t = root.table(ctx, "autonomy", "[autonomy]", KEYS)?;
    let mut a = Autonomy::default();
    if let Some(b) = t.boolean(ctx, "enabled") {
        // The loop's executor is not in this build yet: refused, never
        // accepted and ignored (the settings are checked all the same).
        if *b.get_ref() {
            super::not_supported(
                ctx,
                b.span(),
                "the autonomy loop is not implemented yet: `enabled = true` in [autonomy] would be ignored",
                "remove `enabled = true` (or set it to false); file items with `converge enqueue` meanwhile",
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
            "[budget]\nusd_per_day = 20.0\n[autonomy]\nenabled = true\nharness = \"sim\"\nmodel = \"m\"\nmax_items_per_day = 4\nmax_runs_per_day = 9\nreview_every = 3\nbudget_share = 0.5\nmax_consecutive_escalations = 2\nstop_when_goal_met = false\n",
        );
        let codes: Vec<String> = diags.iter().map(|d| d.code.to_string()).collect();
        assert_eq!(codes, ["not-supported"], "{diags:?}");
        assert_eq!(
            diags[0].location.as_ref().map(|l| (l.line, l.column)),
            Some((4, 11))
        );
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
