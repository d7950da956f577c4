//! `enqueue`: a queue item committed as `planning/queue/<name>.md` on the base
//! branch, compare-and-swap from the tip read, like every intent. The text is
//! compiled with the queue-item compiler against the base's spec first, so
//! nothing lands that the next tick would refuse; an item whose name is
//! queued, promoted or a task of the `queue` plan already is refused (the
//! name is the item's identity: enqueueing is idempotent by name).
//!
//! People call it through `converge enqueue`; the autonomy loop files its
//! planners' proposals through it (`runtime::autonomy`).

use gix::ObjectId;

use crate::git::Repo;
use crate::spec::diag::Diagnostic;
use crate::spec::toml_walk::SourceFile;
use crate::spec::{QUEUE_PLAN, queue};

use super::{Base, IntentError, commit_as};

/// A queue item's text is at most this long (as any planning file).
pub const MAX_ITEM_BYTES: usize = 1024 * 1024;

/// What [`enqueue`] committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    /// `planning/queue/<name>.md`.
    pub path: String,
    pub committed: ObjectId,
    /// Warnings the compiler gave (the item is valid).
    pub warnings: Vec<Diagnostic>,
}

/// The path of queue item `name`.
pub fn item_path(name: &str) -> String {
    format!("planning/queue/{name}.md")
}

/// Checks `text` as queue item `name` against the base's spec: its
/// diagnostics, errors first, when it is not valid; its warnings otherwise.
pub fn validate(base: &Base<'_>, name: &str, text: &str) -> Result<Vec<Diagnostic>, IntentError> {
    compile(base, name, text).map(|(_, warnings)| warnings)
}

/// [`validate`], with the compiled item.
pub fn compile(
    base: &Base<'_>,
    name: &str,
    text: &str,
) -> Result<(crate::spec::QueueItem, Vec<Diagnostic>), IntentError> {
    let path = item_path(name);
    if text.len() > MAX_ITEM_BYTES {
        return Err(IntentError::ItemTooLarge {
            file: path,
            bytes: text.len(),
        });
    }
    let file = SourceFile {
        path: path.clone(),
        text: text.to_owned(),
    };
    let spec = base.spec;
    let all_ids: Vec<String> = spec
        .plans
        .keys()
        .chain(spec.invalid_plans.iter())
        .cloned()
        .collect();
    let mut diagnostics = Vec::new();
    let item = queue::compile(
        &file,
        name,
        &spec.config,
        &spec.plans,
        &all_ids,
        &mut diagnostics,
    );
    match item {
        Some(item) if !diagnostics.iter().any(Diagnostic::is_error) => Ok((item, diagnostics)),
        _ => {
            diagnostics.sort_by_key(|d| !d.is_error());
            Err(IntentError::InvalidItem {
                file: path,
                diagnostics,
            })
        }
    }
}

/// `enqueue`: validates `text` as queue item `name` and commits it on the
/// base branch. `why` goes into the commit message's body.
pub fn enqueue(
    repo: &Repo,
    base: &Base<'_>,
    name: &str,
    text: &str,
    why: &str,
) -> Result<Enqueued, IntentError> {
    enqueue_as(repo, base, name, text, why, &crate::git::Signer::Person)
}

/// [`enqueue`], committed as `signer` (the autonomy loop files its
/// planners' proposals as converge).
pub fn enqueue_as(
    repo: &Repo,
    base: &Base<'_>,
    name: &str,
    text: &str,
    why: &str,
    signer: &crate::git::Signer,
) -> Result<Enqueued, IntentError> {
    let warnings = validate(base, name, text)?;
    let path = item_path(name);
    let done = format!("planning/queue/done/{name}.md");
    let promoted = base
        .spec
        .plans
        .get(QUEUE_PLAN)
        .is_some_and(|p| p.task(name).is_some());
    for existing in [&path, &done] {
        if promoted || repo.read_blob_at(base.commit, existing)?.is_some() {
            return Err(IntentError::AlreadyQueued {
                name: name.to_owned(),
                file: if promoted {
                    done.clone()
                } else {
                    existing.clone()
                },
            });
        }
    }
    let mut body = vec![format!("enqueue {path}")];
    if !why.trim().is_empty() {
        body.push(why.trim().to_owned());
    }
    let committed = commit_as(
        repo,
        base,
        vec![(path.clone(), Some(text.as_bytes().to_vec()))],
        ("enqueue", Some(QUEUE_PLAN), Some(name)),
        body,
        signer,
    )?;
    Ok(Enqueued {
        path,
        committed,
        warnings,
    })
}
