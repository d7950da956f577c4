//! One `[[tasks]]` table, read field by field before the cross-task checks.

use toml::Spanned;

use super::super::config;
use super::super::diag::Code;
use super::super::model::{Config, Gate, Scope, Sim};
use super::super::names;
use super::super::paths;
use super::super::toml_walk::{Ctx, Table};
use super::sim::{SIM_KEYS, read_sim};
use super::{DEFAULT_RETRY_MAX, MAX_RETRY_MAX};

pub(super) const TASK_KEYS: &[&str] = &[
    "name",
    "description",
    "scope",
    "gate",
    "depends_on",
    "invariants",
    "retry_max",
    "harness",
    "model",
    "timeout",
    "paths",
    "reset",
    "sim",
    "allow_unchecked",
    // gator's write-back: read only to say that converge keeps status elsewhere.
    "status",
];

/// A task as read, before cross-task checks.
pub(super) struct RawTask {
    pub(super) name: Spanned<String>,
    /// Whether `name` is one converge accepts (an error was recorded if not).
    pub(super) name_valid: bool,
    pub(super) description: String,
    pub(super) scope: Scope,
    pub(super) gate: Gate,
    pub(super) depends_on: Vec<Spanned<String>>,
    pub(super) invariants: Vec<String>,
    pub(super) retry_max: u32,
    pub(super) harness: Option<String>,
    pub(super) model: Option<String>,
    pub(super) timeout: Option<std::time::Duration>,
    pub(super) paths: Vec<String>,
    pub(super) reset: u64,
    pub(super) sim: Option<Sim>,
}

pub(super) fn read_task(
    ctx: &mut Ctx<'_>,
    mut t: Table<'_, '_>,
    config: &Config,
) -> Option<RawTask> {
    let name = t.required_string(ctx, "name", "\"define-types\"");
    if let Some(n) = &name {
        t.what = format!("task `{}`", n.get_ref());
    }
    let name_valid = check_name(ctx, name.as_ref());
    let description = t.required_string(
        ctx,
        "description",
        "\"\"\"What to build and how to know it works.\"\"\"",
    );
    let scope = t
        .required_enumeration(ctx, "scope", Scope::NAMES)
        .and_then(|s| Scope::parse(s.get_ref()));
    let gate_value = t.required_enumeration(ctx, "gate", Gate::NAMES);
    let gate_span = gate_value.as_ref().map(Spanned::span);
    let gate = gate_value.and_then(|g| Gate::parse(g.get_ref()));
    let depends_on = t
        .string_array(ctx, "depends_on")
        .map(Spanned::into_inner)
        .unwrap_or_default();
    let (invariants, unknown_invariants) = read_invariants(ctx, &t, config);
    let retry_max = t
        .integer_in(ctx, "retry_max", 0, MAX_RETRY_MAX)
        .map_or(DEFAULT_RETRY_MAX, |n| {
            u32::try_from(*n.get_ref()).unwrap_or(DEFAULT_RETRY_MAX)
        });
    let harness = t
        .string(ctx, "harness")
        .and_then(|h| config::resolve_harness(ctx, &h, &config.harnesses));
    gator_status(ctx, &t);
    let model = read_model(ctx, &t);
    let timeout = t.positive_duration(ctx, "timeout", "30m");
    let paths = read_paths(ctx, &t);
    let reset = t
        .integer_in(ctx, "reset", 0, i64::MAX)
        .map_or(0, |n| u64::try_from(*n.get_ref()).unwrap_or(0));
    let allow_unchecked = t
        .boolean(ctx, "allow_unchecked")
        .is_some_and(|b| *b.get_ref());
    if let Some(span) = gate_span
        && merges_unchecked(
            gate,
            allow_unchecked,
            unknown_invariants,
            config,
            &invariants,
        )
    {
        unchecked(ctx, span, &t.what, config);
    }
    let sim = read_sim_table(ctx, &t);
    t.finish(ctx);
    Some(RawTask {
        // Broken fields fall back to defaults so that the cross-task checks still see
        // this task; the errors already recorded keep the plan invalid.
        name: name?,
        name_valid,
        description: description.map(Spanned::into_inner).unwrap_or_default(),
        scope: scope.unwrap_or(Scope::Narrow),
        gate: gate.unwrap_or(Gate::Auto),
        depends_on,
        invariants,
        retry_max,
        harness,
        model,
        timeout,
        paths,
        reset,
        sim,
    })
}

/// Whether a task's name is one converge accepts, reporting it if not. A task
/// whose name is invalid is still read and checked with the others (its
/// dependencies, the tasks that depend on it), so that one bad name neither
/// hides other mistakes nor makes its dependents' `depends_on` errors too; it
/// is left out of the plan at the end.
fn check_name(ctx: &mut Ctx<'_>, name: Option<&Spanned<String>>) -> bool {
    name.is_none_or(|n| match names::check(n.get_ref()) {
        Ok(()) => true,
        Err(problem) => {
            ctx.error(
                Code::InvalidName,
                n.span(),
                format!("task name `{}` {}", n.get_ref(), problem.reason),
            )
            .hint = Some(problem.hint);
            false
        }
    })
}

/// The task's `invariants`, each once, and whether one of them is unknown (an
/// error already, so the task meant to be checked and is not also called
/// unchecked).
fn read_invariants(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, config: &Config) -> (Vec<String>, bool) {
    let mut invariants = Vec::new();
    let mut unknown_invariants = false;
    if let Some(list) = t.string_array(ctx, "invariants") {
        for inv in list.into_inner() {
            if !config.invariants.contains_key(inv.get_ref()) {
                unknown_invariants = true;
                config::unknown_invariant(ctx, &inv, &config.invariants);
            } else if invariants.contains(inv.get_ref()) {
                ctx.warning(
                    Code::DuplicateDependency,
                    inv.span(),
                    format!(
                        "invariant `{}` is listed twice in {}",
                        inv.get_ref(),
                        t.what
                    ),
                )
                .hint = Some("remove the second mention".into());
            } else {
                invariants.push(inv.into_inner());
            }
        }
    }
    (invariants, unknown_invariants)
}

/// gator's `status` write-back: reported as not read.
fn gator_status(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) {
    if let Some(status) = t.get("status") {
        ctx.warning(
            Code::GatorCompat,
            t.key_span("status").unwrap_or(status.span()),
            format!(
                "`status` in {} is gator's record of progress (written by `gator plan export`); converge does not read it and keeps status in planning/status/",
                t.what
            ),
        )
        .hint = Some(
            "remove the line; `converge status` shows where each task is".into(),
        );
    }
}

fn read_model(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Option<String> {
    t.string(ctx, "model").and_then(|m| {
        if m.get_ref().trim().is_empty() || m.get_ref().starts_with('-') {
            ctx.error(
                Code::InvalidValue,
                m.span(),
                format!("`model` in {} must be a model name", t.what),
            )
            .hint = Some("leave it out to use the harness's model for the task's scope".into());
            None
        } else {
            Some(m.into_inner())
        }
    })
}

fn read_paths(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Vec<String> {
    let mut task_paths = Vec::new();
    if let Some(list) = t.string_array(ctx, "paths") {
        for p in list.into_inner() {
            if paths::check(ctx, &p, &t.what) {
                task_paths.push(p.into_inner());
            }
        }
    }
    task_paths
}

fn read_sim_table(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Option<Sim> {
    let what = t.what.clone();
    t.table(ctx, "sim", format!("the `sim` table of {what}"), SIM_KEYS)
        .map(|s| read_sim(ctx, &s))
}

/// Whether work would merge with nothing run on it: an `auto` gate, no opt-out
/// with `allow_unchecked`, no unknown invariant (already an error), and no
/// blocking invariant of the task's own or of `[merge]`. Plans and queue items
/// refuse such a task alike.
pub(in crate::spec) fn merges_unchecked(
    gate: Option<Gate>,
    allow_unchecked: bool,
    unknown_invariants: bool,
    config: &Config,
    own: &[String],
) -> bool {
    gate == Some(Gate::Auto) && !allow_unchecked && !unknown_invariants && !checked(config, own)
}

/// Whether a blocking invariant checks work that merges without a person: one
/// of the task's own or of `[merge]`. Advisory invariants report and never
/// fail a gate, so they do not count.
fn checked(config: &Config, own: &[String]) -> bool {
    own.iter()
        .chain(&config.merge.invariants)
        .any(|name| config.invariants.get(name).is_some_and(|i| !i.advisory))
}

/// The `unchecked-task` refusal: gator refuses an `auto` task without
/// invariants at approval and at the gate; converge refuses it when the plan
/// is read, so that nothing unchecked ever starts.
fn unchecked(ctx: &mut Ctx<'_>, span: std::ops::Range<usize>, what: &str, config: &Config) {
    let example = config
        .invariants
        .iter()
        .find(|(_, i)| !i.advisory)
        .map_or_else(|| "build".to_owned(), |(name, _)| name.clone());
    ctx.error(
        Code::UncheckedTask,
        span,
        format!(
            "{what} has `gate = \"auto\"` but no invariant checks it: work would merge with nothing run on it"
        ),
    )
    .hint = Some(format!(
        "add `invariants = [\"{example}\"]` (checks from converge.toml; `converge invariant add --preset rust|node|python|go` adds the usual ones), list checks in `[merge] invariants`, use `gate = \"human_review\"`, or set `allow_unchecked = true` to merge it unchecked on purpose"
    ));
}
