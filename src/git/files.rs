//! Single paths of a working tree compared with a tree and put back: what
//! `converge check` needs to take back what invariants change.

use std::path::Path;

use gix::ObjectId;
use gix::objs::tree::EntryKind;

use super::{GitError, Repo, Result, read_err, write_err};

/// What a path holds, in a tree or in the working tree. Contents are blob ids,
/// so that states compare cheaply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathState {
    Absent,
    File {
        blob: ObjectId,
        executable: bool,
    },
    Link {
        target: ObjectId,
    },
    /// A directory or a submodule where a file could be: left alone.
    Other,
}

impl Repo {
    /// What `path` (relative to the root) is in `tree` (`None`: the empty tree).
    pub fn state_in_tree(&self, tree: Option<ObjectId>, path: &str) -> Result<PathState> {
        let Some(tree) = tree else {
            return Ok(PathState::Absent);
        };
        let what = || format!("{path} in {tree}");
        let tree = self.repo.find_tree(tree).map_err(read_err(what()))?;
        let Some(entry) = tree.lookup_entry_by_path(path).map_err(read_err(what()))? else {
            return Ok(PathState::Absent);
        };
        let id = entry.oid().to_owned();
        Ok(match entry.mode().kind() {
            EntryKind::Blob => PathState::File {
                blob: id,
                executable: false,
            },
            EntryKind::BlobExecutable => PathState::File {
                blob: id,
                executable: true,
            },
            EntryKind::Link => PathState::Link { target: id },
            EntryKind::Tree | EntryKind::Commit => PathState::Other,
        })
    }

    /// What `path` is in the working tree now, its contents written as blobs
    /// (as `git add` would) so that [`Repo::restore_path`] can put it back.
    pub fn save_state_on_disk(&self, path: &str) -> Result<PathState> {
        self.disk_state(path, true)
    }

    /// What `path` is in the working tree now, to compare with a saved state
    /// (contents are hashed, not written).
    pub fn state_on_disk(&self, path: &str) -> Result<PathState> {
        self.disk_state(path, false)
    }

    fn disk_state(&self, path: &str, save: bool) -> Result<PathState> {
        let file = self.workdir()?.join(path);
        let io = |source| GitError::Io {
            path: file.clone(),
            source,
        };
        let meta = match std::fs::symlink_metadata(&file) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(PathState::Absent),
            Err(e) => return Err(io(e)),
        };
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&file).map_err(io)?;
            let bytes = target.as_os_str().as_encoded_bytes();
            return Ok(PathState::Link {
                target: self.blob_id(path, bytes, save)?,
            });
        }
        if !meta.is_file() {
            return Ok(PathState::Other);
        }
        let bytes = std::fs::read(&file).map_err(io)?;
        Ok(PathState::File {
            blob: self.blob_id(path, &bytes, save)?,
            executable: super::checkout::is_executable(&meta),
        })
    }

    /// The id of a blob of `bytes`, written to the object database if `save`.
    fn blob_id(&self, path: &str, bytes: &[u8], save: bool) -> Result<ObjectId> {
        if save {
            return Ok(self
                .repo
                .write_blob(bytes)
                .map_err(write_err(path.to_owned()))?
                .detach());
        }
        gix::objs::compute_hash(self.repo.object_hash(), gix::objs::Kind::Blob, bytes)
            .map_err(|e| write_err(path.to_owned())(gix::Error::from_error(e)))
    }

    /// Makes `path` in the working tree hold `state` again. A file or link in
    /// the way is replaced, never written through; a path below a symbolic
    /// link, or a directory in the way, is refused. [`PathState::Other`]
    /// changes nothing.
    pub fn restore_path(&self, path: &str, state: &PathState) -> Result<()> {
        let root = self.workdir()?.to_owned();
        let file = root.join(path);
        let io = |source| GitError::Io {
            path: file.clone(),
            source,
        };
        if let Some(link) = linked_parent(&root, path) {
            return Err(io(std::io::Error::other(format!(
                "{} is a symbolic link",
                link.display()
            ))));
        }
        match (std::fs::symlink_metadata(&file), state) {
            (_, PathState::Other) => return Ok(()),
            (Ok(meta), _) if meta.is_dir() => {
                return Err(io(std::io::Error::other("a directory is in the way")));
            }
            (Ok(_), _) => std::fs::remove_file(&file).map_err(io)?,
            (Err(e), _) if e.kind() == std::io::ErrorKind::NotFound => {}
            (Err(e), _) => return Err(io(e)),
        }
        match state {
            PathState::Absent | PathState::Other => Ok(()),
            PathState::File { blob, executable } => {
                let bytes = self.blob(*blob)?;
                if let Some(parent) = file.parent() {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
                write_new(&file, &bytes, *executable).map_err(io)
            }
            PathState::Link { target } => {
                let bytes = self.blob(*target)?;
                if let Some(parent) = file.parent() {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
                symlink(&bytes, &file).map_err(io)
            }
        }
    }
}

/// The first component of `path` below `root` (not `path` itself) that is a
/// symbolic link, if any.
fn linked_parent(root: &Path, path: &str) -> Option<std::path::PathBuf> {
    let mut at = root.to_owned();
    let parts: Vec<&str> = path.split('/').collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        at.push(part);
        if std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
            return Some(at);
        }
    }
    None
}

/// Creates `file` (which must not exist) with `bytes`, executable or not.
fn write_new(file: &Path, bytes: &[u8], executable: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if executable { 0o777 } else { 0o666 });
    }
    #[cfg(not(unix))]
    let _ = executable;
    options.open(file)?.write_all(bytes)
}

#[cfg(unix)]
fn symlink(target: &[u8], link: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), link)
}

#[cfg(not(unix))]
fn symlink(target: &[u8], link: &Path) -> std::io::Result<()> {
    std::fs::write(link, target)
}
