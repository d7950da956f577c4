//! Linked worktrees: listing them, finding where a branch is checked out,
//! adding, removing and pruning them, and what a worktree has changed.

use std::path::{Path, PathBuf};

use gix::ObjectId;
use gix::bstr::ByteSlice;

use super::{
    GitError, Repo, Result, full_name, intent, read_err, remove_file_if_exists, same_path,
    write_err,
};

impl Repo {
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

    /// Checks out the existing branch `branch` in a new linked worktree at `path`.
    pub fn add_worktree(&self, path: &Path, branch: &str) -> Result<()> {
        let name = full_name(&format!("refs/heads/{branch}"))?;
        self.add_linked(
            path,
            gix::worktree::add::Head::Attached(name),
            format!("a worktree for {branch} at {}", path.display()),
        )
    }

    /// Checks out `commit` detached in a new linked worktree at `path`.
    pub fn add_detached_worktree(&self, path: &Path, commit: ObjectId) -> Result<()> {
        self.add_linked(
            path,
            gix::worktree::add::Head::Detached(commit),
            format!("a worktree at {} for {commit}", path.display()),
        )
    }

    /// Adds a linked worktree at `path` with `head` checked out, noting the
    /// intent first so that a killed converge's half-made worktree is found.
    fn add_linked(&self, path: &Path, head: gix::worktree::add::Head, what: String) -> Result<()> {
        let interrupt = std::sync::atomic::AtomicBool::new(false);
        let _noted = intent::note(
            self.common_dir(),
            &intent::Intent::Worktree(path.to_owned()),
        );
        self.repo
            .add_worktree(path, head, gix::progress::Discard, &interrupt)
            .map_err(write_err(what))?;
        Ok(())
    }

    /// Removes the linked worktree at `path`, discarding its changes (converge
    /// only removes worktrees it created, after their work was committed).
    pub(crate) fn remove_worktree(&self, path: &Path) -> Result<()> {
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

    /// Removes this checkout's `index.lock`, left by a process killed while it
    /// staged files. Callers make sure nothing that could hold it is alive.
    pub fn clear_index_lock(&self) -> Result<bool> {
        let mut lock = self.repo.index_path().into_os_string();
        lock.push(".lock");
        remove_file_if_exists(&PathBuf::from(lock))
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
}
