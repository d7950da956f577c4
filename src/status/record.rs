//! Recording: one status commit per tick, with compare-and-swap on the status
//! branch (design §3, §4 "record").
//!
//! The commit changes only the files it is given (status files, STATUS.md, queue
//! moves) on top of the branch tip the tick read. The branch moves only if it is
//! still at that tip; otherwise the tick's result is discarded and recomputed.
//! When the branch is checked out in a worktree, that worktree is updated too if
//! it is clean (like git's `receive.denyCurrentBranch=updateInstead`), and the
//! commit is deferred, with the ref untouched, if it is dirty.

use std::path::PathBuf;

use gix::ObjectId;

use crate::git::{GitError, Repo};

/// A file to write (or delete, with `None`) in the status commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: String,
    pub content: Option<Vec<u8>>,
}

/// What the commit says, as its subject and trailers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `dispatch`, `gate`, `merge`, ... or `status` for a tick that only refreshed status.
    pub action: String,
    pub plan: Option<String>,
    pub task: Option<String>,
    pub attempt: Option<u32>,
    /// The planning commit the tick read.
    pub spec: String,
    /// Lines for the body, one per action taken.
    pub body: Vec<String>,
    /// Replaces the subject after `converge: ` (for ticks with several actions).
    pub summary: Option<String>,
}

/// The word for an action in a status commit's subject. A status commit
/// records what a tick did; the one recording a merge says `merged`, so that
/// it never reads like the merge commit itself (`converge: merge p/t
/// (attempt 1)`) when both are on one branch. Trailers keep the action.
pub fn subject_word(action: &str) -> &str {
    match action {
        "merge" => "merged",
        other => other,
    }
}

impl Message {
    /// `converge: <action> <plan>/<task> (attempt N)`, a body, and trailers
    /// (`Converge-Action`, `-Plan`, `-Task`, `-Attempt`, `-Spec`).
    pub fn render(&self) -> String {
        let mut subject = format!("converge: {}", subject_word(&self.action));
        match (&self.plan, &self.task) {
            (Some(plan), Some(task)) => subject.push_str(&format!(" {plan}/{task}")),
            (Some(plan), None) => subject.push_str(&format!(" {plan}")),
            _ => {}
        }
        if let Some(attempt) = self.attempt {
            subject.push_str(&format!(" (attempt {attempt})"));
        }
        if let Some(summary) = &self.summary {
            subject = format!("converge: {summary}");
        }
        let mut out = format!("{subject}\n\n");
        for line in &self.body {
            out.push_str(line);
            out.push('\n');
        }
        if !self.body.is_empty() {
            out.push('\n');
        }
        out.push_str(&format!("Converge-Action: {}\n", self.action));
        if let Some(plan) = &self.plan {
            out.push_str(&format!("Converge-Plan: {plan}\n"));
        }
        if let Some(task) = &self.task {
            out.push_str(&format!("Converge-Task: {task}\n"));
        }
        if let Some(attempt) = self.attempt {
            out.push_str(&format!("Converge-Attempt: {attempt}\n"));
        }
        out.push_str(&format!("Converge-Spec: {}\n", self.spec));
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Committed {
        commit: ObjectId,
        /// The checked-out worktree that was brought along, if any.
        worktree: Option<PathBuf>,
    },
    /// The changes would not change the tree: a tick with nothing to do writes nothing.
    Unchanged,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(
        "{branch} moved while converge was recording (expected {expected}, found {found}); the tick is recomputed"
    )]
    Conflict {
        branch: String,
        expected: String,
        found: String,
    },
    #[error("{branch} is checked out in {} and paths the commit would update have uncommitted changes: {}", worktree.display(), paths.join(", "))]
    Deferred {
        branch: String,
        worktree: PathBuf,
        /// Each path in the way, with why.
        paths: Vec<String>,
    },
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("cannot record on {branch}")]
    Write {
        branch: String,
        #[source]
        source: gix::Error,
    },
    #[error("cannot update the worktree at {}", worktree.display())]
    Worktree {
        worktree: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Writes one status commit on `branch`, expected to be at `expected`.
pub fn record(
    repo: &Repo,
    branch: &str,
    expected: ObjectId,
    changes: &[Change],
    message: &Message,
    signer: &crate::git::Signer,
) -> Result<Outcome, RecordError> {
    let write_err = |source| RecordError::Write {
        branch: branch.to_owned(),
        source,
    };
    let gix = repo.gix();
    let base_tree = repo.tree_of(expected)?;
    let mut editor = gix.edit_tree(base_tree).map_err(write_err)?;
    for change in changes {
        match &change.content {
            Some(bytes) => {
                let blob = gix.write_blob(bytes).map_err(write_err)?.detach();
                editor
                    .upsert(change.path.as_str(), gix::objs::tree::EntryKind::Blob, blob)
                    .map_err(write_err)?;
            }
            None => {
                editor.remove(change.path.as_str()).map_err(write_err)?;
            }
        }
    }
    let tree = editor.write().map_err(write_err)?.detach();
    if tree == base_tree {
        return Ok(Outcome::Unchanged);
    }
    let new = repo.write_commit(tree, &[expected], &message.render(), signer)?;
    crate::crash::point("mid-record");
    let advanced = repo
        .advance_branch(
            branch,
            expected,
            new,
            &format!("converge: {}", message.action),
        )
        .map_err(|e| match e {
            GitError::Conflict { found, .. } => RecordError::Conflict {
                branch: branch.to_owned(),
                expected: expected.to_string(),
                found,
            },
            GitError::Dirty {
                worktree, paths, ..
            } => RecordError::Deferred {
                branch: branch.to_owned(),
                worktree,
                paths,
            },
            GitError::Io { path, source } => RecordError::Worktree {
                worktree: path,
                source,
            },
            other => RecordError::Git(other),
        })?;
    Ok(Outcome::Committed {
        commit: new,
        worktree: advanced.worktree,
    })
}

/// Reads the trailers of a status commit message back (for `converge history`).
pub fn trailers(message: &str) -> Vec<(String, String)> {
    message
        .lines()
        .filter_map(|line| line.split_once(": "))
        .filter(|(key, _)| key.starts_with("Converge-"))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect()
}
