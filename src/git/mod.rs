//! The git layer: a small wrapper around gix so that gix's frequent API changes
//! stay in this module. Reads never touch a working tree.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gix::ObjectId;
use gix::bstr::{BStr, ByteSlice};
use gix::objs::tree::EntryKind;

mod checkout;
mod files;
pub mod intent;
mod remote;
mod safe;
mod work;
pub use checkout::{IndexLock, Journal, LeftAlone, Recovered};
pub use files::PathState;
pub use remote::{Pushed, RemoteError};
pub use safe::refused_name;
pub use work::{Advanced, TrialMerge, remove_file_if_exists, same_path};

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

/// An open repository.
#[derive(Debug)]
pub struct Repo {
    repo: gix::Repository,
}

/// Who a commit is written as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signer {
    /// The person running converge, for commits that record their decision
    /// or are made on their behalf: git's configured identity
    /// (`GIT_COMMITTER_NAME`/`EMAIL`, `user.name`/`email`), else converge's.
    Person,
    /// converge itself (status, merges, leftovers): this name and email for
    /// author and committer, whatever git's configuration says.
    Converge { name: String, email: String },
}

/// Whose identity a signature carries.
#[derive(Debug, Clone, Copy)]
enum Persona {
    Committer,
    Author,
}

/// One file read from a tree by [`Repo::read_tree_files`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeFile {
    Bytes(Vec<u8>),
    /// Over the filter's `max_size`; only the size was read.
    TooLarge(u64),
    /// A symbolic link (its target is not read).
    Symlink,
}

/// Which files [`Repo::read_tree_files`] reads, by their path relative to
/// the directory read (`/`-separated).
#[derive(Debug, Clone, Copy)]
pub struct TreeFilter {
    /// Whether to enter a subdirectory.
    pub descend: fn(&str) -> bool,
    /// Whether to read a file (or link).
    pub keep: fn(&str) -> bool,
    /// Files larger than this are only sized ([`TreeFile::TooLarge`]).
    pub max_size: u64,
}

impl Repo {
    /// Finds the repository containing `dir`, like `git` does.
    pub fn discover(dir: &Path) -> Result<Repo> {
        let repo = gix::discover(dir).map_err(|source| GitError::NotARepository {
            path: dir.to_owned(),
            source,
        })?;
        Ok(Repo { repo })
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

    /// The tip of `refs/heads/<branch>`, if the branch exists.
    pub fn branch_tip(&self, branch: &str) -> Result<Option<ObjectId>> {
        let name = format!("refs/heads/{branch}");
        let reference = self
            .repo
            .try_find_reference(name.as_str())
            .map_err(read_err(format!("the ref {name}")))?;
        let Some(mut reference) = reference else {
            return Ok(None);
        };
        let commit = reference
            .peel_to_commit()
            .map_err(read_err(format!("the ref {name}")))?;
        Ok(Some(commit.id))
    }

    /// A git configuration value, e.g. `converge.baseBranch`.
    pub fn config_string(&self, key: &str) -> Option<String> {
        self.repo
            .config_snapshot()
            .string(key)
            .map(|v| v.to_str_lossy().into_owned())
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

    /// The content of `path` in the tree of `commit`, if it is a blob there.
    pub fn read_blob_at(&self, commit: ObjectId, path: &str) -> Result<Option<Vec<u8>>> {
        let what = || format!("{path} at {commit}");
        let commit = self.repo.find_commit(commit).map_err(read_err(what()))?;
        let tree = commit.tree().map_err(read_err(what()))?;
        let Some(entry) = tree.lookup_entry_by_path(path).map_err(read_err(what()))? else {
            return Ok(None);
        };
        if !entry.mode().is_blob() {
            return Ok(None);
        }
        let object = entry.object().map_err(read_err(what()))?;
        Ok(Some(object.data.clone()))
    }

    /// Reads the files below the directory `dir` (e.g. `planning`) of the
    /// tree of `commit`, keyed by their path from the repository root, as
    /// `filter` chooses; `None` when `dir` is not a directory there. Names
    /// that are not UTF-8 are skipped; no working tree is touched.
    pub fn read_tree_files(
        &self,
        commit: ObjectId,
        dir: &str,
        filter: &TreeFilter,
    ) -> Result<Option<BTreeMap<String, TreeFile>>> {
        let what = || format!("{dir}/ at {commit}");
        let commit_obj = self.repo.find_commit(commit).map_err(read_err(what()))?;
        let tree = commit_obj.tree().map_err(read_err(what()))?;
        let Some(entry) = tree.lookup_entry_by_path(dir).map_err(read_err(what()))? else {
            return Ok(None);
        };
        if !entry.mode().is_tree() {
            return Ok(None);
        }
        let mut out = BTreeMap::new();
        self.walk_tree(entry.oid().to_owned(), dir, "", filter, &mut out)?;
        Ok(Some(out))
    }

    fn walk_tree(
        &self,
        tree_id: ObjectId,
        dir: &str,
        relative: &str,
        filter: &TreeFilter,
        out: &mut BTreeMap<String, TreeFile>,
    ) -> Result<()> {
        let what = || format!("the tree {dir}/{relative}");
        let tree = self.repo.find_tree(tree_id).map_err(read_err(what()))?;
        let decoded = tree.decode().map_err(read_err(what()))?;
        for entry in &decoded.entries {
            let Ok(name) = entry.filename.to_str() else {
                continue;
            };
            let child = if relative.is_empty() {
                name.to_owned()
            } else {
                format!("{relative}/{name}")
            };
            let kind = entry.mode.kind();
            if kind == EntryKind::Tree {
                if (filter.descend)(&child) {
                    self.walk_tree(entry.oid.to_owned(), dir, &child, filter, out)?;
                }
                continue;
            }
            if !(filter.keep)(&child) {
                continue;
            }
            let key = format!("{dir}/{child}");
            let content = match kind {
                EntryKind::Link => TreeFile::Symlink,
                EntryKind::Blob | EntryKind::BlobExecutable => {
                    let header = self
                        .repo
                        .find_header(entry.oid)
                        .map_err(read_err(key.clone()))?;
                    if header.size() > filter.max_size {
                        TreeFile::TooLarge(header.size())
                    } else {
                        let object = self
                            .repo
                            .find_object(entry.oid)
                            .map_err(read_err(key.clone()))?;
                        TreeFile::Bytes(object.data.clone())
                    }
                }
                EntryKind::Tree | EntryKind::Commit => continue,
            };
            out.insert(key, content);
        }
        Ok(())
    }

    /// Local branches under `refs/heads/<prefix>`, as (short name, tip commit).
    pub fn branches_with_prefix(&self, prefix: &str) -> Result<Vec<(String, ObjectId)>> {
        let full = format!("refs/heads/{prefix}");
        let what = || format!("the branches {full}*");
        let platform = self.repo.references().map_err(read_err(what()))?;
        let iter = platform.prefixed(full.as_str()).map_err(read_err(what()))?;
        let mut out = Vec::new();
        for reference in iter {
            let mut reference = reference.map_err(read_err(what()))?;
            let name = reference.name().shorten().to_str_lossy().into_owned();
            let commit = reference
                .peel_to_commit()
                .map_err(read_err(format!("the branch {name}")))?;
            out.push((name, commit.id));
        }
        out.sort();
        Ok(out)
    }

    /// References under `prefix` (a full name such as `refs/converge/attempts/`),
    /// as (full name, commit), sorted.
    pub fn refs_with_prefix(&self, prefix: &str) -> Result<Vec<(String, ObjectId)>> {
        let what = || format!("the references {prefix}*");
        let platform = self.repo.references().map_err(read_err(what()))?;
        let iter = platform.prefixed(prefix).map_err(read_err(what()))?;
        let mut out = Vec::new();
        for reference in iter {
            let mut reference = reference.map_err(read_err(what()))?;
            let name = reference.name().as_bstr().to_str_lossy().into_owned();
            let commit = reference
                .peel_to_commit()
                .map_err(read_err(format!("the reference {name}")))?;
            out.push((name, commit.id));
        }
        out.sort();
        Ok(out)
    }

    /// Whether `ancestor` is reachable from `descendant` (a commit is its own ancestor).
    pub fn is_ancestor(&self, ancestor: ObjectId, descendant: ObjectId) -> Result<bool> {
        if ancestor == descendant {
            return Ok(true);
        }
        let base = self
            .repo
            .merge_base(ancestor, descendant)
            .map_err(read_err(format!(
                "the merge base of {ancestor} and {descendant}"
            )))
            .map(|id| id.map(gix::Id::detach));
        match base {
            Ok(base) => Ok(base == Some(ancestor)),
            // Unrelated histories have no merge base.
            Err(GitError::Read { source, .. }) if source.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Linked worktrees: (checkout path, the branch checked out there if any).
    pub fn linked_worktrees(&self) -> Result<Vec<(PathBuf, Option<String>)>> {
        let proxies = self
            .repo
            .worktrees()
            .map_err(read_err("the worktree list"))?;
        let mut out = Vec::new();
        for proxy in proxies {
            let base = proxy.base().map_err(read_err("a worktree's path"))?;
            let head = std::fs::read_to_string(proxy.git_dir().join("HEAD")).ok();
            let branch = head
                .as_deref()
                .and_then(|h| h.trim().strip_prefix("ref: refs/heads/"))
                .map(str::to_owned);
            out.push((base, branch));
        }
        out.sort();
        Ok(out)
    }

    /// The names of the entries of the directory `path` in the tree of `commit`.
    pub fn list_dir_at(&self, commit: ObjectId, path: &str) -> Result<Vec<String>> {
        let what = || format!("{path} at {commit}");
        let tree = self
            .repo
            .find_commit(commit)
            .map_err(read_err(what()))?
            .tree()
            .map_err(read_err(what()))?;
        let Some(entry) = tree.lookup_entry_by_path(path).map_err(read_err(what()))? else {
            return Ok(Vec::new());
        };
        if !entry.mode().is_tree() {
            return Ok(Vec::new());
        }
        let subtree = self
            .repo
            .find_tree(entry.oid().to_owned())
            .map_err(read_err(what()))?;
        let decoded = subtree.decode().map_err(read_err(what()))?;
        let mut names: Vec<String> = decoded
            .entries
            .iter()
            .filter_map(|e| e.filename.to_str().ok().map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The working tree where `branch` is checked out (the main one or a linked
    /// one), if any.
    pub fn checkout_of(&self, branch: &str) -> Result<Option<PathBuf>> {
        if self.head_branch()?.as_deref() == Some(branch)
            && let Some(workdir) = self.repo.workdir()
        {
            return Ok(Some(workdir.to_owned()));
        }
        Ok(self
            .linked_worktrees()?
            .into_iter()
            .find(|(_, b)| b.as_deref() == Some(branch))
            .map(|(path, _)| path))
    }

    /// Who converge commits as: the configured committer (including
    /// `GIT_COMMITTER_*`), else `converge <converge@localhost>`, dated now
    /// (or by `GIT_COMMITTER_DATE`): the clock is read at each call.
    pub fn signature(&self) -> gix::actor::Signature {
        self.signature_of(Persona::Committer, None)
    }

    /// The author and committer of a commit written now on top of
    /// `first_parent`: `signer`'s identity for both (for [`Signer::Person`],
    /// git's configured committer), the author dated by `GIT_AUTHOR_DATE` and
    /// the committer by `GIT_COMMITTER_DATE` when set, else both by the clock.
    pub(crate) fn commit_signatures(
        &self,
        first_parent: Option<ObjectId>,
        signer: &Signer,
    ) -> Result<(gix::actor::Signature, gix::actor::Signature)> {
        let not_before = self.committed_at(first_parent)?;
        let committer = match signer {
            Signer::Person => self.signature_of(Persona::Committer, not_before),
            Signer::Converge { name, email } => gix::actor::Signature {
                name: name.as_str().into(),
                email: email.as_str().into(),
                time: self.commit_time(Persona::Committer, not_before),
            },
        };
        let mut author = committer.clone();
        author.time = self.commit_time(Persona::Author, not_before);
        Ok((author, committer))
    }

    /// The configured identity of `persona` (name and email, from git's
    /// configuration and environment), else converge's own, dated now.
    fn signature_of(
        &self,
        persona: Persona,
        not_before: Option<gix::date::Time>,
    ) -> gix::actor::Signature {
        let configured = match persona {
            Persona::Committer => self.repo.committer(),
            Persona::Author => self.repo.author(),
        };
        let (name, email) = configured
            .and_then(Result::ok)
            .map(|s| (s.name.to_owned(), s.email.to_owned()))
            .unwrap_or_else(|| ("converge".into(), "converge@localhost".into()));
        gix::actor::Signature {
            name,
            email,
            time: self.commit_time(persona, not_before),
        }
    }

    /// When a commit written now is dated. A date fixed by the environment
    /// (`GIT_COMMITTER_DATE`, `GIT_AUTHOR_DATE`) or by
    /// `gitoxide.commit.committerDate`/`authorDate` applies as it is, like git
    /// does. Otherwise the clock is read at each call (gix's own
    /// `Repository::committer` keeps the time it read when the repository was
    /// opened, which dated every commit of a long run at its start), and never
    /// earlier than `not_before`, the first parent's commit time: a commit is
    /// not dated before the one it builds on, even if that one came from a
    /// clock running ahead.
    fn commit_time(
        &self,
        persona: Persona,
        not_before: Option<gix::date::Time>,
    ) -> gix::date::Time {
        let key = match persona {
            Persona::Committer => "gitoxide.commit.committerDate",
            Persona::Author => "gitoxide.commit.authorDate",
        };
        let fixed = self.repo.config_snapshot().string(key).and_then(|text| {
            let text = text.to_str().ok()?.to_owned();
            gix::date::parse(&text, Some(gix::date::Zoned::now())).ok()
        });
        if let Some(fixed) = fixed {
            return fixed;
        }
        let now = gix::date::Time::now_local_or_utc();
        match not_before {
            Some(parent) if parent.seconds > now.seconds => gix::date::Time {
                seconds: parent.seconds,
                offset: now.offset,
            },
            _ => now,
        }
    }

    /// The committer time of `commit`, if there is one and it can be read.
    fn committed_at(&self, commit: Option<ObjectId>) -> Result<Option<gix::date::Time>> {
        let Some(id) = commit else {
            return Ok(None);
        };
        let commit = self
            .repo
            .find_commit(id)
            .map_err(read_err(format!("the commit {id}")))?;
        Ok(commit.committer().ok().and_then(|s| s.time().ok()))
    }

    /// Moves `refs/heads/<branch>` from `expected` to `new`, only if it is still at
    /// `expected`; a stale expectation is a [`GitError::Conflict`].
    pub fn compare_and_swap(
        &self,
        branch: &str,
        expected: ObjectId,
        new: ObjectId,
        log: &str,
    ) -> Result<()> {
        let name = format!("refs/heads/{branch}");
        let expected_value = gix::refs::transaction::PreviousValue::MustExistAndMatch(
            gix::refs::Target::Object(expected),
        );
        match self.edit_ref(&name, expected_value, new, log)? {
            Ok(()) => Ok(()),
            Err(source) => {
                let found = self.branch_tip(branch)?;
                if found != Some(expected) {
                    return Err(GitError::Conflict {
                        branch: branch.to_owned(),
                        found: found
                            .map_or_else(|| "nothing (deleted)".to_owned(), |f| f.to_string()),
                    });
                }
                Err(GitError::Write { what: name, source })
            }
        }
    }

    /// Points `full_name` at `new` if its current value satisfies `expected`, in
    /// one ref transaction with a reflog entry. The outer error is a bad name;
    /// the inner one is a refused or failed edit, for the caller to classify.
    fn edit_ref(
        &self,
        name: &str,
        expected: gix::refs::transaction::PreviousValue,
        new: ObjectId,
        log: &str,
    ) -> Result<std::result::Result<(), gix::Error>> {
        use gix::refs::transaction::{Change, LogChange, RefEdit, RefLog};
        let edit = RefEdit {
            change: Change::Update {
                log: LogChange {
                    mode: RefLog::AndReference,
                    force_create_reflog: false,
                    message: log.into(),
                },
                expected,
                new: gix::refs::Target::Object(new),
            },
            name: full_name(name)?,
            deref: false,
        };
        let _noted = intent::note(self.common_dir(), &intent::Intent::Ref(name.to_owned()));
        Ok(self.repo.edit_reference(edit).map(|_| ()))
    }

    /// Creates the ref `full_name` (e.g. `refs/heads/x`) at `id`; fails if it
    /// exists (compare-and-swap against "absent").
    pub fn create_ref(&self, full_name: &str, id: ObjectId, log: &str) -> Result<()> {
        let absent = gix::refs::transaction::PreviousValue::MustNotExist;
        match self.edit_ref(full_name, absent, id, log)? {
            Ok(()) => Ok(()),
            Err(source) => match self.ref_target(full_name)? {
                Some(found) => Err(GitError::Conflict {
                    branch: full_name.to_owned(),
                    found: found.to_string(),
                }),
                None => Err(GitError::Write {
                    what: full_name.to_owned(),
                    source,
                }),
            },
        }
    }

    /// The object a ref points to (peeled), if the ref exists.
    pub fn ref_target(&self, full_name: &str) -> Result<Option<ObjectId>> {
        let reference = self
            .repo
            .try_find_reference(full_name)
            .map_err(read_err(format!("the ref {full_name}")))?;
        let Some(mut reference) = reference else {
            return Ok(None);
        };
        let id = reference
            .peel_to_id()
            .map_err(read_err(format!("the ref {full_name}")))?;
        Ok(Some(id.detach()))
    }

    /// Checks out the existing branch `branch` in a new linked worktree at `path`.
    pub fn add_worktree(&self, path: &Path, branch: &str) -> Result<()> {
        let name = full_name(&format!("refs/heads/{branch}"))?;
        let interrupt = std::sync::atomic::AtomicBool::new(false);
        let _noted = intent::note(
            self.common_dir(),
            &intent::Intent::Worktree(path.to_owned()),
        );
        self.repo
            .add_worktree(
                path,
                gix::worktree::add::Head::Attached(name),
                gix::progress::Discard,
                &interrupt,
            )
            .map_err(write_err(format!(
                "a worktree for {branch} at {}",
                path.display()
            )))?;
        Ok(())
    }

    /// Removes the linked worktree at `path`, discarding its changes (converge
    /// only removes worktrees it created, after their work was committed).
    pub fn remove_worktree(&self, path: &Path) -> Result<()> {
        let _noted = intent::note(
            self.common_dir(),
            &intent::Intent::Worktree(path.to_owned()),
        );
        self.repo
            .remove_worktree(
                path,
                gix::worktree::remove::Force::DiscardChanges,
                gix::progress::Discard,
            )
            .map_err(write_err(format!("the worktree at {}", path.display())))
    }

    /// Commits `files` (paths relative to the repository root) on top of the branch
    /// HEAD points to, keeping everything else of HEAD's tree, and stages the same
    /// content in the index so that `git status` stays clean for them. Other staged
    /// changes remain staged and are not committed.
    pub fn commit_files(&self, files: &[(String, Vec<u8>)], message: &str) -> Result<ObjectId> {
        let head_ref = self
            .repo
            .head_name()
            .map_err(read_err("HEAD"))?
            .ok_or(GitError::DetachedHead)?;
        let parent = self.head_commit()?;
        let base_tree = match parent {
            Some(parent) => self
                .repo
                .find_commit(parent)
                .map_err(read_err("HEAD"))?
                .tree_id()
                .map_err(read_err("HEAD"))?
                .detach(),
            None => ObjectId::empty_tree(self.repo.object_hash()),
        };
        let mut editor = self
            .repo
            .edit_tree(base_tree)
            .map_err(write_err("a tree"))?;
        let mut blobs = Vec::with_capacity(files.len());
        for (path, bytes) in files {
            let id = self
                .repo
                .write_blob(bytes)
                .map_err(write_err(path.clone()))?
                .detach();
            editor
                .upsert(path.as_str(), EntryKind::Blob, id)
                .map_err(write_err(path.clone()))?;
            blobs.push((path.as_str(), Some((id, EntryKind::Blob))));
        }
        let tree = editor.write().map_err(write_err("a tree"))?.detach();
        let (dated, committer) = self.commit_signatures(parent, &Signer::Person)?;
        // The person's own author identity when configured (these commits are
        // made on their behalf: `init`, the demo), dated like the committer.
        let mut author = self.signature_of(Persona::Author, None);
        author.time = dated.time;
        let _noted = intent::note(
            self.common_dir(),
            &intent::Intent::Ref(head_ref.as_bstr().to_string()),
        );
        let commit = self
            .repo
            .commit_as(
                committer.to_ref(&mut gix::date::parse::TimeBuf::default()),
                author.to_ref(&mut gix::date::parse::TimeBuf::default()),
                head_ref.as_ref(),
                message,
                tree,
                parent,
            )
            .map_err(write_err(format!("a commit on {}", head_ref.as_bstr())))?
            .detach();
        self.stage(&blobs)?;
        Ok(commit)
    }

    /// Adds or replaces index entries for files whose blobs are already written
    /// (`Some((blob, kind))`, with stat data from the file on disk), or removes
    /// entries (`None`), under git's index lock; the cache-tree is dropped so
    /// that git rebuilds the tree of the next commit from the entries.
    fn stage(&self, entries: &[(&str, Option<(ObjectId, EntryKind)>)]) -> Result<()> {
        let workdir = self.workdir()?.to_owned();
        let index_path = self.repo.index_path();
        let index_err = |source: Box<dyn std::error::Error + Send + Sync>| GitError::Index {
            path: index_path.clone(),
            source,
        };
        let _noted = intent::note(
            self.common_dir(),
            &intent::Intent::Index(index_path.clone()),
        );
        let lock = gix::lock::File::acquire_to_update_resource(
            &index_path,
            gix::lock::acquire::Fail::AfterDurationWithBackoff(std::time::Duration::from_secs(5)),
            None,
            0,
        )
        .map_err(|e| index_err(Box::new(e)))?;
        let mut index = if index_path.exists() {
            gix::index::File::at(
                &index_path,
                self.repo.object_hash(),
                false,
                Default::default(),
            )
            .map_err(|e| index_err(Box::new(e)))?
        } else {
            gix::index::File::from_state(
                gix::index::State::new(self.repo.object_hash()),
                index_path.clone(),
            )
        };
        let replaced: Vec<&BStr> = entries
            .iter()
            .map(|(p, _)| p.as_bytes().as_bstr())
            .collect();
        index.remove_entries(|_, path, _| replaced.contains(&path));
        for (path, entry) in entries {
            let Some((id, kind)) = entry else {
                continue;
            };
            let metadata = gix::index::fs::Metadata::from_path_no_follow(&workdir.join(path))
                .map_err(|e| index_err(Box::new(e)))?;
            let stat =
                gix::index::entry::Stat::from_fs(&metadata).map_err(|e| index_err(Box::new(e)))?;
            index.dangerously_push_entry(
                stat,
                *id,
                gix::index::entry::Flags::empty(),
                checkout::index_mode(*kind),
                path.as_bytes().as_bstr(),
            );
        }
        index.sort_entries();
        checkout::write_index(&mut index, lock).map_err(index_err)
    }
}
