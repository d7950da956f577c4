//! What an attempt cost when its CLI reports no cost (Codex never does;
//! OpenCode reports 0 unless its config has prices): tokens times a price per
//! million tokens, from `[prices]` in `converge.toml`, else the built-in list
//! prices below. Pure.

use std::collections::BTreeMap;

use crate::spec::ModelPrice;

/// List prices in USD per million input and output tokens, published by
/// Anthropic and OpenAI (2025). Matched by the longest prefix of the model
/// name; `[prices]` in `converge.toml` overrides and extends them. Cached
/// input is priced as input: estimates err high.
pub const BUILTIN: &[(&str, ModelPrice)] = &[
    ("claude-opus-4-5", ModelPrice::new(5.0, 25.0)),
    ("claude-opus-4", ModelPrice::new(15.0, 75.0)),
    ("claude-sonnet-4", ModelPrice::new(3.0, 15.0)),
    ("claude-3-7-sonnet", ModelPrice::new(3.0, 15.0)),
    ("claude-haiku-4-5", ModelPrice::new(1.0, 5.0)),
    ("claude-3-5-haiku", ModelPrice::new(0.8, 4.0)),
    // Claude Code's aliases.
    ("opus", ModelPrice::new(5.0, 25.0)),
    ("sonnet", ModelPrice::new(3.0, 15.0)),
    ("haiku", ModelPrice::new(1.0, 5.0)),
    ("gpt-5-nano", ModelPrice::new(0.05, 0.4)),
    ("gpt-5-mini", ModelPrice::new(0.25, 2.0)),
    ("gpt-5", ModelPrice::new(1.25, 10.0)),
    ("gpt-4.1-nano", ModelPrice::new(0.1, 0.4)),
    ("gpt-4.1-mini", ModelPrice::new(0.4, 1.6)),
    ("gpt-4.1", ModelPrice::new(2.0, 8.0)),
    ("gpt-4o-mini", ModelPrice::new(0.15, 0.6)),
    ("gpt-4o", ModelPrice::new(2.5, 10.0)),
    ("o4-mini", ModelPrice::new(1.1, 4.4)),
    ("o3", ModelPrice::new(2.0, 8.0)),
];

/// The price of `model`: `[prices]` by exact name, then by longest prefix,
/// then the built-in list. A `provider/model` name (OpenCode) is looked up
/// whole, then by its model part.
pub fn price_of(configured: &BTreeMap<String, ModelPrice>, model: &str) -> Option<ModelPrice> {
    let names = [Some(model), model.rsplit_once('/').map(|(_, m)| m)];
    for name in names.into_iter().flatten() {
        let longest = |table: &mut dyn Iterator<Item = (&str, ModelPrice)>| {
            table
                .filter(|(prefix, _)| name.starts_with(prefix))
                .max_by_key(|(prefix, _)| prefix.len())
                .map(|(_, price)| price)
        };
        if let Some(price) = longest(&mut configured.iter().map(|(k, v)| (k.as_str(), *v)))
            .or_else(|| longest(&mut BUILTIN.iter().map(|(k, v)| (*k, *v))))
        {
            return Some(price);
        }
    }
    None
}

/// The cost in USD of an attempt of `model` that used these tokens; 0 when
/// the model is unnamed or has no price.
pub fn cost(
    configured: &BTreeMap<String, ModelPrice>,
    model: Option<&str>,
    tokens_in: u64,
    tokens_out: u64,
) -> f64 {
    let Some(price) = model.and_then(|m| price_of(configured, m)) else {
        return 0.0;
    };
    #[allow(clippy::cast_precision_loss)]
    let (tokens_in, tokens_out) = (tokens_in as f64, tokens_out as f64);
    (tokens_in * price.input + tokens_out * price.output) / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_prefix_wins_and_configuration_overrides() {
        let none = BTreeMap::new();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        // 1M in, 100k out on gpt-5-mini: 0.25 + 0.2.
        assert!(close(
            cost(&none, Some("gpt-5-mini"), 1_000_000, 100_000),
            0.45
        ));
        assert!(close(cost(&none, Some("gpt-5-codex"), 1_000_000, 0), 1.25));
        assert!(close(
            cost(&none, Some("claude-opus-4-5-20251101"), 0, 1_000_000),
            25.0
        ));
        assert!(close(
            cost(&none, Some("claude-opus-4-1"), 0, 1_000_000),
            75.0
        ));
        assert!(close(
            cost(&none, Some("openai/gpt-4.1-mini"), 1_000_000, 0),
            0.4
        ));
        assert!(close(cost(&none, Some("fake-model"), 1_000_000, 0), 0.0));
        assert!(close(cost(&none, None, 1_000_000, 0), 0.0));
        let mut mine = BTreeMap::new();
        mine.insert("fake".to_owned(), ModelPrice::new(2.0, 4.0));
        mine.insert("gpt-5".to_owned(), ModelPrice::new(1.0, 1.0));
        assert!(close(
            cost(&mine, Some("fake/fake-model"), 500_000, 500_000),
            3.0
        ));
        assert!(close(cost(&mine, Some("gpt-5-mini"), 1_000_000, 0), 1.0));
    }
}
