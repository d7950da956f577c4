//! Reading objects: blobs, trees and commits at a given commit, without
//! touching any working tree.

use std::collections::BTreeMap;

use gix::ObjectId;
use gix::bstr::ByteSlice;
use gix::objs::tree::EntryKind;

use super::{GitError, Repo, Result, read_err};

/// One file read from a tree by [`Repo::read_tree_entries`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeFile {
    Bytes(Vec<u8>),
    /// Over the filter's `max_size`; only the size was read.
    TooLarge(u64),
    /// A symbolic link (its target is not read).
    Symlink,
}

/// A file [`Repo::list_tree_files`] found: its path from the repository
/// root, its object, and whether it is a symbolic link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    pub path: String,
    pub id: ObjectId,
    pub link: bool,
}

/// Which files [`Repo::list_tree_files`] lists, by their path relative to
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

    /// The blob id of `path` at `commit`, as hex (`None`: no such file).
    pub fn blob_id_at(&self, commit: ObjectId, path: &str) -> Result<Option<String>> {
        let what = || format!("{path} at {commit}");
        let commit = self.repo.find_commit(commit).map_err(read_err(what()))?;
        let tree = commit.tree().map_err(read_err(what()))?;
        let Some(entry) = tree.lookup_entry_by_path(path).map_err(read_err(what()))? else {
            return Ok(None);
        };
        Ok(entry
            .mode()
            .is_blob()
            .then(|| entry.object_id().to_string()))
    }

    /// The files below the directory `dir` (e.g. `planning`) of the tree of
    /// `commit` that `filter` chooses, keyed by their path from the
    /// repository root, with their object ids, without reading a blob
    /// ([`Repo::read_tree_entries`] reads them). `None` when `dir` is not a
    /// directory there. Names that are not UTF-8 are skipped. Equal listings
    /// mean equal contents: a daemon keys what it compiled from the files by
    /// their listing.
    pub fn list_tree_files(
        &self,
        commit: ObjectId,
        dir: &str,
        filter: &TreeFilter,
    ) -> Result<Option<Vec<TreeEntry>>> {
        let Some(tree) = self.dir_id_at(commit, dir)? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        self.walk_tree(tree, dir, "", filter, &mut out)?;
        Ok(Some(out))
    }

    /// The contents of `entries` (from [`Repo::list_tree_files`]); files
    /// larger than `max_size` are only sized.
    pub fn read_tree_entries(
        &self,
        entries: &[TreeEntry],
        max_size: u64,
    ) -> Result<BTreeMap<String, TreeFile>> {
        let mut out = BTreeMap::new();
        for entry in entries {
            let content = if entry.link {
                TreeFile::Symlink
            } else {
                let header = self
                    .repo
                    .find_header(entry.id)
                    .map_err(read_err(entry.path.clone()))?;
                if header.size() > max_size {
                    TreeFile::TooLarge(header.size())
                } else {
                    let object = self
                        .repo
                        .find_object(entry.id)
                        .map_err(read_err(entry.path.clone()))?;
                    TreeFile::Bytes(object.data.clone())
                }
            };
            out.insert(entry.path.clone(), content);
        }
        Ok(out)
    }

    fn walk_tree(
        &self,
        tree_id: ObjectId,
        dir: &str,
        relative: &str,
        filter: &TreeFilter,
        out: &mut Vec<TreeEntry>,
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
            let link = match kind {
                EntryKind::Link => true,
                EntryKind::Blob | EntryKind::BlobExecutable => false,
                EntryKind::Tree | EntryKind::Commit => continue,
            };
            out.push(TreeEntry {
                path: format!("{dir}/{child}"),
                id: entry.oid.to_owned(),
                link,
            });
        }
        Ok(())
    }

    /// The id of the directory `path`'s tree in the tree of `commit`; `None`
    /// when `path` is not a directory there.
    pub fn dir_id_at(&self, commit: ObjectId, path: &str) -> Result<Option<ObjectId>> {
        let what = || format!("{path} at {commit}");
        let tree = self
            .repo
            .find_commit(commit)
            .map_err(read_err(what()))?
            .tree()
            .map_err(read_err(what()))?;
        let Some(entry) = tree.lookup_entry_by_path(path).map_err(read_err(what()))? else {
            return Ok(None);
        };
        Ok(entry.mode().is_tree().then(|| entry.oid().to_owned()))
    }

    /// The names of the entries of the directory `path` in the tree of `commit`.
    pub fn list_dir_at(&self, commit: ObjectId, path: &str) -> Result<Vec<String>> {
        let what = || format!("{path} at {commit}");
        let Some(id) = self.dir_id_at(commit, path)? else {
            return Ok(Vec::new());
        };
        let subtree = self.repo.find_tree(id).map_err(read_err(what()))?;
        let decoded = subtree.decode().map_err(read_err(what()))?;
        let mut names: Vec<String> = decoded
            .entries
            .iter()
            .filter_map(|e| e.filename.to_str().ok().map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The bytes of a blob.
    pub(crate) fn blob(&self, id: ObjectId) -> Result<Vec<u8>> {
        Ok(self
            .repo
            .find_blob(id)
            .map_err(read_err(format!("the blob {id}")))?
            .take_data())
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
}

/// One commit of a first-parent walk, as [`Repo::walk_first_parents`] hands it
/// over.
#[derive(Debug)]
pub struct Visited<'a> {
    pub id: ObjectId,
    pub parents: &'a [ObjectId],
    /// Commit time, seconds since the epoch (0 when unreadable).
    pub time: i64,
    pub message: &'a str,
}

impl Repo {
    /// The parents and the message of `id`; `None` when `id` names no commit
    /// here.
    pub fn commit_parents(&self, id: ObjectId) -> Result<Option<(Vec<ObjectId>, String)>> {
        let Ok(commit) = self.repo.find_commit(id) else {
            return Ok(None);
        };
        let parents = commit.parent_ids().map(gix::Id::detach).collect();
        let message = commit.message_raw_sloppy().to_str_lossy().into_owned();
        Ok(Some((parents, message)))
    }

    /// Walks the commits reachable from `tip` through first parents, newest
    /// first, at most `limit`, handing each to `visit` until it returns false.
    /// The one first-parent walk: `log` and the searches for converge's
    /// merges and a merge's subjects all go through it.
    pub fn walk_first_parents(
        &self,
        tip: ObjectId,
        limit: usize,
        mut visit: impl FnMut(&Visited<'_>) -> bool,
    ) -> Result<()> {
        let walk = self
            .repo
            .rev_walk([tip])
            .first_parent_only()
            .all()
            .map_err(read_err("the history"))?;
        for info in walk.take(limit) {
            let info = info.map_err(|e| GitError::Read {
                what: "the history".into(),
                source: gix::Error::from_error(e),
            })?;
            let commit = info.object().map_err(read_err("a commit"))?;
            let parents: Vec<ObjectId> = commit.parent_ids().map(gix::Id::detach).collect();
            let message = commit.message_raw_sloppy().to_str_lossy();
            let visited = Visited {
                id: info.id,
                parents: &parents,
                time: commit.time().map(|t| t.seconds).unwrap_or(0),
                message: &message,
            };
            if !visit(&visited) {
                break;
            }
        }
        Ok(())
    }

    /// Commits reachable from `tip` through first parents (the branch's own
    /// history: merges and status commits), newest first, at most `limit`:
    /// (id, commit time in seconds, message).
    pub fn log(&self, tip: ObjectId, limit: usize) -> Result<Vec<(ObjectId, i64, String)>> {
        let mut out = Vec::new();
        self.walk_first_parents(tip, limit, |c| {
            out.push((c.id, c.time, c.message.to_owned()));
            true
        })?;
        Ok(out)
    }
}
