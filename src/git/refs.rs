//! References: reading them, and moving them only by compare-and-swap
//! (create against "absent", advance against the expected tip, delete against
//! the expected tip), each move noted first as an intent (see [`super::intent`]).
//! Moving a branch that is checked out brings its checkout along
//! ([`Repo::advance_branch`], with the `checkout` module).

use std::path::PathBuf;

use gix::ObjectId;
use gix::bstr::ByteSlice;

use super::{GitError, Repo, Result, full_name, intent, read_err, remove_file_if_exists};

/// How a branch was moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advanced {
    /// The checkout of the branch that was brought along, if any.
    pub worktree: Option<PathBuf>,
}

impl Repo {
    /// The tip of `refs/heads/<branch>`, if the branch exists.
    pub fn branch_tip(&self, branch: &str) -> Result<Option<ObjectId>> {
        let name = format!("refs/heads/{branch}");
        let reference = self
            .repo
            .try_find_reference(name.as_str())
            .map_err(read_err(format!("the ref {name}")))?;
        let Some(mut reference) = reference else {
            return Ok(None);
        };
        let commit = reference
            .peel_to_commit()
            .map_err(read_err(format!("the ref {name}")))?;
        Ok(Some(commit.id))
    }

    /// The object a ref points to (peeled), if the ref exists.
    pub fn ref_target(&self, full_name: &str) -> Result<Option<ObjectId>> {
        let reference = self
            .repo
            .try_find_reference(full_name)
            .map_err(read_err(format!("the ref {full_name}")))?;
        let Some(mut reference) = reference else {
            return Ok(None);
        };
        let id = reference
            .peel_to_id()
            .map_err(read_err(format!("the ref {full_name}")))?;
        Ok(Some(id.detach()))
    }

    /// Local branches under `refs/heads/<prefix>`, as (short name, tip commit).
    pub fn branches_with_prefix(&self, prefix: &str) -> Result<Vec<(String, ObjectId)>> {
        let full = format!("refs/heads/{prefix}");
        let what = || format!("the branches {full}*");
        let platform = self.repo.references().map_err(read_err(what()))?;
        let iter = platform.prefixed(full.as_str()).map_err(read_err(what()))?;
        let mut out = Vec::new();
        for reference in iter {
            let mut reference = reference.map_err(read_err(what()))?;
            let name = reference.name().shorten().to_str_lossy().into_owned();
            let commit = reference
                .peel_to_commit()
                .map_err(read_err(format!("the branch {name}")))?;
            out.push((name, commit.id));
        }
        out.sort();
        Ok(out)
    }

    /// References under `prefix` (a full name such as `refs/converge/attempts/`),
    /// as (full name, commit), sorted.
    pub fn refs_with_prefix(&self, prefix: &str) -> Result<Vec<(String, ObjectId)>> {
        let what = || format!("the references {prefix}*");
        let platform = self.repo.references().map_err(read_err(what()))?;
        let iter = platform.prefixed(prefix).map_err(read_err(what()))?;
        let mut out = Vec::new();
        for reference in iter {
            let mut reference = reference.map_err(read_err(what()))?;
            let name = reference.name().as_bstr().to_str_lossy().into_owned();
            let commit = reference
                .peel_to_commit()
                .map_err(read_err(format!("the reference {name}")))?;
            out.push((name, commit.id));
        }
        out.sort();
        Ok(out)
    }

    /// Moves `refs/heads/<branch>` from `expected` to `new`, only if it is still at
    /// `expected`; a stale expectation is a [`GitError::Conflict`].
    pub fn compare_and_swap(
        &self,
        branch: &str,
        expected: ObjectId,
        new: ObjectId,
        log: &str,
    ) -> Result<()> {
        let name = format!("refs/heads/{branch}");
        let expected_value = gix::refs::transaction::PreviousValue::MustExistAndMatch(
            gix::refs::Target::Object(expected),
        );
        match self.edit_ref(&name, expected_value, new, log)? {
            Ok(()) => Ok(()),
            Err(source) => {
                let found = self.branch_tip(branch)?;
                if found != Some(expected) {
                    return Err(GitError::Conflict {
                        branch: branch.to_owned(),
                        found: found
                            .map_or_else(|| "nothing (deleted)".to_owned(), |f| f.to_string()),
                    });
                }
                Err(GitError::Write { what: name, source })
            }
        }
    }

    /// Points `full_name` at `new` if its current value satisfies `expected`, in
    /// one ref transaction with a reflog entry. The outer error is a bad name;
    /// the inner one is a refused or failed edit, for the caller to classify.
    fn edit_ref(
        &self,
        name: &str,
        expected: gix::refs::transaction::PreviousValue,
        new: ObjectId,
        log: &str,
    ) -> Result<std::result::Result<(), gix::Error>> {
        use gix::refs::transaction::{Change, LogChange, RefEdit, RefLog};
        let edit = RefEdit {
            change: Change::Update {
                log: LogChange {
                    mode: RefLog::AndReference,
                    force_create_reflog: false,
                    message: log.into(),
                },
                expected,
                new: gix::refs::Target::Object(new),
            },
            name: full_name(name)?,
            deref: false,
        };
        let _noted = intent::note(self.common_dir(), &intent::Intent::Ref(name.to_owned()));
        Ok(self.repo.edit_reference(edit).map(|_| ()))
    }

    /// Creates the ref `full_name` (e.g. `refs/heads/x`) at `id`; fails if it
    /// exists (compare-and-swap against "absent").
    pub fn create_ref(&self, full_name: &str, id: ObjectId, log: &str) -> Result<()> {
        let absent = gix::refs::transaction::PreviousValue::MustNotExist;
        match self.edit_ref(full_name, absent, id, log)? {
            Ok(()) => Ok(()),
            Err(source) => match self.ref_target(full_name)? {
                Some(found) => Err(GitError::Conflict {
                    branch: full_name.to_owned(),
                    found: found.to_string(),
                }),
                None => Err(GitError::Write {
                    what: full_name.to_owned(),
                    source,
                }),
            },
        }
    }

    /// Deletes `refs/heads/<branch>` if it is still at `expected`.
    pub fn delete_branch(&self, branch: &str, expected: ObjectId) -> Result<()> {
        use gix::refs::transaction::{Change, PreviousValue, RefEdit, RefLog};
        let name = format!("refs/heads/{branch}");
        let edit = RefEdit {
            change: Change::Delete {
                expected: PreviousValue::MustExistAndMatch(gix::refs::Target::Object(expected)),
                log: RefLog::AndReference,
            },
            name: full_name(&name)?,
            deref: false,
        };
        let _noted = intent::note(self.common_dir(), &intent::Intent::Ref(name.clone()));
        match self.repo.edit_reference(edit) {
            Ok(_) => Ok(()),
            Err(source) => match self.branch_tip(branch)? {
                None => Ok(()),
                Some(found) if found != expected => Err(GitError::Conflict {
                    branch: branch.to_owned(),
                    found: found.to_string(),
                }),
                Some(_) => Err(GitError::Write { what: name, source }),
            },
        }
    }

    /// Deletes the reference `full_name` (`refs/...`) if it still points at
    /// `expected`; one that is already gone is fine.
    pub fn delete_ref(&self, full_name: &str, expected: ObjectId) -> Result<()> {
        use gix::refs::transaction::{Change, PreviousValue, RefEdit, RefLog};
        let edit = RefEdit {
            change: Change::Delete {
                expected: PreviousValue::MustExistAndMatch(gix::refs::Target::Object(expected)),
                log: RefLog::AndReference,
            },
            name: self::full_name(full_name)?,
            deref: false,
        };
        match self.repo.edit_reference(edit) {
            Ok(_) => Ok(()),
            Err(source) => match self.ref_target(full_name)? {
                None => Ok(()),
                Some(found) if found != expected => Err(GitError::Conflict {
                    branch: full_name.to_owned(),
                    found: found.to_string(),
                }),
                Some(_) => Err(GitError::Write {
                    what: full_name.to_owned(),
                    source,
                }),
            },
        }
    }

    /// Removes the lock file of `refs/heads/<branch>` left by a process that
    /// was killed while it updated the branch (an agent reaped mid-commit).
    /// Callers make sure nothing that could hold the lock is alive.
    pub fn clear_ref_lock(&self, branch: &str) -> Result<bool> {
        remove_file_if_exists(
            &self
                .common_dir()
                .join("refs")
                .join("heads")
                .join(format!("{branch}.lock")),
        )
    }

    /// Moves `branch` from `expected` to `new` by compare-and-swap. When the
    /// branch is checked out, that checkout follows like `git read-tree -m -u`
    /// would move it (see the `checkout` module): only the paths that differ
    /// between the two commits are written, and only if none of them has
    /// uncommitted changes; otherwise nothing moves and the result is
    /// [`GitError::Dirty`] naming the paths in the way. Changes elsewhere in
    /// the checkout do not matter.
    pub fn advance_branch(
        &self,
        branch: &str,
        expected: ObjectId,
        new: ObjectId,
        log: &str,
    ) -> Result<Advanced> {
        let Some(path) = self.checkout_of(branch)? else {
            self.compare_and_swap(branch, expected, new, log)?;
            return Ok(Advanced { worktree: None });
        };
        // An update a crash interrupted is finished before the next one.
        self.recover_checkouts()?;
        let worktree = Repo::discover(&path)?;
        // The index stays locked from before the branch moves until it is
        // written: no other git process writes it in between, and the branch
        // never moves while someone else's git holds it.
        let lock = worktree.lock_index(branch)?;
        // A person may have switched that checkout to another branch since we
        // looked (git holds the index lock while it checks out): then the
        // branch is no longer checked out there, and only the ref moves.
        if worktree.head_branch()?.as_deref() != Some(branch) {
            drop(lock);
            self.compare_and_swap(branch, expected, new, log)?;
            return Ok(Advanced { worktree: None });
        }
        let plan = worktree.plan_checkout(self.tree_of(expected)?, self.tree_of(new)?)?;
        if !plan.blocked.is_empty() {
            return Err(GitError::Dirty {
                branch: branch.to_owned(),
                worktree: path,
                paths: plan.blocked.iter().map(ToString::to_string).collect(),
            });
        }
        let journal = super::Journal::new(branch, &path, expected, new);
        self.begin_checkout_journal(&journal)?;
        if let Err(e) = self.compare_and_swap(branch, expected, new, log) {
            self.end_checkout_journal(branch)?;
            return Err(e);
        }
        crate::crash::point("mid-checkout");
        // A path the person saved in the meantime is left as they saved it,
        // and noted for doctor.
        let left = worktree.apply_checkout(&plan, lock)?;
        if !left.is_empty() {
            self.note_left_alone(&journal, &left)?;
        }
        self.end_checkout_journal(branch)?;
        Ok(Advanced {
            worktree: Some(path),
        })
    }
}
