//! The machine and the secret: the secret's mode, the agent CLIs tasks still
//! to do run, git's version, Landlock.

use crate::agent::Secret;
use crate::git::Repo;
use crate::status::Phase;

use super::{DoctorError, Finding, Fix, Level, Snapshot};

pub(super) fn secret(repo: &Repo, _report: &Snapshot) -> Result<Vec<Finding>, DoctorError> {
    Ok(vec![check_secret(repo)])
}

pub(super) fn agent_clis(_repo: &Repo, report: &Snapshot) -> Result<Vec<Finding>, DoctorError> {
    Ok(installed_clis(
        report,
        std::env::var("PATH").ok().as_deref(),
    ))
}

pub(super) fn git(_repo: &Repo, _report: &Snapshot) -> Result<Vec<Finding>, DoctorError> {
    Ok(vec![git_version()])
}

pub(super) fn landlock(_repo: &Repo, _report: &Snapshot) -> Result<Vec<Finding>, DoctorError> {
    Ok(vec![landlock_probe()])
}

/// The secret's check on its own: the other checks need a tick's view, and a
/// tick refuses a secret others may read.
pub fn check_secret(repo: &Repo) -> Finding {
    let secret = Secret::path(repo.common_dir());
    match std::fs::metadata(&secret) {
        Ok(meta) => {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                Finding::new(
                    "secret",
                    Level::Problem,
                    format!("{} has mode {mode:o}; others may read it", secret.display()),
                )
                .fix(Fix::SecretMode(secret))
            } else {
                Finding::ok("secret", format!("{} is 0600", secret.display()))
            }
        }
        Err(_) if std::env::var_os(crate::agent::token::SECRET_ENV).is_some() => {
            Finding::ok("secret", "from CONVERGE_SECRET")
        }
        Err(_) => Finding::ok(
            "secret",
            "not created yet (the first tick creates it, 0600)",
        ),
    }
}

/// Whether the agent CLIs that tasks still to do will run are installed:
/// without one, each such task escalates with `harness-unavailable` on its
/// first dispatch.
fn installed_clis(report: &Snapshot, path: Option<&str>) -> Vec<Finding> {
    use std::collections::BTreeMap;
    let spec = &report.spec;
    // program -> (harness, tasks that would run it)
    let mut needed: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for plan in spec.plans.values() {
        if plan.state == crate::spec::PlanState::Draft {
            continue;
        }
        for task in &plan.tasks {
            let done = report
                .status
                .task(&plan.id, &task.name)
                .is_some_and(|s| matches!(s.phase, Phase::Merged | Phase::Cancelled));
            let Some(harness) = spec.config.harnesses.get(&task.harness) else {
                continue;
            };
            if done {
                continue;
            }
            if let Some(program) = crate::harness::cli_program(harness) {
                needed
                    .entry(program)
                    .or_insert_with(|| (task.harness.clone(), Vec::new()))
                    .1
                    .push(format!("{}/{}", plan.id, task.name));
            }
        }
    }
    if needed.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (program, (harness, tasks)) in &needed {
        if crate::harness::env::program_exists(program, path) {
            continue;
        }
        let shown = if tasks.len() > 3 {
            format!("{} and {} more", tasks[..3].join(", "), tasks.len() - 3)
        } else {
            tasks.join(", ")
        };
        out.push(
            Finding::new(
                "agent CLIs",
                Level::Problem,
                format!(
                    "`{program}` (harness `{harness}`) is not installed here (not on PATH), and tasks still to do run it: {shown}"
                ),
            )
            .hint(format!(
                "install it, or set `command` in [harness.{harness}] to its path; without it each of those tasks escalates with `harness-unavailable`"
            )),
        );
    }
    if out.is_empty() {
        out.push(Finding::ok(
            "agent CLIs",
            format!(
                "installed: {}",
                needed.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    out
}

fn git_version() -> Finding {
    let output = std::process::Command::new("git").arg("--version").output();
    let Some(output) = output.ok().filter(|o| o.status.success()) else {
        return Finding::new("git", Level::Warning, "the git command is not on PATH")
            .hint("converge needs it only to fetch and push (`[reconcile].remote`)");
    };
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let version: Vec<u32> = text
        .split_whitespace()
        .nth(2)
        .unwrap_or("")
        .split('.')
        .take(2)
        .filter_map(|p| p.parse().ok())
        .collect();
    if version.len() == 2 && (version[0], version[1]) < (2, 38) {
        return Finding::new("git", Level::Warning, format!("{text}: older than 2.38"))
            .hint("push with a lease works, but use git 2.38 or newer to compare merges with `git merge-tree --write-tree`");
    }
    Finding::ok("git", text)
}

pub(super) fn user(_repo: &Repo, _report: &Snapshot) -> Result<Vec<Finding>, DoctorError> {
    Ok(vec![root_check(rustix::process::geteuid().is_root())])
}

/// A warning when converge runs as root: its agents do too.
fn root_check(root: bool) -> Finding {
    if !root {
        return Finding::ok("user", "converge does not run as root");
    }
    Finding::new(
        "user",
        Level::Warning,
        "converge runs as root, and so do its agents: only the sandbox confines them",
    )
    .hint("run converge as an ordinary user (agents run as converge's user), with `[sandbox] enabled = true`")
}

fn landlock_probe() -> Finding {
    match crate::act::sandbox::probe() {
        crate::observe::Availability::Available { abi } => Finding::ok(
            "landlock",
            format!("available (ABI {abi}): `[sandbox] enabled = true` confines agents"),
        ),
        crate::observe::Availability::Unavailable { reason } => {
            Finding::new("landlock", Level::Warning, reason).hint(
                "agents cannot be sandboxed here: `[sandbox] enabled` runs them unconfined (and says so in status), `required = true` refuses to dispatch",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_as_root_is_a_warning_with_a_hint() {
        let root = root_check(true);
        assert_eq!(root.level, Level::Warning);
        assert!(
            root.hint
                .as_deref()
                .is_some_and(|h| h.contains("ordinary user"))
        );
        assert_eq!(root_check(false).level, Level::Ok);
    }
}
