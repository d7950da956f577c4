//! Processes and leases: agents that outlived their supervisor, attempts that
//! still run though a later one replaced them or their task left its plan,
//! and attempts gone without an exit record. An attempt's processes are found
//! by containment (the init of its PID namespace, what its supervisor
//! started; [`runs::processes_of_run`]), not by their environment.

use std::collections::BTreeSet;
use std::path::Path;

use crate::git::Repo;
use crate::model::TaskKey;
use crate::observe::runs::{self, Lease, read_exit, read_lease};

use super::{DoctorError, Finding, Fix, Level, Snapshot, in_spec, set_aside};

pub(super) fn check(repo: &Repo, report: &Snapshot) -> Result<Vec<Finding>, DoctorError> {
    let mut out = Vec::new();
    let layout = crate::rundir::Layout::new(repo.common_dir());
    let latest: BTreeSet<(TaskKey, u32)> = crate::rundir::records::latest_attempts(&layout)?
        .into_iter()
        .map(|(k, n, _)| (k, n))
        .collect();
    let runs_dir = layout.runs();
    for plan in runs::sorted_dirs(&runs_dir)? {
        for task in runs::sorted_dirs(&runs_dir.join(&plan))? {
            let key = TaskKey::new(&plan, &task);
            for attempt in runs::sorted_dirs(&runs_dir.join(&plan).join(&task))? {
                let Ok(n) = attempt.parse::<u32>() else {
                    continue;
                };
                let dir = layout.run(&key, n);
                let Some(lease) = read_lease(&dir)? else {
                    continue;
                };
                let current = latest.contains(&(key.clone(), n));
                out.extend(attempt_finding(report, &key, n, &dir, &lease, current)?);
            }
        }
    }
    if out.is_empty() {
        out.push(Finding::ok(
            "processes",
            "every live agent belongs to a current attempt",
        ));
    }
    Ok(out)
}

/// What is wrong with attempt `n` of `key`, whose run directory `dir` has
/// `lease`; `current`: whether it is the task's latest attempt.
fn attempt_finding(
    report: &Snapshot,
    key: &TaskKey,
    n: u32,
    dir: &Path,
    lease: &Lease,
    current: bool,
) -> Result<Option<Finding>, DoctorError> {
    let alive = runs::process_alive(lease.pid, lease.start_ticks)
        || lease
            .agent_pid
            .is_some_and(|p| runs::process_alive(p, None))
        || !runs::processes_of_run(dir).is_empty();
    let finished = read_exit(dir)?.is_some();
    let supervised = runs::process_alive(lease.pid, lease.start_ticks);
    if alive && !supervised {
        return Ok(Some(
            Finding::new(
                "processes",
                Level::Problem,
                format!("processes of attempt {n} of {key} outlived their supervisor"),
            )
            .hint("the next tick reaps the attempt; `converge doctor --fix` kills them now")
            .fix(Fix::Kill {
                run_dir: dir.to_owned(),
            }),
        ));
    }
    // A planner attempt of the autonomy loop is in no plan by design.
    let planned = key.is_planner() || in_spec(report, key) || set_aside(report, key);
    if alive && (!current || !planned) {
        return Ok(Some(
            Finding::new(
                "processes",
                Level::Problem,
                format!(
                    "attempt {n} of {key} still runs (pid {}), but {}",
                    lease.pid,
                    if current {
                        "its task is in no plan"
                    } else {
                        "a later attempt replaced it"
                    }
                ),
            )
            .fix(Fix::Kill {
                run_dir: dir.to_owned(),
            }),
        ));
    }
    if !alive && !finished && current {
        return Ok(Some(
            Finding::new(
                "processes",
                Level::Warning,
                format!("attempt {n} of {key} is gone without an exit record"),
            )
            .hint("the next tick reaps it and records the failure"),
        ));
    }
    Ok(None)
}
