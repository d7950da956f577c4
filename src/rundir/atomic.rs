//! Writing files so that readers never see a half-written one.

use std::path::Path;

/// Writes `bytes` to `path` through a temporary file in the same directory and
/// a rename. Creates the parent directory, keeps the permissions of a file it
/// replaces, and removes the temporary file if the rename fails.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let temp = super::layout::atomic_temp(path, std::process::id());
    std::fs::write(&temp, bytes)?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(&temp, meta.permissions());
    }
    std::fs::rename(&temp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn creates_parents_replaces_content_and_keeps_permissions() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("a/b/file.txt");
        write_atomically(&path, b"one").expect("writes");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        write_atomically(&path, b"two").expect("replaces");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        assert_eq!(
            std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
            0o600
        );
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().expect("parent"))
            .expect("list")
            .collect();
        assert_eq!(leftovers.len(), 1, "a temporary file was left behind");
    }

    #[test]
    fn a_failed_rename_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("dir");
        // A directory in the way: the rename onto it fails.
        let path = dir.path().join("taken");
        std::fs::create_dir_all(path.join("inside")).expect("mkdir");
        write_atomically(&path, b"x").expect_err("a directory is in the way");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["taken"]);
    }
}
