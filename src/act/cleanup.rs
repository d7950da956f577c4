//! Cleanup: the worktree and branch of a merged or removed task go, without
//! losing work ([`retire`], shared with `converge doctor --fix`).

use std::path::Path;

use gix::ObjectId;

use crate::git::Repo;
use crate::model::TaskKey;
use crate::rundir::Layout;
use crate::rundir::procs::kill_stragglers;
use crate::status::Status;

use super::dispatch;
use super::{ActCtx, ActError, Applied, Outcome};

pub(super) fn cleanup(
    ctx: &mut ActCtx<'_>,
    status: &Status,
    key: &TaskKey,
) -> Result<Applied, ActError> {
    let current = status.task(&key.plan, &key.task);
    let attempt = current.map_or(0, |s| s.attempt);
    let mut outcomes = Vec::new();
    // The branch is the last proof of a merge whose status was never recorded
    // (a crash right after merging): keep its head as the merge record before
    // the branch goes, or the task would later look un-merged.
    let in_spec = ctx
        .spec
        .plans
        .get(&key.plan)
        .is_some_and(|p| p.task(&key.task).is_some());
    if in_spec
        && let Some(head) = ctx.repo.branch_tip(&key.branch())?
        && current.is_none_or(|s| s.merged_as.is_none())
        && ctx.repo.is_ancestor(head, ctx.base_tip)?
    {
        outcomes.push(Outcome::FoundMerged {
            commit: crate::git::commit_id(head)?,
        });
    }
    retire(
        ctx.repo,
        key,
        ctx.base_tip,
        attempt,
        (&ctx.signer(), &ctx.worktree_root),
    )?;
    // The change of a task that is gone is closed, its branch deleted on
    // the forge (a merged one's went with its merge).
    let mut closed = String::new();
    if let Some(change) = current.and_then(|s| s.change.as_ref())
        && current.is_some_and(|s| s.merged_as.is_none())
        && !in_spec
    {
        // Hands-off: the branch holds someone else's commits; converge
        // neither closes the pull request nor deletes them.
        let tip = change.hands_off.is_none().then(|| change.tip());
        ctx.forge.close(
            key,
            change.number,
            tip,
            &format!(
                "converge closes this pull request: task `{key}` is no longer in `planning/` on `{}`.",
                ctx.base_branch
            ),
        )?;
        closed = format!(", closed pull request #{}", change.number);
    }
    if !in_spec {
        outcomes.push(Outcome::Forgotten);
    }
    Ok(Applied::done(
        format!("cleanup {key}: removed its worktree and branch{closed}"),
        outcomes,
    ))
}

/// Removes a task's worktree and branch without losing work: what the worktree
/// holds uncommitted is committed first, and a head that is not in `base` is
/// kept as `refs/converge/attempts/<plan>/<task>/<attempt>`. Shared by
/// `cleanup` and `converge doctor --fix`.
pub fn retire(
    repo: &Repo,
    key: &TaskKey,
    base: ObjectId,
    attempt: u32,
    (signer, root): (&crate::git::Signer, &Path),
) -> Result<(), ActError> {
    let branch = key.branch();
    let worktree = dispatch::checkout_of(repo, key)?
        .unwrap_or_else(|| crate::rundir::layout::worktree(root, key));
    let run = Layout::new(repo.common_dir()).run(key, attempt);
    kill_stragglers(&run);
    repo.clear_ref_lock(&branch)?;
    // What the worktree holds goes onto the branch first; a repository the
    // agent tampered with is set aside, not deleted (its gate said why).
    let message = format!("converge: leftovers of {key} before cleanup");
    super::import::import_or_set_aside(repo, key, attempt, &worktree, &message, signer)?;
    repo.remove_checkout(&worktree)?;
    if let Some(head) = repo.branch_tip(&branch)? {
        if !repo.is_ancestor(head, base)? {
            dispatch::keep_attempt(repo, key, attempt, head)?;
        }
        repo.delete_branch(&branch, head)?;
    }
    crate::git::remove_file_if_exists(&Layout::new(repo.common_dir()).fork_marker(key))?;
    crate::git::remove_file_if_exists(&Layout::new(repo.common_dir()).import_note(key))?;
    crate::check::forget_gates(repo.common_dir(), &key.plan, &key.task);
    Ok(())
}
