//! Escalate: retrying stops and a human decides. A human's rejection counts as
//! a failure of the attempt.

use crate::decide::Reason;
use crate::model::{FailureCode, TaskKey};
use crate::spec::Spec;
use crate::status::{Failure, Status};

use super::{ActCtx, Applied, Outcome};

pub(super) fn escalate(
    ctx: &ActCtx<'_>,
    status: &Status,
    key: &TaskKey,
    reason: &Reason,
) -> Applied {
    let attempt = status.task(&key.plan, &key.task).map_or(0, |s| s.attempt);
    let rejection = rejection_for(ctx.spec, key, attempt, reason);
    Applied::done(
        format!("escalate {key}: {reason}"),
        vec![Outcome::Escalated { rejection }],
    )
}

/// The failure a rejection stands for: a human's (`converge reject`), or a
/// review asking for changes on the pull request, whose words go to the next
/// attempt.
pub(super) fn rejection_for(
    spec: &Spec,
    key: &TaskKey,
    attempt: u32,
    reason: &Reason,
) -> Option<Failure> {
    match reason {
        Reason::Rejected => Some(rejection(spec, key, attempt)),
        Reason::ChangesRequested {
            number,
            by,
            feedback,
        } => Some(Failure {
            attempt,
            reason: FailureCode::ChangesRequested,
            message: format!("{by} requested changes on pull request #{number}"),
            output_tail: Some(feedback.clone()).filter(|f| !f.is_empty()),
        }),
        _ => None,
    }
}

/// The failure a human's rejection stands for.
pub(super) fn rejection(spec: &Spec, key: &TaskKey, attempt: u32) -> Failure {
    let approval = spec.approvals.get(&(key.plan.clone(), key.task.clone()));
    Failure {
        attempt,
        reason: FailureCode::Rejected,
        message: approval.and_then(|a| a.reason.clone()).map_or_else(
            || "a reviewer rejected the work".to_owned(),
            |r| format!("a reviewer rejected the work: {r}"),
        ),
        output_tail: None,
    }
}
