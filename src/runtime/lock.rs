//! The reconciler lock: an exclusive `flock` on `<git-common-dir>/converge/lock`,
//! so that two local reconcilers never act at once. The kernel releases it when
//! the process dies, so a crash never leaves a stale lock behind.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{FlockOperation, flock};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another converge reconciler is running in this repository (it holds {})", path.display())]
    Busy { path: PathBuf },
    #[error("cannot open the lock file {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Held while a tick runs; released on drop.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

pub fn lock_path(common_dir: &Path) -> PathBuf {
    crate::rundir::Layout::new(common_dir).lock()
}

impl Lock {
    /// Takes the lock, waiting up to `wait` for another reconciler to finish.
    pub fn acquire(common_dir: &Path, wait: Duration) -> Result<Lock, LockError> {
        let path = lock_path(common_dir);
        let open_err = |source| LockError::Open {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(open_err)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(open_err)?;
        let until = Instant::now() + wait;
        loop {
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(Lock { _file: file }),
                Err(_) if Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(_) => return Err(LockError::Busy { path }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_releases() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = Lock::acquire(dir.path(), Duration::ZERO).expect("first");
        let second = Lock::acquire(dir.path(), Duration::from_millis(120));
        assert!(matches!(second, Err(LockError::Busy { .. })));
        drop(first);
        Lock::acquire(dir.path(), Duration::ZERO).expect("free again");
    }
}
