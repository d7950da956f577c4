//! The base branch of one tick, chosen once at its start and handed to
//! recovery, the schedules, the autonomy step and `prepare`.
//!
//! What [`base_source`] returns is two things that age differently. The
//! branch (its name) is chosen from the git configuration, HEAD and the
//! candidate's own `base_branch`: none of these is touched by a tick. Its
//! tip is: the fetch with a remote fast-forwards it, a schedule's enqueue
//! and the loop's filed items are commits on it. So the choice is kept and
//! the tip is read again each time ([`TickBase::current`]); when the tip
//! moved, the choice is made again from scratch, because the commits that
//! moved it carry a converge.toml too, and a fetched one may name another
//! `base_branch` (what `base_source` at each step did before). The candidate
//! a choice was redirected from is not read again while the tip stays: no
//! step of a tick commits to it.

use crate::git::{GitError, Repo};
use crate::spec::base::{CommitSource, base_source};

/// The base branch as chosen at the start of a tick, and its tip as last read.
#[derive(Debug, Clone)]
pub(crate) struct TickBase {
    source: CommitSource,
}

impl TickBase {
    /// Chooses the base branch ([`base_source`]).
    pub fn choose(repo: &Repo) -> Result<TickBase, GitError> {
        Ok(TickBase {
            source: base_source(repo)?,
        })
    }

    /// The base as chosen or last read, without looking again: for what runs
    /// before anything in the tick can move it (recovery, the remote's
    /// settings).
    pub fn read(&self) -> &CommitSource {
        &self.source
    }

    /// The base as it stands now: the same branch and its tip read again; if
    /// the tip moved (a fetch, a schedule's or the loop's commit), the branch
    /// is chosen again at the new commits (see the module's documentation).
    pub fn current(&mut self, repo: &Repo) -> Result<&CommitSource, GitError> {
        if repo.branch_tip(&self.source.rev)? != Some(self.source.commit) {
            self.source = base_source(repo)?;
        }
        Ok(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::cache::tests::commit;

    #[test]
    fn the_choice_is_kept_and_a_moved_tip_is_read_again() {
        let dir = tempfile::tempdir().expect("dir");
        let repo = Repo::init(dir.path(), "main").expect("init");
        let tip = commit(&repo, "planning/converge.toml", "[reconcile]\n");
        let mut base = TickBase::choose(&repo).expect("base");
        let first = base.read().clone();
        assert_eq!(first.rev, "main");
        assert_eq!(base.current(&repo).expect("current"), &first);
        // A commit on the base (a schedule's) moves the tip.
        let moved = commit(&repo, "planning/queue/a.md", "# a\n");
        let now = base.current(&repo).expect("current").clone();
        assert_eq!(now.rev, "main");
        assert_eq!(now.commit, moved);
        // A fetched converge.toml that names another base branch is followed,
        // as choosing again would.
        repo.create_ref("refs/heads/develop", tip, "test")
            .expect("develop");
        commit(
            &repo,
            "planning/converge.toml",
            "[reconcile]\nbase_branch = \"develop\"\n",
        );
        assert_eq!(base.current(&repo).expect("current").rev, "develop");
        assert_eq!(base_source(&repo).expect("base").rev, "develop");
    }
}
