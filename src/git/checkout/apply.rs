//! Applying a planned update: deletions, then files, links and gitlinks, each
//! replaced atomically (written beside the target, then renamed), then the
//! index restaged under git's lock.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use gix::bstr::{BStr, ByteSlice};
use gix::objs::tree::EntryKind;

use super::plan::{is_empty_dir, only_deleted_below};
use super::{Blocked, Delta, Entry, IndexLock, Plan, fs_path, index_mode, io_err, write_index};
use crate::git::{GitError, Repo, Result, intent};

/// Which entry of a delta a path holds on disk now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holds {
    Old,
    New,
    Neither,
}

impl Repo {
    /// Takes this checkout's `index.lock`, waiting a moment for another git
    /// process to finish. One that keeps it is a [`GitError::Dirty`] naming
    /// the lock: nothing has moved, and the next tick tries again.
    pub(crate) fn lock_index(&self, branch: &str) -> Result<IndexLock> {
        let index_path = self.repo.index_path();
        let noted = intent::note(
            self.common_dir(),
            &intent::Intent::Index(index_path.clone()),
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
    pub(crate) fn apply_checkout(&self, plan: &Plan, lock: IndexLock) -> Result<Vec<Blocked>> {
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

pub(super) fn open_new(path: &Path, mode: u32) -> std::io::Result<std::fs::File> {
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
    crate::rundir::layout::checkout_temp(target, pid)
}

/// Removes the temporary files beside `target` of processes that are gone
/// (killed between writing one and renaming it into place).
pub(super) fn remove_stale_temps(target: &Path) {
    let Some(dir) = target.parent() else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = crate::rundir::layout::checkout_temp_pid(&file) else {
            continue;
        };
        if pid != std::process::id() && !crate::rundir::procs::process_alive(pid, None) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Replaces `target` atomically: `make` creates the new content at a
/// temporary name beside it, which is then renamed over the target (an empty
/// directory in the target's place is removed first).
pub(super) fn replace_with(
    target: &Path,
    make: impl FnOnce(&Path) -> std::io::Result<()>,
) -> Result<()> {
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
