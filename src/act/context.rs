//! What a task's dependencies merged, read from git for its prompt
//! ([`crate::harness::context`]): for each dependency status records as
//! merged, the subjects of the commits its merge brought in and the diffstat
//! of the merge against the base it merged into.

use gix::ObjectId;

use crate::git::{GitError, Repo};
use crate::harness::context::{DependencyMerge, FileStat, LIST_CAP, line_counts};
use crate::model::TaskKey;
use crate::spec::{Plan, Task};
use crate::status::Status;

/// How far back the subjects of one dependency's commits are looked for.
const SUBJECT_WALK: usize = 200;

/// The merges of `task`'s dependencies, in `depends_on` order; a dependency
/// without a recorded merge commit is left out.
pub fn dependency_merges(
    repo: &Repo,
    plan: &Plan,
    task: &Task,
    status: &Status,
) -> Result<Vec<DependencyMerge>, GitError> {
    let mut out = Vec::new();
    for dep in &task.depends_on {
        let key = match dep.split_once('/') {
            Some((p, t)) => TaskKey::new(p, t),
            None => TaskKey::new(&plan.id, dep),
        };
        let Some(merged) = status
            .task(&key.plan, &key.task)
            .and_then(|st| st.merged_as)
        else {
            continue;
        };
        if let Some(found) = merge_of(repo, &key, merged.into())? {
            out.push(found);
        }
    }
    Ok(out)
}

fn merge_of(
    repo: &Repo,
    key: &TaskKey,
    merge: ObjectId,
) -> Result<Option<DependencyMerge>, GitError> {
    let Some((parents, message)) = repo.commit_parents(merge)? else {
        return Ok(None);
    };
    let Some(&base) = parents.first() else {
        return Ok(None);
    };
    let mut subjects = Vec::new();
    if let Some(&side) = parents.get(1) {
        let mut stop = None;
        repo.walk_first_parents(side, SUBJECT_WALK, |commit| {
            match repo.is_ancestor(commit.id, base) {
                Ok(true) => return false,
                Ok(false) => {}
                Err(e) => {
                    stop = Some(e);
                    return false;
                }
            }
            subjects.push(subject(commit.message));
            true
        })?;
        if let Some(e) = stop {
            return Err(e);
        }
    } else {
        subjects.push(subject(&message));
    }
    let mut files = Vec::new();
    for (path, _) in repo.changed_files(base, merge)? {
        let (added, removed) = if files.len() < LIST_CAP * 4 {
            let old = repo.read_blob_at(base, &path)?.unwrap_or_default();
            let new = repo.read_blob_at(merge, &path)?.unwrap_or_default();
            line_counts(
                &String::from_utf8_lossy(&old),
                &String::from_utf8_lossy(&new),
            )
        } else {
            (0, 0)
        };
        files.push(FileStat {
            path,
            added,
            removed,
        });
    }
    Ok(Some(DependencyMerge {
        task: key.to_string(),
        merge: merge.to_string()[..7].to_owned(),
        subjects,
        files,
    }))
}

fn subject(message: &str) -> String {
    message.lines().next().unwrap_or("").trim().to_owned()
}
