//! Writes beyond single refs: tree diffs, trial merges, commits of a worktree's
//! leftovers, and moving a branch that may be checked out somewhere.

use std::path::{Path, PathBuf};

use gix::ObjectId;
use gix::bstr::{BString, ByteSlice};
use gix::objs::tree::EntryKind;

use super::{GitError, Repo, Result, full_name, read_err, write_err};

/// The outcome of merging two commits without touching any worktree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrialMerge {
    /// The merge is clean; its tree is written.
    Clean { tree: ObjectId },
    /// The merge conflicts in these paths.
    Conflicts { paths: Vec<String> },
}

/// How a branch was moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advanced {
    /// The checkout of the branch that was brought along, if any.
    pub worktree: Option<PathBuf>,
}

impl Repo {
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

    /// The tree of `commit`.
    pub fn tree_of(&self, commit: ObjectId) -> Result<ObjectId> {
        let what = || format!("the tree of {commit}");
        Ok(self
            .repo
            .find_commit(commit)
            .map_err(read_err(what()))?
            .tree_id()
            .map_err(read_err(what()))?
            .detach())
    }

    /// The files that differ between the trees of two commits: each path with its
    /// new blob, or `None` where the file was deleted. Renames are a deletion and
    /// an addition.
    pub fn changed_files(
        &self,
        old: ObjectId,
        new: ObjectId,
    ) -> Result<Vec<(String, Option<ObjectId>)>> {
        let what = || format!("the changes from {old} to {new}");
        let old_tree = self
            .repo
            .find_tree(self.tree_of(old)?)
            .map_err(read_err(what()))?;
        let new_tree = self
            .repo
            .find_tree(self.tree_of(new)?)
            .map_err(read_err(what()))?;
        let changes = self
            .repo
            .diff_tree_to_tree(&old_tree, &new_tree, gix::diff::Options::default())
            .map_err(read_err(what()))?;
        let mut out = Vec::new();
        for change in changes {
            use gix::object::tree::diff::ChangeDetached as C;
            let path = change.location().to_str_lossy().into_owned();
            match &change {
                C::Deletion { entry_mode, .. } if !entry_mode.is_tree() => out.push((path, None)),
                C::Addition { entry_mode, id, .. } | C::Modification { entry_mode, id, .. }
                    if !entry_mode.is_tree() =>
                {
                    out.push((path, Some(*id)));
                }
                C::Rewrite { .. } => {
                    let source = change.source_location().to_str_lossy().into_owned();
                    out.push((source, None));
                    let (mode, id) = change.entry_mode_and_id();
                    if !mode.is_tree() {
                        out.push((path, Some(id.to_owned())));
                    }
                }
                _ => {}
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Merges `theirs` into `ours` in memory, like `git merge-tree --write-tree`.
    pub fn trial_merge(&self, ours: ObjectId, theirs: ObjectId) -> Result<TrialMerge> {
        let what = || format!("a merge of {theirs} into {ours}");
        let options = self.repo.tree_merge_options().map_err(read_err(what()))?;
        let labels = gix::merge::blob::builtin_driver::text::Labels {
            ancestor: Some("base".into()),
            current: Some("ours".into()),
            other: Some("theirs".into()),
        };
        let mut outcome = self
            .repo
            .merge_commits(ours, theirs, labels, options.into())
            .map_err(write_err(what()))?;
        let how = gix::merge::tree::TreatAsUnresolved::default();
        if outcome.tree_merge.has_unresolved_conflicts(how) {
            let mut paths: Vec<String> = outcome
                .tree_merge
                .conflicts
                .iter()
                .filter(|c| c.is_unresolved(how))
                .flat_map(|c| [c.ours.location(), c.theirs.location()])
                .filter(|p| !p.is_empty())
                .map(|p| p.to_str_lossy().into_owned())
                .collect();
            paths.sort();
            paths.dedup();
            return Ok(TrialMerge::Conflicts { paths });
        }
        let tree = outcome
            .tree_merge
            .tree
            .write()
            .map_err(|e| GitError::Write {
                what: what(),
                source: gix::Error::from_error(e),
            })?
            .detach();
        Ok(TrialMerge::Clean { tree })
    }

    /// Which of `candidates` are reachable from `tip` (a commit reaches itself).
    ///
    /// One walk, newest first, answers most questions at once: it stops at
    /// commits older than the oldest candidate and than `tip` (less a day, for
    /// clock skew). Commit times are only a hint, though (clocks differ between
    /// machines, and agents' commits carry their own), so a candidate the walk
    /// did not meet is checked exactly with a merge base.
    pub fn reachable_among(
        &self,
        tip: ObjectId,
        candidates: &std::collections::BTreeSet<ObjectId>,
    ) -> Result<std::collections::BTreeSet<ObjectId>> {
        const SKEW: i64 = 24 * 3600;
        let mut found = std::collections::BTreeSet::new();
        if candidates.is_empty() {
            return Ok(found);
        }
        let time_of = |id: ObjectId| {
            self.repo
                .find_commit(id)
                .and_then(|c| c.time())
                .map(|t| t.seconds)
                .ok()
        };
        let mut oldest = time_of(tip).unwrap_or(i64::MAX);
        let mut commits = std::collections::BTreeSet::new();
        for id in candidates {
            // A candidate that is not a commit here cannot be reachable.
            if let Some(t) = time_of(*id) {
                oldest = oldest.min(t);
                commits.insert(*id);
            }
        }
        if commits.is_empty() {
            return Ok(found);
        }
        let walk = self
            .repo
            .rev_walk([tip])
            .sorting(gix::revision::walk::Sorting::ByCommitTimeCutoff {
                order: gix::traverse::commit::simple::CommitTimeOrder::NewestFirst,
                seconds: oldest.saturating_sub(SKEW),
            })
            .all()
            .map_err(read_err("the history"))?;
        for info in walk {
            let info = info.map_err(|e| GitError::Read {
                what: "the history".into(),
                source: gix::Error::from_error(e),
            })?;
            if commits.contains(&info.id) {
                found.insert(info.id);
                if found.len() == commits.len() {
                    return Ok(found);
                }
            }
        }
        for id in commits.difference(&found.clone()) {
            if self.is_ancestor(*id, tip)? {
                found.insert(*id);
            }
        }
        Ok(found)
    }

    /// Writes a commit object (no ref moves), dated now and never before its
    /// first parent, unless `GIT_COMMITTER_DATE`/`GIT_AUTHOR_DATE` fix the dates,
    /// as `signer`.
    pub fn write_commit(
        &self,
        tree: ObjectId,
        parents: &[ObjectId],
        message: &str,
        signer: &super::Signer,
    ) -> Result<ObjectId> {
        let (author, committer) = self.commit_signatures(parents.first().copied(), signer)?;
        let commit = gix::objs::Commit {
            tree,
            parents: parents.iter().copied().collect(),
            author,
            committer,
            encoding: None,
            message: BString::from(message),
            extra_headers: Vec::new(),
        };
        Ok(self
            .repo
            .write_object(&commit)
            .map_err(write_err("a commit"))?
            .detach())
    }

    /// Moves `branch` from `expected` to `new` by compare-and-swap. When the
    /// branch is checked out, that checkout follows like `git read-tree -m -u`
    /// would move it (see the `checkout` module): only the paths that differ
    /// between the two commits are written, and only if none of them has
    /// uncommitted changes; otherwise nothing moves and the result is
    /// [`GitError::Dirty`] naming the paths in the way. Changes elsewhere in
    /// the checkout do not matter.
    pub fn advance_branch(
        &self,
        branch: &str,
        expected: ObjectId,
        new: ObjectId,
        log: &str,
    ) -> Result<Advanced> {
        let Some(path) = self.checkout_of(branch)? else {
            self.compare_and_swap(branch, expected, new, log)?;
            return Ok(Advanced { worktree: None });
        };
        // An update a crash interrupted is finished before the next one.
        self.recover_checkouts()?;
        let worktree = Repo::discover(&path)?;
        // The index stays locked from before the branch moves until it is
        // written: no other git process writes it in between, and the branch
        // never moves while someone else's git holds it.
        let lock = worktree.lock_index(branch)?;
        // A person may have switched that checkout to another branch since we
        // looked (git holds the index lock while it checks out): then the
        // branch is no longer checked out there, and only the ref moves.
        if worktree.head_branch()?.as_deref() != Some(branch) {
            drop(lock);
            self.compare_and_swap(branch, expected, new, log)?;
            return Ok(Advanced { worktree: None });
        }
        let plan = worktree.plan_checkout(self.tree_of(expected)?, self.tree_of(new)?)?;
        if !plan.blocked.is_empty() {
            return Err(GitError::Dirty {
                branch: branch.to_owned(),
                worktree: path,
                paths: plan.blocked.iter().map(ToString::to_string).collect(),
            });
        }
        let journal = super::Journal::new(branch, &path, expected, new);
        self.begin_checkout_journal(&journal)?;
        if let Err(e) = self.compare_and_swap(branch, expected, new, log) {
            self.end_checkout_journal(branch)?;
            return Err(e);
        }
        crate::crash::point("mid-checkout");
        // A path the person saved in the meantime is left as they saved it,
        // and noted for doctor.
        let left = worktree.apply_checkout(&plan, lock)?;
        if !left.is_empty() {
            self.note_left_alone(&journal, &left)?;
        }
        self.end_checkout_journal(branch)?;
        Ok(Advanced {
            worktree: Some(path),
        })
    }

    /// The bytes of a blob.
    pub fn blob(&self, id: ObjectId) -> Result<Vec<u8>> {
        Ok(self
            .repo
            .find_blob(id)
            .map_err(read_err(format!("the blob {id}")))?
            .take_data())
    }

    /// Paths that differ between this worktree and its HEAD commit: modified,
    /// staged, deleted and untracked files (ignored files are not included).
    pub fn touched_paths(&self) -> Result<Vec<String>> {
        let what = || "the worktree's status".to_owned();
        let iter = self
            .repo
            .status(gix::progress::Discard)
            .map_err(read_err(what()))?
            .untracked_files(gix::status::UntrackedFiles::Files)
            .index_worktree_rewrites(None)
            .tree_index_track_renames(gix::status::tree_index::TrackRenames::Disabled)
            .into_iter(None)
            .map_err(read_err(what()))?;
        let mut out = Vec::new();
        for item in iter {
            let item = item.map_err(read_err(what()))?;
            let path = match &item {
                gix::status::Item::IndexWorktree(i) => {
                    if let gix::status::index_worktree::Item::DirectoryContents { entry, .. } = i
                        && entry.status != gix::dir::entry::Status::Untracked
                    {
                        continue;
                    }
                    i.rela_path().to_owned()
                }
                gix::status::Item::TreeIndex(change) => change.location().to_owned(),
            };
            out.push(path.to_str_lossy().into_owned());
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Commits everything left in this worktree (see [`Repo::touched_paths`]) on
    /// the branch it has checked out, and resets the index to match. Returns the
    /// new commit (as `signer`), or `None` when there was nothing to commit.
    pub fn commit_leftovers(
        &self,
        message: &str,
        signer: &super::Signer,
    ) -> Result<Option<ObjectId>> {
        let paths = self.touched_paths()?;
        if paths.is_empty() {
            return Ok(None);
        }
        let workdir = self.workdir()?.to_owned();
        let head = self.head_commit()?;
        let branch = self.head_branch()?.ok_or(GitError::DetachedHead)?;
        let base_tree = match head {
            Some(h) => self.tree_of(h)?,
            None => ObjectId::empty_tree(self.repo.object_hash()),
        };
        let mut editor = self
            .repo
            .edit_tree(base_tree)
            .map_err(write_err("a tree"))?;
        let mut staged: Vec<(String, Option<(ObjectId, EntryKind)>)> = Vec::new();
        for path in &paths {
            let file = workdir.join(path);
            let io = |source| GitError::Io {
                path: file.clone(),
                source,
            };
            let (bytes, kind) = match std::fs::symlink_metadata(&file) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    let target = std::fs::read_link(&file).map_err(io)?;
                    (
                        super::checkout::link_bytes(&target).to_vec(),
                        EntryKind::Link,
                    )
                }
                Ok(meta) if meta.is_file() => {
                    let kind = if super::checkout::is_executable(&meta) {
                        EntryKind::BlobExecutable
                    } else {
                        EntryKind::Blob
                    };
                    (std::fs::read(&file).map_err(io)?, kind)
                }
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    editor
                        .remove(path.as_str())
                        .map_err(write_err(path.clone()))?;
                    staged.push((path.clone(), None));
                    continue;
                }
                Err(e) => return Err(io(e)),
            };
            let id = self
                .repo
                .write_blob(&bytes)
                .map_err(write_err(path.clone()))?
                .detach();
            editor
                .upsert(path.as_str(), kind, id)
                .map_err(write_err(path.clone()))?;
            staged.push((path.clone(), Some((id, kind))));
        }
        let tree = editor.write().map_err(write_err("a tree"))?.detach();
        if tree == base_tree {
            return Ok(None);
        }
        let parents: Vec<ObjectId> = head.into_iter().collect();
        let commit = self.write_commit(tree, &parents, message, signer)?;
        match head {
            Some(h) => self.compare_and_swap(&branch, h, commit, message)?,
            None => self.create_ref(&format!("refs/heads/{branch}"), commit, message)?,
        }
        let entries: Vec<(&str, Option<(ObjectId, EntryKind)>)> =
            staged.iter().map(|(p, e)| (p.as_str(), *e)).collect();
        self.stage(&entries)?;
        Ok(Some(commit))
    }

    /// Removes a checkout converge made at `path`: through git when it is a
    /// registered worktree, else (left by a crash before registration) the
    /// directory itself.
    pub fn remove_checkout(&self, path: &Path) -> Result<()> {
        let registered = self
            .linked_worktrees()?
            .into_iter()
            .any(|(p, _)| same_path(&p, path));
        if registered {
            self.remove_worktree(path)
        } else if path.exists() {
            std::fs::remove_dir_all(path).map_err(|source| GitError::Io {
                path: path.to_owned(),
                source,
            })
        } else {
            Ok(())
        }
    }

    /// Removes the lock file of `refs/heads/<branch>` left by a process that
    /// was killed while it updated the branch (an agent reaped mid-commit).
    /// Callers make sure nothing that could hold the lock is alive.
    pub fn clear_ref_lock(&self, branch: &str) -> Result<bool> {
        remove_file_if_exists(
            &self
                .common_dir()
                .join("refs")
                .join("heads")
                .join(format!("{branch}.lock")),
        )
    }

    /// Removes this checkout's `index.lock`, left by a process killed while it
    /// staged files. Callers make sure nothing that could hold it is alive.
    pub fn clear_index_lock(&self) -> Result<bool> {
        let mut lock = self.repo.index_path().into_os_string();
        lock.push(".lock");
        remove_file_if_exists(&PathBuf::from(lock))
    }

    /// Deletes `refs/heads/<branch>` if it is still at `expected`.
    pub fn delete_branch(&self, branch: &str, expected: ObjectId) -> Result<()> {
        use gix::refs::transaction::{Change, PreviousValue, RefEdit, RefLog};
        let name = format!("refs/heads/{branch}");
        let edit = RefEdit {
            change: Change::Delete {
                expected: PreviousValue::MustExistAndMatch(gix::refs::Target::Object(expected)),
                log: RefLog::AndReference,
            },
            name: full_name(&name)?,
            deref: false,
        };
        let _noted =
            super::intent::note(self.common_dir(), &super::intent::Intent::Ref(name.clone()));
        match self.repo.edit_reference(edit) {
            Ok(_) => Ok(()),
            Err(source) => match self.branch_tip(branch)? {
                None => Ok(()),
                Some(found) if found != expected => Err(GitError::Conflict {
                    branch: branch.to_owned(),
                    found: found.to_string(),
                }),
                Some(_) => Err(GitError::Write { what: name, source }),
            },
        }
    }

    /// Deletes the reference `full_name` (`refs/...`) if it still points at
    /// `expected`; one that is already gone is fine.
    pub fn delete_ref(&self, full_name: &str, expected: ObjectId) -> Result<()> {
        use gix::refs::transaction::{Change, PreviousValue, RefEdit, RefLog};
        let edit = RefEdit {
            change: Change::Delete {
                expected: PreviousValue::MustExistAndMatch(gix::refs::Target::Object(expected)),
                log: RefLog::AndReference,
            },
            name: super::full_name(full_name)?,
            deref: false,
        };
        match self.repo.edit_reference(edit) {
            Ok(_) => Ok(()),
            Err(source) => match self.ref_target(full_name)? {
                None => Ok(()),
                Some(found) if found != expected => Err(GitError::Conflict {
                    branch: full_name.to_owned(),
                    found: found.to_string(),
                }),
                Some(_) => Err(GitError::Write {
                    what: full_name.to_owned(),
                    source,
                }),
            },
        }
    }

    /// Forgets linked worktrees whose directory is gone, like `git worktree
    /// prune`: their administrative directories are removed.
    pub fn prune_worktrees(&self) -> Result<usize> {
        let admin = self.common_dir().join("worktrees");
        let Ok(entries) = std::fs::read_dir(&admin) else {
            return Ok(0);
        };
        let mut pruned = 0;
        for entry in entries.filter_map(std::result::Result::ok) {
            let dir = entry.path();
            let Ok(gitdir) = std::fs::read_to_string(dir.join("gitdir")) else {
                continue;
            };
            let checkout_git = PathBuf::from(gitdir.trim());
            if !checkout_git.exists() {
                std::fs::remove_dir_all(&dir).map_err(|source| GitError::Io {
                    path: dir.clone(),
                    source,
                })?;
                pruned += 1;
            }
        }
        Ok(pruned)
    }

    /// Checks out `commit` detached in a new linked worktree at `path`.
    pub fn add_detached_worktree(&self, path: &Path, commit: ObjectId) -> Result<()> {
        let interrupt = std::sync::atomic::AtomicBool::new(false);
        let _noted = super::intent::note(
            self.common_dir(),
            &super::intent::Intent::Worktree(path.to_owned()),
        );
        self.repo
            .add_worktree(
                path,
                gix::worktree::add::Head::Detached(commit),
                gix::progress::Discard,
                &interrupt,
            )
            .map_err(write_err(format!(
                "a worktree at {} for {commit}",
                path.display()
            )))?;
        Ok(())
    }

    /// The full message of a commit.
    pub fn commit_message(&self, commit: ObjectId) -> Result<String> {
        let c = self
            .repo
            .find_commit(commit)
            .map_err(read_err(format!("the commit {commit}")))?;
        Ok(c.message_raw_sloppy().to_str_lossy().into_owned())
    }

    /// Commits reachable from `tip` through first parents (the branch's own
    /// history: merges and status commits), newest first, at most `limit`.
    pub fn log(&self, tip: ObjectId, limit: usize) -> Result<Vec<(ObjectId, i64, String)>> {
        let walk = self
            .repo
            .rev_walk([tip])
            .first_parent_only()
            .all()
            .map_err(read_err("the history"))?;
        let mut out = Vec::new();
        for info in walk.take(limit) {
            let info = info.map_err(|e| GitError::Read {
                what: "the history".into(),
                source: gix::Error::from_error(e),
            })?;
            let commit = info.object().map_err(read_err("a commit"))?;
            let time = commit.time().map(|t| t.seconds).unwrap_or(0);
            let message = commit.message_raw_sloppy().to_str_lossy().into_owned();
            out.push((info.id, time, message));
        }
        Ok(out)
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
