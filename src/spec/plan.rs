//! `planning/plans/<id>.toml`: a plan and its DAG of tasks.

use std::collections::{BTreeMap, HashMap};

use toml::Spanned;
use toml::de::DeValue;

use super::config::{self, check_branch_name};
use super::dag;
use super::diag::Code;
use super::generation;
use super::model::{Config, Gate, Isolation, Plan, PlanState, Scope, Sim, SimEdit, SimFile, Task};
use super::names;
use super::paths;
use super::suggest;
use super::toml_walk::{Ctx, SourceFile, Table};

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
pub const TASK_KEYS: &[&str] = &[
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
const SIM_KEYS: &[&str] = &[
    "files",
    "message",
    "fail_attempts",
    "sleep",
    "exit_code",
    "done",
    "commit",
];
const SIM_FILE_KEYS: &[&str] = &["path", "content", "append", "delete", "on_fail"];

/// The default number of attempts before a task escalates.
pub const DEFAULT_RETRY_MAX: u32 = 3;
/// The largest `retry_max` accepted.
pub const MAX_RETRY_MAX: i64 = 100;

/// A task as read, before cross-task checks.
struct RawTask {
    name: Spanned<String>,
    /// Whether `name` is one converge accepts (an error was recorded if not).
    name_valid: bool,
    description: String,
    scope: Scope,
    gate: Gate,
    depends_on: Vec<Spanned<String>>,
    invariants: Vec<String>,
    retry_max: u32,
    harness: Option<String>,
    model: Option<String>,
    timeout: Option<std::time::Duration>,
    paths: Vec<String>,
    reset: u64,
    sim: Option<Sim>,
}

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
                let t = Table::new(table, span, "a task", TASK_KEYS);
                if let Some(task) = read_task(ctx, t, config) {
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
    let tasks = check_tasks(
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

fn read_task(ctx: &mut Ctx<'_>, mut t: Table<'_, '_>, config: &Config) -> Option<RawTask> {
    let name = t.required_string(ctx, "name", "\"define-types\"");
    if let Some(n) = &name {
        t.what = format!("task `{}`", n.get_ref());
    }
    // A task whose name is invalid is still read and checked with the others
    // (its dependencies, the tasks that depend on it), so that one bad name
    // neither hides other mistakes nor makes its dependents' `depends_on`
    // errors too; it is left out of the plan at the end.
    let name_valid = name
        .as_ref()
        .is_none_or(|n| match names::check(n.get_ref()) {
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
        });
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
    let mut invariants = Vec::new();
    // An unknown name is already an error; the task meant to be checked, so
    // it is not also called unchecked.
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
    let retry_max = t
        .integer_in(ctx, "retry_max", 0, MAX_RETRY_MAX)
        .map_or(DEFAULT_RETRY_MAX, |n| {
            u32::try_from(*n.get_ref()).unwrap_or(DEFAULT_RETRY_MAX)
        });
    let harness = t
        .string(ctx, "harness")
        .and_then(|h| config::resolve_harness(ctx, &h, &config.harnesses));
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
    let model = t.string(ctx, "model").and_then(|m| {
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
    });
    let timeout = t.duration(ctx, "timeout").and_then(|d| {
        if d.get_ref().is_zero() {
            ctx.error(
                Code::InvalidValue,
                d.span(),
                format!("`timeout` in {} must be longer than zero", t.what),
            )
            .hint = Some("for example `timeout = \"30m\"`".into());
            None
        } else {
            Some(d.into_inner())
        }
    });
    let mut task_paths = Vec::new();
    if let Some(list) = t.string_array(ctx, "paths") {
        for p in list.into_inner() {
            if paths::check(ctx, &p, &t.what) {
                task_paths.push(p.into_inner());
            }
        }
    }
    let reset = t
        .integer_in(ctx, "reset", 0, i64::MAX)
        .map_or(0, |n| u64::try_from(*n.get_ref()).unwrap_or(0));
    let allow_unchecked = t
        .boolean(ctx, "allow_unchecked")
        .is_some_and(|b| *b.get_ref());
    if let (Some(Gate::Auto), Some(span)) = (gate, gate_span)
        && !allow_unchecked
        && !unknown_invariants
        && !checked(config, &invariants)
    {
        unchecked(ctx, span, &t.what, config);
    }
    let what = t.what.clone();
    let sim = t
        .table(ctx, "sim", format!("the `sim` table of {what}"), SIM_KEYS)
        .map(|s| read_sim(ctx, &s));
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
        paths: task_paths,
        reset,
        sim,
    })
}

/// Whether a blocking invariant checks work that merges without a person: one
/// of the task's own or of `[merge]`. Advisory invariants report and never
/// fail a gate, so they do not count.
pub(super) fn checked(config: &Config, own: &[String]) -> bool {
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

/// `[tasks.sim]`: what the built-in simulated agent does.
fn read_sim(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Sim {
    let mut files = Vec::new();
    for (span, table) in t.array_of_tables(ctx, "files").unwrap_or_default() {
        let f = Table::new(table, span, format!("a file of {}", t.what), SIM_FILE_KEYS);
        if let Some(file) = read_sim_file(ctx, &f) {
            files.push(file);
        }
        f.finish(ctx);
    }
    let count = |ctx: &mut Ctx<'_>, key: &str| {
        t.integer_in(ctx, key, 0, i64::from(u32::MAX))
            .map_or(0, |n| u32::try_from(*n.get_ref()).unwrap_or(0))
    };
    let fail_attempts = count(ctx, "fail_attempts");
    let exit_code = t
        .integer_in(ctx, "exit_code", 0, 255)
        .map_or(0, |n| i32::try_from(*n.get_ref()).unwrap_or(0));
    let sim = Sim {
        files,
        message: t.string(ctx, "message").map(Spanned::into_inner),
        fail_attempts,
        sleep: t
            .duration(ctx, "sleep")
            .map(Spanned::into_inner)
            .unwrap_or_default(),
        exit_code,
        done: t.boolean(ctx, "done").is_none_or(|b| *b.get_ref()),
        commit: t.boolean(ctx, "commit").is_none_or(|b| *b.get_ref()),
    };
    t.finish(ctx);
    sim
}

fn read_sim_file(ctx: &mut Ctx<'_>, f: &Table<'_, '_>) -> Option<SimFile> {
    let path = f.required_string(ctx, "path", "\"src/lib.rs\"")?;
    let p = path.get_ref();
    let escapes = p.is_empty()
        || p.starts_with('/')
        || p.contains('\\')
        || p.chars().any(char::is_control)
        || p.split('/').any(|s| s == ".." || s == ".git");
    if escapes {
        ctx.error(
            Code::PathEscapes,
            path.span(),
            format!("`{p}` in {} must be a path inside the worktree", f.what),
        )
        .hint = Some("write a path relative to the repository root, like `src/lib.rs`".into());
        return None;
    }
    let content = f.string(ctx, "content");
    let append = f.string(ctx, "append");
    let delete = f.boolean(ctx, "delete").is_some_and(|b| *b.get_ref());
    let edit = match (content, append, delete) {
        (Some(c), None, false) => SimEdit::Content(c.into_inner()),
        (None, Some(a), false) => SimEdit::Append(a.into_inner()),
        (None, None, true) => SimEdit::Delete,
        _ => {
            ctx.error(
                Code::InvalidValue,
                path.span(),
                format!(
                    "`{p}` in {} needs exactly one of `content`, `append` or `delete = true`",
                    f.what
                ),
            )
            .hint = Some("for example `{ path = \"notes.md\", append = \"a line\\n\" }`".into());
            return None;
        }
    };
    Some(SimFile {
        path: path.into_inner(),
        edit,
        on_fail: f.string(ctx, "on_fail").map(Spanned::into_inner),
    })
}

/// Cross-task checks: duplicate names, dependencies, cycles. Then generations.
fn check_tasks(
    ctx: &mut Ctx<'_>,
    raw: Vec<RawTask>,
    plan_harness: Option<&str>,
    default_harness: &str,
) -> Vec<Task> {
    let mut first_line: HashMap<String, usize> = HashMap::new();
    let mut unique: Vec<RawTask> = Vec::with_capacity(raw.len());
    for task in raw {
        let line = ctx.line_of(task.name.span().start);
        if let Some(previous) = first_line.get(task.name.get_ref()) {
            ctx.error(
                Code::DuplicateTask,
                task.name.span(),
                format!("task `{}` is defined twice", task.name.get_ref()),
            )
            .hint = Some(format!(
                "the first definition is on line {previous}; rename or remove one of them"
            ));
            continue;
        }
        first_line.insert(task.name.get_ref().clone(), line);
        unique.push(task);
    }
    let index: BTreeMap<&str, usize> = unique
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.get_ref().as_str(), i))
        .collect();
    let mut edges = Vec::new();
    for (i, task) in unique.iter().enumerate() {
        let mut seen: Vec<&str> = Vec::new();
        for dep in &task.depends_on {
            let dep_name = dep.get_ref().as_str();
            if seen.contains(&dep_name) {
                ctx.warning(
                    Code::DuplicateDependency,
                    dep.span(),
                    format!(
                        "task `{}` lists dependency `{dep_name}` twice",
                        task.name.get_ref()
                    ),
                )
                .hint = Some("remove the second mention".into());
                continue;
            }
            seen.push(dep_name);
            if dep_name == task.name.get_ref() {
                ctx.error(
                    Code::SelfDependency,
                    dep.span(),
                    format!("task `{dep_name}` depends on itself"),
                )
                .hint = Some(format!("remove `{dep_name}` from its `depends_on`"));
                continue;
            }
            match index.get(dep_name) {
                Some(&j) => edges.push((i, j)),
                None => {
                    let hint = suggest::did_you_mean(dep_name, index.keys().copied())
                        .unwrap_or_else(|| {
                            if dep_name.contains('/') {
                                "plan tasks may depend only on tasks of the same plan".into()
                            } else {
                                format!(
                                    "the tasks of this plan are {}",
                                    suggest::one_of(
                                        &index.keys().copied().take(8).collect::<Vec<_>>()
                                    )
                                )
                            }
                        });
                    ctx.error(
                        Code::UnknownDependency,
                        dep.span(),
                        format!(
                            "task `{}` depends on `{dep_name}`, which is not a task of this plan",
                            task.name.get_ref()
                        ),
                    )
                    .hint = Some(hint);
                }
            }
        }
    }
    for cycle in dag::cycles(unique.len(), &edges) {
        let path: Vec<&str> = cycle
            .iter()
            .map(|&i| unique[i].name.get_ref().as_str())
            .collect();
        let first = &unique[cycle[0]];
        let second = unique[cycle[1]].name.get_ref();
        let span = first
            .depends_on
            .iter()
            .find(|d| d.get_ref() == second)
            .map_or(first.name.span(), Spanned::span);
        ctx.error(
            Code::DependencyCycle,
            span,
            format!("dependency cycle: {}", path.join(" -> ")),
        )
        .hint = Some(format!(
            "each task depends on the next; remove one of these dependencies, for example `{second}` from `{}`",
            first.name.get_ref()
        ));
    }
    unique
        .into_iter()
        .filter(|raw| raw.name_valid)
        .map(|raw| {
            let line = first_line.get(raw.name.get_ref()).copied().unwrap_or(0);
            let mut depends_on: Vec<String> = Vec::new();
            for dep in raw.depends_on {
                if !depends_on.contains(dep.get_ref()) {
                    depends_on.push(dep.into_inner());
                }
            }
            let mut task = Task {
                name: raw.name.into_inner(),
                description: raw.description,
                scope: raw.scope,
                gate: raw.gate,
                depends_on,
                invariants: raw.invariants,
                retry_max: raw.retry_max,
                harness: raw
                    .harness
                    .or_else(|| plan_harness.map(str::to_owned))
                    .unwrap_or_else(|| default_harness.to_owned()),
                model: raw.model,
                timeout: raw.timeout,
                paths: raw.paths,
                reset: raw.reset,
                sim: raw.sim,
                generation: String::new(),
                line,
            };
            task.generation = generation::of(&task);
            task
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::config::default_config;
    use crate::spec::diag::Diagnostic;

    fn compile_text(text: &str) -> (Option<Plan>, Vec<Diagnostic>) {
        let file = SourceFile {
            path: "planning/plans/p.toml".into(),
            text: text.into(),
        };
        let mut config = default_config();
        config.invariants.insert(
            "test".into(),
            crate::spec::model::Invariant {
                name: "test".into(),
                kind: crate::spec::model::InvariantKind::TestSuite,
                command: "true".into(),
                args: vec![],
                timeout: std::time::Duration::from_secs(1),
                expected_exit_code: 0,
                advisory: false,
            },
        );
        // Work that merges is checked by `[merge]`; the tests of
        // `unchecked-task` below take it away.
        config.merge.invariants = vec!["test".into()];
        let mut diags = Vec::new();
        let plan = compile(&file, "p", &config, &mut diags);
        (plan, diags)
    }

    fn compile_unmerged(text: &str, advisory: bool) -> Vec<Diagnostic> {
        let file = SourceFile {
            path: "planning/plans/p.toml".into(),
            text: text.into(),
        };
        let mut config = default_config();
        config.invariants.insert(
            "lint".into(),
            crate::spec::model::Invariant {
                name: "lint".into(),
                kind: crate::spec::model::InvariantKind::Lint,
                command: "true".into(),
                args: vec![],
                timeout: std::time::Duration::from_secs(1),
                expected_exit_code: 0,
                advisory,
            },
        );
        let mut diags = Vec::new();
        compile(&file, "p", &config, &mut diags);
        diags
    }

    #[test]
    fn an_auto_task_nothing_checks_is_refused_unless_it_says_so() {
        let plan = |extra: &str| {
            format!(
                "[plan]\nname = \"P\"\n[[tasks]]\nname = \"a\"\ndescription = \"A\"\nscope = \"narrow\"\ngate = \"auto\"\n{extra}"
            )
        };
        // Nothing checks it: refused at its `gate`, with every way out.
        let diags = compile_unmerged(&plan(""), false);
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert_eq!(diags[0].code, Code::UncheckedTask);
        assert_eq!(
            diags[0].location.as_ref().map(|l| (l.line, l.column)),
            Some((7, 8))
        );
        let hint = diags[0].hint.as_deref().unwrap_or_default();
        for way in [
            "invariants = [\"lint\"]",
            "[merge] invariants",
            "human_review",
            "allow_unchecked = true",
        ] {
            assert!(hint.contains(way), "{hint}");
        }
        // Its own blocking invariant, or opting out, is enough.
        assert!(compile_unmerged(&plan("invariants = [\"lint\"]\n"), false).is_empty());
        assert!(compile_unmerged(&plan("allow_unchecked = true\n"), false).is_empty());
        // An advisory invariant never fails a gate, so it does not count.
        let diags = compile_unmerged(&plan("invariants = [\"lint\"]\n"), true);
        assert_eq!(diags.len(), 1, "{diags:?}");
        // A misspelt invariant is one error, not also "unchecked".
        let diags = compile_unmerged(&plan("invariants = [\"lnit\"]\n"), false);
        let codes: Vec<Code> = diags.iter().map(|d| d.code).collect();
        assert_eq!(codes, [Code::UnknownInvariant], "{diags:?}");
        // A person's gate is a check.
        let reviewed = plan("").replace("gate = \"auto\"", "gate = \"human_review\"");
        assert!(compile_unmerged(&reviewed, false).is_empty());
        // `allow_unchecked` must be a boolean.
        let diags = compile_unmerged(&plan("allow_unchecked = \"yes\"\n"), false);
        assert!(diags.iter().any(|d| d.code == Code::WrongType), "{diags:?}");
    }

    #[test]
    fn one_bad_task_name_is_one_error_and_hides_nothing() {
        let text = r#"
[plan]
name = "P"

[[tasks]]
name = "Write Docs"
description = "A"
scope = "narrow"
gate = "auto"
depends_on = ["setpu"]

[[tasks]]
name = "setup"
description = "B"
scope = "narrow"
gate = "auto"

[[tasks]]
name = "publish"
description = "C"
scope = "narrow"
gate = "auto"
depends_on = ["Write Docs"]
"#;
        let (plan, mut diags) = compile_text(text);
        assert!(plan.is_none());
        crate::spec::diag::sort(&mut diags);
        let summary: Vec<String> = diags
            .iter()
            .map(|d| format!("{}:{}", d.location.as_ref().map_or(0, |l| l.line), d.code))
            .collect();
        // The invalid name, once; the misspelt dependency of the same task;
        // nothing about `publish`, whose dependency is the badly named task.
        assert_eq!(
            summary,
            ["6:invalid-name", "10:unknown-dependency"],
            "{diags:?}"
        );
        assert_eq!(diags[1].hint.as_deref(), Some("did you mean `setup`?"));
    }

    const DIAMOND: &str = r#"
[plan]
name = "Diamond"

[[tasks]]
name = "a"
description = "A"
scope = "narrow"
gate = "auto"
invariants = ["test"]

[[tasks]]
name = "b"
description = "B"
scope = "medium"
gate = "auto"
depends_on = ["a"]

[[tasks]]
name = "c"
description = "C"
scope = "broad"
gate = "human_review"
depends_on = ["a"]

[[tasks]]
name = "d"
description = "D"
scope = "narrow"
gate = "auto"
depends_on = ["b", "c"]
"#;

    #[test]
    fn compiles_a_diamond_with_defaults() {
        let (plan, diags) = compile_text(DIAMOND);
        assert!(diags.is_empty(), "{diags:?}");
        let plan = plan.expect("valid");
        assert_eq!(plan.tasks.len(), 4);
        assert_eq!(plan.base_branch, "main");
        assert_eq!(plan.state, PlanState::Active);
        let d = plan.task("d").expect("d");
        assert_eq!(d.depends_on, ["b", "c"]);
        assert_eq!(d.retry_max, DEFAULT_RETRY_MAX);
        assert_eq!(d.harness, "claude-code");
        assert_eq!(d.line, 27);
    }

    #[test]
    fn generation_ignores_formatting_but_not_content() {
        let (a, _) = compile_text(DIAMOND);
        let reordered = DIAMOND.replace(
            "name = \"a\"\ndescription = \"A\"\nscope = \"narrow\"",
            "scope   =   \"narrow\"   # a comment\nname = \"a\"\ndescription = '''A'''",
        );
        assert_ne!(reordered, DIAMOND);
        let (b, _) = compile_text(&reordered);
        let gen_of = |p: &Option<Plan>, t: &str| {
            p.as_ref()
                .expect("valid")
                .task(t)
                .expect("task")
                .generation
                .clone()
        };
        assert_eq!(gen_of(&a, "a"), gen_of(&b, "a"));
        let (c, _) = compile_text(&DIAMOND.replace("description = \"A\"", "description = \"A2\""));
        assert_ne!(gen_of(&a, "a"), gen_of(&c, "a"));
        let (d, _) = compile_text(
            &DIAMOND.replace("depends_on = [\"b\", \"c\"]", "depends_on = [\"c\", \"b\"]"),
        );
        assert_eq!(gen_of(&a, "d"), gen_of(&d, "d"));
    }

    #[test]
    fn reports_cycles_as_paths() {
        let text = DIAMOND.replace("name = \"a\"\n", "name = \"a\"\ndepends_on = [\"d\"]\n");
        let (plan, diags) = compile_text(&text);
        assert!(plan.is_none());
        let cycle: Vec<_> = diags
            .iter()
            .filter(|d| d.code == Code::DependencyCycle)
            .collect();
        assert_eq!(cycle.len(), 1, "{diags:?}");
        assert_eq!(cycle[0].message, "dependency cycle: a -> d -> b -> a");
    }

    #[test]
    fn reports_every_task_problem_at_once() {
        let text = r#"
[plan]
name = "Broken"
[[tasks]]
name = "a"
description = "A"
scope = "narow"
gate = "auto"
depnds_on = []
[[tasks]]
name = "a"
description = "dup"
scope = "narrow"
gate = "auto"
[[tasks]]
name = "b"
description = "B"
scope = "narrow"
gate = "auto"
depends_on = ["b", "zz", "a"]
invariants = ["tets"]
"#;
        let (plan, mut diags) = compile_text(text);
        assert!(plan.is_none());
        crate::spec::diag::sort(&mut diags);
        let summary: Vec<String> = diags
            .iter()
            .map(|d| format!("{}:{}", d.location.as_ref().map_or(0, |l| l.line), d.code))
            .collect();
        assert_eq!(
            summary,
            [
                "7:invalid-value",
                "9:unknown-key",
                "11:duplicate-task",
                "20:self-dependency",
                "20:unknown-dependency",
                "21:unknown-invariant",
            ]
        );
        let unknown_key = diags
            .iter()
            .find(|d| d.code == Code::UnknownKey)
            .expect("present");
        assert_eq!(
            unknown_key.hint.as_deref(),
            Some("did you mean `depends_on`?")
        );
    }

    #[test]
    fn gator_write_backs_and_harness_names_are_warnings() {
        let text = r#"[plan]
id = "6f1c2a3e-8b7d-4c1e-9f20-3a5b7c9d1e2f"
name = "Exported"
default_harness = "codex-cli"
container_image = "gator-agent:latest"

[[tasks]]
name = "rust_types"
description = "A"
scope = "narrow"
gate = "auto"
status = "passed"
harness = "open-code"
"#;
        let (plan, diags) = compile_text(text);
        let plan = plan.expect("warnings only");
        assert_eq!(plan.default_harness.as_deref(), Some("codex"));
        assert_eq!(plan.tasks[0].harness, "opencode");
        let found: Vec<(usize, &str)> = diags
            .iter()
            .map(|d| (d.location.as_ref().map_or(0, |l| l.line), d.code.as_str()))
            .collect();
        assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
        assert_eq!(
            found,
            [
                (4, "gator-compat"),
                (5, "gator-compat"),
                (2, "gator-compat"),
                (13, "gator-compat"),
                (12, "gator-compat"),
            ]
        );
        let status = &diags[4];
        assert!(status.message.contains("planning/status/"), "{status:?}");
        assert!(
            diags[1]
                .hint
                .as_deref()
                .is_some_and(|h| h.contains("[sandbox]"))
        );
    }

    #[test]
    fn container_isolation_is_refused_with_what_converge_offers() {
        let text = DIAMOND.replace(
            "name = \"Diamond\"",
            "name = \"Diamond\"\nisolation = \"container\"",
        );
        let (plan, diags) = compile_text(&text);
        assert!(plan.is_none());
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert_eq!(diags[0].code, Code::InvalidValue);
        let hint = diags[0].hint.as_deref().unwrap_or_default();
        assert!(
            hint.contains("Landlock") && hint.contains("isolation = \"sandbox\""),
            "{hint}"
        );
    }
}
