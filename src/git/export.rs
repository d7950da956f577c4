//! A plain export of a commit's tree into a new directory: its files (with
//! their executable bit), symbolic links as links, submodules as empty
//! directories; no `.git`, no index, no configuration. What the gate's
//! invariants run in (see `check::confine`).
//!
//! Every entry is created fresh (`mkdir`, `O_CREAT | O_EXCL`, `symlink`), so
//! nothing is ever written through a link the tree itself holds; a name git
//! refuses to check out (`..`, `.git` and its aliases) fails the export.

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use gix::ObjectId;
use gix::bstr::ByteSlice;
use gix::objs::tree::EntryKind;

use super::safe::refused_name;
use super::{GitError, Repo, Result, read_err};

impl Repo {
    /// Writes the tree `tree` into `dest`, which must be an empty directory.
    /// Returns the number of files and links written.
    pub fn export_tree(&self, tree: ObjectId, dest: &Path) -> Result<usize> {
        let mut pending = vec![(tree, dest.to_owned())];
        let mut written = 0;
        while let Some((id, dir)) = pending.pop() {
            let what = || format!("the tree {id}");
            let object = self.repo.find_tree(id).map_err(read_err(what()))?;
            let decoded = object.decode().map_err(read_err(what()))?;
            for entry in &decoded.entries {
                let kind = entry.mode.kind();
                if let Some(why) = refused_name(entry.filename, kind == EntryKind::Link) {
                    return Err(GitError::Io {
                        path: dir.join(entry.filename.to_str_lossy().as_ref()),
                        source: std::io::Error::other(format!("git refuses this entry: {why}")),
                    });
                }
                let path = dir.join(OsStr::from_bytes(entry.filename.as_ref()));
                let io = |source| GitError::Io {
                    path: path.clone(),
                    source,
                };
                match kind {
                    EntryKind::Tree => {
                        std::fs::create_dir(&path).map_err(io)?;
                        pending.push((entry.oid.to_owned(), path));
                    }
                    // A submodule's commit is not in this repository.
                    EntryKind::Commit => std::fs::create_dir(&path).map_err(io)?,
                    EntryKind::Link => {
                        let target = self.blob(entry.oid.to_owned())?;
                        let target = OsStr::from_bytes(&target);
                        std::os::unix::fs::symlink(target, &path).map_err(io)?;
                        written += 1;
                    }
                    EntryKind::Blob | EntryKind::BlobExecutable => {
                        let mode = if kind == EntryKind::BlobExecutable {
                            0o777
                        } else {
                            0o666
                        };
                        let bytes = self.blob(entry.oid.to_owned())?;
                        std::fs::OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .mode(mode)
                            .open(&path)
                            .and_then(|mut file| file.write_all(&bytes))
                            .map_err(io)?;
                        written += 1;
                    }
                }
            }
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    use crate::git::testing::git;

    #[test]
    fn exports_files_modes_and_links_but_not_ignored_files_or_git() {
        let dir = tempfile::tempdir().expect("dir");
        let root = dir.path();
        git(root, &["init", "-q", "-b", "main"]);
        std::fs::create_dir_all(root.join("src/deep")).expect("mkdir");
        std::fs::write(root.join("src/deep/a.txt"), "a\n").expect("write");
        std::fs::write(root.join("run.sh"), "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        std::os::unix::fs::symlink("src/deep/a.txt", root.join("link")).expect("symlink");
        std::fs::write(root.join(".gitignore"), "built.bin\n").expect("write");
        std::fs::write(root.join("built.bin"), "x").expect("write");
        git(root, &["add", "-A"]);
        git(root, &["commit", "-q", "-m", "one"]);
        let head = git(root, &["rev-parse", "HEAD^{tree}"]);

        let repo = Repo::discover(root).expect("repo");
        let out = tempfile::tempdir().expect("out");
        let tree = ObjectId::from_hex(head.as_bytes()).expect("id");
        assert_eq!(repo.export_tree(tree, out.path()).expect("export"), 4);
        let o = out.path();
        assert_eq!(
            std::fs::read_to_string(o.join("src/deep/a.txt")).expect("a"),
            "a\n"
        );
        let mode = std::fs::metadata(o.join("run.sh"))
            .expect("meta")
            .permissions()
            .mode();
        assert!(mode & 0o100 != 0, "{mode:o}");
        let plain = std::fs::metadata(o.join(".gitignore"))
            .expect("meta")
            .permissions()
            .mode();
        assert!(plain & 0o100 == 0, "{plain:o}");
        assert_eq!(
            std::fs::read_link(o.join("link")).expect("link"),
            Path::new("src/deep/a.txt")
        );
        assert!(!o.join("built.bin").exists() && !o.join(".git").exists());
        // Into a directory that is not empty: nothing is overwritten.
        assert!(repo.export_tree(tree, out.path()).is_err());
    }
}
