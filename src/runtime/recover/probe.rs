//! What recovery looks at: processes (`/proc`), file times, lock files and
//! worktree registrations. Read-only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::observe::runs;

/// `path` with its deepest existing ancestor resolved, the rest appended.
fn canonical(path: &Path) -> PathBuf {
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

pub(super) fn under_roots(roots: &[PathBuf], path: &Path) -> bool {
    let path = canonical(path);
    roots.iter().any(|root| path.starts_with(canonical(root)))
}

/// Whether a live process has `path` open.
pub(super) fn held_open(path: &Path) -> bool {
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
pub(super) fn busy(dir: &Path) -> bool {
    let dir = canonical(dir);
    processes()
        .any(|proc| std::fs::read_link(proc.join("cwd")).is_ok_and(|cwd| cwd.starts_with(&dir)))
}

/// Whether a live process names `dir` on its command line (a supervisor,
/// `converge __supervise <run-dir>`) or in its environment (its agent).
pub(super) fn run_named(dir: &Path) -> bool {
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
/// `roots` are converge's worktree roots, where the task's worktree may be.
pub(super) fn task_alive(common: &Path, roots: &[PathBuf], relative: &Path) -> bool {
    let parts: Vec<&str> = relative.iter().filter_map(|p| p.to_str()).collect();
    let [_, _, _, plan, task] = parts.as_slice() else {
        return true;
    };
    let Some(task) = task.strip_suffix(".lock") else {
        return true;
    };
    let key = crate::model::TaskKey::new(*plan, task);
    if roots
        .iter()
        .any(|root| busy(&crate::rundir::layout::worktree(root, &key)))
    {
        return true;
    }
    let dir = crate::rundir::Layout::new(common).task_runs(&key);
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
pub(super) fn made_right_after(note: &Path, lock: &Path) -> bool {
    let modified = |p: &Path| std::fs::symlink_metadata(p).ok()?.modified().ok();
    let (Some(noted), Some(locked)) = (modified(note), modified(lock)) else {
        return false;
    };
    let slack = Duration::from_millis(50);
    locked + slack >= noted && locked <= noted + NOTE_TO_LOCK
}

pub(super) fn age(path: &Path) -> Option<Duration> {
    std::fs::symlink_metadata(path)
        .ok()?
        .modified()
        .ok()?
        .elapsed()
        .ok()
}

/// Every `*.lock` file below `dir`.
pub(super) fn lock_files(dir: &Path, out: &mut Vec<PathBuf>) {
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
pub(super) struct Admin {
    pub dir: PathBuf,
    /// The checkout's `.git` file it points to, if `gitdir` could be read.
    pub dot_git: Option<PathBuf>,
    pub initializing: bool,
}

pub(super) fn admins(common: &Path) -> Vec<Admin> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_is_alive_while_a_process_works_in_its_worktree_under_any_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let common = dir.path().join("repo/.git");
        let root = dir.path().join("trees");
        let worktree = root.join("p").join("t");
        std::fs::create_dir_all(&worktree).expect("worktree");
        std::fs::create_dir_all(&common).expect("common");
        let lock = Path::new("refs/heads/converge/p/t.lock");
        assert!(!task_alive(&common, std::slice::from_ref(&root), lock));
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .current_dir(&worktree)
            .spawn()
            .expect("sleep");
        // Its working directory shows in /proc once it runs.
        let alive = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            task_alive(&common, std::slice::from_ref(&root), lock)
        });
        let _ = child.kill();
        let _ = child.wait();
        assert!(alive, "a process in the task's worktree keeps its lock");
        // The common directory is not a worktree root.
        assert!(!task_alive(&common, &[], lock));
    }
}
