//! Merge: passed work goes into the base branch through the forge
//! ([`crate::forge::Forge::merge`]): the head the gate judged, by
//! compare-and-swap on the base. What the forge reports becomes the task's
//! outcome; a base that moved under the merge ends the tick (the next one
//! recomputes).

use crate::forge::{MergeOutcome, MergeRequest};
use crate::model::{CommitId, FailureCode, TaskKey};
use crate::spec::{Decision as Verdict, Plan, Task};
use crate::status::{Failure, Status};

use super::{ActCtx, ActError, Applied, Outcome};

/// The prefix of a `[merge]` invariant's evidence in a task's `gate` table
/// (`merge:NAME`; no invariant name contains `:`).
pub const MERGE_EVIDENCE: &str = "merge:";

pub(super) fn merge(
    ctx: &mut ActCtx<'_>,
    status: &Status,
    key: &TaskKey,
    head: CommitId,
) -> Result<Applied, ActError> {
    let passed = super::passed_task(ctx.spec, status, key)?;
    let (attempt, change) = (passed.attempt, passed.change);
    let merging = ask_forge(ctx, key, &passed, head)?;
    let mut outcomes = Vec::new();
    if !merging.evidence.is_empty() {
        // The evidence, next to the gate's: `converge gate` shows it.
        outcomes.push(Outcome::MergeEvidence(
            merging
                .evidence
                .into_iter()
                .map(|(name, e)| (format!("{MERGE_EVIDENCE}{name}"), e))
                .collect(),
        ));
    }
    answer(
        ctx,
        (key, attempt, change.is_some()),
        merging.outcome,
        outcomes,
    )
}

/// Asks the forge to merge `head`, the work the gate judged, as the task's
/// merge commit (by compare-and-swap on the base, or through its change).
fn ask_forge(
    ctx: &ActCtx<'_>,
    key: &TaskKey,
    passed: &super::PassedTask<'_>,
    head: CommitId,
) -> Result<crate::forge::Merging, ActError> {
    let (attempt, change) = (passed.attempt, passed.change);
    let message = message(ctx, key, (passed.plan, passed.task), attempt, head);
    let signer = ctx.signer();
    Ok(ctx.forge.merge(&MergeRequest {
        key,
        attempt,
        change: change.map(|c| c.number),
        waiting_since: change.and_then(|c| c.waiting.as_ref()).map(|w| w.since),
        head,
        updated: change.and_then(|c| c.updated),
        base_branch: &ctx.base_branch,
        base: ctx.base_tip,
        message: &message,
        signer: &signer,
    })?)
}

/// The forge merged the work as `commit`: the tick's base moves with it.
fn merged_as(
    ctx: &mut ActCtx<'_>,
    key: &TaskKey,
    attempt: u32,
    commit: gix::ObjectId,
    mut outcomes: Vec<Outcome>,
) -> Result<Applied, ActError> {
    // The base branch as the forge left it: at the merge (here), or
    // fast-forwarded to the forge's base after merging there.
    ctx.base_tip = ctx
        .repo
        .branch_tip(&ctx.base_branch)?
        .filter(|tip| *tip != ctx.base_tip)
        .unwrap_or(commit);
    crate::crash::point("after-merge");
    outcomes.push(Outcome::Merged {
        attempt,
        commit: crate::git::commit_id(commit)?,
    });
    Ok(Applied::done(
        format!(
            "merge {key} (attempt {attempt}) into {} as {}",
            ctx.base_branch,
            &commit.to_string()[..7]
        ),
        outcomes,
    ))
}

/// What the forge's answer does to the task, after the merge's own
/// `outcomes`: merged, failed, waiting, updated, deferred, hands off, or the
/// base moved under the merge (which ends the tick). `has_change`: the task
/// has a change on the forge.
fn answer(
    ctx: &mut ActCtx<'_>,
    (key, attempt, has_change): (&TaskKey, u32, bool),
    outcome: MergeOutcome,
    mut outcomes: Vec<Outcome>,
) -> Result<Applied, ActError> {
    let fail = |reason: FailureCode, message: String, output_tail, mut outcomes: Vec<Outcome>| {
        outcomes.push(Outcome::Failed {
            attempt,
            head: None,
            failure: Failure {
                attempt,
                reason,
                message,
                output_tail,
            },
        });
        outcomes
    };
    let branch = key.branch();
    let base_branch = ctx.base_branch.clone();
    Ok(match outcome {
        MergeOutcome::Merged { commit } => return merged_as(ctx, key, attempt, commit, outcomes),
        // Someone else pushed to the change's branch (or GitHub refused the
        // merge with 409): converge keeps its hands off it, as when it sees
        // that before a merge; a new attempt would have nowhere to go.
        MergeOutcome::HeadMoved if has_change => {
            let why = format!("someone else pushed to {branch} before converge merged it");
            Applied::done(format!("merge {key}: hands off, {why}"), {
                outcomes.push(Outcome::HandsOff { why });
                outcomes
            })
        }
        // The branch moved after its gate: what passed is not what would merge.
        MergeOutcome::HeadMoved => Applied::done(
            format!("merge {key}: refused, the branch moved after its gate"),
            fail(
                FailureCode::BranchMoved,
                format!(
                    "{branch} moved after its invariants passed; the work is checked again on a new attempt"
                ),
                None,
                outcomes,
            ),
        ),
        MergeOutcome::Conflict { paths } => {
            let message = format!(
                "merging into {base_branch} conflicts in {}; the next attempt starts from the new base",
                paths.join(", ")
            );
            let line = format!("merge {key}: {message}");
            Applied::done(
                line,
                fail(FailureCode::MergeConflict, message, None, outcomes),
            )
        }
        MergeOutcome::ChecksFailed { ending, tail, .. } if has_change => {
            let line = format!("merge {key}: {ending}");
            let tail = Some(tail).filter(|t| !t.is_empty());
            Applied::done(
                line,
                fail(FailureCode::ChecksFailed, ending, tail, outcomes),
            )
        }
        MergeOutcome::ChecksFailed { name, ending, tail } => {
            let message = format!("merge invariant `{name}` failed on the merge result: {ending}");
            let line = format!("merge {key}: {message}; `converge gate {key}` shows its output");
            let tail = Some(tail).filter(|t| !t.is_empty());
            Applied::done(
                line,
                fail(FailureCode::MergeInvariantFailed, message, tail, outcomes),
            )
        }
        MergeOutcome::Waiting { why, until } => {
            Applied::done(format!("merge {key}: waits, {why}"), {
                outcomes.push(Outcome::MergeWaiting { why, until });
                outcomes
            })
        }
        MergeOutcome::TimedOut { why } => {
            let line = format!("merge {key}: {why}");
            let mut outcomes = fail(FailureCode::ChecksTimedOut, why, None, outcomes);
            outcomes.push(Outcome::Escalated { rejection: None });
            Applied::done(line, outcomes)
        }
        MergeOutcome::Updated { head, why } => Applied::done(format!("merge {key}: {why}"), {
            outcomes.push(Outcome::ChangeUpdated { head });
            outcomes
        }),
        MergeOutcome::Deferred(reason) => Applied {
            line: format!("merge {key}: deferred"),
            files: Vec::new(),
            deferred: Some(reason),
            failed: None,
            outcomes,
        },
        MergeOutcome::BaseMoved => {
            return Err(ActError::BaseMoved {
                branch: base_branch,
                kept: outcomes,
            });
        }
    })
}

/// The merge commit's message: the task, its approval, converge's trailers.
fn message(
    ctx: &ActCtx<'_>,
    key: &TaskKey,
    (plan, task): (&Plan, &Task),
    attempt: u32,
    head: CommitId,
) -> String {
    let approval = ctx
        .spec
        .approvals
        .get(&(key.plan.clone(), key.task.clone()))
        .filter(|a| a.decision == Verdict::Approve && head == a.commit);
    let mut message = format!(
        "converge: merge {key} (attempt {attempt})\n\n{}\n\n",
        first_line(&task.description)
    );
    if let Some(a) = approval {
        message.push_str(&format!(
            "Approved-by: {}\n",
            a.by.as_deref().unwrap_or("a reviewer")
        ));
    }
    message.push_str(&format!(
        "Converge-Action: merge\nConverge-Plan: {}\nConverge-Task: {}\nConverge-Attempt: {attempt}\n",
        plan.id, task.name
    ));
    message
}

fn first_line(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
}
