//! Promote: a queue item moves into the `queue` plan: `planning/queue/<item>.md`
//! becomes `planning/queue/done/<item>.md`. It has no task, so no outcome.
//!
//! The move is part of the status commit when status is recorded on the base
//! branch. With a status branch of its own, the move is a commit of its own
//! on the base branch (compare-and-swap from the tip the tick read), since
//! the spec, and so which items are queued, is read from the base alone: a
//! move on the status branch would leave the item queued for ever.

use crate::status::record::{self, Change, Message, RecordError};

use super::{ActCtx, ActError, Applied};

pub(super) fn promote(ctx: &mut ActCtx<'_>, item: &str) -> Result<Applied, ActError> {
    let from = format!("planning/queue/{item}.md");
    let to = format!("planning/queue/done/{item}.md");
    let content = ctx.repo.read_blob_at(ctx.base_tip, &from)?;
    let Some(content) = content else {
        return Ok(Applied::done(
            format!("promote {item}: already promoted"),
            Vec::new(),
        ));
    };
    let line = format!("promote queue item {item} into the `queue` plan");
    let reconcile = &ctx.spec.config.reconcile;
    if reconcile.status_branch == reconcile.base_branch {
        return Ok(Applied {
            line,
            files: vec![(from, None), (to, Some(content))],
            deferred: None,
            failed: None,
            outcomes: Vec::new(),
        });
    }
    let message = Message {
        action: "promote".into(),
        plan: Some(crate::spec::QUEUE_PLAN.into()),
        task: Some(item.to_owned()),
        attempt: None,
        spec: ctx.base_tip.to_string(),
        body: vec![format!("move {from} to {to}")],
        summary: None,
    };
    let changes = [
        Change {
            path: from,
            content: None,
        },
        Change {
            path: to,
            content: Some(content),
        },
    ];
    let signer = ctx.signer();
    match record::record(
        ctx.repo,
        &ctx.base_branch,
        ctx.base_tip,
        &changes,
        &message,
        &signer,
    ) {
        Ok(record::Outcome::Committed { commit, .. }) => {
            ctx.base_tip = commit;
            Ok(Applied::done(
                format!(
                    "{line} (committed as {} on {})",
                    &commit.to_string()[..7],
                    ctx.base_branch
                ),
                Vec::new(),
            ))
        }
        Ok(record::Outcome::Unchanged) => Ok(Applied::done(line, Vec::new())),
        // Someone moved the base: the next tick reads it again.
        Err(RecordError::Conflict { .. } | RecordError::Deferred { .. }) => Ok(Applied {
            line: format!("promote {item}"),
            files: Vec::new(),
            deferred: Some(format!(
                "{} moved; the next tick promotes it",
                ctx.base_branch
            )),
            failed: None,
            outcomes: Vec::new(),
        }),
        Err(e) => Err(ActError::from(e)),
    }
}
