//! Bringing an attempt's work from the agent's private repository (see
//! [`crate::git::private`]) onto its task branch in the main repository:
//! the agent's head, its objects checked one by one, then what it left
//! uncommitted, each move of `converge/<plan>/<task>` a compare-and-swap.
//! converge is the only writer of the main repository's task branches.

use std::path::Path;

use gix::ObjectId;

use crate::git::private::{self, ImportError};
use crate::git::{GitError, Repo, Signer};
use crate::model::TaskKey;
use crate::rundir::Layout;

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    /// The task branch's tip afterwards; `None` when the branch is gone.
    pub tip: Option<ObjectId>,
    /// Whether converge committed files the agent left uncommitted.
    pub leftovers: bool,
}

/// Imports the work in `worktree` onto `key`'s branch. A worktree that is
/// gone (or a file in its place) imports nothing; a linked worktree of an earlier converge version
/// (registered in the main repository) has its leftovers committed the way
/// that version did; anything else that is not the private repository
/// converge made is refused as tampered.
pub fn import(
    repo: &Repo,
    key: &TaskKey,
    worktree: &Path,
    message: &str,
    signer: &Signer,
) -> Result<Imported, ImportError> {
    let branch = key.branch();
    let Some(tip) = repo.branch_tip(&branch)? else {
        return Ok(Imported {
            tip: None,
            leftovers: false,
        });
    };
    let unchanged = Imported {
        tip: Some(tip),
        leftovers: false,
    };
    // Nothing there, or not a directory (a person's file in the way, which
    // dispatch refuses to replace): nothing of an agent's to import.
    if !std::fs::symlink_metadata(worktree).is_ok_and(|m| m.is_dir()) {
        return Ok(unchanged);
    }
    if !private::is_private(worktree) {
        return legacy(repo, &branch, worktree, message, signer);
    }
    let head = private::private_head(worktree, &branch)?.unwrap_or(tip);
    // Nothing changed since the last import of this worktree (the agent's
    // branch, the task branch and every file's metadata as then): the
    // branch already holds all of it, and git need not read the files again.
    let note = Layout::new(repo.common_dir()).import_note(key);
    let seen = Seen {
        agent_head: head.to_string(),
        tip: tip.to_string(),
        files: fingerprint(worktree),
    };
    if seen.files.is_some() && read_note(&note).as_ref() == Some(&seen) {
        return Ok(unchanged);
    }
    if head != tip {
        repo.import_objects(worktree, head)?;
    }
    // Work the branch already holds (an earlier import of this attempt, with
    // its leftovers) is the base the files are compared with.
    let base = if head == tip || repo.is_ancestor(head, tip)? {
        tip
    } else {
        head
    };
    // A tree git refuses to check out is not read into an index (the gate
    // fails it with `unsafe-path`); its files are not committed on top.
    let safe = repo.unsafe_entries(repo.tree_of(base)?)?.is_empty();
    let left = if safe {
        repo.commit_private_leftovers(worktree, base, message, signer)?
    } else {
        None
    };
    let new = left.unwrap_or(base);
    if new != tip {
        repo.compare_and_swap(&branch, tip, new, "converge: import the attempt's work")?;
    }
    // Only a note: a lost one costs the next import a reading of the files.
    let _ = write_note(
        &note,
        &Seen {
            tip: new.to_string(),
            ..seen
        },
    );
    Ok(Imported {
        tip: Some(new),
        leftovers: left.is_some(),
    })
}

/// A worktree that is not a private repository: a linked worktree registered
/// in the main repository (made by an earlier version of converge) is
/// handled as then; anything else the agent made of its `.git` is refused.
fn legacy(
    repo: &Repo,
    branch: &str,
    worktree: &Path,
    message: &str,
    signer: &Signer,
) -> Result<Imported, ImportError> {
    let registered = repo
        .linked_worktrees()?
        .into_iter()
        .any(|(path, b)| crate::git::same_path(&path, worktree) && b.as_deref() == Some(branch));
    if !registered {
        return Err(ImportError::Tampered {
            path: worktree.to_owned(),
            what: "its `.git` is no longer the private repository converge made".into(),
        });
    }
    let wt = Repo::discover(worktree)?;
    let mut leftovers = false;
    if wt.head_branch()?.as_deref() == Some(branch) && wt.head_is_safe()? {
        wt.clear_index_lock()?;
        leftovers = wt.commit_leftovers(message, signer)?.is_some();
    }
    Ok(Imported {
        tip: repo.branch_tip(branch)?,
        leftovers,
    })
}

/// An import's error as converge's own ([`GitError`]) when it is not the
/// agent's doing.
pub fn converge_error(error: ImportError) -> Result<ImportError, GitError> {
    match error {
        ImportError::Git(e) => Err(e),
        other => Ok(other),
    }
}

/// Imports before a worktree is removed (a retry's fresh start, a cleanup):
/// a repository the agent tampered with, or whose objects are forged, is not
/// deleted with whatever it holds but moved aside, to
/// `<git-common-dir>/converge/quarantine/<plan>/<task>/<attempt>`, for a
/// person to look at; its path is returned.
pub fn import_or_set_aside(
    repo: &Repo,
    key: &TaskKey,
    attempt: u32,
    worktree: &Path,
    message: &str,
    signer: &Signer,
) -> Result<Option<std::path::PathBuf>, GitError> {
    let Err(error) = import(repo, key, worktree, message, signer) else {
        return Ok(None);
    };
    converge_error(error)?;
    let aside = Layout::new(repo.common_dir()).quarantine(key, attempt);
    let io = |source| GitError::Io {
        path: aside.clone(),
        source,
    };
    if let Some(parent) = aside.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    if aside.exists() {
        std::fs::remove_dir_all(&aside).map_err(io)?;
    }
    std::fs::rename(worktree, &aside).map_err(io)?;
    Ok(Some(aside))
}

/// What an import saw: the agent's branch, the task branch it left, and the
/// worktree's files (see [`fingerprint`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Seen {
    agent_head: String,
    tip: String,
    files: Option<String>,
}

fn read_note(path: &Path) -> Option<Seen> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn write_note(path: &Path, seen: &Seen) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let bytes = serde_json::to_vec(seen).unwrap_or_default();
    crate::rundir::atomic::write_atomically(path, &bytes)
}

/// A digest of every entry of `worktree` but its `.git`: path, type, size,
/// mode, inode and modification time, the metadata git itself trusts to
/// tell an unchanged file. `None` when the tree cannot be read whole.
fn fingerprint(worktree: &Path) -> Option<String> {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::MetadataExt;
    let mut hasher = Sha256::new();
    let mut stack = vec![worktree.to_owned()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .ok()?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .ok()?;
        entries.sort();
        for path in entries {
            if dir == worktree && path.file_name().is_some_and(|n| n == ".git") {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).ok()?;
            let relative = path.strip_prefix(worktree).ok()?;
            hasher.update(relative.as_os_str().as_encoded_bytes());
            hasher.update([0]);
            for value in [
                meta.mode().into(),
                meta.size(),
                meta.ino(),
                meta.mtime().unsigned_abs(),
                meta.mtime_nsec().unsigned_abs(),
                meta.ctime().unsigned_abs(),
                meta.ctime_nsec().unsigned_abs(),
            ] {
                hasher.update(value.to_le_bytes());
            }
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    Some(format!("{:x}", hasher.finalize()))
}

#[cfg(test)]
#[path = "import_tests.rs"]
mod tests;
