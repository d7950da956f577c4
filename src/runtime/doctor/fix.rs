//! `converge doctor --fix`: applies the findings' fixes.

use crate::act::dispatch::worktree_root;
use crate::act::retire;
use crate::git::Repo;
use crate::observe::runs::{self, read_lease};
use crate::rundir::procs::kill_run;

use super::{DoctorError, Finding, Fix, Snapshot};

/// Waits (up to a few seconds) for a killed run's processes to be gone, so that
/// the next look sees what the kill left behind.
fn wait_until_gone(run_dir: &std::path::Path) -> Result<(), DoctorError> {
    let lease = read_lease(run_dir)?;
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < until {
        let supervisor = lease
            .as_ref()
            .is_some_and(|l| runs::process_alive(l.pid, l.start_ticks));
        if !supervisor && runs::processes_of_run(run_dir).is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(())
}

/// Applies the fixes of `findings`; returns a line per fix.
pub fn fix(
    repo: &Repo,
    report: &Snapshot,
    findings: &[Finding],
) -> Result<Vec<String>, DoctorError> {
    let base = gix::ObjectId::from(report.observation.base_tip);
    let mut done = Vec::new();
    let mut pruned = false;
    let mut finished = false;
    for finding in findings {
        match &finding.fix {
            Some(Fix::Retire { key, attempt }) => {
                let env = |name: &str| std::env::var(name).ok();
                let signer = report.spec.config.reconcile.signer(&env);
                let root = worktree_root(
                    repo.common_dir(),
                    report.spec.config.reconcile.worktree_root.as_deref(),
                )
                .unwrap_or_else(|_| {
                    crate::rundir::Layout::new(repo.common_dir()).default_worktree_root()
                });
                retire(repo, key, base, *attempt, (&signer, &root))?;
                done.push(format!("removed the worktree and branch of {key}"));
            }
            Some(Fix::RemoveDir(path)) => {
                std::fs::remove_dir_all(path).map_err(|source| DoctorError::Io {
                    what: path.display().to_string(),
                    source,
                })?;
                done.push(format!("removed {}", path.display()));
            }
            Some(Fix::Kill { run_dir }) => {
                kill_run(run_dir).map_err(crate::act::ActError::from)?;
                wait_until_gone(run_dir)?;
                done.push(format!("killed the processes of {}", run_dir.display()));
            }
            Some(Fix::SecretMode(_)) => done.push(fix_secret(finding)?),
            Some(Fix::FinishCheckouts) if !finished => {
                finished = true;
                for recovered in repo.recover_checkouts()? {
                    done.push(match recovered {
                        crate::git::Recovered::Finished { branch, worktree } => format!(
                            "brought the checkout of {branch} at {} to its branch",
                            worktree.display()
                        ),
                        crate::git::Recovered::NothingToDo { branch } => {
                            format!("forgot an update of {branch} that never started")
                        }
                        crate::git::Recovered::Blocked {
                            branch,
                            worktree,
                            paths,
                        } => format!(
                            "brought the checkout of {branch} at {} to its branch except {}: commit, stash or restore them and run doctor again",
                            worktree.display(),
                            paths.join(", ")
                        ),
                    });
                }
            }
            Some(Fix::ForgetLeftAlone(note)) => {
                crate::git::remove_file_if_exists(note)?;
                done.push(format!("forgot the note {}", note.display()));
            }
            Some(Fix::Prune) if !pruned => {
                pruned = true;
                repo.prune_worktrees()?;
                done.push("forgot worktrees whose directories are gone".into());
            }
            Some(Fix::Recover(found)) => done.push(crate::runtime::recover::repair(found)?),
            _ => {}
        }
    }
    Ok(done)
}

/// Makes the secret private (the fix of [`super::check_secret`]'s finding).
pub fn fix_secret(finding: &Finding) -> Result<String, DoctorError> {
    let Some(Fix::SecretMode(path)) = &finding.fix else {
        return Ok("nothing to fix".into());
    };
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        DoctorError::Io {
            what: path.display().to_string(),
            source,
        }
    })?;
    Ok(format!("made {} 0600", path.display()))
}
