//! Recovery from a killed process: what a SIGKILL at any instant inside a
//! git write can leave behind, found and removed at the start of every tick
//! (under the reconciler lock, which proves no other reconciler runs here) and
//! by `converge doctor --fix`.
//!
//! The states, and how each is told apart from a lock someone still holds:
//!
//! - A ref's `.lock` file (`refs/heads/main.lock`, the status branch's,
//!   `refs/heads/converge/..`, `refs/converge/attempts/../N.lock`,
//!   `packed-refs.lock`). Removed when a note in converge's journal
//!   ([`crate::git::intent`]) says a converge process that is gone was about to
//!   take it, and the lock was made within a second after the note (a later
//!   one is someone else's); a lock in converge's own namespaces (`refs/converge/`, and a task
//!   branch none of whose agent's processes is alive) also without a note; any
//!   other ref lock only once it is older than [`STALE_AFTER`] (git holds ref
//!   locks for milliseconds). Never one that a live process has open.
//! - A checkout's `index.lock` (the person's checkout, when converge moved
//!   its branch and restaged the paths): removed only under the first rule,
//!   a note of a converge process that is gone and a lock made right after it;
//!   an index lock nobody noted is a person's git at work.
//! - A worktree of converge's (task worktrees, merge checks) whose
//!   registration was left `locked: initializing` by an interrupted add, or
//!   whose directory lost its `.git` file in an interrupted removal (or
//!   never got it): the directory and its registration go. Nothing is lost:
//!   an add had checked out nothing of an agent's yet, and a removal had
//!   committed the worktree's leftovers before it started. Never one where a
//!   live process works.
//! - The newest attempt's run directory of a dispatch killed before its
//!   supervisor wrote the lease (no lease, no exit record, named by no live
//!   process): nothing ran, so it is removed and the dispatch is done again
//!   rather than reaped as a vanished agent.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::act::dispatch::worktree_root;
use crate::git::intent::{self, Intent, Orphaned};
use crate::git::{Repo, remove_file_if_exists, same_path};
use crate::observe::runs;
use crate::rundir::{Layout, layout};
use crate::spec::base::CommitSource;

mod probe;

use probe::Admin;

/// How old a ref lock that no note explains must be before it counts as stale.
pub const STALE_AFTER: Duration = Duration::from_secs(60);

/// Something a killed process left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leftover {
    /// A ref's lock file.
    RefLock { lock: PathBuf },
    /// A checkout's `index.lock`, taken by converge to restage the paths it
    /// moved (see [`crate::git::intent::Intent::Index`]).
    IndexLock { lock: PathBuf },
    /// A converge worktree's directory and/or registration.
    Worktree {
        admin: Option<PathBuf>,
        dir: Option<PathBuf>,
    },
    /// A journal note whose process is gone, with nothing else left.
    Note { file: PathBuf },
    /// An attempt's run directory from a dispatch killed before its
    /// supervisor wrote the lease: nothing ran. Removed, the dispatch is done
    /// again instead of counting as an agent that vanished (a failure the task
    /// did not cause, and with a few of them the task escalated).
    UnstartedRun { dir: PathBuf },
}

/// A leftover, with what it is for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub leftover: Leftover,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot remove {}", path.display())]
pub struct RecoverError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Converge's worktree roots: task worktrees (the configured root, the
/// default and the legacy place) and merge checks.
fn roots(common: &Path, configured: Option<&str>) -> Vec<PathBuf> {
    let mut out = vec![
        Layout::new(common).default_worktree_root(),
        Layout::new(common).legacy_worktrees(),
        Layout::new(common).merge_checks(),
    ];
    if let Ok(root) = worktree_root(common, configured) {
        out.push(root);
    }
    out.sort();
    out.dedup();
    out
}

/// `[reconcile] worktree_root` from the base branch's converge.toml, read
/// leniently: recovery runs before the spec is compiled (a state it repairs
/// may be what makes loading fail).
fn configured_worktree_root(repo: &Repo, base: Option<&CommitSource>) -> Option<String> {
    crate::spec::base::settings_at(repo, base?.commit)
        .ok()?
        .worktree_root
}

/// What [`scan`] looks at, read once.
struct Scan<'a> {
    common: PathBuf,
    /// Converge's worktree roots.
    roots: Vec<PathBuf>,
    notes: Vec<Orphaned>,
    admins: Vec<Admin>,
    /// The base and status branches.
    branches: &'a [String],
}

/// The leftovers found so far, each once, in the order found.
#[derive(Default)]
struct Findings(Vec<Found>);

impl Findings {
    fn add(&mut self, leftover: Leftover, message: String) {
        if !self.0.iter().any(|f| f.leftover == leftover) {
            self.0.push(Found { leftover, message });
        }
    }
}

/// One kind of leftover: finds those there are.
type Rule = fn(&Scan<'_>, &mut Findings);

/// Every kind of leftover, in the order [`scan`] looks for them (notes
/// first: what a note explains is not also reported as stale).
const RULES: &[Rule] = &[
    noted,
    registrations_without_gitdir,
    stale_ref_locks,
    broken_worktrees,
    unregistered_dirs,
    unstarted_runs,
];

/// Finds what killed processes left behind. `base`: the base branch, when it
/// can be read ([`crate::spec::base::base_source`], read once by the caller);
/// `branches` are the base and status branches (their locks may be a
/// person's git's, see [`converge_branches`]).
pub fn scan(repo: &Repo, base: Option<&CommitSource>, branches: &[String]) -> Vec<Found> {
    let common = repo.common_dir().to_owned();
    let scan = Scan {
        roots: roots(&common, configured_worktree_root(repo, base).as_deref()),
        notes: intent::notes(&common),
        admins: probe::admins(&common),
        branches,
        common,
    };
    let mut out = Findings::default();
    for rule in RULES {
        rule(&scan, &mut out);
    }
    out.0
}

/// Rule 1: what a converge process that is gone said it was about to lock
/// or add, and the note itself once nothing it names is still held.
fn noted(s: &Scan<'_>, out: &mut Findings) {
    for note in s.notes.iter().filter(|n| !n.alive) {
        let pending = match &note.intent {
            Intent::Ref(name) if !name.is_empty() => noted_ref(s, note, name, out),
            Intent::Ref(_) => false,
            Intent::Index(index) => noted_index(note, index, out),
            Intent::Worktree(path) => noted_worktree(s, note, path, out),
        };
        if !pending {
            out.add(
                Leftover::Note {
                    file: note.file.clone(),
                },
                format!(
                    "a note of converge process {} in {}",
                    note.pid,
                    note.file.display()
                ),
            );
        }
    }
}

/// The lock of ref `name` (or `packed-refs.lock`) the noting process took.
/// Returns whether a lock is still held open.
fn noted_ref(s: &Scan<'_>, note: &Orphaned, name: &str, out: &mut Findings) -> bool {
    let mut pending = false;
    for lock in [
        s.common.join(format!("{name}.lock")),
        s.common.join("packed-refs.lock"),
    ] {
        if !lock.exists() {
            continue;
        }
        if probe::held_open(&lock) {
            pending = true;
            continue;
        }
        // Taken right after the note, by the process that wrote
        // it: a lock made later is someone else's (rule 2 below
        // decides on it).
        if !probe::made_right_after(&note.file, &lock) {
            continue;
        }
        out.add(
            Leftover::RefLock { lock: lock.clone() },
            format!(
                "{} was left by converge process {}, killed while it updated {name}",
                lock.display(),
                note.pid
            ),
        );
    }
    pending
}

/// The `index.lock` of the checkout whose index the noting process restaged.
/// Returns whether it is still held open.
fn noted_index(note: &Orphaned, index: &Path, out: &mut Findings) -> bool {
    let mut lock = index.to_owned().into_os_string();
    lock.push(".lock");
    let lock = PathBuf::from(lock);
    if !lock.exists() {
        return false;
    }
    if probe::held_open(&lock) {
        return true;
    }
    if probe::made_right_after(&note.file, &lock) {
        out.add(
            Leftover::IndexLock { lock: lock.clone() },
            format!(
                "{} was left by converge process {}, killed while it updated that checkout's index",
                lock.display(),
                note.pid
            ),
        );
    }
    false
}

/// The worktree at `path` the noting process was adding or removing.
/// Returns whether a live process works in it.
fn noted_worktree(s: &Scan<'_>, note: &Orphaned, path: &Path, out: &mut Findings) -> bool {
    let mut pending = false;
    let basename = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = Some(path.to_owned()).filter(|p| p.exists());
    let mut matched = false;
    for admin in &s.admins {
        let ours = match &admin.dot_git {
            Some(dot_git) => same_path(dot_git, &path.join(".git")),
            None => admin
                .dir
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&basename)),
        };
        let broken = admin.initializing || admin.dot_git.as_ref().is_none_or(|g| !g.exists());
        if ours && broken {
            if dir.as_ref().is_some_and(|d| probe::busy(d)) {
                pending = true;
                continue;
            }
            matched = true;
            out.add(
                Leftover::Worktree {
                    admin: Some(admin.dir.clone()),
                    dir: dir.clone(),
                },
                format!(
                    "the worktree {} was left half {} by converge process {} ({})",
                    path.display(),
                    if admin.initializing {
                        "added"
                    } else {
                        "removed"
                    },
                    note.pid,
                    admin.dir.display()
                ),
            );
        }
    }
    if !matched
        && let Some(d) = &dir
        && !d.join(".git").exists()
        && probe::under_roots(&s.roots, d)
        && !probe::busy(d)
    {
        out.add(
            Leftover::Worktree {
                admin: None,
                dir: Some(d.clone()),
            },
            format!(
                "{} was left without its .git file by converge process {}",
                d.display(),
                note.pid
            ),
        );
    }
    pending
}

/// Registrations without their `gitdir` file (a removal killed half way
/// leaves the admin directory with a file or two): nothing can use them,
/// and `git worktree prune` removes exactly these. One that is locked
/// (git's own `initializing`, or a person's `git worktree lock`) stays.
fn registrations_without_gitdir(s: &Scan<'_>, out: &mut Findings) {
    for admin in &s.admins {
        if admin.dot_git.is_none() && !admin.dir.join("locked").exists() {
            out.add(
                Leftover::Worktree {
                    admin: Some(admin.dir.clone()),
                    dir: None,
                },
                format!(
                    "{} is a worktree registration without its gitdir file, left by an interrupted removal",
                    admin.dir.display()
                ),
            );
        }
    }
}

/// Rule 2: locks in converge's own namespaces; other ref locks once stale.
fn stale_ref_locks(s: &Scan<'_>, out: &mut Findings) {
    let common = &s.common;
    let live_refs: Vec<&str> = s
        .notes
        .iter()
        .filter(|n| n.alive)
        .filter_map(|n| match &n.intent {
            Intent::Ref(name) => Some(name.as_str()),
            Intent::Worktree(_) | Intent::Index(_) => None,
        })
        .collect();
    let mut locks = Vec::new();
    probe::lock_files(&common.join("refs"), &mut locks);
    let packed = common.join("packed-refs.lock");
    if packed.exists() {
        locks.push(packed);
    }
    for lock in locks {
        let Ok(relative) = lock.strip_prefix(common) else {
            continue;
        };
        let name = relative.to_string_lossy();
        let ref_name = name.strip_suffix(".lock").unwrap_or(&name);
        if live_refs.contains(&ref_name) || probe::held_open(&lock) {
            continue;
        }
        let why = if ref_name.starts_with("refs/converge/") {
            "converge's own ref"
        } else if ref_name.starts_with("refs/heads/converge/") {
            if probe::task_alive(common, &s.roots, relative) {
                continue;
            }
            "a task branch, and no process of the task is alive"
        } else if probe::age(&lock).is_some_and(|a| a >= STALE_AFTER) {
            "older than a minute, and no process has it open"
        } else {
            continue;
        };
        let whose = if s
            .branches
            .iter()
            .any(|b| ref_name == format!("refs/heads/{b}"))
        {
            " (a branch converge writes)"
        } else {
            ""
        };
        out.add(
            Leftover::RefLock { lock: lock.clone() },
            format!("{} is a stale lock{whose}: {why}", lock.display()),
        );
    }
}

/// Rule 3: converge's worktrees left half added or half removed.
fn broken_worktrees(s: &Scan<'_>, out: &mut Findings) {
    for admin in &s.admins {
        let Some(dot_git) = &admin.dot_git else {
            continue;
        };
        let Some(dir) = dot_git.parent() else {
            continue;
        };
        let broken = admin.initializing || !dot_git.exists();
        if !broken || !probe::under_roots(&s.roots, dir) {
            continue;
        }
        let live = s
            .notes
            .iter()
            .any(|n| n.alive && matches!(&n.intent, Intent::Worktree(p) if same_path(p, dir)));
        if live {
            continue;
        }
        if dir.exists() && probe::busy(dir) {
            continue;
        }
        out.add(
            Leftover::Worktree {
                admin: Some(admin.dir.clone()),
                dir: Some(dir.to_owned()).filter(|d| d.exists()),
            },
            format!(
                "the worktree {} is {} ({})",
                dir.display(),
                if admin.initializing {
                    "registered but was never finished (`locked: initializing`)"
                } else {
                    "registered but has no .git file"
                },
                admin.dir.display()
            ),
        );
    }
}

/// Directories in converge's roots without a `.git` file that no
/// registration names.
fn unregistered_dirs(s: &Scan<'_>, out: &mut Findings) {
    for root in &s.roots {
        let mut dirs = Vec::new();
        let merge_checks = *root == Layout::new(&s.common).merge_checks();
        for first in runs::sorted_dirs(root).unwrap_or_default() {
            if merge_checks {
                dirs.push(root.join(first));
            } else {
                for second in runs::sorted_dirs(&root.join(&first)).unwrap_or_default() {
                    dirs.push(root.join(&first).join(second));
                }
            }
        }
        for dir in dirs {
            let named = s
                .admins
                .iter()
                .filter_map(|a| a.dot_git.as_ref())
                .any(|g| g.parent().is_some_and(|p| same_path(p, &dir)));
            if named || dir.join(".git").exists() || probe::busy(&dir) {
                continue;
            }
            out.add(
                Leftover::Worktree {
                    admin: None,
                    dir: Some(dir.clone()),
                },
                format!(
                    "{} has no .git file and no worktree registration",
                    dir.display()
                ),
            );
        }
    }
}

/// Rule 4: dispatches killed before their supervisor wrote the lease.
fn unstarted_runs(s: &Scan<'_>, out: &mut Findings) {
    for (key, attempt, dir) in
        crate::rundir::records::latest_attempts(&Layout::new(&s.common)).unwrap_or_default()
    {
        if layout::lease(&dir).exists() || layout::exit(&dir).exists() || probe::run_named(&dir) {
            continue;
        }
        out.add(
            Leftover::UnstartedRun { dir: dir.clone() },
            format!(
                "attempt {attempt} of {key} was never started: its dispatch was killed before the agent's supervisor ran ({})",
                dir.display()
            ),
        );
    }
}

fn remove_dir(path: &Path) -> Result<(), RecoverError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(RecoverError {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Removes one leftover; returns a line for people.
pub fn repair(found: &Found) -> Result<String, RecoverError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |e: crate::git::GitError| RecoverError {
            path,
            source: std::io::Error::other(e.to_string()),
        }
    };
    match &found.leftover {
        Leftover::RefLock { lock } | Leftover::IndexLock { lock } => {
            remove_file_if_exists(lock).map_err(io(lock))?;
            Ok(format!("removed the stale lock {}", lock.display()))
        }
        Leftover::Worktree { admin, dir } => {
            // The checkout first: a registration without it is what
            // `git worktree prune` forgets, never the other way round.
            if let Some(dir) = dir {
                remove_dir(dir)?;
            }
            if let Some(admin) = admin {
                remove_dir(admin)?;
            }
            let what = dir.as_ref().or(admin.as_ref());
            Ok(format!(
                "removed the unfinished worktree {}",
                what.map(|p| p.display().to_string()).unwrap_or_default()
            ))
        }
        Leftover::Note { file } => {
            remove_file_if_exists(file).map_err(io(file))?;
            Ok(format!("removed the note {}", file.display()))
        }
        Leftover::UnstartedRun { dir } => {
            remove_dir(dir)?;
            Ok(format!(
                "removed {}, a dispatch that never started; it is done again",
                dir.display()
            ))
        }
    }
}

/// The base and status branches of the repository, when they can be read
/// (`base`: the base branch, `None` when it cannot).
pub fn converge_branches(repo: &Repo, base: Option<&CommitSource>) -> Vec<String> {
    let Some(base) = base else {
        return Vec::new();
    };
    let mut out = vec![base.rev.clone()];
    if let Ok((_, Some(status))) = crate::spec::base::remote_settings(repo, base.commit)
        && status != base.rev
    {
        out.push(status);
    }
    out
}

/// Recovery at the start of a tick (the caller holds the reconciler lock):
/// removes every leftover; returns a line per removal. Notes alone are removed
/// silently. `base`: the base branch the tick chose, `None` when it cannot be
/// read (recovery goes on: what it repairs may be why).
pub fn recover(repo: &Repo, base: Option<&CommitSource>) -> Result<Vec<String>, RecoverError> {
    let found = scan(repo, base, &converge_branches(repo, base));
    let mut lines = Vec::new();
    // Notes last: one stays until what it names is gone.
    let (notes, others): (Vec<&Found>, Vec<&Found>) = found
        .iter()
        .partition(|f| matches!(f.leftover, Leftover::Note { .. }));
    for f in others {
        lines.push(format!("recovered: {}", repair(f)?));
    }
    for f in notes {
        repair(f)?;
    }
    Ok(lines)
}
