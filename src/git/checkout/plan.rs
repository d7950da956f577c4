//! Planning an update of a checkout: the tree delta between two commits and,
//! per path, whether the index and the worktree allow the two-way rule of
//! `git read-tree -m -u` (see the module documentation of `checkout`).

use std::collections::BTreeMap;
use std::path::Path;

use gix::ObjectId;
use gix::bstr::{BStr, BString, ByteSlice};
use gix::objs::tree::EntryKind;

use super::{Blocked, Delta, Entry, Plan, fs_path, index_mode, io_err, is_executable, link_bytes};
use crate::git::{GitError, Repo, Result, read_err};

/// What is at one path of the worktree: read once per check, its content
/// hashed at most once, however many tree entries it is compared with.
pub(super) struct OnDisk<'p> {
    file: &'p Path,
    /// `None`: nothing there.
    pub(super) meta: Option<std::fs::Metadata>,
    /// `core.fileMode`: whether the executable bit on disk means something.
    trusts_exec_bit: bool,
    blob: std::cell::OnceCell<ObjectId>,
}

/// What the index holds at one path.
struct Staged {
    /// The unconflicted entry (mode and blob), if any.
    entry: Option<(gix::index::entry::Mode, ObjectId)>,
    /// The entry is outside a sparse checkout (`skip-worktree`).
    skip_worktree: bool,
    /// The path has only conflict stages (unmerged).
    conflicted: bool,
}

/// What `index` (if there is one) holds at `path`.
fn staged(index: Option<&gix::index::File>, path: &BStr) -> Staged {
    use gix::index::entry::{Flags, Stage};
    let Some(index) = index else {
        return Staged {
            entry: None,
            skip_worktree: false,
            conflicted: false,
        };
    };
    let unconflicted = index.entry_by_path_and_stage(path, Stage::Unconflicted);
    Staged {
        entry: unconflicted.map(|e| (e.mode, e.id)),
        skip_worktree: unconflicted.is_some_and(|e| e.flags.contains(Flags::SKIP_WORKTREE)),
        conflicted: unconflicted.is_none() && index.entry_index_by_path(path).is_ok(),
    }
}

/// Whether git would check out `path` (components split on `/`), by the
/// rules of [`crate::git::safe::refused_name`]. Returns the reason if not.
fn unsafe_path(path: &BStr, is_link: bool) -> Option<String> {
    let components: Vec<&[u8]> = path.split(|b| *b == b'/').collect();
    let last = components.len().saturating_sub(1);
    components.iter().enumerate().find_map(|(i, component)| {
        crate::git::safe::refused_name(component.as_bstr(), i == last && is_link)
            .map(|why| format!("`{}`: {why}", path.to_str_lossy()))
    })
}

impl Repo {
    /// The paths whose entries differ between two trees (`None`: the empty
    /// tree), in path order. Directories are not listed; a directory that
    /// became a file lists each file below it as deleted and the file as added.
    pub(crate) fn tree_delta(
        &self,
        old: Option<ObjectId>,
        new: Option<ObjectId>,
    ) -> Result<Vec<Delta>> {
        let mut out = Vec::new();
        self.tree_delta_into(old, new, BStr::new(""), &mut out)?;
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn tree_entries(&self, tree: Option<ObjectId>) -> Result<BTreeMap<BString, Entry>> {
        let mut out = BTreeMap::new();
        let Some(tree) = tree else {
            return Ok(out);
        };
        let what = || format!("the tree {tree}");
        let object = self.repo.find_tree(tree).map_err(read_err(what()))?;
        let decoded = object.decode().map_err(read_err(what()))?;
        for entry in &decoded.entries {
            out.insert(
                entry.filename.to_owned(),
                (entry.mode.kind(), entry.oid.to_owned()),
            );
        }
        Ok(out)
    }

    fn tree_delta_into(
        &self,
        old: Option<ObjectId>,
        new: Option<ObjectId>,
        prefix: &BStr,
        out: &mut Vec<Delta>,
    ) -> Result<()> {
        if old == new {
            return Ok(());
        }
        let old_entries = self.tree_entries(old)?;
        let new_entries = self.tree_entries(new)?;
        let mut names: Vec<&BString> = old_entries.keys().chain(new_entries.keys()).collect();
        names.sort();
        names.dedup();
        for name in names {
            let o = old_entries.get(name).copied();
            let n = new_entries.get(name).copied();
            if o == n {
                continue;
            }
            let mut path = BString::from(prefix.to_vec());
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(name);
            let tree_id =
                |e: Option<Entry>| e.filter(|(k, _)| *k == EntryKind::Tree).map(|(_, id)| id);
            let leaf = |e: Option<Entry>| e.filter(|(k, _)| *k != EntryKind::Tree);
            let (old_tree, new_tree) = (tree_id(o), tree_id(n));
            if old_tree.is_some() || new_tree.is_some() {
                self.tree_delta_into(old_tree, new_tree, path.as_bstr(), out)?;
            }
            let (old_leaf, new_leaf) = (leaf(o), leaf(n));
            if old_leaf.is_some() || new_leaf.is_some() {
                out.push(Delta {
                    path,
                    old: old_leaf,
                    new: new_leaf,
                });
            }
        }
        Ok(())
    }

    /// Plans updating this checkout from `from` to `to` (trees), without
    /// writing anything. See the module documentation for the rules.
    pub(crate) fn plan_checkout(&self, from: ObjectId, to: ObjectId) -> Result<Plan> {
        let workdir = self.workdir()?.to_owned();
        let deltas = self.tree_delta(Some(from), Some(to))?;
        let index = self.read_index()?;
        if index.as_ref().is_some_and(|i| i.is_sparse()) {
            return Err(GitError::Unsupported {
                worktree: workdir,
                what: "a sparse index (`index.sparse`)".into(),
            });
        }
        let trusts_exec_bit = self.trusts_exec_bit();
        let mut blocked = Vec::new();
        let mut unsafe_paths = Vec::new();
        let mut sparse = std::collections::BTreeSet::new();
        for delta in &deltas {
            let path_str = delta.path.to_str_lossy().into_owned();
            if let Some((kind, _)) = delta.new
                && let Some(why) = unsafe_path(delta.path.as_bstr(), kind == EntryKind::Link)
            {
                unsafe_paths.push(why);
                continue;
            }
            let Staged {
                entry: staged,
                skip_worktree,
                conflicted,
            } = staged(index.as_ref(), delta.path.as_bstr());
            if conflicted {
                blocked.push(Blocked {
                    path: path_str,
                    why: "unmerged in the index",
                });
                continue;
            }
            if let Some(why) = self.leading_path_problem(&workdir, delta, &deltas) {
                blocked.push(Blocked {
                    path: path_str,
                    why,
                });
                continue;
            }
            let file = workdir.join(fs_path(&delta.path));
            let index_is = |e: Option<Entry>| match (e, staged) {
                (None, None) => true,
                (Some((kind, id)), Some((mode, staged_id))) => {
                    index_mode(kind) == mode && id == staged_id
                }
                _ => false,
            };
            let disk = self.on_disk(&file, trusts_exec_bit)?;
            let disk_is = |e: Option<Entry>| {
                if e.is_none() && disk.meta.as_ref().is_some_and(std::fs::Metadata::is_dir) {
                    // A directory where the tree gets a file: fine when all it
                    // holds are tracked files this update deletes (each
                    // checked as its own delta).
                    return Ok(only_deleted_below(&file, delta.path.as_bstr(), &deltas));
                }
                self.disk_holds(&disk, e)
            };
            let index_old = index_is(delta.old);
            let index_new = index_is(delta.new);
            if skip_worktree && delta.new.is_some() && (index_old || index_new) {
                // Outside the sparse checkout: git keeps the file off the disk.
                sparse.insert(delta.path.clone());
                continue;
            }
            let disk_new = disk_is(delta.new)?;
            let disk_old = disk_is(delta.old)?;
            let ok = (index_old || index_new) && (disk_old || disk_new);
            if !ok {
                let why = if !(index_old || index_new) {
                    if staged.is_none() && delta.old.is_none() {
                        "untracked file in the way"
                    } else {
                        "staged changes"
                    }
                } else if delta.old.is_none() && staged.is_none() {
                    "untracked file in the way"
                } else {
                    "modified in the worktree"
                };
                blocked.push(Blocked {
                    path: path_str,
                    why,
                });
            }
        }
        if !unsafe_paths.is_empty() {
            return Err(GitError::UnsafePaths {
                paths: unsafe_paths,
            });
        }
        Ok(Plan {
            deltas,
            blocked,
            sparse,
        })
    }

    /// Whether a directory leading to `delta`'s path is something converge
    /// must not write through or replace: a symbolic link, or a file that the
    /// update does not itself remove.
    fn leading_path_problem(
        &self,
        workdir: &Path,
        delta: &Delta,
        all: &[Delta],
    ) -> Option<&'static str> {
        let components: Vec<&[u8]> = delta.path.split(|b| *b == b'/').collect();
        let mut prefix = BString::default();
        let mut dir = workdir.to_owned();
        for component in &components[..components.len().saturating_sub(1)] {
            if !prefix.is_empty() {
                prefix.push(b'/');
            }
            prefix.extend_from_slice(component);
            dir.push(fs_path(component));
            let Ok(meta) = std::fs::symlink_metadata(&dir) else {
                // Missing: created when needed.
                return None;
            };
            if meta.is_dir() {
                continue;
            }
            // A link or a file where a directory must be: fine only if this
            // very update removes that entry (a file or link that becomes a
            // directory), and the entry is unmodified (checked as its own delta).
            let removed = all
                .iter()
                .any(|d| d.path == prefix && d.old.is_some() && d.new.is_none());
            if removed {
                return None;
            }
            return Some(if meta.file_type().is_symlink() {
                "a leading directory is a symbolic link in the worktree"
            } else {
                "a file is in the way of a directory"
            });
        }
        None
    }

    /// Whether the worktree has `entry` at the path of `disk` (`None`: nothing
    /// there, or an empty directory).
    pub(super) fn disk_holds(&self, disk: &OnDisk<'_>, entry: Option<Entry>) -> Result<bool> {
        let file = disk.file;
        let Some(meta) = &disk.meta else {
            return Ok(entry.is_none());
        };
        let Some((kind, id)) = entry else {
            // A directory at a path the tree has no file for: fine while empty
            // (what is inside it is checked path by path).
            return Ok(meta.is_dir() && is_empty_dir(file));
        };
        match kind {
            EntryKind::Blob | EntryKind::BlobExecutable => {
                // With `core.fileMode = false` (file systems without an
                // executable bit), git ignores the bit on disk, and so do we.
                let exec_differs = disk.trusts_exec_bit
                    && is_executable(meta) != (kind == EntryKind::BlobExecutable);
                if !meta.is_file() || exec_differs {
                    return Ok(false);
                }
                Ok(self.disk_blob(disk)? == id)
            }
            EntryKind::Link => {
                if !meta.file_type().is_symlink() {
                    return Ok(false);
                }
                Ok(self.disk_blob(disk)? == id)
            }
            EntryKind::Commit => Ok(meta.is_dir()),
            EntryKind::Tree => Ok(false),
        }
    }

    /// The blob id of what is at the path of `disk` (a file's content, a
    /// link's target), hashed once however many entries it is compared with.
    fn disk_blob(&self, disk: &OnDisk<'_>) -> Result<ObjectId> {
        if let Some(id) = disk.blob.get() {
            return Ok(*id);
        }
        let file = disk.file;
        let is_link = disk
            .meta
            .as_ref()
            .is_some_and(|m| m.file_type().is_symlink());
        let bytes = if is_link {
            let target = std::fs::read_link(file).map_err(io_err(file))?;
            link_bytes(&target).to_vec()
        } else {
            std::fs::read(file).map_err(io_err(file))?
        };
        let id = gix::objs::compute_hash(self.repo.object_hash(), gix::objs::Kind::Blob, &bytes)
            .map_err(|e| GitError::Read {
                what: file.display().to_string(),
                source: gix::Error::from_error(e),
            })?;
        let _ = disk.blob.set(id);
        Ok(id)
    }

    /// What is at `file` now, read once (see [`OnDisk`]).
    pub(super) fn on_disk<'p>(&self, file: &'p Path, trusts_exec_bit: bool) -> Result<OnDisk<'p>> {
        let meta = match std::fs::symlink_metadata(file) {
            Ok(meta) => Some(meta),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                None
            }
            Err(source) => return Err(io_err(file)(source)),
        };
        Ok(OnDisk {
            file,
            meta,
            trusts_exec_bit,
            blob: std::cell::OnceCell::new(),
        })
    }

    /// Whether the executable bit on disk means something (`core.fileMode`,
    /// true unless configured otherwise).
    pub(super) fn trusts_exec_bit(&self) -> bool {
        self.repo
            .config_snapshot()
            .boolean("core.fileMode")
            .unwrap_or(true)
    }

    /// The index of this checkout as it is on disk, if there is one.
    pub(super) fn read_index(&self) -> Result<Option<gix::index::File>> {
        let path = self.repo.index_path();
        if !path.exists() {
            return Ok(None);
        }
        gix::index::File::at(&path, self.repo.object_hash(), false, Default::default())
            .map(Some)
            .map_err(|e| GitError::Index {
                path: path.clone(),
                source: Box::new(e),
            })
    }
}

fn is_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

/// Whether everything below the directory `dir` (the worktree's `prefix`) is
/// a file or link that `deltas` delete; empty directories do not count.
pub(super) fn only_deleted_below(dir: &Path, prefix: &BStr, deltas: &[Delta]) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    for entry in entries {
        let Ok(entry) = entry else {
            return false;
        };
        let mut path = BString::from(prefix.to_vec());
        path.push(b'/');
        path.extend_from_slice(link_bytes(Path::new(&entry.file_name())));
        let child = entry.path();
        if is_dir(&child) {
            if !only_deleted_below(&child, path.as_bstr(), deltas) {
                return false;
            }
            continue;
        }
        let deleted = deltas
            .binary_search_by(|d| d.path.as_bstr().cmp(path.as_bstr()))
            .ok()
            .is_some_and(|i| deltas[i].old.is_some() && deltas[i].new.is_none());
        if !deleted {
            return false;
        }
    }
    true
}

pub(super) fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_git_refuses_are_unsafe() {
        for bad in [
            "..",
            "a/../b",
            ".git/config",
            "x/.GIT/hooks",
            "GIT~1/config",
            ".git ",
            ".git./x",
            "a//b",
            ".",
            "x/./y",
            ".git\u{200c}/config",
        ] {
            assert!(unsafe_path(BStr::new(bad), false).is_some(), "{bad} passed");
        }
        assert!(unsafe_path(BStr::new(".gitmodules"), true).is_some());
        for good in [
            "a/b.txt",
            ".github/workflows/ci.yml",
            ".gitignore",
            "git/x",
            "a b/c",
        ] {
            assert_eq!(unsafe_path(BStr::new(good), false), None, "{good}");
        }
        assert_eq!(unsafe_path(BStr::new(".gitmodules"), false), None);
    }
}
