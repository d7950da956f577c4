//! Worktrees and branches of tasks that are gone or merged, worktree
//! registrations whose directory is gone, and directories in converge's
//! worktree roots that are neither a worktree git knows nor an agent's
//! private repository converge's run records name.

use std::path::PathBuf;

use crate::act::dispatch::worktree_root;
use crate::git::Repo;
use crate::model::TaskKey;
use crate::observe::runs;
use crate::rundir::Layout;

/// A linked worktree git knows: its directory and branch.
type Registered = (PathBuf, Option<String>);

use super::{DoctorError, Finding, Fix, Level, Snapshot, in_spec, set_aside};

pub(super) fn check(repo: &Repo, report: &Snapshot) -> Result<Vec<Finding>, DoctorError> {
    let mut out = tasks(report);
    let registered = repo.linked_worktrees()?;
    out.extend(gone_registrations(&registered));
    out.extend(unknown_dirs(repo, report, &registered)?);
    out.extend(quarantined(repo)?);
    if out.is_empty() {
        out.push(Finding::ok("orphans", "no orphan worktrees or branches"));
    }
    Ok(out)
}

/// Tasks in no plan or merged whose worktree or branch remains (and no agent
/// runs in it), with why.
pub(super) fn orphan_tasks(report: &Snapshot) -> Vec<(&TaskKey, &'static str)> {
    let mut out = Vec::new();
    for (key, obs) in &report.observation.tasks {
        if !(obs.worktree || obs.branch_head.is_some()) || set_aside(report, key) {
            continue;
        }
        let running = matches!(
            obs.run.as_ref().map(|r| &r.state),
            Some(crate::observe::RunState::Running { .. })
        );
        let why = if !in_spec(report, key) {
            "is in no plan"
        } else if obs.merged {
            "is merged"
        } else {
            continue;
        };
        if running {
            continue;
        }
        out.push((key, why));
    }
    out
}

/// Worktrees and branches of tasks that are gone or merged.
fn tasks(report: &Snapshot) -> Vec<Finding> {
    let attempt_of = |key: &TaskKey| {
        report
            .status
            .task(&key.plan, &key.task)
            .map_or(0, |s| s.attempt)
    };
    orphan_tasks(report)
        .into_iter()
        .map(|(key, why)| {
            Finding::new(
                "orphans",
                Level::Problem,
                format!("{key} {why}, but its worktree or branch remains"),
            )
            .hint("the next tick's cleanup removes it; `converge doctor --fix` does it now")
            .fix(Fix::Retire {
                key: key.clone(),
                attempt: attempt_of(key),
            })
        })
        .collect()
}

/// Registrations whose directory is gone.
fn gone_registrations(registered: &[Registered]) -> Vec<Finding> {
    registered
        .iter()
        .filter(|(path, _)| !path.exists())
        .map(|(path, _)| {
            Finding::new(
                "orphans",
                Level::Problem,
                format!(
                    "a worktree is registered at {}, which is gone",
                    path.display()
                ),
            )
            .fix(Fix::Prune)
        })
        .collect()
}

/// Directories git does not know. converge's own roots hold nothing else; a
/// configured root may (a directory shared with other tools), so only its
/// plans' directories count.
fn unknown_dirs(
    repo: &Repo,
    report: &Snapshot,
    registered: &[Registered],
) -> Result<Vec<Finding>, DoctorError> {
    let configured = report.spec.config.reconcile.worktree_root.as_deref();
    let mut roots = vec![
        Layout::new(repo.common_dir()).default_worktree_root(),
        Layout::new(repo.common_dir()).legacy_worktrees(),
    ];
    roots.dedup();
    let own = roots.len();
    if let Ok(root) = worktree_root(repo.common_dir(), configured)
        && !roots.contains(&root)
    {
        roots.push(root);
    }
    let mut out = Vec::new();
    for (i, root) in roots.iter().enumerate() {
        for plan in runs::sorted_dirs(root)? {
            if i >= own
                && !report.spec.plans.contains_key(&plan)
                && !report.status.plans.contains_key(&plan)
            {
                continue;
            }
            for task in runs::sorted_dirs(&root.join(&plan))? {
                let path = root.join(&plan).join(&task);
                // A linked worktree git knows, or an agent's private
                // repository where its task's newest run started.
                let known = registered
                    .iter()
                    .any(|(p, _)| crate::git::same_path(p, &path))
                    || crate::act::dispatch::checkout_of(repo, &TaskKey::new(&plan, &task))?
                        .is_some_and(|p| crate::git::same_path(&p, &path));
                if !known {
                    out.push(
                        Finding::new(
                            "orphans",
                            Level::Problem,
                            format!("{} is not a worktree git knows", path.display()),
                        )
                        .fix(Fix::RemoveDir(path)),
                    );
                }
            }
        }
    }
    Ok(out)
}

/// Worktrees converge set aside instead of deleting: it refused to import
/// from them (a tampered repository, forged objects; see `act::import`). A
/// person looks at them and removes them; doctor never does.
fn quarantined(repo: &Repo) -> Result<Vec<Finding>, DoctorError> {
    let root = Layout::new(repo.common_dir()).root().join("quarantine");
    let mut out = Vec::new();
    for plan in runs::sorted_dirs(&root)? {
        for task in runs::sorted_dirs(&root.join(&plan))? {
            for attempt in runs::sorted_dirs(&root.join(&plan).join(&task))? {
                let path = root.join(&plan).join(&task).join(&attempt);
                out.push(
                    Finding::new(
                        "orphans",
                        Level::Warning,
                        format!(
                            "the worktree of {plan}/{task} (attempt {attempt}) was set aside at {}: converge refused to import from it (see its gate's failure)",
                            path.display()
                        ),
                    )
                    .hint(format!(
                        "look at what the agent left there, then remove it: rm -rf {}",
                        path.display()
                    )),
                );
            }
        }
    }
    Ok(out)
}
