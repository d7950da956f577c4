//! `[budget]` (daily spending limits) and `[prices]` (USD per million tokens).

use std::collections::BTreeMap;

use toml::de::DeValue;

use super::super::diag::Code;
use super::super::model::{Budget, ModelPrice};
use super::super::toml_walk::{Ctx, Table};

const BUDGET_KEYS: &[&str] = &["tokens_per_day", "usd_per_day"];
const PRICE_KEYS: &[&str] = &["input", "output"];

/// `[prices]`: `"model-or-prefix" = { input = 3.0, output = 15.0 }`, USD per
/// million tokens.
pub(super) fn read_prices(ctx: &mut Ctx<'_>, root: &Table<'_, '_>) -> BTreeMap<String, ModelPrice> {
    let mut out = BTreeMap::new();
    let Some(table) = root.named_tables(ctx, "prices") else {
        return out;
    };
    for (key, value) in table.iter() {
        let model: &str = key.get_ref();
        let DeValue::Table(t) = value.get_ref() else {
            ctx.error(
                Code::WrongType,
                value.span(),
                format!("the price of `{model}` in [prices] must be a table"),
            )
            .hint = Some(format!(
                "write `\"{model}\" = {{ input = 3.0, output = 15.0 }}` (USD per million tokens)"
            ));
            continue;
        };
        let t = Table::new(
            t,
            value.span(),
            format!("the price of `{model}`"),
            PRICE_KEYS,
        );
        let mut price = ModelPrice::new(0.0, 0.0);
        let mut complete = true;
        for (field, slot) in [("input", &mut price.input), ("output", &mut price.output)] {
            match t.number(ctx, field) {
                Some(n) if n.get_ref().is_finite() && *n.get_ref() >= 0.0 => *slot = n.into_inner(),
                Some(n) => {
                    ctx.error(
                        Code::InvalidValue,
                        n.span(),
                        format!("`{field}` of the price of `{model}` must be 0 or more"),
                    );
                    complete = false;
                }
                None => {
                    ctx.error(
                        Code::MissingField,
                        value.span(),
                        format!("the price of `{model}` in [prices] is missing `{field}`"),
                    )
                    .hint = Some("both `input` and `output` are USD per million tokens".into());
                    complete = false;
                }
            }
        }
        t.finish(ctx);
        if complete && !model.trim().is_empty() {
            out.insert(model.to_owned(), price);
        }
    }
    out
}

pub(super) fn read_budget(ctx: &mut Ctx<'_>, root: &Table<'_, '_>) -> Option<Budget> {
    let t = root.table(ctx, "budget", "[budget]", BUDGET_KEYS)?;
    let mut budget = Budget::default();
    if let Some(n) = t.integer_in(ctx, "tokens_per_day", 1, i64::MAX) {
        budget.tokens_per_day = u64::try_from(n.into_inner()).ok();
    }
    if let Some(usd) = t.number(ctx, "usd_per_day") {
        let span = usd.span();
        let usd = usd.into_inner();
        if usd > 0.0 {
            budget.usd_per_day = Some(usd);
        } else {
            ctx.error(
                Code::InvalidValue,
                span,
                format!("`usd_per_day` in [budget] must be more than 0, not {usd}"),
            );
        }
    }
    t.finish(ctx);
    Some(budget)
}
