//! `[invariants.<name>]`: the checks converge runs, and what to say about a
//! reference to one that is not defined.

use std::collections::BTreeMap;

use toml::de::DeValue;

use super::super::diag::Code;
use super::super::model::{Invariant, InvariantKind};
use super::super::suggest;
use super::super::toml_walk::{Ctx, Table};

const INVARIANT_KEYS: &[&str] = &[
    "kind",
    "command",
    "args",
    "timeout",
    "expected_exit_code",
    "advisory",
    "description",
    "threshold",
    "scope",
];
/// The longest invariant timeout written as a number of seconds (gator's form): a week.
const MAX_TIMEOUT_SECS: i64 = 7 * 24 * 3600;

/// The default timeout of an invariant that names none.
const DEFAULT_INVARIANT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10 * 60);

type Invariants = (BTreeMap<String, Invariant>, BTreeMap<String, String>);

pub(super) fn read(ctx: &mut Ctx<'_>, root: &Table<'_, '_>) -> Invariants {
    let mut out = BTreeMap::new();
    let mut descriptions = BTreeMap::new();
    for (name, t) in root.named_subtables(
        ctx,
        "invariants",
        "invariant",
        "`kind` and `command`",
        INVARIANT_KEYS,
    ) {
        let kind = t.required_enumeration(ctx, "kind", InvariantKind::NAMES);
        let command = t.required_string(ctx, "command", "\"cargo\"");
        let args = t.string_array(ctx, "args");
        let timeout = invariant_timeout(ctx, &t, name);
        let exit = t.integer_in(ctx, "expected_exit_code", 0, 255);
        let advisory = t.boolean(ctx, "advisory");
        if let Some(d) = t.string(ctx, "description") {
            descriptions.insert(name.to_owned(), d.into_inner());
        }
        gator_invariant_fields(ctx, &t, name);
        t.finish(ctx);
        let (Some(kind), Some(command)) = (kind, command) else {
            continue;
        };
        out.insert(
            name.to_owned(),
            Invariant {
                name: name.to_owned(),
                kind: InvariantKind::parse(kind.get_ref()).unwrap_or(InvariantKind::Custom),
                command: command.into_inner(),
                args: args
                    .map(|a| a.into_inner().into_iter().map(|s| s.into_inner()).collect())
                    .unwrap_or_default(),
                timeout: timeout.unwrap_or(DEFAULT_INVARIANT_TIMEOUT),
                expected_exit_code: exit.map_or(0, |e| i32::try_from(*e.get_ref()).unwrap_or(0)),
                advisory: advisory.is_some_and(|a| *a.get_ref()),
            },
        );
    }
    (out, descriptions)
}

/// An invariant's `timeout`: a duration (`"5m"`) or, as gator writes it, a whole
/// number of seconds (`300`).
fn invariant_timeout(
    ctx: &mut Ctx<'_>,
    t: &Table<'_, '_>,
    name: &str,
) -> Option<std::time::Duration> {
    let seconds = t
        .get("timeout")
        .is_some_and(|v| matches!(v.get_ref(), DeValue::Integer(_)));
    let timeout = if seconds {
        let n = t.integer_in(ctx, "timeout", 0, MAX_TIMEOUT_SECS)?;
        toml::Spanned::new(
            n.span(),
            std::time::Duration::from_secs(u64::try_from(*n.get_ref()).unwrap_or(0)),
        )
    } else {
        t.duration(ctx, "timeout")?
    };
    if timeout.get_ref().is_zero() {
        ctx.error(
            Code::InvalidValue,
            timeout.span(),
            format!("`timeout` of invariant `{name}` must be longer than zero"),
        )
        .hint = Some("for example `timeout = \"5m\"` or `timeout = 300` (seconds)".into());
        return None;
    }
    Some(timeout.into_inner())
}

/// gator's `threshold` and `scope`: read and checked, and reported as not used,
/// because converge does nothing with them (neither does gator's gate: it stores
/// them and decides on the exit code alone).
fn gator_invariant_fields(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, name: &str) {
    if let Some(threshold) = t.number(ctx, "threshold") {
        ctx.warning(
            Code::GatorCompat,
            threshold.span(),
            format!("converge does not use `threshold` of invariant `{name}`: an invariant passes or fails on its exit code"),
        )
        .hint = Some(
            "make the command fail below the threshold itself (for example `cargo llvm-cov --fail-under-lines 80`), then remove `threshold`".into(),
        );
    }
    if let Some(scope) = t.enumeration(ctx, "scope", &["project", "global"]) {
        ctx.warning(
            Code::GatorCompat,
            scope.span(),
            format!("converge does not use `scope` of invariant `{name}`: the invariants of converge.toml belong to this repository and any task of it may use them"),
        )
        .hint = Some("remove `scope`".into());
    }
}

/// What to do about a reference to an undefined invariant.
pub(crate) fn unknown_invariant_hint(
    name: &str,
    invariants: &BTreeMap<String, Invariant>,
) -> String {
    suggest::did_you_mean(name, invariants.keys().map(String::as_str)).unwrap_or_else(|| {
        // Suggest only what converge accepts: an invalid name cannot be defined.
        match super::super::names::check(name) {
            Ok(()) => format!("define it in planning/converge.toml as `[invariants.{name}]`, or run `converge invariant add {name} ...`"),
            Err(problem) => {
                let valid = super::super::names::suggest(name);
                format!(
                    "`{name}` is not a name converge accepts ({}); name it `{valid}` here and define `[invariants.{valid}]` in planning/converge.toml (or run `converge invariant add {valid} ...`)",
                    problem.reason
                )
            }
        }
    })
}

/// Reports a reference to an invariant that is not defined.
pub(crate) fn unknown_invariant(
    ctx: &mut Ctx<'_>,
    name: &toml::Spanned<String>,
    invariants: &BTreeMap<String, Invariant>,
) {
    let hint = unknown_invariant_hint(name.get_ref(), invariants);
    ctx.error(
        Code::UnknownInvariant,
        name.span(),
        format!("unknown invariant `{}`", name.get_ref()),
    )
    .hint = Some(hint);
}
