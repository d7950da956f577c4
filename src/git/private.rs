//! A repository of the agent's own: each attempt's worktree is backed by a
//! private git directory (`<worktree>/.git`), with its own objects, refs and
//! configuration, and the main repository's object store as a read-only
//! alternate. Nothing the agent does there writes the main repository's
//! objects, refs or administrative files.
//!
//! converge makes the private repository itself ([`Repo::create_private`]),
//! and never opens it as a repository afterwards (its configuration could name
//! filters, hooks or an fsmonitor; a `commondir` could redirect it): it reads
//! the agent's branch as a plain file ([`private_head`]) and imports the
//! agent's objects into the main store itself, checking each object's hash and
//! kind ([`Repo::import_objects`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use gix::ObjectId;
use gix::objs::Find;

use super::{GitError, Repo, Result, read_err, write_err};

/// Why an agent's repository or its objects cannot be imported: the agent's
/// doing (or its repository's corruption), not converge's.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the agent's repository at {} is not as converge made it: {what}", path.display())]
    Tampered { path: PathBuf, what: String },
    #[error("object {id} is missing from the agent's repository")]
    Missing { id: ObjectId },
    #[error("object {id} in the agent's repository hashes to {actual}: it is forged or corrupt")]
    Forged { id: ObjectId, actual: ObjectId },
    #[error("object {id} is a {actual}, where the history needs a {expected}")]
    WrongKind {
        id: ObjectId,
        expected: gix::objs::Kind,
        actual: gix::objs::Kind,
    },
    #[error("object {id} is not a well-formed {kind}")]
    Corrupt { id: ObjectId, kind: gix::objs::Kind },
    #[error(
        "tree {id} is not written the way git writes trees (entries out of order, a name twice, or a mode written oddly); `git fsck` would refuse it"
    )]
    NotCanonical { id: ObjectId },
    #[error("object {id} cannot be read from the agent's repository: {message}")]
    Unreadable { id: ObjectId, message: String },
    #[error("object {id} is {size} bytes, more than the {limit} bytes converge imports")]
    TooLarge { id: ObjectId, size: u64, limit: u64 },
    #[error("git cannot read the files the agent left uncommitted: {message}")]
    Leftovers { message: String },
    #[error(transparent)]
    Git(#[from] GitError),
}

impl ImportError {
    /// Whether the agent's repository is at fault (the gate fails), rather than
    /// converge's own reading or writing (an action failure, retried).
    pub fn is_agents(&self) -> bool {
        !matches!(self, ImportError::Git(_))
    }
}

/// The largest object converge imports from an agent (512 MiB): git's own
/// tools struggle with larger blobs, and a forged header may claim any size.
pub const MAX_OBJECT: u64 = 512 * 1024 * 1024;

/// The private git directory of an agent's worktree.
pub fn git_dir(worktree: &Path) -> PathBuf {
    worktree.join(".git")
}

/// Whether `worktree` is backed by a private repository (its `.git` is a
/// directory, not a linked worktree's `gitdir:` file).
pub fn is_private(worktree: &Path) -> bool {
    std::fs::symlink_metadata(git_dir(worktree)).is_ok_and(|m| m.is_dir())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GitError + '_ {
    move |source| GitError::Io {
        path: path.to_owned(),
        source,
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    std::fs::write(path, text).map_err(io(path))
}

/// A value for a git config file: quoted, with `\` and `"` escaped and line
/// breaks dropped.
fn config_value(value: &str) -> String {
    let clean: String = value.chars().filter(|c| *c != '\n' && *c != '\r').collect();
    format!("\"{}\"", clean.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Repo {
    /// The main object store, as a private repository's alternate names it.
    fn alternate(&self) -> Result<String> {
        let objects = self.common_dir().join("objects");
        let objects = objects.canonicalize().map_err(io(&objects))?;
        Ok(format!("{}\n", objects.display()))
    }

    /// Makes `worktree` (absent or empty) a repository of its own with
    /// `branch` at `commit` checked out: objects of its own with this
    /// repository's store as alternate, HEAD on `branch`, and a configuration
    /// converge writes (the committer identity of this repository, nothing
    /// else).
    pub fn create_private(&self, worktree: &Path, branch: &str, commit: ObjectId) -> Result<()> {
        let git = git_dir(worktree);
        for dir in ["objects/info", "objects/pack", "refs/tags"] {
            std::fs::create_dir_all(git.join(dir)).map_err(io(&git))?;
        }
        write(&git.join("objects/info/alternates"), &self.alternate()?)?;
        let mut config = String::from(
            "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n\tlogallrefupdates = true\n",
        );
        let name = self.config_string("user.name");
        let email = self.config_string("user.email");
        if name.is_some() || email.is_some() {
            config.push_str("[user]\n");
            if let Some(name) = name {
                config.push_str(&format!("\tname = {}\n", config_value(&name)));
            }
            if let Some(email) = email {
                config.push_str(&format!("\temail = {}\n", config_value(&email)));
            }
        }
        write(&git.join("config"), &config)?;
        write(&git.join("HEAD"), &format!("ref: refs/heads/{branch}\n"))?;
        write(&git.join("refs/heads").join(branch), &format!("{commit}\n"))?;
        self.check_out_private(worktree, commit)
    }

    /// Writes the files of `commit` into the new private repository at
    /// `worktree`, and its index.
    fn check_out_private(&self, worktree: &Path, commit: ObjectId) -> Result<()> {
        let what = || format!("a checkout at {}", worktree.display());
        let options = gix::open::Options::isolated().open_path_as_is(true);
        let private = gix::ThreadSafeRepository::open_opts(git_dir(worktree), options)
            .map_err(|e| GitError::Write {
                what: what(),
                source: gix::Error::from_error(e),
            })?
            .to_thread_local();
        let tree = self.tree_of(commit)?;
        let mut index = private.index_from_tree(&tree).map_err(write_err(what()))?;
        let mut options = private
            .checkout_options(gix::worktree::stack::state::attributes::Source::IdMapping)
            .map_err(write_err(what()))?;
        options.destination_is_initially_empty = true;
        let objects = private.objects.into_arc().map_err(|source| GitError::Io {
            path: git_dir(worktree),
            source,
        })?;
        let interrupt = std::sync::atomic::AtomicBool::new(false);
        gix::worktree::state::checkout(
            &mut index,
            worktree,
            objects,
            &gix::progress::Discard,
            &gix::progress::Discard,
            &interrupt,
            options,
        )
        .map_err(write_err(what()))?;
        index.write(Default::default()).map_err(write_err(what()))?;
        Ok(())
    }

    /// Copies the objects reachable from `head` that this repository lacks
    /// from the agent's repository at `worktree`, each checked: its content
    /// must hash to its id, and be of the kind the history needs (a commit's
    /// tree a tree, its parents commits, a tree's entries what their modes
    /// say). Objects are written children first, so a crash leaves no object
    /// here whose history is incomplete. Returns how many were copied.
    pub fn import_objects(
        &self,
        worktree: &Path,
        head: ObjectId,
    ) -> std::result::Result<usize, ImportError> {
        self.check_alternate(worktree)?;
        let objects = git_dir(worktree).join("objects");
        let agent =
            gix::odb::at(&objects, gix::hash::Kind::Sha1).map_err(|source| GitError::Io {
                path: objects.clone(),
                source,
            })?;
        let mut done: HashSet<ObjectId> = HashSet::new();
        let mut stack = vec![Frame::new(head, gix::objs::Kind::Commit)];
        let mut copied = 0;
        let mut buf = Vec::new();
        while let Some(top) = stack.last_mut() {
            if top.children.is_none() {
                // Without refreshing the store's list of packs on every miss
                // (most objects of an import are missing here): at worst an
                // object in a pack made meanwhile is copied again.
                if done.contains(&top.id) || self.repo.objects.exists_without_refresh(&top.id) {
                    done.insert(top.id);
                    stack.pop();
                    continue;
                }
                // The size its header claims is checked before the object is
                // read: a header can claim any size.
                let unreadable = |e: gix::Error| ImportError::Unreadable {
                    id: top.id,
                    message: one_line(&e.to_string(), 200),
                };
                let header = gix::objs::FindHeader::try_header(&agent, &top.id)
                    .map_err(unreadable)?
                    .ok_or(ImportError::Missing { id: top.id })?;
                if header.size > MAX_OBJECT {
                    return Err(ImportError::TooLarge {
                        id: top.id,
                        size: header.size,
                        limit: MAX_OBJECT,
                    });
                }
                let data = agent
                    .try_find(&top.id, &mut buf)
                    .map_err(unreadable)?
                    .ok_or(ImportError::Missing { id: top.id })?;
                if data.kind != top.kind {
                    return Err(ImportError::WrongKind {
                        id: top.id,
                        expected: top.kind,
                        actual: data.kind,
                    });
                }
                let actual = gix::objs::compute_hash(gix::hash::Kind::Sha1, data.kind, data.data)
                    .map_err(read_err(format!("object {}", top.id)))?;
                if actual != top.id {
                    return Err(ImportError::Forged { id: top.id, actual });
                }
                top.children = Some(children(top.id, data.kind, data.data)?);
                top.data = data.data.to_vec();
            }
            let next = top
                .children
                .as_mut()
                .and_then(|c| c.pop())
                .filter(|(id, _)| !done.contains(id));
            match next {
                Some((id, kind)) => stack.push(Frame::new(id, kind)),
                None if top.children.as_ref().is_some_and(|c| !c.is_empty()) => {}
                None => {
                    // Its hash was checked when it was read: written under
                    // that id, not hashed a second time.
                    gix::objs::Write::write_buf_with_known_id(
                        &self.repo, top.kind, &top.data, top.id,
                    )
                    .map_err(write_err(format!("object {}", top.id)))?;
                    done.insert(top.id);
                    copied += 1;
                    stack.pop();
                }
            }
        }
        Ok(copied)
    }

    /// The private repository's alternate must still be this repository's
    /// store, as [`Repo::create_private`] wrote it.
    fn check_alternate(&self, worktree: &Path) -> std::result::Result<(), ImportError> {
        let git = git_dir(worktree);
        let tampered = |what: &str| ImportError::Tampered {
            path: worktree.to_owned(),
            what: what.to_owned(),
        };
        match std::fs::symlink_metadata(&git) {
            Ok(meta) if meta.is_dir() => {}
            _ => return Err(tampered("its `.git` is no longer a directory")),
        }
        let alternates = git.join("objects/info/alternates");
        let plain = std::fs::symlink_metadata(&alternates).is_ok_and(|m| m.is_file());
        let text = std::fs::read_to_string(&alternates).unwrap_or_default();
        if !plain || text != self.alternate()? {
            return Err(tampered(
                "`objects/info/alternates` no longer names only the main object store",
            ));
        }
        Ok(())
    }
}

impl Repo {
    /// Commits what the agent left uncommitted in its private repository's
    /// worktree on top of `head` (a commit of this repository, imported), as
    /// `signer`; the new commit, or `None` when the files are `head`'s.
    ///
    /// git reads the files through a throwaway git directory of converge's
    /// own, writing blobs into this repository's object store: no
    /// configuration but converge's (not the agent's, not the person's global
    /// or system one, so no filter, hook or fsmonitor runs), attributes that
    /// turn every filter and conversion off, this repository's
    /// `info/exclude`, and the worktree's `.gitignore` files (files git
    /// ignores stay out). A failure of git on the agent's files (a nested
    /// repository without a commit, an unreadable file) is the agent's:
    /// [`ImportError::Leftovers`].
    pub fn commit_private_leftovers(
        &self,
        worktree: &Path,
        head: ObjectId,
        message: &str,
        signer: &super::Signer,
    ) -> std::result::Result<Option<ObjectId>, ImportError> {
        let scratch = crate::rundir::layout::leftovers_git_dir(
            &crate::rundir::Layout::new(self.common_dir()).root(),
            std::process::id(),
        );
        let _ = std::fs::remove_dir_all(&scratch);
        self.make_scratch_git_dir(&scratch)?;
        let tree = self.tree_of(head)?;
        let hex = tree.to_string();
        let result = (|| {
            self.scratch_git(&scratch, worktree, &["read-tree", &hex])?;
            self.scratch_git(&scratch, worktree, &["add", "-A", "--", "."])?;
            self.scratch_git(&scratch, worktree, &["write-tree"])
        })();
        let _ = std::fs::remove_dir_all(&scratch);
        let written = result?;
        let written =
            ObjectId::from_hex(written.trim().as_bytes()).map_err(|e| GitError::Read {
                what: "the tree of the leftovers".into(),
                source: gix::Error::from_error(e),
            })?;
        if written == tree {
            return Ok(None);
        }
        Ok(Some(self.write_commit(
            written,
            &[head],
            message,
            signer,
        )?))
    }

    /// The throwaway git directory of [`Repo::commit_private_leftovers`].
    fn make_scratch_git_dir(&self, dir: &Path) -> Result<()> {
        for sub in ["objects", "refs", "info"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(io(dir))?;
        }
        write(&dir.join("HEAD"), "ref: refs/heads/leftovers\n")?;
        write(
            &dir.join("config"),
            "[core]\n\trepositoryformatversion = 0\n\tbare = false\n\tfilemode = true\n\tsymlinks = true\n\tautocrlf = false\n\tfsmonitor = false\n\tuntrackedCache = false\n\thooksPath = /dev/null\n",
        )?;
        write(
            &dir.join("info/attributes"),
            "* -filter -text -ident -working-tree-encoding\n",
        )?;
        let exclude =
            std::fs::read_to_string(self.common_dir().join("info/exclude")).unwrap_or_default();
        write(&dir.join("info/exclude"), &exclude)
    }

    /// Runs `git args` with the throwaway git directory `scratch`, this
    /// repository's object store and `worktree` as working tree, in an
    /// environment of converge's making; its standard output.
    fn scratch_git(
        &self,
        scratch: &Path,
        worktree: &Path,
        args: &[&str],
    ) -> std::result::Result<String, ImportError> {
        let mut command = std::process::Command::new("git");
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", scratch)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_DIR", scratch)
            .env("GIT_WORK_TREE", worktree)
            .env("GIT_INDEX_FILE", scratch.join("index"))
            .env("GIT_OBJECT_DIRECTORY", self.common_dir().join("objects"))
            .env("LC_ALL", "C")
            .current_dir(worktree)
            .stdin(std::process::Stdio::null());
        let output = command.output().map_err(|source| GitError::Io {
            path: "git".into(),
            source,
        })?;
        if !output.status.success() {
            return Err(ImportError::Leftovers {
                message: one_line(&String::from_utf8_lossy(&output.stderr), 400),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// `text` on one line (line breaks as `; `), at most `max` characters: it
/// quotes names the agent chose, and goes into status.
fn one_line(text: &str, max: usize) -> String {
    let joined = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    if joined.chars().count() <= max {
        return joined;
    }
    let cut: String = joined.chars().take(max).collect();
    format!("{cut}...")
}

/// One object of the import's walk: its expected kind, and once read, its
/// data and the children still to visit.
struct Frame {
    id: ObjectId,
    kind: gix::objs::Kind,
    children: Option<Vec<(ObjectId, gix::objs::Kind)>>,
    data: Vec<u8>,
}

impl Frame {
    fn new(id: ObjectId, kind: gix::objs::Kind) -> Frame {
        Frame {
            id,
            kind,
            children: None,
            data: Vec::new(),
        }
    }
}

/// The objects `data` (of `kind`) refers to, with the kind each must have.
/// Submodule entries (commits of another repository) are not followed.
fn children(
    id: ObjectId,
    kind: gix::objs::Kind,
    data: &[u8],
) -> std::result::Result<Vec<(ObjectId, gix::objs::Kind)>, ImportError> {
    use gix::objs::Kind;
    let corrupt = || ImportError::Corrupt { id, kind };
    match kind {
        Kind::Commit => {
            let commit = gix::objs::CommitRef::from_bytes(data, gix::hash::Kind::Sha1)
                .map_err(|_| corrupt())?;
            let mut out = vec![(commit.tree(), Kind::Tree)];
            out.extend(commit.parents().map(|p| (p, Kind::Commit)));
            Ok(out)
        }
        Kind::Tree => {
            // As `git fsck` wants it: entries sorted the way git sorts them,
            // no name twice, modes written the one way git writes them (a
            // tree written otherwise merges, then breaks every push to a
            // remote that checks objects).
            let tree = gix::objs::TreeRef::from_bytes(data, gix::hash::Kind::Sha1)
                .map_err(|_| corrupt())?;
            let sorted = tree.entries.windows(2).all(|w| {
                w[0].cmp(&w[1]) == std::cmp::Ordering::Less && w[0].filename != w[1].filename
            });
            if !sorted {
                return Err(ImportError::NotCanonical { id });
            }
            let mut canonical = Vec::with_capacity(data.len());
            gix::objs::WriteTo::write_to(&tree, &mut canonical).map_err(|_| corrupt())?;
            if canonical != data {
                return Err(ImportError::NotCanonical { id });
            }
            let mut out = Vec::new();
            for entry in gix::objs::TreeRefIter::from_bytes(data, gix::hash::Kind::Sha1) {
                let entry = entry.map_err(|_| corrupt())?;
                let child = if entry.mode.is_tree() {
                    Kind::Tree
                } else if entry.mode.is_commit() {
                    continue;
                } else {
                    Kind::Blob
                };
                out.push((entry.oid.to_owned(), child));
            }
            Ok(out)
        }
        Kind::Blob => Ok(Vec::new()),
        Kind::Tag => Err(corrupt()),
    }
}

/// The agent's tip of `branch` in its private repository at `worktree`, read
/// as plain files (the loose ref, else `packed-refs`), never through git:
/// `None` when the agent deleted the branch. A ref that is a symbolic link, a
/// symbolic ref or not a commit id is refused (its content is never echoed:
/// it could be a link to a file the agent may not read).
pub fn private_head(
    worktree: &Path,
    branch: &str,
) -> std::result::Result<Option<ObjectId>, ImportError> {
    let git = git_dir(worktree);
    let tampered = |what: String| ImportError::Tampered {
        path: worktree.to_owned(),
        what,
    };
    match std::fs::symlink_metadata(&git) {
        Ok(meta) if meta.is_dir() => {}
        _ => return Err(tampered("its `.git` is no longer a directory".into())),
    }
    let name = format!("refs/heads/{branch}");
    let loose = git.join(&name);
    match std::fs::symlink_metadata(&loose) {
        Ok(meta) if meta.is_file() => {
            let text = std::fs::read_to_string(&loose).unwrap_or_default();
            return parse_id(text.trim())
                .map(Some)
                .ok_or_else(|| tampered(format!("{name} does not hold a commit id")));
        }
        Ok(_) => return Err(tampered(format!("{name} is not a plain file"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(GitError::Io {
                path: loose,
                source: e,
            }
            .into());
        }
    }
    let packed = git.join("packed-refs");
    match std::fs::symlink_metadata(&packed) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => return Err(tampered("`packed-refs` is not a plain file".into())),
        Err(_) => return Ok(None),
    }
    let text = std::fs::read_to_string(&packed).unwrap_or_default();
    for line in text.lines() {
        if let Some((id, refname)) = line.split_once(' ')
            && refname == name
        {
            return parse_id(id)
                .map(Some)
                .ok_or_else(|| tampered(format!("{name} in `packed-refs` is not a commit id")));
        }
    }
    Ok(None)
}

/// A full SHA-1 hex id.
fn parse_id(text: &str) -> Option<ObjectId> {
    (text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| ObjectId::from_hex(text.as_bytes()).ok())
        .flatten()
}

#[cfg(test)]
#[path = "private_tests.rs"]
mod tests;
