//! Writing commits: who they are signed as and dated when, commit objects,
//! and commits of files or of a worktree's leftovers (with the index restaged
//! so that `git status` stays clean for them).

use gix::ObjectId;
use gix::bstr::{BStr, BString, ByteSlice};
use gix::objs::tree::EntryKind;

use super::{GitError, Repo, Result, checkout, intent, read_err, write_err};

/// Who a commit is written as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signer {
    /// The person running converge, for commits that record their decision
    /// or are made on their behalf: git's configured identity
    /// (`GIT_COMMITTER_NAME`/`EMAIL`, `user.name`/`email`), else converge's.
    Person,
    /// converge itself (status, merges, leftovers): this name and email for
    /// author and committer, whatever git's configuration says.
    Converge { name: String, email: String },
}

/// Whose identity a signature carries.
#[derive(Debug, Clone, Copy)]
enum Persona {
    Committer,
    Author,
}

impl Repo {
    /// Who converge commits as: the configured committer (including
    /// `GIT_COMMITTER_*`), else `converge <converge@localhost>`, dated now
    /// (or by `GIT_COMMITTER_DATE`): the clock is read at each call.
    pub fn signature(&self) -> gix::actor::Signature {
        self.signature_of(Persona::Committer, None)
    }

    /// The author and committer of a commit written now on top of
    /// `first_parent`: `signer`'s identity for both (for [`Signer::Person`],
    /// git's configured committer), the author dated by `GIT_AUTHOR_DATE` and
    /// the committer by `GIT_COMMITTER_DATE` when set, else both by the clock.
    pub(crate) fn commit_signatures(
        &self,
        first_parent: Option<ObjectId>,
        signer: &Signer,
    ) -> Result<(gix::actor::Signature, gix::actor::Signature)> {
        let not_before = self.committed_at(first_parent)?;
        let committer = match signer {
            Signer::Person => self.signature_of(Persona::Committer, not_before),
            Signer::Converge { name, email } => gix::actor::Signature {
                name: name.as_str().into(),
                email: email.as_str().into(),
                time: self.commit_time(Persona::Committer, not_before),
            },
        };
        let mut author = committer.clone();
        author.time = self.commit_time(Persona::Author, not_before);
        Ok((author, committer))
    }

    /// The configured identity of `persona` (name and email, from git's
    /// configuration and environment), else converge's own, dated now.
    fn signature_of(
        &self,
        persona: Persona,
        not_before: Option<gix::date::Time>,
    ) -> gix::actor::Signature {
        let configured = match persona {
            // What gix reports then is the reflog's fallback, perhaps under
            // half a configured identity: converge's own is used whole.
            Persona::Committer if self.no_identity => None,
            Persona::Committer => self.repo.committer(),
            Persona::Author => self.repo.author(),
        };
        let (name, email) = configured
            .and_then(Result::ok)
            .map(|s| (s.name.to_owned(), s.email.to_owned()))
            .unwrap_or_else(|| ("converge".into(), "converge@localhost".into()));
        gix::actor::Signature {
            name,
            email,
            time: self.commit_time(persona, not_before),
        }
    }

    /// When a commit written now is dated. A date fixed by the environment
    /// (`GIT_COMMITTER_DATE`, `GIT_AUTHOR_DATE`) or by
    /// `gitoxide.commit.committerDate`/`authorDate` applies as it is, like git
    /// does. Otherwise the clock is read at each call (gix's own
    /// `Repository::committer` keeps the time it read when the repository was
    /// opened, which dated every commit of a long run at its start), and never
    /// earlier than `not_before`, the first parent's commit time: a commit is
    /// not dated before the one it builds on, even if that one came from a
    /// clock running ahead.
    fn commit_time(
        &self,
        persona: Persona,
        not_before: Option<gix::date::Time>,
    ) -> gix::date::Time {
        let key = match persona {
            Persona::Committer => "gitoxide.commit.committerDate",
            Persona::Author => "gitoxide.commit.authorDate",
        };
        let fixed = self.repo.config_snapshot().string(key).and_then(|text| {
            let text = text.to_str().ok()?.to_owned();
            gix::date::parse(&text, Some(gix::date::Zoned::now())).ok()
        });
        if let Some(fixed) = fixed {
            return fixed;
        }
        let now = gix::date::Time::now_local_or_utc();
        match not_before {
            Some(parent) if parent.seconds > now.seconds => gix::date::Time {
                seconds: parent.seconds,
                offset: now.offset,
            },
            _ => now,
        }
    }

    /// The committer time of `commit`, if there is one and it can be read.
    fn committed_at(&self, commit: Option<ObjectId>) -> Result<Option<gix::date::Time>> {
        let Some(id) = commit else {
            return Ok(None);
        };
        let commit = self
            .repo
            .find_commit(id)
            .map_err(read_err(format!("the commit {id}")))?;
        Ok(commit.committer().ok().and_then(|s| s.time().ok()))
    }

    /// Writes a commit object (no ref moves), dated now and never before its
    /// first parent, unless `GIT_COMMITTER_DATE`/`GIT_AUTHOR_DATE` fix the dates,
    /// as `signer`.
    pub fn write_commit(
        &self,
        tree: ObjectId,
        parents: &[ObjectId],
        message: &str,
        signer: &Signer,
    ) -> Result<ObjectId> {
        let (author, committer) = self.commit_signatures(parents.first().copied(), signer)?;
        let commit = gix::objs::Commit {
            tree,
            parents: parents.iter().copied().collect(),
            author,
            committer,
            encoding: None,
            message: BString::from(message),
            extra_headers: Vec::new(),
        };
        Ok(self
            .repo
            .write_object(&commit)
            .map_err(write_err("a commit"))?
            .detach())
    }

    /// Commits `files` (paths relative to the repository root) on top of the branch
    /// HEAD points to, keeping everything else of HEAD's tree, and stages the same
    /// content in the index so that `git status` stays clean for them. Other staged
    /// changes remain staged and are not committed.
    pub fn commit_files(&self, files: &[(String, Vec<u8>)], message: &str) -> Result<ObjectId> {
        let head_ref = self
            .repo
            .head_name()
            .map_err(read_err("HEAD"))?
            .ok_or(GitError::DetachedHead)?;
        let parent = self.head_commit()?;
        let base_tree = match parent {
            Some(parent) => self
                .repo
                .find_commit(parent)
                .map_err(read_err("HEAD"))?
                .tree_id()
                .map_err(read_err("HEAD"))?
                .detach(),
            None => ObjectId::empty_tree(self.repo.object_hash()),
        };
        let mut editor = self
            .repo
            .edit_tree(base_tree)
            .map_err(write_err("a tree"))?;
        let mut blobs = Vec::with_capacity(files.len());
        for (path, bytes) in files {
            let id = self
                .repo
                .write_blob(bytes)
                .map_err(write_err(path.clone()))?
                .detach();
            editor
                .upsert(path.as_str(), EntryKind::Blob, id)
                .map_err(write_err(path.clone()))?;
            blobs.push((path.as_str(), Some((id, EntryKind::Blob))));
        }
        let tree = editor.write().map_err(write_err("a tree"))?.detach();
        let (dated, committer) = self.commit_signatures(parent, &Signer::Person)?;
        // The person's own author identity when configured (these commits are
        // made on their behalf: `init`, the demo), dated like the committer.
        let mut author = self.signature_of(Persona::Author, None);
        author.time = dated.time;
        let _noted = intent::note(
            self.common_dir(),
            &intent::Intent::Ref(head_ref.as_bstr().to_string()),
        );
        let commit = self
            .repo
            .commit_as(
                committer.to_ref(&mut gix::date::parse::TimeBuf::default()),
                author.to_ref(&mut gix::date::parse::TimeBuf::default()),
                head_ref.as_ref(),
                message,
                tree,
                parent,
            )
            .map_err(write_err(format!("a commit on {}", head_ref.as_bstr())))?
            .detach();
        self.stage(&blobs)?;
        Ok(commit)
    }

    /// Commits everything left in this worktree (see [`Repo::touched_paths`]) on
    /// the branch it has checked out, and resets the index to match. Returns the
    /// new commit (as `signer`), or `None` when there was nothing to commit.
    pub fn commit_leftovers(&self, message: &str, signer: &Signer) -> Result<Option<ObjectId>> {
        let paths = self.touched_paths()?;
        if paths.is_empty() {
            return Ok(None);
        }
        let workdir = self.workdir()?.to_owned();
        let head = self.head_commit()?;
        let branch = self.head_branch()?.ok_or(GitError::DetachedHead)?;
        let base_tree = match head {
            Some(h) => self.tree_of(h)?,
            None => ObjectId::empty_tree(self.repo.object_hash()),
        };
        let mut editor = self
            .repo
            .edit_tree(base_tree)
            .map_err(write_err("a tree"))?;
        let mut staged: Vec<(String, Option<(ObjectId, EntryKind)>)> = Vec::new();
        for path in &paths {
            let file = workdir.join(path);
            let io = |source| GitError::Io {
                path: file.clone(),
                source,
            };
            let (bytes, kind) = match std::fs::symlink_metadata(&file) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    let target = std::fs::read_link(&file).map_err(io)?;
                    (checkout::link_bytes(&target).to_vec(), EntryKind::Link)
                }
                Ok(meta) if meta.is_file() => {
                    let kind = if checkout::is_executable(&meta) {
                        EntryKind::BlobExecutable
                    } else {
                        EntryKind::Blob
                    };
                    (std::fs::read(&file).map_err(io)?, kind)
                }
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    editor
                        .remove(path.as_str())
                        .map_err(write_err(path.clone()))?;
                    staged.push((path.clone(), None));
                    continue;
                }
                Err(e) => return Err(io(e)),
            };
            let id = self
                .repo
                .write_blob(&bytes)
                .map_err(write_err(path.clone()))?
                .detach();
            editor
                .upsert(path.as_str(), kind, id)
                .map_err(write_err(path.clone()))?;
            staged.push((path.clone(), Some((id, kind))));
        }
        let tree = editor.write().map_err(write_err("a tree"))?.detach();
        if tree == base_tree {
            return Ok(None);
        }
        let parents: Vec<ObjectId> = head.into_iter().collect();
        let commit = self.write_commit(tree, &parents, message, signer)?;
        match head {
            Some(h) => self.compare_and_swap(&branch, h, commit, message)?,
            None => self.create_ref(&format!("refs/heads/{branch}"), commit, message)?,
        }
        let entries: Vec<(&str, Option<(ObjectId, EntryKind)>)> =
            staged.iter().map(|(p, e)| (p.as_str(), *e)).collect();
        self.stage(&entries)?;
        Ok(Some(commit))
    }

    /// Adds or replaces index entries for files whose blobs are already written
    /// (`Some((blob, kind))`, with stat data from the file on disk), or removes
    /// entries (`None`), under git's index lock; the cache-tree is dropped so
    /// that git rebuilds the tree of the next commit from the entries.
    fn stage(&self, entries: &[(&str, Option<(ObjectId, EntryKind)>)]) -> Result<()> {
        let workdir = self.workdir()?.to_owned();
        let index_path = self.repo.index_path();
        let index_err = |source: Box<dyn std::error::Error + Send + Sync>| GitError::Index {
            path: index_path.clone(),
            source,
        };
        let _noted = intent::note(
            self.common_dir(),
            &intent::Intent::Index(index_path.clone()),
        );
        let lock = gix::lock::File::acquire_to_update_resource(
            &index_path,
            gix::lock::acquire::Fail::AfterDurationWithBackoff(std::time::Duration::from_secs(5)),
            None,
            0,
        )
        .map_err(|e| index_err(Box::new(e)))?;
        let mut index = if index_path.exists() {
            gix::index::File::at(
                &index_path,
                self.repo.object_hash(),
                false,
                Default::default(),
            )
            .map_err(|e| index_err(Box::new(e)))?
        } else {
            gix::index::File::from_state(
                gix::index::State::new(self.repo.object_hash()),
                index_path.clone(),
            )
        };
        let replaced: Vec<&BStr> = entries
            .iter()
            .map(|(p, _)| p.as_bytes().as_bstr())
            .collect();
        index.remove_entries(|_, path, _| replaced.contains(&path));
        for (path, entry) in entries {
            let Some((id, kind)) = entry else {
                continue;
            };
            let metadata = gix::index::fs::Metadata::from_path_no_follow(&workdir.join(path))
                .map_err(|e| index_err(Box::new(e)))?;
            let stat =
                gix::index::entry::Stat::from_fs(&metadata).map_err(|e| index_err(Box::new(e)))?;
            index.dangerously_push_entry(
                stat,
                *id,
                gix::index::entry::Flags::empty(),
                checkout::index_mode(*kind),
                path.as_bytes().as_bstr(),
            );
        }
        index.sort_entries();
        checkout::write_index(&mut index, lock).map_err(index_err)
    }
}
