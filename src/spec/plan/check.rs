//! The checks across a plan's tasks (duplicate names, dependencies, cycles),
//! then the tasks as the model holds them, with their generations.

use std::collections::{BTreeMap, HashMap};

use toml::Spanned;

use super::super::dag;
use super::super::diag::Code;
use super::super::generation;
use super::super::model::Task;
use super::super::suggest;
use super::super::toml_walk::Ctx;
use super::task::RawTask;

/// Cross-task checks: duplicate names, dependencies, cycles. Then generations.
pub(super) fn check_tasks(
    ctx: &mut Ctx<'_>,
    raw: Vec<RawTask>,
    plan_harness: Option<&str>,
    default_harness: &str,
) -> Vec<Task> {
    let (unique, first_line) = unique_names(ctx, raw);
    let edges = dependency_edges(ctx, &unique);
    report_cycles(ctx, &unique, &edges);
    unique
        .into_iter()
        .filter(|raw| raw.name_valid)
        .map(|mut raw| {
            let line = first_line.get(raw.name.get_ref()).copied().unwrap_or(0);
            let harness = raw
                .harness
                .take()
                .or_else(|| plan_harness.map(str::to_owned))
                .unwrap_or_else(|| default_harness.to_owned());
            into_task(raw, harness, line)
        })
        .collect()
}

/// The tasks with the second and later definitions of a name left out (and
/// reported), and the line of each name's first definition.
fn unique_names(ctx: &mut Ctx<'_>, raw: Vec<RawTask>) -> (Vec<RawTask>, HashMap<String, usize>) {
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
    (unique, first_line)
}

/// The edges (task, dependency) of the task graph, by index into `unique`;
/// repeated, self and unknown dependencies are reported instead.
fn dependency_edges(ctx: &mut Ctx<'_>, unique: &[RawTask]) -> Vec<(usize, usize)> {
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
                None => unknown_dependency(ctx, task, dep, &index),
            }
        }
    }
    edges
}

fn unknown_dependency(
    ctx: &mut Ctx<'_>,
    task: &RawTask,
    dep: &Spanned<String>,
    index: &BTreeMap<&str, usize>,
) {
    let dep_name = dep.get_ref().as_str();
    let hint = suggest::did_you_mean(dep_name, index.keys().copied()).unwrap_or_else(|| {
        if dep_name.contains('/') {
            "plan tasks may depend only on tasks of the same plan".into()
        } else {
            format!(
                "the tasks of this plan are {}",
                suggest::one_of(&index.keys().copied().take(8).collect::<Vec<_>>())
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

fn report_cycles(ctx: &mut Ctx<'_>, unique: &[RawTask], edges: &[(usize, usize)]) {
    for cycle in dag::cycles(unique.len(), edges) {
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
}

/// A checked task as the model holds it: dependencies once each, the effective
/// harness, and its generation.
fn into_task(raw: RawTask, harness: String, line: usize) -> Task {
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
        harness,
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
}
