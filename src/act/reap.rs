//! Reap (a run past its deadline, an agent that vanished, a claim that
//! expired) and cancel (a run whose task was edited, paused or removed): both
//! kill what is left of the run and close its record.

use crate::decide::Reason;
use crate::model::{FailureCode, TaskKey};
use crate::rundir::Layout;
use crate::rundir::procs::{kill_run, write_exit};
use crate::status::Failure;

use super::{ActCtx, ActError, Applied, Outcome, tail_of};

/// Kills what is left of an attempt's processes and writes its exit record;
/// returns its run directory.
fn stop_run(
    ctx: &ActCtx<'_>,
    key: &TaskKey,
    attempt: u32,
    timed_out: bool,
) -> Result<std::path::PathBuf, ActError> {
    let dir = Layout::new(ctx.repo.common_dir()).run(key, attempt);
    kill_run(&dir)?;
    write_exit(&dir, ctx.now, timed_out)?;
    Ok(dir)
}

pub(super) fn reap(
    ctx: &mut ActCtx<'_>,
    key: &TaskKey,
    attempt: u32,
    reason: &Reason,
) -> Result<Applied, ActError> {
    let dir = stop_run(ctx, key, attempt, matches!(reason, Reason::Timeout))?;
    let (code, message) = match reason {
        Reason::Timeout => (
            FailureCode::Timeout,
            "the attempt ran past its deadline; its processes were killed".to_owned(),
        ),
        Reason::ClaimExpired { by } => (
            FailureCode::ClaimExpired,
            format!(
                "reconciler `{by}` claimed the attempt and did not finish it by the claim's deadline"
            ),
        ),
        _ => (
            FailureCode::AgentVanished,
            "the agent's process disappeared without `converge done`".to_owned(),
        ),
    };
    let failure = Failure {
        attempt,
        reason: code,
        message,
        output_tail: tail_of(
            &crate::rundir::layout::agent_log(&dir),
            crate::check::TAIL_LINES,
        ),
    };
    Ok(Applied::done(
        format!("reap {key} (attempt {attempt}): {reason}"),
        vec![Outcome::Failed {
            attempt,
            head: None,
            failure,
        }],
    ))
}

pub(super) fn cancel(
    ctx: &mut ActCtx<'_>,
    key: &TaskKey,
    attempt: u32,
    reason: &Reason,
) -> Result<Applied, ActError> {
    stop_run(ctx, key, attempt, false)?;
    let outcome = match reason {
        // The task is gone from its plan: so is its status. Cleanup keeps its
        // work under refs/converge/attempts/ and removes the worktree.
        Reason::RemovedFromPlan => Outcome::Forgotten,
        _ => Outcome::Cancelled { attempt },
    };
    Ok(Applied::done(
        format!("cancel {key} (attempt {attempt}): {reason}"),
        vec![outcome],
    ))
}
