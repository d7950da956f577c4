//! The forge's state files under `<git-common-dir>/converge/forge/` (the
//! ETag cache, the cooldown, reviews read, the dashboard's and hands-off
//! notes): JSON, written atomically. All of them are caches or notes of what
//! was already said on GitHub: a file that cannot be read is taken as empty,
//! and one that cannot be written costs requests, never a tick.

use serde::Serialize;
use serde::de::DeserializeOwned;

pub(super) fn read_json<T: DeserializeOwned>(path: &std::path::Path) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub(super) fn write_json<T: Serialize>(path: &std::path::Path, value: &T) {
    let result = serde_json::to_vec(value)
        .map_err(std::io::Error::other)
        .and_then(|bytes| {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            crate::rundir::atomic::write_atomically(path, &bytes)
        });
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the forge's state");
    }
}
