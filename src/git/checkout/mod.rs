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
//! content count as done. [`crate::git::Repo::advance_branch`] keeps a small
//! journal of the update it is making (`<git-common-dir>/converge/checkouts/`)
//! so that the next converge process finishes an update a crash interrupted.
//!
//! - `plan`: the tree delta and, per path, whether the two-way rule allows it;
//! - `apply`: the atomic writes and the index restaged under its lock;
//! - `journal`: finishing an update a crash interrupted, and the notes of
//!   paths left as a person had changed them.

use std::path::Path;

use gix::ObjectId;
use gix::bstr::BString;
use gix::objs::tree::EntryKind;

use super::GitError;

mod apply;
mod journal;
mod plan;
pub use journal::{Journal, LeftAlone, Recovered};

/// The entry of one path in a tree: its kind and object.
pub(crate) type Entry = (EntryKind, ObjectId);

/// One path (never a directory) whose entry differs between two trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Delta {
    pub path: BString,
    pub old: Option<Entry>,
    pub new: Option<Entry>,
}

/// Why a path blocks an update of a checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Blocked {
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
pub(crate) struct Plan {
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
pub(crate) struct IndexLock {
    file: gix::lock::File,
    _noted: super::intent::Noted,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> GitError + '_ {
    move |source| GitError::Io {
        path: path.to_owned(),
        source,
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
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
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

#[cfg(unix)]
pub(super) fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.is_file() && meta.permissions().mode() & 0o111 != 0
}
