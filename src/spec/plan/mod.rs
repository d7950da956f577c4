//! `planning/plans/<id>.toml`: a plan and its DAG of tasks.
//!
//! This file reads the `[plan]` header and walks the `[[tasks]]`; `task.rs`
//! reads one task, `sim.rs` its `[tasks.sim]` script, and `check.rs` checks the
//! tasks against each other (names, dependencies, cycles) and builds them.

mod check;
mod sim;
mod task;

use toml::Spanned;
use toml::de::DeValue;

use super::config::{self, check_branch_name};
use super::diag::Code;
use super::model::{Config, Isolation, Plan, PlanState};
use super::toml_walk::{Ctx, SourceFile, Table};

pub(super) use task::merges_unchecked;

const ROOT_KEYS: &[&str] = &["plan", "tasks"];
const PLAN_KEYS: &[&str] = &[
    "name",
    "base_branch",
    "state",
    "token_budget",
    "default_harness",
    "isolation",
    // gator's: read only to say what converge does instead.
    "id",
    "container_image",
];

/// The default number of attempts before a task escalates.
pub(crate) const DEFAULT_RETRY_MAX: u32 = 3;
/// The largest `retry_max` accepted.
pub(crate) const MAX_RETRY_MAX: i64 = 100;

/// Compiles one plan file. Returns the plan only if the file has no errors; all
/// problems go to `out`.
pub fn compile(
    file: &SourceFile,
    id: &str,
    config: &Config,
    out: &mut Vec<super::Diagnostic>,
) -> Option<Plan> {
    let mut ctx = Ctx::new(file);
    let plan = compile_inner(&mut ctx, id, config);
    let valid = !ctx.has_errors();
    out.append(&mut ctx.diags);
    plan.filter(|_| valid)
}

fn compile_inner(ctx: &mut Ctx<'_>, id: &str, config: &Config) -> Option<Plan> {
    let root = ctx.parse()?;
    let root = Table::new(root.get_ref(), root.span(), "the plan file", ROOT_KEYS);
    let header = read_header(ctx, &root, config);
    let tasks_value = root.array_of_tables(ctx, "tasks");
    root.finish(ctx);
    let mut raw_tasks = Vec::new();
    match tasks_value {
        Some(items) => {
            for (span, table) in items {
                let t = Table::new(table, span, "a task", task::TASK_KEYS);
                if let Some(task) = task::read_task(ctx, t, config) {
                    raw_tasks.push(task);
                }
            }
            if raw_tasks.is_empty() && !ctx.has_errors() {
                empty_plan(ctx, &root);
            }
        }
        None if root.get("tasks").is_none() => empty_plan(ctx, &root),
        None => {}
    }
    let (name, base_branch, state, token_budget, default_harness, isolation) = header?;
    let tasks = check::check_tasks(
        ctx,
        raw_tasks,
        default_harness.as_deref(),
        &config.reconcile.default_harness,
    );
    Some(Plan {
        id: id.to_owned(),
        file: ctx.file.path.clone(),
        name,
        base_branch: base_branch.unwrap_or_else(|| config.reconcile.base_branch.clone()),
        state,
        token_budget,
        default_harness,
        isolation,
        tasks,
    })
}

fn empty_plan(ctx: &mut Ctx<'_>, root: &Table<'_, '_>) {
    let span = root.key_span("plan").unwrap_or(0..0);
    ctx.error(Code::EmptyPlan, span, "the plan has no tasks").hint = Some(
        "add at least one `[[tasks]]` table with `name`, `description`, `scope` and `gate`; see docs/plan-format.md"
            .into(),
    );
}

type Header = (
    String,
    Option<String>,
    PlanState,
    Option<u64>,
    Option<String>,
    Isolation,
);

fn read_header(ctx: &mut Ctx<'_>, root: &Table<'_, '_>, config: &Config) -> Option<Header> {
    let Some(t) = root.table(ctx, "plan", "[plan]", PLAN_KEYS) else {
        if root.get("plan").is_none() {
            ctx.error(
                Code::MissingField,
                0..0,
                "the plan file has no `[plan]` table",
            )
            .hint = Some("start the file with `[plan]` and `name = \"...\"`".into());
        }
        return None;
    };
    let name = t.required_string(ctx, "name", "\"Add user authentication\"");
    let base_branch =
        t.string(ctx, "base_branch")
            .and_then(|b| match check_branch_name(b.get_ref()) {
                Ok(()) => Some(b.into_inner()),
                Err(reason) => {
                    ctx.error(
                        Code::InvalidValue,
                        b.span(),
                        format!("`base_branch` in [plan] is not a valid branch name: {reason}"),
                    )
                    .hint = Some("write the short branch name, for example `main`".into());
                    None
                }
            });
    let state = t
        .enumeration(ctx, "state", PlanState::NAMES)
        .and_then(|s| PlanState::parse(s.get_ref()))
        .unwrap_or(PlanState::Active);
    let token_budget = t
        .integer_in(ctx, "token_budget", 1, i64::MAX)
        .map(|n| u64::try_from(*n.get_ref()).unwrap_or(u64::MAX));
    let default_harness = t
        .string(ctx, "default_harness")
        .and_then(|h| config::resolve_harness(ctx, &h, &config.harnesses));
    let isolation = read_isolation(ctx, &t);
    if let Some(id) = t.get("id") {
        ctx.warning(
            Code::GatorCompat,
            t.key_span("id").unwrap_or(id.span()),
            "`id` in [plan] is the database id `gator plan create` writes back; converge names a plan by its file name and keeps its status in planning/status/",
        )
        .hint = Some("remove the line".into());
    }
    t.finish_with_hints(
        ctx,
        &[(
            "tasks",
            "in TOML, keys below `[plan]` belong to it; write each task as a `[[tasks]]` table after the [plan] keys",
        )],
    );
    Some((
        name?.into_inner(),
        base_branch,
        state,
        token_budget,
        default_harness,
        isolation,
    ))
}

/// `isolation`: converge's `worktree` or `sandbox`; gator's `container` (and its
/// `container_image`) are answered with what converge offers instead.
fn read_isolation(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Isolation {
    const OFFER: &str = "converge runs each agent in its own git worktree; `isolation = \"sandbox\"` adds the Landlock sandbox (filesystem and network limits, `[sandbox]` in planning/converge.toml)";
    if let Some(image) = t.string(ctx, "container_image") {
        ctx.warning(
            Code::GatorCompat,
            t.key_span("container_image").unwrap_or(image.span()),
            "converge does not run agents in containers, so it does not use `container_image`",
        )
        .hint = Some(format!("{OFFER}; remove the line"));
    }
    if let Some(DeValue::String(s)) = t.get("isolation").map(Spanned::get_ref)
        && s == "container"
    {
        let span = t.get("isolation").map_or(0..0, Spanned::span);
        ctx.error(
            Code::InvalidValue,
            span,
            "`isolation` in [plan] is `container`: converge does not run agents in containers",
        )
        .hint = Some(format!("{OFFER}; write `isolation = \"sandbox\"`"));
        return Isolation::Worktree;
    }
    match t.enumeration(ctx, "isolation", Isolation::NAMES) {
        Some(i) if *i.get_ref() == "sandbox" => Isolation::Sandbox,
        _ => Isolation::Worktree,
    }
}

#[cfg(test)]
mod tests;
