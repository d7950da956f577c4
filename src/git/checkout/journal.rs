//! The journal of an update of a checked-out branch
//! (`<git-common-dir>/converge/checkouts/`): written before the branch moves,
//! removed when the checkout has followed, so that the next converge process
//! finishes an update a crash interrupted; and the notes of paths an update
//! left as a person had changed them, for `converge doctor`.

use crate::rundir::Layout;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use gix::ObjectId;

use super::apply::{open_new, remove_stale_temps, replace_with};
use super::{Blocked, fs_path, io_err};
use crate::git::{GitError, Repo, Result, remove_file_if_exists, same_path};

/// What an interrupted update of a checked-out branch was doing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Journal {
    pub branch: String,
    pub worktree: PathBuf,
    pub from: String,
    pub to: String,
    /// The process making the update (pid and start time, as in
    /// `/proc/<pid>/stat`): while it lives, the update is its own to finish.
    #[serde(default)]
    pub pid: u32,
    #[serde(default)]
    pub started: u64,
}

impl Journal {
    /// A journal of this process's update of `branch` at `worktree`.
    pub(crate) fn new(branch: &str, worktree: &Path, from: ObjectId, to: ObjectId) -> Journal {
        let pid = std::process::id();
        Journal {
            branch: branch.to_owned(),
            worktree: worktree.to_owned(),
            from: from.to_string(),
            to: to.to_string(),
            pid,
            started: crate::rundir::procs::process_start_ticks(pid).unwrap_or(0),
        }
    }

    /// Whether another process that is still alive is making this update.
    fn in_progress_elsewhere(&self) -> bool {
        self.pid != 0
            && self.pid != std::process::id()
            && crate::rundir::procs::process_alive(
                self.pid,
                (self.started != 0).then_some(self.started),
            )
    }
}

/// What finishing an interrupted update did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovered {
    /// The checkout was brought to the branch's commit.
    Finished { branch: String, worktree: PathBuf },
    /// The branch never moved: nothing had been written.
    NothingToDo { branch: String },
    /// The update could not be finished without touching a person's changes;
    /// these paths still show the old content (or the person's).
    Blocked {
        branch: String,
        worktree: PathBuf,
        paths: Vec<String>,
    },
}

fn journal_dir(common: &Path) -> PathBuf {
    Layout::new(common).checkouts()
}

/// Paths an update left as a person had changed them (see
/// `Repo::note_left_alone`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeftAlone {
    pub branch: String,
    pub worktree: PathBuf,
    pub from: String,
    pub to: String,
    pub paths: Vec<String>,
}

fn left_alone_path(common: &Path, branch: &str, to: &str) -> PathBuf {
    Layout::new(common).left_alone_note(branch, to)
}

fn journal_path(common: &Path, branch: &str) -> PathBuf {
    Layout::new(common).checkout_journal(branch)
}

/// Writes `record` as JSON at `path`, atomically (a reader sees the old record
/// or the new one, never part of one).
fn write_record(path: &Path, record: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_vec(record).map_err(|e| GitError::Io {
        path: path.to_owned(),
        source: std::io::Error::other(e),
    })?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    replace_with(path, |tmp| open_new(tmp, 0o666)?.write_all(&text))
}

impl Repo {
    /// Notes that `branch`, checked out at `worktree`, is being moved from
    /// `from` to `to`, before the ref moves.
    pub(crate) fn begin_checkout_journal(&self, journal: &Journal) -> Result<()> {
        let path = journal_path(self.common_dir(), &journal.branch);
        write_record(&path, journal)
    }

    /// Keeps, for `converge doctor`, the paths an update of `journal.branch`
    /// left as the person had changed them: they hold the person's version,
    /// not the one `journal.to` has.
    pub(crate) fn note_left_alone(&self, journal: &Journal, paths: &[Blocked]) -> Result<()> {
        let path = left_alone_path(self.common_dir(), &journal.branch, &journal.to);
        let note = LeftAlone {
            branch: journal.branch.clone(),
            worktree: journal.worktree.clone(),
            from: journal.from.clone(),
            to: journal.to.clone(),
            paths: paths.iter().map(|b| b.path.clone()).collect(),
        };
        write_record(&path, &note)
    }

    /// The notes of paths updates left as a person had changed them.
    pub fn left_alone(&self) -> Vec<(PathBuf, LeftAlone)> {
        let dir = Layout::new(self.common_dir()).left_alone();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut out: Vec<(PathBuf, LeftAlone)> = entries
            .flatten()
            .filter_map(|e| {
                let bytes = std::fs::read(e.path()).ok()?;
                Some((e.path(), serde_json::from_slice(&bytes).ok()?))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    pub(crate) fn end_checkout_journal(&self, branch: &str) -> Result<()> {
        remove_file_if_exists(&journal_path(self.common_dir(), branch)).map(|_| ())
    }

    /// Interrupted checkout updates (by a crash between moving a checked-out
    /// branch and updating its files), as their journals say.
    pub fn interrupted_checkouts(&self) -> Result<Vec<Journal>> {
        let dir = journal_dir(self.common_dir());
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let entries: Vec<_> = entries.filter_map(std::result::Result::ok).collect();
        // A journal being written when its process was killed.
        remove_stale_temps(&dir.join("journal"));
        let mut out = Vec::new();
        for entry in entries {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            match serde_json::from_slice::<Journal>(&bytes) {
                Ok(journal) => out.push(journal),
                // A journal cut short by a crash while it was written: the ref
                // had not moved yet (the journal comes first).
                Err(_) => {
                    remove_file_if_exists(&path)?;
                }
            }
        }
        out.sort_by(|a, b| a.branch.cmp(&b.branch));
        Ok(out)
    }

    /// Finishes every interrupted checkout update: where the branch moved, the
    /// checkout is brought along (paths already updated count as done); where
    /// it did not, nothing had been written. A path a person changed since is
    /// left alone and reported, and its journal kept for the next call.
    pub fn recover_checkouts(&self) -> Result<Vec<Recovered>> {
        let mut out = Vec::new();
        for journal in self.interrupted_checkouts()? {
            if journal.in_progress_elsewhere() {
                continue;
            }
            let parse = |hex: &str| ObjectId::from_hex(hex.as_bytes()).ok();
            let (Some(from), Some(to)) = (parse(&journal.from), parse(&journal.to)) else {
                self.end_checkout_journal(&journal.branch)?;
                continue;
            };
            let tip = self.branch_tip(&journal.branch)?;
            let checkout = self.checkout_of(&journal.branch)?;
            let same = checkout
                .as_deref()
                .is_some_and(|p| same_path(p, &journal.worktree));
            if tip != Some(to) || !same {
                // The ref never moved (or moved on, or the branch is no longer
                // checked out there): the journal is all that is left.
                self.end_checkout_journal(&journal.branch)?;
                out.push(Recovered::NothingToDo {
                    branch: journal.branch,
                });
                continue;
            }
            let worktree = Repo::discover(&journal.worktree)?;
            let lock = worktree.lock_index(&journal.branch)?;
            let mut plan = worktree.plan_checkout(self.tree_of(from)?, self.tree_of(to)?)?;
            // Files a killed update was writing beside their targets.
            let workdir = worktree.workdir()?.to_owned();
            for delta in &plan.deltas {
                remove_stale_temps(&workdir.join(fs_path(&delta.path)));
            }
            // Paths the person changed since the crash are left as they are
            // (apply checks each again and skips them, giving them the new
            // index entry); what is left to say goes into a note doctor shows.
            let mut blocked: Vec<Blocked> = plan.blocked.clone();
            plan.blocked.clear();
            for skipped in worktree.apply_checkout(&plan, lock)? {
                if !blocked.iter().any(|b| b.path == skipped.path) {
                    blocked.push(skipped);
                }
            }
            if !blocked.is_empty() {
                self.note_left_alone(&journal, &blocked)?;
            }
            self.end_checkout_journal(&journal.branch)?;
            let blocked: Vec<String> = blocked.iter().map(ToString::to_string).collect();
            out.push(if blocked.is_empty() {
                Recovered::Finished {
                    branch: journal.branch,
                    worktree: journal.worktree,
                }
            } else {
                Recovered::Blocked {
                    branch: journal.branch,
                    worktree: journal.worktree,
                    paths: blocked,
                }
            });
        }
        Ok(out)
    }
}
