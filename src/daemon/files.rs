//! The file events that trigger a tick: the checkout's `planning/`, the refs
//! (`refs/heads/`, `packed-refs`, `HEAD` in the git common directory) and the
//! runs' exit records (`converge/runs/**/exit.json`). Never all of `.git/`:
//! objects, the index and converge's own lock and logs change on every tick.
//!
//! notify's handler runs on a thread of its own; what passes the filter is
//! sent into the daemon's channel at once. Grouping a burst (a commit writes
//! several files) into one tick is the trigger state machine's job
//! (`triggers.rs`, a short settle time): no timer runs while nothing happens,
//! so an idle daemon sleeps on inotify alone.

use std::path::{Path, PathBuf};

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Planning,
    Refs,
    RunExit,
}

/// The watched places, as absolute paths.
#[derive(Debug, Clone)]
pub struct Roots {
    /// The checkout's planning/ (none for a bare repository).
    pub planning: Option<PathBuf>,
    /// The git common directory (only `packed-refs` and `HEAD` in it count).
    pub common: PathBuf,
    pub heads: PathBuf,
    pub runs: PathBuf,
}

impl Roots {
    pub fn new(workdir: Option<&Path>, common_dir: &Path) -> std::io::Result<Roots> {
        let common = std::fs::canonicalize(common_dir)?;
        let runs = crate::rundir::Layout::new(&common).runs();
        // The runs directory is converge's; it may not exist before the first
        // dispatch, and a watch needs it.
        std::fs::create_dir_all(&runs)?;
        let planning = match workdir {
            Some(dir) => Some(std::fs::canonicalize(dir)?.join("planning")),
            None => None,
        };
        Ok(Roots {
            planning,
            heads: common.join("refs").join("heads"),
            runs,
            common,
        })
    }

    /// Which trigger an event on `path` is, if any.
    pub fn classify(&self, path: &Path) -> Option<Source> {
        if self
            .planning
            .as_deref()
            .is_some_and(|p| path.starts_with(p))
        {
            return Some(Source::Planning);
        }
        if path.starts_with(&self.runs) {
            let exit = crate::rundir::layout::exit(Path::new(""));
            return (path.file_name() == exit.file_name()).then_some(Source::RunExit);
        }
        let lock = path.extension().is_some_and(|e| e == "lock");
        if path.starts_with(&self.heads) && !lock {
            return Some(Source::Refs);
        }
        if path.parent() == Some(self.common.as_path())
            && path
                .file_name()
                .is_some_and(|n| n == "packed-refs" || n == "HEAD")
        {
            return Some(Source::Refs);
        }
        None
    }
}

/// The running watch; dropping it stops it.
pub type Watch = RecommendedWatcher;

/// Starts watching; `send` gets the source of each event that is a trigger,
/// as it happens.
pub fn watch(
    roots: &Roots,
    send: impl Fn(Source) + Send + 'static,
) -> Result<Watch, notify::Error> {
    let filter = roots.clone();
    let mut watcher = notify::recommended_watcher(move |result: notify::Result<notify::Event>| {
        match result {
            Ok(event) => {
                // The kernel's queue overflowed: events were lost, so tick
                // to be safe (notify reports it as `Other` with no path).
                if event.need_rescan() {
                    tracing::warn!("file events were lost (the inotify queue overflowed): ticking");
                    send(Source::Refs);
                    return;
                }
                // Reading a file (the tick reads HEAD and the refs) is not a
                // change.
                if matches!(event.kind, EventKind::Access(_) | EventKind::Other) {
                    return;
                }
                tracing::trace!(kind = ?event.kind, paths = ?event.paths, "file event");
                let mut seen: Vec<Source> = Vec::new();
                for path in &event.paths {
                    if let Some(source) = filter.classify(path)
                        && !seen.contains(&source)
                    {
                        seen.push(source);
                        send(source);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "file watch error");
                // A lost event is a missed trigger: tick to be safe.
                send(Source::Refs);
            }
        }
    })?;
    if let Some(planning) = &roots.planning {
        if planning.is_dir() {
            watcher.watch(planning, RecursiveMode::Recursive)?;
        } else {
            tracing::debug!(path = %planning.display(), "no planning/ in the checkout to watch");
        }
    }
    watcher.watch(&roots.heads, RecursiveMode::Recursive)?;
    watcher.watch(&roots.common, RecursiveMode::NonRecursive)?;
    watcher.watch(&roots.runs, RecursiveMode::Recursive)?;
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots() -> Roots {
        Roots {
            planning: Some(PathBuf::from("/w/planning")),
            common: PathBuf::from("/w/.git"),
            heads: PathBuf::from("/w/.git/refs/heads"),
            runs: PathBuf::from("/w/.git/converge/runs"),
        }
    }

    #[test]
    fn only_planning_refs_and_exit_records_trigger() {
        let r = roots();
        let cases = [
            ("/w/planning/plans/a.toml", Some(Source::Planning)),
            ("/w/planning", Some(Source::Planning)),
            ("/w/.git/refs/heads/main", Some(Source::Refs)),
            ("/w/.git/refs/heads/converge/a/b", Some(Source::Refs)),
            ("/w/.git/refs/heads/main.lock", None),
            ("/w/.git/packed-refs", Some(Source::Refs)),
            ("/w/.git/HEAD", Some(Source::Refs)),
            ("/w/.git/index", None),
            ("/w/.git/objects/ab/cdef", None),
            ("/w/.git/converge/lock", None),
            (
                "/w/.git/converge/runs/p/t/1/exit.json",
                Some(Source::RunExit),
            ),
            ("/w/.git/converge/runs/p/t/1/output.log", None),
            ("/w/.git/converge/runs/p/t/1/events.jsonl", None),
            ("/w/src/main.rs", None),
            ("/w/.git/refs/tags/v1", None),
        ];
        for (path, want) in cases {
            assert_eq!(r.classify(Path::new(path)), want, "{path}");
        }
    }
}
