//! What ticks in one process reuse, so that a daemon's tick (or the next tick
//! of `reconcile --until-idle`) costs less than a fresh process's: the spec
//! compiled from unchanged `planning/` inputs, and the verdicts on agents'
//! unchanged event logs.
//!
//! The spec is keyed by the listing of `planning/`'s input files: their paths
//! and blob ids, git's content addresses, so a hit is the same bytes and
//! compiling them again would give the same spec. Status lives beside them
//! (`planning/status/`, `STATUS.md`) and is not an input: a status commit on
//! the base branch keeps the key. A commit's listing never changes, so the
//! commit last found with the kept listing answers without listing again.

use std::cell::RefCell;
use std::rc::Rc;

use gix::ObjectId;

use crate::git::{GitError, Repo, TreeEntry};
use crate::observe::runs::EventCache;
use crate::spec::base::{list_planning, read_listed_planning};
use crate::spec::load::{Loaded, PlanningFiles};

/// One tick thread's cache; `Cache::default()` starts empty.
#[derive(Debug, Default)]
pub struct Cache {
    spec: RefCell<Option<Kept>>,
    /// The run directories' event-log verdicts (observe).
    pub events: EventCache,
    stats: RefCell<Stats>,
    /// How often `planning/` was listed (the tests read it).
    #[cfg(test)]
    listings: std::cell::Cell<u64>,
}

/// The listing of `planning/`'s inputs (`None`: no `planning/`), their files
/// and their compilation, and the commit last found to have that listing.
#[derive(Debug)]
struct Kept {
    /// A commit's tree never changes: the same commit is the same listing,
    /// so a tick that asks again at a base that did not move (the
    /// schedules, the autonomy step and `prepare` each ask) lists nothing.
    at: ObjectId,
    listed: Option<Vec<TreeEntry>>,
    files: Rc<PlanningFiles>,
    loaded: Loaded,
}

/// How often the spec was reused.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub spec_hits: u64,
    pub spec_misses: u64,
}

impl Cache {
    /// `planning/` at `commit`, compiled, or the compilation of the same tree
    /// kept from an earlier tick.
    pub fn spec(&self, repo: &Repo, commit: ObjectId) -> Result<Loaded, GitError> {
        Ok(self.planning(repo, commit)?.1)
    }

    /// The files of `planning/` at `commit` and their compilation, read and
    /// compiled once per listing (the schedules need the files, the tick the
    /// spec: one compilation serves both).
    pub fn planning(
        &self,
        repo: &Repo,
        commit: ObjectId,
    ) -> Result<(Rc<PlanningFiles>, Loaded), GitError> {
        if let Some(kept) = &*self.spec.borrow()
            && kept.at == commit
        {
            self.stats.borrow_mut().spec_hits += 1;
            return Ok((Rc::clone(&kept.files), kept.loaded.clone()));
        }
        let listed = list_planning(repo, commit)?;
        #[cfg(test)]
        self.listings.set(self.listings.get() + 1);
        if let Some(kept) = &mut *self.spec.borrow_mut()
            && kept.listed == listed
        {
            kept.at = commit;
            self.stats.borrow_mut().spec_hits += 1;
            return Ok((Rc::clone(&kept.files), kept.loaded.clone()));
        }
        let files = Rc::new(read_listed_planning(repo, listed.as_deref())?);
        let loaded = crate::spec::compile(&files);
        self.stats.borrow_mut().spec_misses += 1;
        *self.spec.borrow_mut() = Some(Kept {
            at: commit,
            listed,
            files: Rc::clone(&files),
            loaded: loaded.clone(),
        });
        Ok((files, loaded))
    }

    pub fn stats(&self) -> Stats {
        *self.stats.borrow()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes `path` in `repo`'s checkout and commits everything; the new tip.
    pub(crate) fn commit(repo: &Repo, path: &str, text: &str) -> ObjectId {
        let dir = repo.workdir().expect("checkout");
        let file = dir.join(path);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(&file, text).expect("write");
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
                .args(args)
                .current_dir(dir)
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .output()
                .expect("git runs");
            assert!(out.status.success(), "{out:?}");
            String::from_utf8(out.stdout).expect("utf-8")
        };
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", "c"]);
        ObjectId::from_hex(git(&["rev-parse", "HEAD"]).trim().as_bytes()).expect("oid")
    }

    #[test]
    fn the_spec_is_compiled_once_per_planning_tree() {
        let dir = tempfile::tempdir().expect("dir");
        let repo = Repo::init(dir.path(), "main").expect("init");
        let cache = Cache::default();
        let first = commit(&repo, "planning/converge.toml", "[reconcile]\n");
        let loaded = cache.spec(&repo, first).expect("spec");
        assert!(loaded.spec.is_some(), "{:?}", loaded.diagnostics);
        // A status commit changes planning/status/ and STATUS.md, not the
        // inputs: the same spec.
        commit(&repo, "STATUS.md", "# status\n");
        let status = commit(&repo, "planning/status/p.toml", "[tasks]\n");
        let again = cache.spec(&repo, status).expect("spec");
        assert_eq!(again.spec, loaded.spec);
        assert_eq!(
            cache.stats(),
            Stats {
                spec_hits: 1,
                spec_misses: 1
            }
        );
        // A change to planning/ compiles again, and so does going back.
        let bad = commit(&repo, "planning/converge.toml", "[reconcile\n");
        let broken = cache.spec(&repo, bad).expect("spec");
        assert!(broken.spec.is_none(), "the new tree was compiled");
        let back = cache.spec(&repo, first).expect("spec");
        assert_eq!(back.spec, loaded.spec);
        assert_eq!(cache.stats().spec_misses, 3);
        // The schedules read the files of the same tree: no compile.
        let (files, _) = cache.planning(&repo, first).expect("planning");
        assert!(files.files.contains_key("planning/converge.toml"));
        assert_eq!(cache.stats().spec_hits, 2);
    }

    #[test]
    fn the_same_commit_is_not_listed_again() {
        let dir = tempfile::tempdir().expect("dir");
        let repo = Repo::init(dir.path(), "main").expect("init");
        let cache = Cache::default();
        let first = commit(&repo, "planning/converge.toml", "[reconcile]\n");
        // The schedules, the autonomy step and prepare ask at one base.
        cache.planning(&repo, first).expect("planning");
        cache.planning(&repo, first).expect("planning");
        cache.spec(&repo, first).expect("spec");
        assert_eq!(cache.listings.get(), 1);
        assert_eq!(cache.stats().spec_misses, 1);
        // A commit that moved the base (a schedule's enqueue) is listed and,
        // its inputs changed, compiled again.
        let moved = commit(&repo, "planning/queue/a.md", "# a\n");
        cache.spec(&repo, moved).expect("spec");
        assert_eq!(cache.listings.get(), 2);
        assert_eq!(cache.stats().spec_misses, 2);
        // A status commit keeps the inputs: listed once, not compiled.
        let status = commit(&repo, "STATUS.md", "# status\n");
        cache.spec(&repo, status).expect("spec");
        cache.spec(&repo, status).expect("spec");
        assert_eq!(cache.listings.get(), 3);
        assert_eq!(cache.stats().spec_misses, 2);
    }
}
