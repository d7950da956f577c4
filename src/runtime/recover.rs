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

use crate::act::dispatch::{default_worktree_root, legacy_worktree_root, worktree_root};
use crate::git::intent::{self, Intent};
use crate::git::{Repo, remove_file_if_exists, same_path};
use crate::observe::runs;

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
        default_worktree_root(common),
        legacy_worktree_root(common),
        common.join("converge").join("merge-checks"),
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
fn configured_worktree_root(repo: &Repo) -> Option<String> {
    let base = crate::spec::base::base_source(repo).ok()?;
    let bytes = repo
        .read_blob_at(base.commit, "planning/converge.toml")
        .ok()??;
    let table: toml::Table = std::str::from_utf8(&bytes).ok()?.parse().ok()?;
    table
        .get("reconcile")?
        .get("worktree_root")?
        .as_str()
        .map(str::to_owned)
}

fn canonical(path: &Path) -> PathBuf {
    // The deepest existing ancestor resolved, the rest appended.
    let mut missing = Vec::new();
    let mut at = path;
    loop {
        if let Ok(real) = at.canonicalize() {
            let mut out = real;
            for part in missing.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name.to_owned());
                at = parent;
            }
            _ => return path.to_owned(),
        }
    }
}

fn under_roots(roots: &[PathBuf], path: &Path) -> bool {
    let path = canonical(path);
    roots.iter().any(|root| path.starts_with(canonical(root)))
}

/// Whether a live process has `path` open.
fn held_open(path: &Path) -> bool {
    let wanted = canonical(path);
    processes().any(|proc| {
        std::fs::read_dir(proc.join("fd")).is_ok_and(|fds| {
            fds.flatten()
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == wanted))
        })
    })
}

/// The `/proc/<pid>` directories of the processes there are now.
fn processes() -> impl Iterator<Item = PathBuf> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|proc| {
            proc.file_name()
                .to_str()
                .is_some_and(|p| p.parse::<u32>().is_ok())
        })
        .map(|proc| proc.path())
}

/// Whether a live process works inside `dir` (its working directory is there).
fn busy(dir: &Path) -> bool {
    let dir = canonical(dir);
    processes()
        .any(|proc| std::fs::read_link(proc.join("cwd")).is_ok_and(|cwd| cwd.starts_with(&dir)))
}

/// Whether a live process names `dir` on its command line (a supervisor,
/// `converge __supervise <run-dir>`) or in its environment (its agent).
fn run_named(dir: &Path) -> bool {
    if !runs::processes_of_run(dir).is_empty() {
        return true;
    }
    let wanted = dir.to_string_lossy().into_owned();
    processes().any(|proc| {
        std::fs::read(proc.join("cmdline"))
            .is_ok_and(|cmd| cmd.split(|b| *b == 0).any(|arg| arg == wanted.as_bytes()))
    })
}

/// Whether any process of any attempt of the task whose branch lock this is
/// (`refs/heads/converge/<plan>/<task>.lock`) is alive.
fn task_alive(common: &Path, relative: &Path) -> bool {
    let parts: Vec<&str> = relative.iter().filter_map(|p| p.to_str()).collect();
    let [_, _, _, plan, task] = parts.as_slice() else {
        return true;
    };
    let Some(task) = task.strip_suffix(".lock") else {
        return true;
    };
    let key = crate::observe::TaskKey::new(*plan, task);
    if busy(&crate::act::dispatch::worktree_path(common, &key)) {
        return true;
    }
    let dir = runs::runs_root(common).join(plan).join(task);
    runs::sorted_dirs(&dir)
        .unwrap_or_default()
        .iter()
        .any(|attempt| {
            let run = dir.join(attempt);
            let lease_alive = runs::read_lease(&run)
                .ok()
                .flatten()
                .is_some_and(|l| runs::process_alive(l.pid, l.start_ticks));
            lease_alive || !runs::processes_of_run(&run).is_empty()
        })
}

/// How long after its note a lock may be made and still count as the noting
/// process's: converge takes the lock right after it writes the note.
const NOTE_TO_LOCK: Duration = Duration::from_secs(1);

/// Whether `lock` was made (or last written) within [`NOTE_TO_LOCK`] after
/// `note` (timestamps may be a few milliseconds coarse).
fn made_right_after(note: &Path, lock: &Path) -> bool {
    let modified = |p: &Path| std::fs::symlink_metadata(p).ok()?.modified().ok();
    let (Some(noted), Some(locked)) = (modified(note), modified(lock)) else {
        return false;
    };
    let slack = Duration::from_millis(50);
    locked + slack >= noted && locked <= noted + NOTE_TO_LOCK
}

fn age(path: &Path) -> Option<Duration> {
    std::fs::symlink_metadata(path)
        .ok()?
        .modified()
        .ok()?
        .elapsed()
        .ok()
}

/// Every `*.lock` file below `dir`.
fn lock_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            lock_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "lock") {
            out.push(path);
        }
    }
}

/// A linked worktree's registration under `<git-common-dir>/worktrees/`.
struct Admin {
    dir: PathBuf,
    /// The checkout's `.git` file it points to, if `gitdir` could be read.
    dot_git: Option<PathBuf>,
    initializing: bool,
}

fn admins(common: &Path) -> Vec<Admin> {
    let Ok(entries) = std::fs::read_dir(common.join("worktrees")) else {
        return Vec::new();
    };
    let mut out: Vec<Admin> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| {
            let dir = e.path();
            let dot_git = std::fs::read_to_string(dir.join("gitdir"))
                .ok()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .map(|t| {
                    let p = PathBuf::from(t);
                    if p.is_absolute() { p } else { dir.join(p) }
                });
            let initializing = std::fs::read_to_string(dir.join("locked"))
                .is_ok_and(|t| t.trim() == "initializing");
            Admin {
                dir,
                dot_git,
                initializing,
            }
        })
        .collect();
    out.sort_by(|a, b| a.dir.cmp(&b.dir));
    out
}

/// Finds what killed processes left behind. `branches` are the base and
/// status branches (their locks may be a person's git's).
pub fn scan(repo: &Repo, branches: &[String]) -> Vec<Found> {
    let common = repo.common_dir().to_owned();
    let roots = roots(&common, configured_worktree_root(repo).as_deref());
    let mut out: Vec<Found> = Vec::new();
    let add = |out: &mut Vec<Found>, leftover: Leftover, message: String| {
        if !out.iter().any(|f| f.leftover == leftover) {
            out.push(Found { leftover, message });
        }
    };
    let notes = intent::notes(&common);
    let live_refs: Vec<&str> = notes
        .iter()
        .filter(|n| n.alive)
        .filter_map(|n| match &n.intent {
            Intent::Ref(name) => Some(name.as_str()),
            Intent::Worktree(_) | Intent::Index(_) => None,
        })
        .collect();
    let admins = admins(&common);

    // 1. What a converge process that is gone said it was about to lock.
    for note in notes.iter().filter(|n| !n.alive) {
        let mut pending = false;
        match &note.intent {
            Intent::Ref(name) if !name.is_empty() => {
                for lock in [
                    common.join(format!("{name}.lock")),
                    common.join("packed-refs.lock"),
                ] {
                    if !lock.exists() {
                        continue;
                    }
                    if held_open(&lock) {
                        pending = true;
                        continue;
                    }
                    // Taken right after the note, by the process that wrote
                    // it: a lock made later is someone else's (rule 2 below
                    // decides on it).
                    if !made_right_after(&note.file, &lock) {
                        continue;
                    }
                    add(
                        &mut out,
                        Leftover::RefLock { lock: lock.clone() },
                        format!(
                            "{} was left by converge process {}, killed while it updated {name}",
                            lock.display(),
                            note.pid
                        ),
                    );
                }
            }
            Intent::Ref(_) => {}
            Intent::Index(index) => {
                let mut lock = index.clone().into_os_string();
                lock.push(".lock");
                let lock = PathBuf::from(lock);
                if lock.exists() {
                    if held_open(&lock) {
                        pending = true;
                    } else if made_right_after(&note.file, &lock) {
                        add(
                            &mut out,
                            Leftover::IndexLock { lock: lock.clone() },
                            format!(
                                "{} was left by converge process {}, killed while it updated that checkout's index",
                                lock.display(),
                                note.pid
                            ),
                        );
                    }
                }
            }
            Intent::Worktree(path) => {
                let basename = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let dir = Some(path.clone()).filter(|p| p.exists());
                let mut matched = false;
                for admin in &admins {
                    let ours = match &admin.dot_git {
                        Some(dot_git) => same_path(dot_git, &path.join(".git")),
                        None => admin
                            .dir
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with(&basename)),
                    };
                    let broken =
                        admin.initializing || admin.dot_git.as_ref().is_none_or(|g| !g.exists());
                    if ours && broken {
                        if dir.as_ref().is_some_and(|d| busy(d)) {
                            pending = true;
                            continue;
                        }
                        matched = true;
                        add(
                            &mut out,
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
                    && under_roots(&roots, d)
                    && !busy(d)
                {
                    add(
                        &mut out,
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
            }
        }
        if !pending {
            add(
                &mut out,
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

    // Registrations without their `gitdir` file (a removal killed half way
    // leaves the admin directory with a file or two): nothing can use them,
    // and `git worktree prune` removes exactly these. One that is locked
    // (git's own `initializing`, or a person's `git worktree lock`) stays.
    for admin in &admins {
        if admin.dot_git.is_none() && !admin.dir.join("locked").exists() {
            add(
                &mut out,
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

    // 2. Locks in converge's own namespaces; other ref locks once stale.
    let mut locks = Vec::new();
    lock_files(&common.join("refs"), &mut locks);
    let packed = common.join("packed-refs.lock");
    if packed.exists() {
        locks.push(packed);
    }
    for lock in locks {
        let Ok(relative) = lock.strip_prefix(&common) else {
            continue;
        };
        let name = relative.to_string_lossy();
        let ref_name = name.strip_suffix(".lock").unwrap_or(&name);
        if live_refs.contains(&ref_name) || held_open(&lock) {
            continue;
        }
        let why = if ref_name.starts_with("refs/converge/") {
            "converge's own ref"
        } else if ref_name.starts_with("refs/heads/converge/") {
            if task_alive(&common, relative) {
                continue;
            }
            "a task branch, and no process of the task is alive"
        } else if age(&lock).is_some_and(|a| a >= STALE_AFTER) {
            "older than a minute, and no process has it open"
        } else {
            continue;
        };
        let whose = if branches
            .iter()
            .any(|b| ref_name == format!("refs/heads/{b}"))
        {
            " (a branch converge writes)"
        } else {
            ""
        };
        add(
            &mut out,
            Leftover::RefLock { lock: lock.clone() },
            format!("{} is a stale lock{whose}: {why}", lock.display()),
        );
    }

    // 3. Converge's worktrees left half added or half removed.
    for admin in &admins {
        let Some(dot_git) = &admin.dot_git else {
            continue;
        };
        let Some(dir) = dot_git.parent() else {
            continue;
        };
        let broken = admin.initializing || !dot_git.exists();
        if !broken || !under_roots(&roots, dir) {
            continue;
        }
        let live = notes
            .iter()
            .any(|n| n.alive && matches!(&n.intent, Intent::Worktree(p) if same_path(p, dir)));
        if live {
            continue;
        }
        if dir.exists() && busy(dir) {
            continue;
        }
        add(
            &mut out,
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
    // Directories in converge's roots without a `.git` file that no
    // registration names.
    for root in &roots {
        let mut dirs = Vec::new();
        let merge_checks = root.ends_with("merge-checks");
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
            let named = admins
                .iter()
                .filter_map(|a| a.dot_git.as_ref())
                .any(|g| g.parent().is_some_and(|p| same_path(p, &dir)));
            if named || dir.join(".git").exists() || busy(&dir) {
                continue;
            }
            add(
                &mut out,
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
    // 4. Dispatches killed before their supervisor wrote the lease.
    for (key, attempt, dir) in runs::latest_attempts(&common).unwrap_or_default() {
        if dir.join("lease.json").exists() || dir.join("exit.json").exists() || run_named(&dir) {
            continue;
        }
        add(
            &mut out,
            Leftover::UnstartedRun { dir: dir.clone() },
            format!(
                "attempt {attempt} of {key} was never started: its dispatch was killed before the agent's supervisor ran ({})",
                dir.display()
            ),
        );
    }
    out
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

/// The base and status branches of the repository, when they can be read.
pub fn converge_branches(repo: &Repo) -> Vec<String> {
    let Ok(base) = crate::spec::base::base_source(repo) else {
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
/// silently.
pub fn recover(repo: &Repo) -> Result<Vec<String>, RecoverError> {
    let found = scan(repo, &converge_branches(repo));
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
