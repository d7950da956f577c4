//! Tree entries git refuses to check out.
//!
//! An agent writes objects into the shared repository, so its branch can hold
//! a tree no checkout can take: an entry `..` or `.git` (made with `git mktree`
//! or `git hash-object --literally`), a `.gitmodules` symlink. Such work must
//! fail its gate: merged, it would break every checkout of the base branch (or
//! write into `.git` of one that took it). The rules are git's `verify_path`,
//! through gix's implementation of them: with `core.protectNTFS` and
//! `core.protectHFS` both on, so that `.GIT`, `git~1`, `.git ` and `.git.`,
//! `.git::$INDEX_ALLOCATION` and `.g\u{200c}it` are refused everywhere.

use std::collections::HashSet;

use gix::ObjectId;
use gix::bstr::{BStr, ByteSlice};
use gix::validate::path::component;

use super::{Repo, Result, read_err};

/// Why git refuses an entry named `name` (a symbolic link when `link`), or
/// `None` when the name is fine.
pub(crate) fn refused_name(name: &BStr, link: bool) -> Option<&'static str> {
    let options = component::Options {
        // Names Windows cannot hold (`a:b`, `con`) are fine on the systems
        // converge runs on, and git accepts them there.
        protect_windows: false,
        protect_hfs: true,
        protect_ntfs: true,
    };
    if name.contains(&0) {
        return Some("a NUL byte in the name");
    }
    let mode = link.then_some(component::Mode::Symlink);
    match component(name, mode, options) {
        Ok(_) => None,
        Err(component::Error::Empty) => Some("an empty name"),
        Err(component::Error::Relative) => Some("`.` and `..` name no entry"),
        Err(component::Error::PathSeparator) => Some("a `/` in the name"),
        Err(component::Error::DotGitDir) => Some("a name git reserves for `.git`"),
        Err(component::Error::SymlinkedGitModules) => Some("`.gitmodules` may not be a link"),
        Err(_) => Some("a name git refuses to check out"),
    }
}

impl Repo {
    /// The entries of the tree `tree`, at any depth, that git refuses to check
    /// out: `` `path` (why) `` each, sorted. A subtree that appears in several
    /// places is checked (and reported) once.
    pub fn unsafe_entries(&self, tree: ObjectId) -> Result<Vec<String>> {
        let mut seen = HashSet::new();
        let mut pending = vec![(String::new(), tree)];
        let mut out = Vec::new();
        while let Some((prefix, id)) = pending.pop() {
            if !seen.insert(id) {
                continue;
            }
            let what = || format!("the tree {id}");
            let object = self.repo.find_tree(id).map_err(read_err(what()))?;
            let decoded = object.decode().map_err(read_err(what()))?;
            for entry in &decoded.entries {
                let path = format!("{prefix}{}", entry.filename.to_str_lossy());
                if let Some(why) = refused_name(entry.filename, entry.mode.is_link()) {
                    out.push(format!("`{path}` ({why})"));
                } else if entry.mode.is_tree() {
                    pending.push((format!("{path}/"), entry.oid.to_owned()));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Whether the tree of this checkout's HEAD is one git can check out (no
    /// commit yet counts as one). Reading the status of a checkout whose HEAD
    /// is not fails, so callers that commit leftovers ask first.
    pub fn head_is_safe(&self) -> Result<bool> {
        match self.head_commit()? {
            Some(head) => Ok(self.unsafe_entries(self.tree_of(head)?)?.is_empty()),
            None => Ok(true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(name: &str) -> bool {
        refused_name(name.as_bytes().as_bstr(), false).is_some()
    }

    #[test]
    fn git_refuses_what_would_leave_the_checkout_or_write_into_git() {
        for name in [
            "",
            ".",
            "..",
            ".git",
            ".GIT",
            ".Git",
            "git~1",
            "GIT~1",
            ".git ",
            ".git.",
            ".git. . ",
            ".git::$INDEX_ALLOCATION",
            ".g\u{200c}it",
            ".git\u{200c}",
            "\u{200d}.git",
            "a/b",
            "nul\0byte",
        ] {
            assert!(refused(name), "{name:?} must be refused");
        }
        assert!(refused_name(b".gitmodules".as_bstr(), true).is_some());
    }

    #[test]
    fn every_alias_of_git_git_refuses_is_refused() {
        // HFS+ ignores these code points in names, so each spells `.git`
        // there (git's `is_hfs_dotgit`): zero-width (non-)joiners,
        // direction marks, the deprecated format characters, a BOM.
        for ignorable in [
            '\u{200c}', '\u{200d}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{202e}', '\u{206a}',
            '\u{206f}', '\u{feff}',
        ] {
            for name in [
                format!(".{ignorable}git"),
                format!(".g{ignorable}it"),
                format!(".gi{ignorable}t"),
                format!(".GI{ignorable}T"),
            ] {
                assert!(refused(&name), "{name:?} must be refused");
            }
        }
        // NTFS: case, trailing dots and spaces, the 8.3 short name, streams.
        for name in [
            ".GiT",
            ".git...",
            ".git  ",
            ".git . .",
            "GIT~1",
            "git~1",
            ".git::$INDEX_ALLOCATION",
            ".GIT::$index_allocation",
            ".git:",
            ".git:stream",
        ] {
            assert!(refused(name), "{name:?} must be refused");
        }
        // `.gitmodules` is refused as a link under each of its names.
        for name in [
            ".gitmodules",
            ".GITMODULES",
            ".gitmodules ",
            ".gitmodules.",
            "gitmod~1",
            "GI7EBA~1",
        ] {
            assert!(
                refused_name(name.as_bytes().as_bstr(), true).is_some(),
                "the link {name:?} must be refused"
            );
        }
    }

    #[test]
    fn ordinary_names_are_fine() {
        for name in [
            "src",
            ".github",
            ".gitignore",
            ".gitmodules",
            ".git-blame-ignore-revs",
            "git",
            "...",
            "a:b",
            "con",
            "trailing ",
            "git~2x",
            "naïve.txt",
        ] {
            assert!(!refused(name), "{name:?} is fine");
        }
    }
}
