//! Updating a checkout the way git does: when converge moves a branch that is
//! checked out (the base branch in the person's own checkout, a status branch
//! in a linked worktree), the files and the index of that checkout follow, with
//! the rules of `git read-tree -m -u <old> <new>`:
//!
//! - only the paths that differ between the two commits are touched; every
//!   other file, staged change and untracked file stays exactly as it is;
//! - a path converge would change must be unmodified in the index and in the
//!   worktree (or already hold the new content); otherwise nothing at all is
//!   written and the caller gets the list of paths in the way;
//! - files are written with their modes (100644, 100755), symbolic links as
//!   links, gitlinks as directories; directory/file swaps are handled;
//! - nothing is ever written through a symbolic link: a path whose leading
//!   directory is a link in the worktree is in the way;
//! - each file is replaced atomically (written beside it, then renamed), and the
//!   index is rewritten under git's `index.lock` with its cache-tree dropped, so
//!   that the next `git commit` builds its tree from the entries.
//!
//! Because a file is always either its old or its new content, applying the
//! same update again after a crash finishes it: paths already at the new
//! content count as done. [`Repo::advance_branch`] keeps a small journal of the
//! update it is making (`<git-common-dir>/converge/checkouts/`) so that the next
//! converge process finishes an update a crash interrupted.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use gix::ObjectId;
use gix::bstr::{BStr, BString, ByteSlice};
use gix::objs::tree::EntryKind;

use super::{GitError, Repo, Result, read_err};

/// The entry of one path in a tree: its kind and object.
pub type Entry = (EntryKind, ObjectId);

/// One path (never a directory) whose entry differs between two trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    pub path: BString,
    pub old: Option<Entry>,
    pub new: Option<Entry>,
}

/// Why a path blocks an update of a checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub path: String,
    pub why: &'static str,
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.path, self.why)
    }
}

/// What updating a checkout from one tree to another takes.
#[derive(Debug, Default)]
pub struct Plan {
    /// Paths to write, delete or restage.
    pub deltas: Vec<Delta>,
    /// Paths in the way: modified, staged, untracked or behind a link.
    pub blocked: Vec<Blocked>,
    /// Paths outside a sparse checkout (`skip-worktree` in the index): their
    /// index entries follow, their files are not written.
    pub sparse: std::collections::BTreeSet<BString>,
}

/// The index of a checkout, locked by converge (git's `index.lock`) for the
/// whole of an update: from before its branch moves until the index is
/// written, so that no other git process can write the index in between, and
/// a branch never moves while someone else's git holds the index.
#[derive(Debug)]
pub struct IndexLock {
    file: gix::lock::File,
    _noted: super::intent::Noted,
}

/// What is at one path of the worktree: read once per check, its content
/// hashed at most once, however many tree entries it is compared with.
struct OnDisk<'p> {
    file: &'p Path,
    /// `None`: nothing there.
    meta: Option<std::fs::Metadata>,
    /// `core.fileMode`: whether the executable bit on disk means something.
    trusts_exec_bit: bool,
    blob: std::cell::OnceCell<ObjectId>,
}

/// Which entry of a delta a path holds on disk now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holds {
    Old,
    New,
    Neither,
}

/// What an interrupted update of a checked-out branch was doing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Journal {
    pub branch: String,
    pub worktree: PathBuf,
    pub from: String,
    pub to: String,
    /// The process making the update (pid and start time, as in
    /// `/proc/<pid>/stat`): while it lives, the update is its own to finish.
    #[serde(default)]
    pub pid: u32,
    #[serde(default)]
    pub started: u64,
}

impl Journal {
    /// A journal of this process's update of `branch` at `worktree`.
    pub fn new(branch: &str, worktree: &Path, from: ObjectId, to: ObjectId) -> Journal {
        let pid = std::process::id();
        Journal {
            branch: branch.to_owned(),
            worktree: worktree.to_owned(),
            from: from.to_string(),
            to: to.to_string(),
            pid,
            started: crate::observe::runs::process_start_ticks(pid).unwrap_or(0),
        }
    }

    /// Whether another process that is still alive is making this update.
    fn in_progress_elsewhere(&self) -> bool {
        self.pid != 0
            && self.pid != std::process::id()
            && crate::observe::runs::process_alive(
                self.pid,
                (self.started != 0).then_some(self.started),
            )
    }
}

/// What finishing an interrupted update did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovered {
    /// The checkout was brought to the branch's commit.
    Finished { branch: String, worktree: PathBuf },
    /// The branch never moved: nothing had been written.
    NothingToDo { branch: String },
    /// The update could not be finished without touching a person's changes;
    /// these paths still show the old content (or the person's).
    Blocked {
        branch: String,
        worktree: PathBuf,
        paths: Vec<String>,
    },
}

/// Whether git would check out `path` (components split on `/`), by the
/// rules of [`super::safe::refused_name`]. Returns the reason if not.
pub fn unsafe_path(path: &BStr, is_link: bool) -> Option<String> {
    let components: Vec<&[u8]> = path.split(|b| *b == b'/').collect();
    let last = components.len().saturating_sub(1);
    components.iter().enumerate().find_map(|(i, component)| {
        super::safe::refused_name(component.as_bstr(), i == last && is_link)
            .map(|why| format!("`{}`: {why}", path.to_str_lossy()))
    })
}

fn journal_dir(common: &Path) -> PathBuf {
    common.join("converge").join("checkouts")
}

/// Paths an update left as a person had changed them (see
/// [`Repo::note_left_alone`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeftAlone {
    pub branch: String,
    pub worktree: PathBuf,
    pub from: String,
    pub to: String,
    pub paths: Vec<String>,
}

fn left_alone_path(common: &Path, branch: &str, to: &str) -> PathBuf {
    journal_dir(common)
        .join("left-alone")
        .join(format!("{}@{to}.json", branch.replace('/', "%2F")))
}

fn journal_path(common: &Path, branch: &str) -> PathBuf {
    journal_dir(common).join(format!("{}.json", branch.replace('/', "%2F")))
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> GitError + '_ {
    move |source| GitError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Repo {
    /// The paths whose entries differ between two trees (`None`: the empty
    /// tree), in path order. Directories are not listed; a directory that
    /// became a file lists each file below it as deleted and the file as added.
    pub fn tree_delta(&self, old: Option<ObjectId>, new: Option<ObjectId>) -> Result<Vec<Delta>> {
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
    pub fn plan_checkout(&self, from: ObjectId, to: ObjectId) -> Result<Plan> {
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
            let staged = index.as_ref().and_then(|i| {
                i.entry_by_path_and_stage(
                    delta.path.as_bstr(),
                    gix::index::entry::Stage::Unconflicted,
                )
                .map(|e| (e.mode, e.id, e.flags))
            });
            let skip_worktree = staged.is_some_and(|(_, _, flags)| {
                flags.contains(gix::index::entry::Flags::SKIP_WORKTREE)
            });
            let staged = staged.map(|(mode, id, _)| (mode, id));
            let conflicted = index.as_ref().is_some_and(|i| {
                i.entry_index_by_path(delta.path.as_bstr()).is_ok()
                    && i.entry_by_path_and_stage(
                        delta.path.as_bstr(),
                        gix::index::entry::Stage::Unconflicted,
                    )
                    .is_none()
            });
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
    fn disk_holds(&self, disk: &OnDisk<'_>, entry: Option<Entry>) -> Result<bool> {
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
    fn on_disk<'p>(&self, file: &'p Path, trusts_exec_bit: bool) -> Result<OnDisk<'p>> {
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
    fn trusts_exec_bit(&self) -> bool {
        self.repo
            .config_snapshot()
            .boolean("core.fileMode")
            .unwrap_or(true)
    }

    /// The index of this checkout as it is on disk, if there is one.
    fn read_index(&self) -> Result<Option<gix::index::File>> {
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

    /// Takes this checkout's `index.lock`, waiting a moment for another git
    /// process to finish. One that keeps it is a [`GitError::Dirty`] naming
    /// the lock: nothing has moved, and the next tick tries again.
    pub fn lock_index(&self, branch: &str) -> Result<IndexLock> {
        let index_path = self.repo.index_path();
        let noted = super::intent::note(
            self.common_dir(),
            &super::intent::Intent::Index(index_path.clone()),
        );
        match gix::lock::File::acquire_to_update_resource(
            &index_path,
            gix::lock::acquire::Fail::AfterDurationWithBackoff(std::time::Duration::from_secs(2)),
            None,
            0,
        ) {
            Ok(file) => Ok(IndexLock {
                file,
                _noted: noted,
            }),
            Err(_) => {
                let mut lock = index_path.into_os_string();
                lock.push(".lock");
                Err(GitError::Dirty {
                    branch: branch.to_owned(),
                    worktree: self.workdir()?.to_owned(),
                    paths: vec![format!(
                        "{} (another git process is using the index; converge never removes a lock it did not take)",
                        PathBuf::from(lock).display()
                    )],
                })
            }
        }
    }

    /// Which of its entries the file of `delta` holds right now (checked
    /// again just before it is replaced: a person may have saved it since the
    /// plan was made).
    fn holds(
        &self,
        file: &Path,
        delta: &Delta,
        all: &[Delta],
        trusts_exec_bit: bool,
    ) -> Result<Holds> {
        let disk = self.on_disk(file, trusts_exec_bit)?;
        for (entry, which) in [(delta.old, Holds::Old), (delta.new, Holds::New)] {
            let holds =
                if entry.is_none() && disk.meta.as_ref().is_some_and(std::fs::Metadata::is_dir) {
                    only_deleted_below(file, delta.path.as_bstr(), all) || is_empty_dir(file)
                } else {
                    self.disk_holds(&disk, entry)?
                };
            if holds {
                return Ok(which);
            }
        }
        Ok(Holds::Neither)
    }

    /// Writes a planned update: deletions first (and directories they empty),
    /// then files, links and gitlinks, each replaced atomically, then the index.
    /// The plan must have nothing blocked. Returns the paths it left alone
    /// because they changed since the plan was made (their index entries too).
    pub fn apply_checkout(&self, plan: &Plan, lock: IndexLock) -> Result<Vec<Blocked>> {
        let workdir = self.workdir()?.to_owned();
        let disk = |d: &Delta| workdir.join(fs_path(&d.path));
        let mut skipped: Vec<Blocked> = Vec::new();
        let mut done: Vec<(&Delta, Option<PathBuf>)> = Vec::new();
        let mut emptied: Vec<PathBuf> = Vec::new();
        let trusts_exec_bit = self.trusts_exec_bit();
        for delta in plan.deltas.iter().filter(|d| d.new.is_none()) {
            let file = disk(delta);
            if self.holds(&file, delta, &plan.deltas, trusts_exec_bit)? == Holds::Neither {
                skipped.push(changed_meanwhile(delta));
                continue;
            }
            match std::fs::symlink_metadata(&file) {
                // A directory where a file was: emptied by the deletions below
                // it, removed with the other emptied directories.
                Ok(meta) if meta.is_dir() => emptied.push(file.clone()),
                Ok(_) => std::fs::remove_file(&file).map_err(io_err(&file))?,
                Err(_) => {}
            }
            if let Some(parent) = file.parent() {
                emptied.push(parent.to_owned());
            }
            done.push((delta, None));
        }
        // Directories left empty by deletions go too, deepest first, never the root.
        emptied.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for dir in emptied {
            let mut dir = dir.as_path();
            while dir != workdir && dir.starts_with(&workdir) && std::fs::remove_dir(dir).is_ok() {
                match dir.parent() {
                    Some(parent) => dir = parent,
                    None => break,
                }
            }
        }
        for delta in plan.deltas.iter().filter(|d| d.new.is_some()) {
            let Some((kind, id)) = delta.new else {
                continue;
            };
            if plan.sparse.contains(&delta.path) {
                done.push((delta, None));
                continue;
            }
            let file = disk(delta);
            let holds = self.holds(&file, delta, &plan.deltas, trusts_exec_bit)?;
            if holds == Holds::Neither {
                skipped.push(changed_meanwhile(delta));
                continue;
            }
            let parent = file.parent().unwrap_or(&workdir).to_owned();
            create_dirs(&workdir, &parent)?;
            if holds == Holds::Old {
                match kind {
                    EntryKind::Blob | EntryKind::BlobExecutable => {
                        let bytes = self.blob(id)?;
                        let mode = if kind == EntryKind::BlobExecutable {
                            0o777
                        } else {
                            0o666
                        };
                        // No fsync, as git's checkout: the rename makes the
                        // file whole for every reader and survives a killed
                        // process; durability across power loss is the file
                        // system's, as for the files git writes.
                        replace_with(&file, |tmp| open_new(tmp, mode)?.write_all(&bytes))?;
                    }
                    EntryKind::Link => {
                        let bytes = self.blob(id)?;
                        let target = fs_path(&bytes).to_owned();
                        replace_with(&file, |tmp| std::os::unix::fs::symlink(&target, tmp))?;
                    }
                    EntryKind::Commit => {
                        if let Ok(meta) = std::fs::symlink_metadata(&file)
                            && !meta.is_dir()
                        {
                            std::fs::remove_file(&file).map_err(io_err(&file))?;
                        }
                        std::fs::create_dir_all(&file).map_err(io_err(&file))?;
                    }
                    EntryKind::Tree => {}
                }
            }
            done.push((delta, Some(file)));
        }
        // A path left as the person saved it gets the new entry in the index
        // all the same: the index then agrees with HEAD, and only their own
        // `git add`/`commit -a` can take their version (a stale staged entry
        // would revert converge's change on a plain `git commit`).
        let left: Vec<&Delta> = plan
            .deltas
            .iter()
            .filter(|d| skipped.iter().any(|s| s.path == d.path.to_str_lossy()))
            .collect();
        self.restage(&done, &left, lock)?;
        Ok(skipped)
    }

    /// Rewrites the index entries of the updated paths (`Some(file)`: with the
    /// stat data of the file written; `None`: deleted, or outside a sparse
    /// checkout), under git's lock, with the cache-tree dropped (git rebuilds
    /// it on the next commit). An entry a person staged meanwhile is kept.
    fn restage(
        &self,
        done: &[(&Delta, Option<PathBuf>)],
        left: &[&Delta],
        lock: IndexLock,
    ) -> Result<()> {
        use gix::index::entry::{Flags, Stage};
        let index_path = self.repo.index_path();
        let index_err = |source: Box<dyn std::error::Error + Send + Sync>| GitError::Index {
            path: index_path.clone(),
            source,
        };
        let done: Vec<(&Delta, Option<PathBuf>)> = done
            .iter()
            .cloned()
            .chain(left.iter().map(|d| (*d, None)))
            .collect();
        let done = done.as_slice();
        let mut index = match self.read_index()? {
            Some(index) => index,
            None => gix::index::File::from_state(
                gix::index::State::new(self.repo.object_hash()),
                index_path.clone(),
            ),
        };
        let mut replace: BTreeMap<&BStr, Flags> = BTreeMap::new();
        for (delta, _) in done {
            let current = index.entry_by_path_and_stage(delta.path.as_bstr(), Stage::Unconflicted);
            let matches = |e: Option<Entry>| match (e, current) {
                (None, None) => true,
                (Some((kind, id)), Some(c)) => index_mode(kind) == c.mode && id == c.id,
                _ => false,
            };
            if matches(delta.old) || matches(delta.new) {
                let keep = current.map_or(Flags::empty(), |c| {
                    c.flags & (Flags::SKIP_WORKTREE | Flags::EXTENDED)
                });
                replace.insert(delta.path.as_bstr(), keep);
            }
        }
        index.remove_entries(|_, path, _| replace.contains_key(path));
        for (delta, file) in done {
            let (Some((kind, id)), Some(&flags)) = (delta.new, replace.get(delta.path.as_bstr()))
            else {
                continue;
            };
            let stat = match file {
                Some(file) => {
                    let metadata = gix::index::fs::Metadata::from_path_no_follow(file)
                        .map_err(|e| index_err(Box::new(e)))?;
                    gix::index::entry::Stat::from_fs(&metadata)
                        .map_err(|e| index_err(Box::new(e)))?
                }
                None => gix::index::entry::Stat::default(),
            };
            index.dangerously_push_entry(stat, id, flags, index_mode(kind), delta.path.as_bstr());
        }
        index.sort_entries();
        write_index(&mut index, lock.file).map_err(index_err)
    }

    /// Notes that `branch`, checked out at `worktree`, is being moved from
    /// `from` to `to`, before the ref moves.
    pub(super) fn begin_checkout_journal(&self, journal: &Journal) -> Result<()> {
        let path = journal_path(self.common_dir(), &journal.branch);
        let text = serde_json::to_vec(journal).map_err(|e| GitError::Io {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        replace_with(&path, |tmp| open_new(tmp, 0o666)?.write_all(&text))
    }

    /// Keeps, for `converge doctor`, the paths an update of `journal.branch`
    /// left as the person had changed them: they hold the person's version,
    /// not the one `journal.to` has.
    pub(super) fn note_left_alone(&self, journal: &Journal, paths: &[Blocked]) -> Result<()> {
        let path = left_alone_path(self.common_dir(), &journal.branch, &journal.to);
        let note = LeftAlone {
            branch: journal.branch.clone(),
            worktree: journal.worktree.clone(),
            from: journal.from.clone(),
            to: journal.to.clone(),
            paths: paths.iter().map(|b| b.path.clone()).collect(),
        };
        let text = serde_json::to_vec(&note).map_err(|e| GitError::Io {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        replace_with(&path, |tmp| open_new(tmp, 0o666)?.write_all(&text))
    }

    /// The notes of paths updates left as a person had changed them.
    pub fn left_alone(&self) -> Vec<(PathBuf, LeftAlone)> {
        let dir = journal_dir(self.common_dir()).join("left-alone");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut out: Vec<(PathBuf, LeftAlone)> = entries
            .flatten()
            .filter_map(|e| {
                let bytes = std::fs::read(e.path()).ok()?;
                Some((e.path(), serde_json::from_slice(&bytes).ok()?))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    pub(super) fn end_checkout_journal(&self, branch: &str) -> Result<()> {
        super::remove_file_if_exists(&journal_path(self.common_dir(), branch)).map(|_| ())
    }

    /// Interrupted checkout updates (by a crash between moving a checked-out
    /// branch and updating its files), as their journals say.
    pub fn interrupted_checkouts(&self) -> Result<Vec<Journal>> {
        let dir = journal_dir(self.common_dir());
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let entries: Vec<_> = entries.filter_map(std::result::Result::ok).collect();
        // A journal being written when its process was killed.
        remove_stale_temps(&dir.join("journal"));
        let mut out = Vec::new();
        for entry in entries {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            match serde_json::from_slice::<Journal>(&bytes) {
                Ok(journal) => out.push(journal),
                // A journal cut short by a crash while it was written: the ref
                // had not moved yet (the journal comes first).
                Err(_) => {
                    super::remove_file_if_exists(&path)?;
                }
            }
        }
        out.sort_by(|a, b| a.branch.cmp(&b.branch));
        Ok(out)
    }

    /// Finishes every interrupted checkout update: where the branch moved, the
    /// checkout is brought along (paths already updated count as done); where
    /// it did not, nothing had been written. A path a person changed since is
    /// left alone and reported, and its journal kept for the next call.
    pub fn recover_checkouts(&self) -> Result<Vec<Recovered>> {
        let mut out = Vec::new();
        for journal in self.interrupted_checkouts()? {
            if journal.in_progress_elsewhere() {
                continue;
            }
            let parse = |hex: &str| ObjectId::from_hex(hex.as_bytes()).ok();
            let (Some(from), Some(to)) = (parse(&journal.from), parse(&journal.to)) else {
                self.end_checkout_journal(&journal.branch)?;
                continue;
            };
            let tip = self.branch_tip(&journal.branch)?;
            let checkout = self.checkout_of(&journal.branch)?;
            let same = checkout
                .as_deref()
                .is_some_and(|p| super::same_path(p, &journal.worktree));
            if tip != Some(to) || !same {
                // The ref never moved (or moved on, or the branch is no longer
                // checked out there): the journal is all that is left.
                self.end_checkout_journal(&journal.branch)?;
                out.push(Recovered::NothingToDo {
                    branch: journal.branch,
                });
                continue;
            }
            let worktree = Repo::discover(&journal.worktree)?;
            let lock = worktree.lock_index(&journal.branch)?;
            let mut plan = worktree.plan_checkout(self.tree_of(from)?, self.tree_of(to)?)?;
            // Files a killed update was writing beside their targets.
            let workdir = worktree.workdir()?.to_owned();
            for delta in &plan.deltas {
                remove_stale_temps(&workdir.join(fs_path(&delta.path)));
            }
            // Paths the person changed since the crash are left as they are
            // (apply checks each again and skips them, giving them the new
            // index entry); what is left to say goes into a note doctor shows.
            let mut blocked: Vec<Blocked> = plan.blocked.clone();
            plan.blocked.clear();
            for skipped in worktree.apply_checkout(&plan, lock)? {
                if !blocked.iter().any(|b| b.path == skipped.path) {
                    blocked.push(skipped);
                }
            }
            if !blocked.is_empty() {
                self.note_left_alone(&journal, &blocked)?;
            }
            self.end_checkout_journal(&journal.branch)?;
            let blocked: Vec<String> = blocked.iter().map(ToString::to_string).collect();
            out.push(if blocked.is_empty() {
                Recovered::Finished {
                    branch: journal.branch,
                    worktree: journal.worktree,
                }
            } else {
                Recovered::Blocked {
                    branch: journal.branch,
                    worktree: journal.worktree,
                    paths: blocked,
                }
            });
        }
        Ok(out)
    }
}

/// The index mode of a tree entry kind.
pub(super) fn index_mode(kind: EntryKind) -> gix::index::entry::Mode {
    use gix::index::entry::Mode;
    match kind {
        EntryKind::BlobExecutable => Mode::FILE_EXECUTABLE,
        EntryKind::Link => Mode::SYMLINK,
        EntryKind::Commit => Mode::COMMIT,
        EntryKind::Tree => Mode::DIR,
        EntryKind::Blob => Mode::FILE,
    }
}

/// Writes `index` through the held `lock` and puts it in place, dropping the
/// cache-tree: gix writes it back as it was read, still marked valid for the
/// directories whose entries just changed, and git would trust it.
pub(super) fn write_index(
    index: &mut gix::index::File,
    lock: gix::lock::File,
) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
    index.remove_tree();
    let mut out = std::io::BufWriter::new(lock);
    index.write_to(&mut out, gix::index::write::Options::default())?;
    let lock = out.into_inner().map_err(|e| e.into_error())?;
    lock.commit().map_err(|e| e.error)?;
    Ok(())
}

/// A repository path as a file system path (bytes as they are, as git does on Unix).
fn fs_path(bytes: &[u8]) -> &Path {
    use std::os::unix::ffi::OsStrExt as _;
    Path::new(std::ffi::OsStr::from_bytes(bytes))
}

/// The bytes git stores for a symbolic link's target.
pub(super) fn link_bytes(target: &Path) -> &[u8] {
    use std::os::unix::ffi::OsStrExt as _;
    target.as_os_str().as_bytes()
}

fn is_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

/// Whether everything below the directory `dir` (the worktree's `prefix`) is
/// a file or link that `deltas` delete; empty directories do not count.
fn only_deleted_below(dir: &Path, prefix: &BStr, deltas: &[Delta]) -> bool {
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

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none())
}

/// Creates the directories from `root` down to `dir`, refusing to go through
/// anything that is not a directory (the plan checked; this is the last guard
/// against a link appearing meanwhile).
fn create_dirs(root: &Path, dir: &Path) -> Result<()> {
    let Ok(relative) = dir.strip_prefix(root) else {
        return Ok(());
    };
    let mut current = root.to_owned();
    for component in relative.components() {
        current.push(component);
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(GitError::Io {
                    path: current.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "not a directory (converge never writes through a link)",
                    ),
                });
            }
            Err(_) => std::fs::create_dir(&current).map_err(io_err(&current))?,
        }
    }
    Ok(())
}

fn open_new(path: &Path, mode: u32) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
}

/// A path a person saved between converge's plan and its write: left as saved.
fn changed_meanwhile(delta: &Delta) -> Blocked {
    Blocked {
        path: delta.path.to_str_lossy().into_owned(),
        why: "changed while converge updated the checkout",
    }
}

/// The temporary name beside `target` that `pid` writes its new content to.
/// Not derived from the target's name: a name near the file system's limit
/// (255 bytes) would make a longer one impossible to create.
fn temp_name(target: &Path, pid: &str) -> PathBuf {
    target.with_file_name(format!(".converge-{pid}.tmp"))
}

/// Removes the temporary files beside `target` of processes that are gone
/// (killed between writing one and renaming it into place).
fn remove_stale_temps(target: &Path) {
    let Some(dir) = target.parent() else {
        return;
    };
    let prefix = ".converge-";
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = file
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(".tmp"))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !crate::observe::runs::process_alive(pid, None) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Replaces `target` atomically: `make` creates the new content at a
/// temporary name beside it, which is then renamed over the target (an empty
/// directory in the target's place is removed first).
fn replace_with(target: &Path, make: impl FnOnce(&Path) -> std::io::Result<()>) -> Result<()> {
    let tmp = temp_name(target, &std::process::id().to_string());
    let _ = std::fs::remove_file(&tmp);
    make(&tmp).map_err(io_err(&tmp))?;
    if let Ok(meta) = std::fs::symlink_metadata(target)
        && meta.is_dir()
    {
        std::fs::remove_dir(target).map_err(io_err(target))?;
    }
    if let Err(source) = std::fs::rename(&tmp, target) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err(target)(source));
    }
    Ok(())
}

#[cfg(unix)]
pub(super) fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.is_file() && meta.permissions().mode() & 0o111 != 0
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
