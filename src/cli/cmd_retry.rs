//! `converge retry PLAN/TASK`: bump the task's `reset`, which changes its
//! generation, so the reconciler starts it afresh (a declarative retry).

use super::human::{commit_decision, known_task_named, short, snapshot};
use super::source::open_repo;
use super::{CliError, CliResult, Ctx, TaskArg, print};

pub fn run(ctx: &Ctx, args: &TaskArg) -> CliResult {
    let repo = open_repo(ctx)?;
    let report = snapshot(&repo)?;
    let key = known_task_named(&report, &args.task)?;
    let st = report.status.task(&key.plan, &key.task);
    if let Some(st) = st.filter(|s| s.phase == crate::status::Phase::Merged) {
        let at = st
            .merged_as
            .as_deref()
            .map_or_else(String::new, |c| format!(" as {}", short(c)));
        return Err(
            CliError::bad_input(format!("{key} is merged{at}; there is nothing to retry")).hint(
                "to change merged work, add a new task (or a queue item) that describes the change",
            ),
        );
    }
    if key.plan == crate::spec::QUEUE_PLAN {
        return Err(CliError::bad_input("queue items have no `reset` to bump")
            .hint("edit planning/queue/done/<item>.md (any change restarts it), or move it back to planning/queue/"));
    }
    let plan = &report.spec.plans[&key.plan];
    let text = plan_text(&repo, &report, &plan.file)?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| CliError::failure(format!("cannot edit {}", plan.file)).source(e))?;
    let tasks = doc
        .get_mut("tasks")
        .and_then(toml_edit::Item::as_array_of_tables_mut)
        .ok_or_else(|| CliError::failure(format!("{} has no [[tasks]]", plan.file)))?;
    let task = tasks
        .iter_mut()
        .find(|t| t.get("name").and_then(toml_edit::Item::as_str) == Some(key.task.as_str()))
        .ok_or_else(|| CliError::failure(format!("{} has no task `{}`", plan.file, key.task)))?;
    let reset = task
        .get("reset")
        .and_then(toml_edit::Item::as_integer)
        .unwrap_or(0)
        + 1;
    task.insert("reset", toml_edit::value(reset));
    let commit = commit_decision(
        &repo,
        &report,
        vec![(plan.file.clone(), Some(doc.to_string().into_bytes()))],
        "retry",
        (Some(&key.plan), Some(&key.task)),
        vec![format!("reset = {reset}: start {key} afresh")],
    )?;
    print(&format!(
        "set reset = {reset} for {key} in {} (committed as {} on {}); the next tick starts it afresh\n",
        plan.file,
        short(&commit.to_string()),
        report.base_branch
    ))
}

pub fn plan_text(
    repo: &crate::git::Repo,
    report: &crate::runtime::Snapshot,
    file: &str,
) -> CliResult<String> {
    let bytes = repo
        .read_blob_at(report.spec_commit, file)?
        .ok_or_else(|| CliError::failure(format!("{file} is not on {}", report.base_branch)))?;
    String::from_utf8(bytes)
        .map_err(|e| CliError::failure(format!("{file} is not UTF-8")).source(e))
}
