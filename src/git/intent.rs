//! A journal of what converge is about to lock: before it takes git's lock on
//! a ref or registers or removes a worktree, a converge process writes one
//! small file under `<git-common-dir>/converge/intents/` naming its process
//! (pid and start time) and what it locks, and removes the file when the write
//! is over. A process killed in between leaves its note behind, so recovery
//! ([`crate::runtime::recover`]) can tell a lock converge left from one a
//! person's git holds now: a note whose process is gone names a lock nobody
//! will release.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// What a process is about to lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// A ref, by its full name (`refs/heads/main`): its `.lock` file, and
    /// `packed-refs.lock` when a deletion rewrites packed refs.
    Ref(String),
    /// A linked worktree being registered or removed at this path: its
    /// administrative directory is `locked: initializing` while it is added.
    Worktree(PathBuf),
    /// A checkout's index file (`.git/index`, `.git/worktrees/<w>/index`):
    /// its `index.lock` while converge restages paths it moved.
    Index(PathBuf),
}

/// A note in the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphaned {
    /// The note itself.
    pub file: PathBuf,
    pub pid: u32,
    pub intent: Intent,
    /// Whether the process that wrote it is still alive (then its lock is
    /// its own to release).
    pub alive: bool,
}

/// Where the notes live.
pub fn intents_dir(common_dir: &Path) -> PathBuf {
    crate::rundir::Layout::new(common_dir).intents()
}

/// Removes its note when the write is over (also when it failed).
#[derive(Debug)]
pub struct Noted(Option<PathBuf>);

impl Drop for Noted {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

fn own_start_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS
        .get_or_init(|| crate::rundir::procs::process_start_ticks(std::process::id()).unwrap_or(0))
}

/// Notes `intent` before the lock is taken. Best effort: a note that cannot be
/// written only means recovery falls back on its slower rules (see
/// docs/reconcile.md), never that the write is refused.
pub fn note(common_dir: &Path, intent: &Intent) -> Noted {
    let dir = intents_dir(common_dir);
    let name = format!(
        "{}-{}-{}",
        std::process::id(),
        own_start_ticks(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    );
    let text = match intent {
        Intent::Ref(name) => format!("ref {name}\n"),
        Intent::Worktree(path) => format!("worktree {}\n", path.display()),
        Intent::Index(path) => format!("index {}\n", path.display()),
    };
    let path = dir.join(name);
    let written = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, text));
    Noted(written.is_ok().then_some(path))
}

/// Notes whose process is gone (or that cannot be read: a process killed
/// while it wrote one).
pub fn orphaned(common_dir: &Path) -> Vec<Orphaned> {
    let mut all = notes(common_dir);
    all.retain(|n| !n.alive);
    all
}

/// Every note, with whether its process is alive.
pub fn notes(common_dir: &Path) -> Vec<Orphaned> {
    let Ok(entries) = std::fs::read_dir(intents_dir(common_dir)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let file = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let mut parts = name.splitn(3, '-');
        let (Some(pid), Some(ticks)) = (
            parts.next().and_then(|p| p.parse::<u32>().ok()),
            parts.next().and_then(|t| t.parse::<u64>().ok()),
        ) else {
            continue;
        };
        let ticks = (ticks != 0).then_some(ticks);
        let alive = crate::rundir::procs::noted_process_alive(pid, ticks);
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let intent = match text.trim_end_matches('\n').split_once(' ') {
            Some(("ref", name)) => Intent::Ref(name.to_owned()),
            Some(("worktree", path)) => Intent::Worktree(PathBuf::from(path)),
            Some(("index", path)) => Intent::Index(PathBuf::from(path)),
            // Killed while writing the note: nothing was locked yet.
            _ => Intent::Ref(String::new()),
        };
        out.push(Orphaned {
            file,
            pid,
            intent,
            alive,
        });
    }
    out.sort_by(|a, b| a.file.cmp(&b.file));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_lasts_as_long_as_the_write_and_only_a_dead_process_orphans_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let noted = note(dir.path(), &Intent::Ref("refs/heads/main".into()));
        assert_eq!(
            std::fs::read_dir(intents_dir(dir.path()))
                .expect("dir")
                .count(),
            1
        );
        // This process is alive: its note is not orphaned.
        assert_eq!(orphaned(dir.path()), Vec::new());
        drop(noted);
        assert_eq!(
            std::fs::read_dir(intents_dir(dir.path()))
                .expect("dir")
                .count(),
            0
        );
        // A note of a process that is gone (pid 0 is never a process).
        let file = intents_dir(dir.path()).join("0-5-1");
        std::fs::write(&file, "worktree /x/y\n").expect("write");
        assert_eq!(
            orphaned(dir.path()),
            vec![Orphaned {
                file,
                pid: 0,
                intent: Intent::Worktree(PathBuf::from("/x/y")),
                alive: false,
            }]
        );
    }
}
