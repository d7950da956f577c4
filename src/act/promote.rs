//! Promote: a queue item moves into the `queue` plan (a file move in the
//! status commit). It has no task, so no outcome.

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
    Ok(Applied {
        line: format!("promote queue item {item} into the `queue` plan"),
        files: vec![(from, None), (to, Some(content))],
        deferred: None,
        failed: None,
        outcomes: Vec::new(),
    })
}
