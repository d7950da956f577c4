//! `[reconcile].remote`: a tick first fetches the base and status branches and
//! fast-forwards them, then pushes what it committed with a lease on the
//! fetched tips. Across machines the push is the compare-and-swap: a push that
//! loses takes this tick's commits back locally, and the next tick recomputes
//! from the remote's state. converge never rewrites a diverged branch.

use std::collections::BTreeMap;

use gix::ObjectId;

use crate::git::{Pushed, Repo};

use super::tick::{TickError, TickReport};

/// The tip of each branch as fetched from the remote (`None`: the remote does
/// not have it): what a push expects to replace.
pub(crate) type Leases = BTreeMap<String, Option<ObjectId>>;

/// Fetches and fast-forwards each of `branches`; returns their leases and a
/// line for each branch that moved.
pub(crate) fn sync_all(
    repo: &Repo,
    remote: &str,
    branches: &[String],
) -> Result<(Leases, Vec<String>), TickError> {
    let mut leases = Leases::new();
    let mut lines = Vec::new();
    for branch in branches {
        let (tip, moved) = sync_from_remote(repo, remote, branch)?;
        if moved {
            lines.push(format!("fast-forwarded {branch} from {remote}"));
        }
        leases.insert(branch.clone(), tip);
    }
    Ok((leases, lines))
}

/// Brings `branch` up to date with `remote`: fetches it and fast-forwards the
/// local branch (and a clean checkout of it) when the remote is ahead. Returns
/// the remote's tip (the lease for the push) and whether the local branch moved.
pub(crate) fn sync_from_remote(
    repo: &Repo,
    remote: &str,
    branch: &str,
) -> Result<(Option<ObjectId>, bool), TickError> {
    let remote_tip = repo.fetch_branch(remote, branch)?;
    let Some(theirs) = remote_tip else {
        return Ok((None, false));
    };
    match repo.branch_tip(branch)? {
        None => {
            repo.create_ref(&format!("refs/heads/{branch}"), theirs, "converge: fetch")?;
            Ok((Some(theirs), true))
        }
        Some(ours) if ours == theirs => Ok((Some(theirs), false)),
        Some(ours) if repo.is_ancestor(ours, theirs)? => {
            repo.advance_branch(
                branch,
                ours,
                theirs,
                "converge: fast-forward from the remote",
            )?;
            Ok((Some(theirs), true))
        }
        Some(ours) if repo.is_ancestor(theirs, ours)? => Ok((Some(theirs), false)),
        Some(_) => Err(TickError::Diverged {
            branch: branch.to_owned(),
            remote: remote.to_owned(),
        }),
    }
}

/// Pushes every branch that moved since it was fetched, with its lease. The
/// first push that loses a race takes this tick's commits back on its branch
/// and is reported in `report.push_rejected`; the pushes after it are not made.
/// What the tick fetched since it took its leases (the forge merged on the
/// remote and fetched the base branch after): a branch here that contains
/// that fetched tip is pushed with a lease on it. Nothing is lost that way:
/// the remote was at the fetched tip, and ours holds it.
pub(crate) fn follow_fetched(
    repo: &Repo,
    remote: &str,
    leases: &mut Leases,
) -> Result<(), TickError> {
    for (branch, lease) in leases.iter_mut() {
        let Some(fetched) = repo.ref_target(&format!("refs/remotes/{remote}/{branch}"))? else {
            continue;
        };
        let Some(ours) = repo.branch_tip(branch)? else {
            continue;
        };
        if *lease == Some(fetched) {
            continue;
        }
        let after = match lease {
            Some(l) => repo.is_ancestor(*l, fetched)?,
            None => true,
        };
        if after && repo.is_ancestor(fetched, ours)? {
            *lease = Some(fetched);
        }
    }
    Ok(())
}

pub(crate) fn push_all(
    repo: &Repo,
    remote: &str,
    leases: &Leases,
    report: &mut TickReport,
) -> Result<(), TickError> {
    for (branch, lease) in leases {
        let Some(ours) = repo.branch_tip(branch)? else {
            continue;
        };
        if *lease == Some(ours) {
            continue;
        }
        match repo.push_with_lease(remote, branch, ours, *lease)? {
            Pushed::Ok => report.remote.push(format!(
                "pushed {branch} to {remote} ({})",
                &ours.to_string()[..7]
            )),
            Pushed::Rejected { message } => {
                // Another reconciler pushed first. Take this tick's commits back
                // so that the next tick starts from the remote's state; its
                // side effects are adopted there (every action is idempotent).
                if let Some(theirs) = lease
                    && repo.is_ancestor(*theirs, ours)?
                {
                    repo.advance_branch(branch, ours, *theirs, "converge: lost a push race")?;
                }
                report.push_rejected = Some(format!(
                    "pushing {branch} to {remote} was rejected: another reconciler pushed first; the next tick recomputes ({message})"
                ));
                break;
            }
        }
    }
    Ok(())
}
