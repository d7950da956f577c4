//! History questions and merges without a worktree: ancestry, reachability,
//! the files two commits differ in, and trial merges.

use gix::ObjectId;
use gix::bstr::ByteSlice;

use super::{GitError, Repo, Result, read_err, write_err};

/// The outcome of merging two commits without touching any worktree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrialMerge {
    /// The merge is clean; its tree is written.
    Clean { tree: ObjectId },
    /// The merge conflicts in these paths.
    Conflicts { paths: Vec<String> },
}

impl Repo {
    /// Whether `ancestor` is reachable from `descendant` (a commit is its own ancestor).
    pub fn is_ancestor(&self, ancestor: ObjectId, descendant: ObjectId) -> Result<bool> {
        if ancestor == descendant {
            return Ok(true);
        }
        let base = self
            .repo
            .merge_base(ancestor, descendant)
            .map_err(read_err(format!(
                "the merge base of {ancestor} and {descendant}"
            )))
            .map(|id| id.map(gix::Id::detach));
        match base {
            Ok(base) => Ok(base == Some(ancestor)),
            // Unrelated histories have no merge base.
            Err(GitError::Read { source, .. }) if source.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Which of `candidates` are reachable from `tip` (a commit reaches itself).
    ///
    /// One walk, newest first, answers most questions at once: it stops at
    /// commits older than the oldest candidate and than `tip` (less a day, for
    /// clock skew). Commit times are only a hint, though (clocks differ between
    /// machines, and agents' commits carry their own), so a candidate the walk
    /// did not meet is checked exactly with a merge base.
    pub fn reachable_among(
        &self,
        tip: ObjectId,
        candidates: &std::collections::BTreeSet<ObjectId>,
    ) -> Result<std::collections::BTreeSet<ObjectId>> {
        const SKEW: i64 = 24 * 3600;
        let mut found = std::collections::BTreeSet::new();
        if candidates.is_empty() {
            return Ok(found);
        }
        let time_of = |id: ObjectId| {
            self.repo
                .find_commit(id)
                .and_then(|c| c.time())
                .map(|t| t.seconds)
                .ok()
        };
        let mut oldest = time_of(tip).unwrap_or(i64::MAX);
        let mut commits = std::collections::BTreeSet::new();
        for id in candidates {
            // A candidate that is not a commit here cannot be reachable.
            if let Some(t) = time_of(*id) {
                oldest = oldest.min(t);
                commits.insert(*id);
            }
        }
        if commits.is_empty() {
            return Ok(found);
        }
        let walk = self
            .repo
            .rev_walk([tip])
            .sorting(gix::revision::walk::Sorting::ByCommitTimeCutoff {
                order: gix::traverse::commit::simple::CommitTimeOrder::NewestFirst,
                seconds: oldest.saturating_sub(SKEW),
            })
            .all()
            .map_err(read_err("the history"))?;
        for info in walk {
            let info = info.map_err(|e| GitError::Read {
                what: "the history".into(),
                source: gix::Error::from_error(e),
            })?;
            if commits.contains(&info.id) {
                found.insert(info.id);
                if found.len() == commits.len() {
                    return Ok(found);
                }
            }
        }
        for id in commits.difference(&found.clone()) {
            if self.is_ancestor(*id, tip)? {
                found.insert(*id);
            }
        }
        Ok(found)
    }

    /// The files that differ between the trees of two commits: each path with its
    /// new blob, or `None` where the file was deleted. Renames are a deletion and
    /// an addition.
    pub fn changed_files(
        &self,
        old: ObjectId,
        new: ObjectId,
    ) -> Result<Vec<(String, Option<ObjectId>)>> {
        let what = || format!("the changes from {old} to {new}");
        let old_tree = self
            .repo
            .find_tree(self.tree_of(old)?)
            .map_err(read_err(what()))?;
        let new_tree = self
            .repo
            .find_tree(self.tree_of(new)?)
            .map_err(read_err(what()))?;
        let changes = self
            .repo
            .diff_tree_to_tree(&old_tree, &new_tree, gix::diff::Options::default())
            .map_err(read_err(what()))?;
        let mut out = Vec::new();
        for change in changes {
            use gix::object::tree::diff::ChangeDetached as C;
            let path = change.location().to_str_lossy().into_owned();
            match &change {
                C::Deletion { entry_mode, .. } if !entry_mode.is_tree() => out.push((path, None)),
                C::Addition { entry_mode, id, .. } | C::Modification { entry_mode, id, .. }
                    if !entry_mode.is_tree() =>
                {
                    out.push((path, Some(*id)));
                }
                C::Rewrite { .. } => {
                    let source = change.source_location().to_str_lossy().into_owned();
                    out.push((source, None));
                    let (mode, id) = change.entry_mode_and_id();
                    if !mode.is_tree() {
                        out.push((path, Some(id.to_owned())));
                    }
                }
                _ => {}
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Merges `theirs` into `ours` in memory, like `git merge-tree --write-tree`.
    pub fn trial_merge(&self, ours: ObjectId, theirs: ObjectId) -> Result<TrialMerge> {
        let what = || format!("a merge of {theirs} into {ours}");
        let options = self.repo.tree_merge_options().map_err(read_err(what()))?;
        let labels = gix::merge::blob::builtin_driver::text::Labels {
            ancestor: Some("base".into()),
            current: Some("ours".into()),
            other: Some("theirs".into()),
        };
        let mut outcome = self
            .repo
            .merge_commits(ours, theirs, labels, options.into())
            .map_err(write_err(what()))?;
        let how = gix::merge::tree::TreatAsUnresolved::default();
        if outcome.tree_merge.has_unresolved_conflicts(how) {
            let mut paths: Vec<String> = outcome
                .tree_merge
                .conflicts
                .iter()
                .filter(|c| c.is_unresolved(how))
                .flat_map(|c| [c.ours.location(), c.theirs.location()])
                .filter(|p| !p.is_empty())
                .map(|p| p.to_str_lossy().into_owned())
                .collect();
            paths.sort();
            paths.dedup();
            return Ok(TrialMerge::Conflicts { paths });
        }
        let tree = outcome
            .tree_merge
            .tree
            .write()
            .map_err(|e| GitError::Write {
                what: what(),
                source: gix::Error::from_error(e),
            })?
            .detach();
        Ok(TrialMerge::Clean { tree })
    }
}
