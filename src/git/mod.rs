//! The git layer: a small wrapper around gix so that gix's frequent API changes
//! stay in this module. Reads never touch a working tree. It knows nothing of
//! converge's policy (which branch is the base, what `planning/` holds: see
//! `spec::base`); it offers generic primitives on one [`Repo`]:
//!
//! - this file: opening a repository, its configuration, HEAD, the error type;
//! - `read`: blobs, trees and commits at a commit;
//! - `refs`: references, moved only by compare-and-swap;
//! - `worktree`: linked worktrees (add, remove, prune) and their status;
//! - `commit`: signatures and writing commits;
//! - `merge`: ancestry, reachability, diffs and trial merges;
//! - `checkout`: bringing a checkout along when its branch moves;
//! - `files`, `safe`, `remote`, `intent`: path states, paths git refuses,
//!   fetch and push, and notes of writes in progress;
//! - `export`: a plain copy of a tree into a new directory (the gate's checkout);
//! - `ids`: `model::CommitId` to and from gix's `ObjectId` (SHA-1 only).
//! - `private`: the agent's repository of its own, and importing from it.

use std::path::{Path, PathBuf};

use gix::ObjectId;
use gix::bstr::ByteSlice;

mod checkout;
mod commit;
mod export;
mod files;
mod ids;
pub mod intent;
mod merge;
pub mod private;
mod read;
mod refs;
mod remote;
mod safe;
#[cfg(test)]
pub(crate) mod testing;
mod worktree;
pub use checkout::{Journal, LeftAlone, Recovered};
pub use commit::Signer;
pub use files::PathState;
pub use ids::commit_id;
pub use merge::TrialMerge;
pub use read::{TreeEntry, TreeFile, TreeFilter, Visited};
pub use refs::Advanced;
pub use remote::{Pushed, RemoteError};

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("{} is not inside a git repository", path.display())]
    NotARepository {
        path: PathBuf,
        #[source]
        source: gix::Error,
    },
    #[error("the repository at {} has no working tree", path.display())]
    Bare { path: PathBuf },
    #[error("`{rev}` does not name a commit")]
    BadRevision {
        rev: String,
        #[source]
        source: gix::Error,
    },
    #[error("no base branch found: none of {candidates} exists")]
    NoBaseBranch { candidates: String },
    #[error("cannot read {what}")]
    Read {
        what: String,
        #[source]
        source: gix::Error,
    },
    #[error("cannot write {what}")]
    Write {
        what: String,
        #[source]
        source: gix::Error,
    },
    #[error("HEAD is detached; check out a branch to commit to")]
    DetachedHead,
    #[error("{branch} is at {found}, not at the commit converge expected")]
    Conflict { branch: String, found: String },
    #[error("{branch} is checked out in {} and paths converge would update have uncommitted changes: {}", worktree.display(), paths.join(", "))]
    Dirty {
        branch: String,
        worktree: PathBuf,
        /// Each path in the way, with why (`a.txt (modified in the worktree)`).
        paths: Vec<String>,
    },
    #[error("the tree holds paths git refuses to check out: {}", paths.join("; "))]
    UnsafePaths { paths: Vec<String> },
    #[error("converge cannot update the checkout at {}: it uses {what}", worktree.display())]
    Unsupported { worktree: PathBuf, what: String },
    #[error("{} is not the worktree of {branch} (found {found}); its `.git` may be gone", path.display())]
    NotTaskWorktree {
        path: PathBuf,
        branch: String,
        found: String,
    },
    #[error("cannot write {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{id}` is not a SHA-1 commit id; converge supports SHA-1 repositories only")]
    NotSha1 { id: String },
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("cannot update the index at {}", path.display())]
    Index {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

type Result<T, E = GitError> = std::result::Result<T, E>;

/// A validated full ref name such as `refs/heads/main`.
fn full_name(name: &str) -> Result<gix::refs::FullName> {
    name.try_into()
        .map_err(|e: gix::validate::reference::name::Error| GitError::Write {
            what: name.to_owned(),
            source: gix::Error::from_error(e),
        })
}

fn read_err(what: impl Into<String>) -> impl FnOnce(gix::Error) -> GitError {
    let what = what.into();
    move |source| GitError::Read { what, source }
}

fn write_err(what: impl Into<String>) -> impl FnOnce(gix::Error) -> GitError {
    let what = what.into();
    move |source| GitError::Write { what, source }
}

/// Bytes of decoded objects kept per open repository.
const OBJECT_CACHE: usize = 16 * 1024 * 1024;

/// Where git has no identity configured (a fresh machine, a CI runner),
/// converge's own (`converge <converge@localhost>`, as for its commits) names
/// the reflog entries of the refs it moves: gix refuses a reflog entry
/// without a committer, and every tick would fail on it. A configured
/// identity (git's configuration or `GIT_COMMITTER_*`) is left as it is.
/// Returns whether the identity was missing (or half there: a name without
/// an email), so that commits made for a person fall back to converge's
/// whole identity rather than a name with converge's email.
fn fall_back_to_converge_identity(repo: &mut gix::Repository) -> bool {
    use gix::config::tree::gitoxide;
    if repo.committer().is_some_and(|c| c.is_ok()) {
        return false;
    }
    let mut config = repo.config_snapshot_mut();
    for (key, value) in [
        (&gitoxide::Committer::NAME_FALLBACK, "converge"),
        (&gitoxide::Committer::EMAIL_FALLBACK, "converge@localhost"),
    ] {
        if let Err(e) = config.set_raw_value(key, value) {
            tracing::debug!(error = %e, "cannot set the fallback identity");
        }
    }
    true
}

/// An open repository.
#[derive(Debug)]
pub struct Repo {
    repo: gix::Repository,
    /// git had no (whole) committer identity when the repository was opened.
    no_identity: bool,
}

impl Repo {
    /// Finds the repository containing `dir`, like `git` does.
    pub fn discover(dir: &Path) -> Result<Repo> {
        let mut repo = gix::discover(dir).map_err(|source| GitError::NotARepository {
            path: dir.to_owned(),
            source,
        })?;
        let no_identity = fall_back_to_converge_identity(&mut repo);
        Ok(Repo { repo, no_identity })
    }

    /// Opens the task worktree at `dir`, which must have `branch` checked out.
    /// A worktree whose `.git` file is gone (removed while an agent still ran
    /// in it) would otherwise be found as the checkout above it, and a commit
    /// meant for the task would land on the person's branch.
    pub fn open_task_worktree(dir: &Path, branch: &str) -> Result<Repo> {
        let repo = Repo::discover(dir)?;
        let found = repo.head_branch()?;
        let here = repo.workdir().is_ok_and(|w| same_path(w, dir));
        if !here || found.as_deref() != Some(branch) {
            return Err(GitError::NotTaskWorktree {
                path: dir.to_owned(),
                branch: branch.to_owned(),
                found: match (here, found) {
                    (false, _) => format!(
                        "the repository at {}",
                        repo.workdir()
                            .map_or_else(|_| "?".into(), |w| w.display().to_string())
                    ),
                    (true, Some(b)) => format!("{b} checked out"),
                    (true, None) => "a detached HEAD".into(),
                },
            });
        }
        Ok(repo)
    }

    /// Creates a repository in `dir` whose unborn HEAD is `refs/heads/<branch>`.
    pub fn init(dir: &Path, branch: &str) -> Result<Repo> {
        let repo = gix::init(dir).map_err(|source| GitError::Write {
            what: format!("a repository in {}", dir.display()),
            source,
        })?;
        let head = repo.git_dir().join("HEAD");
        std::fs::write(&head, format!("ref: refs/heads/{branch}\n")).map_err(|source| {
            GitError::Io {
                path: head.clone(),
                source,
            }
        })?;
        Repo::discover(dir)
    }

    /// Keeps decoded objects in memory: for long-lived users (the tick loop),
    /// whose ancestry checks and walks read the same commits again and again
    /// (most of them loose in an active repository). One-shot reads are faster
    /// and smaller without it.
    pub fn cache_objects(&mut self) {
        self.repo.object_cache_size_if_unset(OBJECT_CACHE);
    }

    pub fn gix(&self) -> &gix::Repository {
        &self.repo
    }

    /// The root of the working tree.
    pub fn workdir(&self) -> Result<&Path> {
        self.repo.workdir().ok_or_else(|| GitError::Bare {
            path: self.repo.git_dir().to_owned(),
        })
    }

    /// The directory shared by all worktrees (`.git` of the main worktree).
    pub fn common_dir(&self) -> &Path {
        self.repo.common_dir()
    }

    /// A git configuration value, e.g. `converge.baseBranch`.
    pub fn config_string(&self, key: &str) -> Option<String> {
        self.repo
            .config_snapshot()
            .string(key)
            .map(|v| v.to_str_lossy().into_owned())
    }

    /// Resolves any revision (`main`, `HEAD~2`, a sha) to a commit.
    pub fn resolve_commit(&self, rev: &str) -> Result<ObjectId> {
        let bad = |source| GitError::BadRevision {
            rev: rev.to_owned(),
            source,
        };
        let id = self.repo.rev_parse_single(rev).map_err(bad)?;
        let commit = id.object().map_err(bad)?.peel_to_commit().map_err(bad)?;
        Ok(commit.id)
    }

    /// The short name of the branch HEAD points to (also when it has no commit yet).
    pub fn head_branch(&self) -> Result<Option<String>> {
        let name = self.repo.head_name().map_err(read_err("HEAD"))?;
        Ok(name.map(|n| n.shorten().to_str_lossy().into_owned()))
    }

    /// The commit HEAD points to, if any.
    pub fn head_commit(&self) -> Result<Option<ObjectId>> {
        let head = self.repo.head_id();
        Ok(head.ok().map(gix::Id::detach))
    }
}

/// Whether two paths name the same place (compared as written, then resolved).
pub fn same_path(a: &Path, b: &Path) -> bool {
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

/// Removes a file; one that is already gone is fine. Returns whether it existed.
pub fn remove_file_if_exists(path: &Path) -> Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(GitError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}
