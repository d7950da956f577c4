//! What the human-facing commands share: naming a task, reading the current
//! spec and status (the read-only half of a tick), and committing a human
//! decision on the base branch.

use super::{CliError, CliResult};
use crate::git::Repo;
use crate::model::TaskKey;
pub use crate::model::short;
use crate::runtime::Snapshot;
use crate::time::Timestamp;

/// Parses `PLAN/TASK`.
pub fn task_key(text: &str) -> CliResult<TaskKey> {
    let parsed = text
        .split_once('/')
        .filter(|(p, t)| !p.is_empty() && !t.is_empty() && !t.contains('/'));
    match parsed {
        Some((plan, task)) => Ok(TaskKey::new(plan, task)),
        None => Err(
            CliError::bad_input(format!("`{text}` does not name a task")).hint(
                "name a task as PLAN/TASK, for example `auth/login`; `converge status` lists them",
            ),
        ),
    }
}

/// Parses `PLAN/TASK` and checks that the task exists, with a suggestion when
/// it does not: a bare task name that one plan has gets `did you mean
/// `plan/task`?`.
pub fn known_task_named(report: &Snapshot, text: &str) -> CliResult<TaskKey> {
    match task_key(text) {
        Ok(key) => known_task(report, &key).map(|()| key),
        Err(error) if !text.contains('/') => {
            let owners: Vec<String> = report
                .spec
                .plans
                .values()
                .filter(|p| p.task(text).is_some())
                .map(|p| format!("`{}/{text}`", p.id))
                .collect();
            Err(match owners.as_slice() {
                [] => error,
                [one] => error.hint(format!("did you mean {one}?")),
                many => error.hint(format!("did you mean one of {}?", many.join(", "))),
            })
        }
        Err(error) => Err(error),
    }
}

/// The read-only half of a tick: the spec, the status brought in line with it,
/// and what the next tick would do. Changes nothing.
pub fn snapshot(repo: &Repo) -> CliResult<Snapshot> {
    crate::runtime::snapshot(repo, Timestamp::now())
        .map_err(|e| super::cmd_reconcile::loop_error(crate::runtime::LoopError::Tick(e)))
}

/// Checks that the task exists in a valid plan of the spec.
pub fn known_task(report: &Snapshot, key: &TaskKey) -> CliResult<()> {
    let plan = report.spec.plans.get(&key.plan);
    if plan.is_some_and(|p| p.task(&key.task).is_some()) {
        return Ok(());
    }
    let hint = match plan {
        Some(p) => match crate::spec::suggest::did_you_mean(
            &key.task,
            p.tasks.iter().map(|t| t.name.as_str()),
        ) {
            Some(h) => h,
            None => format!("`converge plan show {}` lists its tasks", p.id),
        },
        None => match crate::spec::suggest::did_you_mean(
            &key.plan,
            report.spec.plans.keys().map(String::as_str),
        ) {
            Some(h) => h,
            None => "`converge status` lists the plans and tasks".to_owned(),
        },
    };
    Err(CliError::bad_input(format!(
        "there is no task `{key}` on {}",
        report.base_branch
    ))
    .hint(hint))
}
