//! `[harness.<name>]`: how agents are run, the default harness, and resolving a
//! harness name written in a plan or in `[reconcile]`.

use std::collections::BTreeMap;

use toml::de::DeValue;

use super::super::diag::Code;
use super::super::model::{BUILTIN_HARNESSES, Config, Harness, HarnessKind, Scope};
use super::super::suggest;
use super::super::toml_walk::{Ctx, Table};

/// gator's harness names, and the built-in harness each means.
pub const HARNESS_ALIASES: &[(&str, &str)] = &[("codex-cli", "codex"), ("open-code", "opencode")];

const HARNESS_KEYS: &[&str] = &["kind", "command", "args", "models"];

pub(super) fn read(ctx: &mut Ctx<'_>, root: &Table<'_, '_>, out: &mut BTreeMap<String, Harness>) {
    for (name, t) in root.named_subtables(ctx, "harness", "harness", "`kind`", HARNESS_KEYS) {
        let kind = t.required_enumeration(ctx, "kind", HarnessKind::NAMES);
        let command = t.string(ctx, "command");
        let args = t.string_array(ctx, "args");
        let mut models = BTreeMap::new();
        if let Some(m) = t.named_tables(ctx, "models") {
            for (scope_key, model) in m.iter() {
                let scope_name: &str = scope_key.get_ref();
                let Some(scope) = Scope::parse(scope_name) else {
                    let hint = suggest::did_you_mean(scope_name, Scope::NAMES.iter().copied())
                        .unwrap_or_else(|| {
                            format!(
                                "the keys of `models` are scopes: {}",
                                suggest::one_of(Scope::NAMES)
                            )
                        });
                    ctx.error(
                        Code::UnknownKey,
                        scope_key.span(),
                        format!("unknown scope `{scope_name}` in `models` of harness `{name}`"),
                    )
                    .hint = Some(hint);
                    continue;
                };
                match model.get_ref() {
                    DeValue::String(s) if !s.trim().is_empty() => {
                        models.insert(scope, s.to_string());
                    }
                    _ => {
                        ctx.error(
                            Code::WrongType,
                            model.span(),
                            format!("the model for `{scope_name}` in harness `{name}` must be a non-empty string"),
                        )
                        .hint = Some(format!("for example `{scope_name} = \"sonnet\"`"));
                    }
                }
            }
        }
        let kind = kind.and_then(|k| HarnessKind::parse(k.get_ref()));
        if kind == Some(HarnessKind::Command) && command.is_none() {
            ctx.error(
                Code::MissingField,
                t.span().start..t.span().start,
                format!("harness `{name}` of kind `command` is missing the required key `command`"),
            )
            .hint = Some(
                "add `command = \"./scripts/agent.sh\"` and `args = [\"{prompt_file}\"]`".into(),
            );
        }
        if let Some(command) = &command
            && command.get_ref().trim().is_empty()
        {
            ctx.error(
                Code::InvalidValue,
                command.span(),
                format!("`command` of harness `{name}` must not be empty"),
            );
        }
        t.finish(ctx);
        if let Some(kind) = kind {
            out.insert(
                name.to_owned(),
                Harness {
                    name: name.to_owned(),
                    kind,
                    command: command.map(|c| c.into_inner()),
                    args: args
                        .map(|a| a.into_inner().into_iter().map(|s| s.into_inner()).collect())
                        .unwrap_or_default(),
                    models,
                    declared: true,
                },
            );
        }
    }
}

pub(super) fn check_default(ctx: &mut Ctx<'_>, root: &Table<'_, '_>, config: &mut Config) {
    let name = &config.reconcile.default_harness;
    if config.harnesses.contains_key(name) {
        return;
    }
    let Some(reconcile) = root.get("reconcile") else {
        return;
    };
    let span = match reconcile.get_ref() {
        DeValue::Table(t) => t
            .get("default_harness")
            .map_or(reconcile.span(), toml::Spanned::span),
        _ => return,
    };
    let name = toml::Spanned::new(span, name.clone());
    if let Some(resolved) = resolve_harness(ctx, &name, &config.harnesses) {
        config.reconcile.default_harness = resolved;
    }
}

/// The harness a name written in a plan or in `[reconcile]` means: a harness of
/// converge.toml or a built-in one, or gator's name for a built-in one
/// (`codex-cli`, `open-code`), which works with a warning saying what converge
/// calls it. Anything else is reported as unknown.
pub(crate) fn resolve_harness(
    ctx: &mut Ctx<'_>,
    name: &toml::Spanned<String>,
    harnesses: &BTreeMap<String, Harness>,
) -> Option<String> {
    let written = name.get_ref();
    if harnesses.contains_key(written) {
        return Some(written.clone());
    }
    if let Some((_, target)) = HARNESS_ALIASES.iter().find(|(alias, _)| alias == written)
        && harnesses.contains_key(*target)
    {
        ctx.warning(
            Code::GatorCompat,
            name.span(),
            format!("harness `{written}` is gator's name for converge's `{target}`"),
        )
        .hint = Some(format!("write `\"{target}\"`"));
        return Some((*target).to_owned());
    }
    unknown_harness(ctx, name.span(), written, harnesses);
    None
}

/// Reports a reference to a harness that is neither declared nor built in.
fn unknown_harness(
    ctx: &mut Ctx<'_>,
    span: std::ops::Range<usize>,
    name: &str,
    harnesses: &BTreeMap<String, Harness>,
) {
    ctx.error(
        Code::UnknownHarness,
        span,
        format!("unknown harness `{name}`"),
    )
    .hint = Some(unknown_harness_hint(name, harnesses));
}

/// What to do about a reference to an unknown harness.
pub(crate) fn unknown_harness_hint(name: &str, harnesses: &BTreeMap<String, Harness>) -> String {
    suggest::did_you_mean(name, harnesses.keys().map(String::as_str)).unwrap_or_else(|| {
        format!(
            "built-in harnesses are {}; declare others as `[harness.{name}]` in planning/converge.toml",
            suggest::one_of(&BUILTIN_HARNESSES.iter().map(|(n, _)| *n).collect::<Vec<_>>())
        )
    })
}
