//! Which tasks converge merged. A task is merged only through a merge commit
//! converge recorded (`act/merge.rs`): two parents, and the trailers
//! `Converge-Action: merge`, `Converge-Plan`, `Converge-Task` and
//! `Converge-Attempt` naming it, in the base branch. Never by the position of a
//! task branch (an agent can move it to any commit already in the base), and
//! never by status alone (a person can commit a status file).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;

use gix::ObjectId;

use crate::git::{GitError, Repo};
use crate::model::TaskKey;

/// How many commits of the base branch's first-parent history are searched
/// for a merge that status did not record (a crash between the merge and the
/// status commit recording it, or a status commit that was deferred).
pub const SEARCH_LIMIT: usize = 1000;

/// What a merge commit of converge's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeRecord {
    pub key: TaskKey,
    pub attempt: u32,
}

/// The task and attempt a merge message names, from the trailers of its last
/// paragraph (`act/merge.rs` writes them last); `None` for any other message.
pub fn merge_record(message: &str) -> Option<MergeRecord> {
    let last = message.trim_end().rsplit("\n\n").next()?;
    let (mut action, mut plan, mut task, mut attempt) = (None, None, None, None);
    for (key, value) in last.lines().filter_map(|l| l.split_once(": ")) {
        let value = Some(value.trim());
        match key {
            "Converge-Action" => action = value,
            "Converge-Plan" => plan = value,
            "Converge-Task" => task = value,
            "Converge-Attempt" => attempt = value,
            _ => {}
        }
    }
    if action != Some("merge") {
        return None;
    }
    Some(MergeRecord {
        key: TaskKey::new(plan?, task?),
        attempt: attempt?.parse().ok()?,
    })
}

/// Whether a commit with these parents and this message is converge's merge
/// of `key` (a status commit recording a merge carries the same trailers, but
/// has one parent).
pub fn is_merge_of(parents: &[ObjectId], message: &str, key: &TaskKey) -> bool {
    (parents.len() >= 2 || names_change(message))
        && merge_record(message).is_some_and(|r| r.key == *key)
}

/// Whether the message's trailers name the forge change it merged
/// (`Converge-Change: #N`): a squash merge converge asked the forge for has
/// one parent, and a status commit never names a change.
fn names_change(message: &str) -> bool {
    message
        .trim_end()
        .rsplit("\n\n")
        .next()
        .is_some_and(|last| last.lines().any(|l| l.starts_with("Converge-Change: #")))
}

/// Checks the commit status records as `key`'s merge: `Err(why)` when git
/// does not back it. `in_base`: the claimed commits the base branch contains.
/// `noted`: the commit the forge said the task's change merged as (a merge
/// without converge's trailers: a rebase, or a person's merge on GitHub).
pub(super) fn verify(
    repo: &Repo,
    key: &TaskKey,
    merged_as: ObjectId,
    in_base: &BTreeSet<ObjectId>,
    noted: Option<ObjectId>,
) -> Result<Result<(), String>, GitError> {
    let short = &merged_as.to_string()[..7];
    let Some((parents, message)) = repo.commit_parents(merged_as)? else {
        return Ok(Err(format!(
            "status records {key} as merged as {short}, which is no commit in this repository"
        )));
    };
    if !is_merge_of(&parents, &message, key) && noted != Some(merged_as) {
        return Ok(Err(format!(
            "status records {key} as merged as {short}, which is not converge's merge commit of {key}"
        )));
    }
    if !in_base.contains(&merged_as) {
        return Ok(Err(format!(
            "status records {key} as merged as {short}, which the base branch does not contain"
        )));
    }
    Ok(Ok(()))
}

/// A task whose merge status does not record: the attempts whose merge counts,
/// and the commit its attempt forked from, where the search for it may stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Sought {
    pub attempts: RangeInclusive<u32>,
    pub fork: Option<ObjectId>,
}

/// Finds the merge commits of the `sought` tasks on the first-parent history
/// of `base` (where converge's merges are: it never fast-forwards), newest
/// first, back to each task's fork or [`SEARCH_LIMIT`] commits. One walk for
/// every task of the tick.
pub(super) fn search(
    repo: &Repo,
    base: ObjectId,
    sought: &BTreeMap<TaskKey, Sought>,
) -> Result<BTreeMap<TaskKey, ObjectId>, GitError> {
    let mut found = BTreeMap::new();
    let mut open: BTreeSet<TaskKey> = sought.keys().cloned().collect();
    if open.is_empty() {
        return Ok(found);
    }
    repo.walk_first_parents(base, SEARCH_LIMIT, |commit| {
        let (id, message) = (commit.id, commit.message);
        if commit.parents.len() >= 2
            && let Some(record) = merge_record(message)
            && open.contains(&record.key)
            && sought
                .get(&record.key)
                .is_some_and(|s| s.attempts.contains(&record.attempt))
        {
            open.remove(&record.key);
            found.insert(record.key, id);
        }
        // An attempt merged after it forked: past its fork, stop looking.
        open.retain(|key| sought.get(key).and_then(|s| s.fork) != Some(id));
        !open.is_empty()
    })?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MERGE: &str = "converge: merge p/t (attempt 2)\n\nDo t.\n\nApproved-by: ann\nConverge-Action: merge\nConverge-Plan: p\nConverge-Task: t\nConverge-Attempt: 2\n";

    #[test]
    fn a_merge_record_is_read_from_the_trailers_converge_writes() {
        assert_eq!(
            merge_record(MERGE),
            Some(MergeRecord {
                key: TaskKey::new("p", "t"),
                attempt: 2
            })
        );
        let id = |n: u8| ObjectId::from_bytes_or_panic(&[n; 20]);
        assert!(is_merge_of(&[id(1), id(2)], MERGE, &TaskKey::new("p", "t")));
        // A status commit recording the merge has one parent.
        assert!(!is_merge_of(&[id(1)], MERGE, &TaskKey::new("p", "t")));
        assert!(!is_merge_of(
            &[id(1), id(2)],
            MERGE,
            &TaskKey::new("p", "u")
        ));
    }

    #[test]
    fn other_messages_are_no_merge_records() {
        for message in [
            "merge a\n",
            "converge: dispatch p/t\n\nConverge-Action: dispatch\nConverge-Plan: p\nConverge-Task: t\nConverge-Attempt: 1\n",
            // Trailers in the body, not in the last paragraph.
            "x\n\nConverge-Action: merge\nConverge-Plan: p\nConverge-Task: t\nConverge-Attempt: 1\n\nSigned-off-by: me\n",
            "x\n\nConverge-Action: merge\nConverge-Plan: p\nConverge-Task: t\nConverge-Attempt: one\n",
            "x\n\nConverge-Action: merge\nConverge-Task: t\nConverge-Attempt: 1\n",
        ] {
            assert_eq!(merge_record(message), None, "{message:?}");
        }
    }
}
