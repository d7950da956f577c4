//! The git layer against the git CLI as an oracle.

use converge::git::{GitError, Repo, TrialMerge};

use crate::support::Sandbox;

fn oid(text: &str) -> gix::ObjectId {
    gix::ObjectId::from_hex(text.trim().as_bytes()).expect("oid")
}

/// main with `base.txt`; `left` and `right` branch off it.
fn forked() -> Sandbox {
    let sb = Sandbox::repo();
    sb.write("base.txt", "one\ntwo\nthree\n");
    sb.write("shared.txt", "base\n");
    sb.commit_all("base");
    sb.git(&["branch", "left"]);
    sb.git(&["branch", "right"]);
    sb
}

fn on_branch(sb: &Sandbox, branch: &str, path: &str, content: &str) -> String {
    sb.git(&["switch", "-q", branch]);
    sb.write(path, content);
    let id = sb.commit_all(branch);
    sb.git(&["switch", "-q", "main"]);
    id
}

#[test]
fn trial_merges_match_git_merge_tree() {
    let sb = forked();
    let left = on_branch(&sb, "left", "base.txt", "ONE\ntwo\nthree\n");
    let right = on_branch(&sb, "right", "base.txt", "one\ntwo\nTHREE\n");
    let repo = Repo::discover(sb.path()).expect("repo");
    let ours = repo.trial_merge(oid(&left), oid(&right)).expect("merge");
    let oracle = sb.git(&["merge-tree", "--write-tree", &left, &right]);
    assert_eq!(ours, TrialMerge::Clean { tree: oid(&oracle) });

    let x = on_branch(&sb, "left", "shared.txt", "left\n");
    let y = on_branch(&sb, "right", "shared.txt", "right\n");
    let ours = repo.trial_merge(oid(&x), oid(&y)).expect("merge");
    assert_eq!(
        ours,
        TrialMerge::Conflicts {
            paths: vec!["shared.txt".into()]
        }
    );
    // git agrees that it conflicts, in that file.
    let mut command = std::process::Command::new("git");
    let out = command
        .args(["merge-tree", "--write-tree", "--name-only", &x, &y])
        .current_dir(sb.path())
        .output()
        .expect("git");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("shared.txt"));
}

#[test]
fn leftovers_are_committed_with_untracked_files_but_not_ignored_ones() {
    let sb = Sandbox::repo();
    sb.write(".gitignore", "target/\n");
    sb.write("keep.txt", "keep\n");
    sb.write("gone.txt", "gone\n");
    sb.commit_all("base");
    sb.write("keep.txt", "changed\n");
    sb.write("new/deep.txt", "new\n");
    sb.write("target/build.o", "ignored\n");
    std::fs::remove_file(sb.path().join("gone.txt")).expect("rm");
    let repo = Repo::discover(sb.path()).expect("repo");
    let commit = repo
        .commit_leftovers("leftovers", &converge::git::Signer::Person)
        .expect("commit")
        .expect("something to commit");
    let files = sb.git(&["show", "--name-status", "--format=", &commit.to_string()]);
    assert_eq!(files, "D\tgone.txt\nM\tkeep.txt\nA\tnew/deep.txt\n");
    // The index matches: only the ignored file is left outside git.
    assert_eq!(sb.git(&["status", "--porcelain"]), "");
    assert_eq!(
        repo.commit_leftovers("again", &converge::git::Signer::Person)
            .expect("commit"),
        None
    );
}

#[test]
fn advancing_a_checked_out_branch_updates_a_clean_checkout_and_refuses_a_dirty_one() {
    let sb = forked();
    let ahead = on_branch(&sb, "left", "base.txt", "ahead\n");
    let main = sb.git(&["rev-parse", "main"]);
    let repo = Repo::discover(sb.path()).expect("repo");
    sb.write("base.txt", "my edit\n");
    let refused = repo.advance_branch("main", oid(&main), oid(&ahead), "test");
    assert!(
        matches!(refused, Err(GitError::Dirty { .. })),
        "{refused:?}"
    );
    assert_eq!(sb.git(&["rev-parse", "main"]), main);
    assert_eq!(sb.read("base.txt"), "my edit\n");
    sb.git(&["checkout", "--", "base.txt"]);
    repo.advance_branch("main", oid(&main), oid(&ahead), "test")
        .expect("advance");
    assert_eq!(sb.read("base.txt"), "ahead\n");
    assert_eq!(sb.git(&["status", "--porcelain"]), "");
}

/// Two commits on `main`'s history that differ in every way a checkout can:
/// content, executable bit both ways, links (added, retargeted, replaced by a
/// file), a file that becomes a directory and a directory that becomes a
/// file, deletions that empty a directory, nested additions.
fn every_kind_of_change(sb: &Sandbox) -> (String, String) {
    use std::os::unix::fs::{PermissionsExt as _, symlink};
    let exec = |path: &str, on: bool| {
        let p = sb.path().join(path);
        let mode = if on { 0o755 } else { 0o644 };
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    sb.write("same.txt", "same\n");
    sb.write("content.txt", "old\n");
    sb.write("to-exec.sh", "#!/bin/sh\n");
    sb.write("from-exec.sh", "#!/bin/sh\n");
    exec("from-exec.sh", true);
    symlink("same.txt", sb.path().join("link")).expect("link");
    symlink("same.txt", sb.path().join("link-to-file")).expect("link");
    sb.write("becomes-dir", "a file\n");
    sb.write("becomes-file/inner.txt", "inner\n");
    sb.write("emptied/only.txt", "only\n");
    let old = sb.commit_all("old");
    sb.write("content.txt", "new\n");
    exec("to-exec.sh", true);
    exec("from-exec.sh", false);
    std::fs::remove_file(sb.path().join("link")).expect("rm");
    symlink("content.txt", sb.path().join("link")).expect("link");
    std::fs::remove_file(sb.path().join("link-to-file")).expect("rm");
    sb.write("link-to-file", "now a file\n");
    std::fs::remove_file(sb.path().join("becomes-dir")).expect("rm");
    sb.write("becomes-dir/x.txt", "x\n");
    std::fs::remove_dir_all(sb.path().join("becomes-file")).expect("rm");
    sb.write("becomes-file", "a file now\n");
    std::fs::remove_dir_all(sb.path().join("emptied")).expect("rm");
    sb.write("deep/er/new.txt", "new\n");
    symlink("../../same.txt", sb.path().join("deep/er/up")).expect("link");
    let new = sb.commit_all("new");
    (old.trim().to_owned(), new.trim().to_owned())
}

/// What a checkout holds: each file with its kind, mode and content.
fn checkout_state(dir: &std::path::Path) -> Vec<(String, String)> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("dir") {
            let entry = entry.expect("entry");
            let path = entry.path();
            let rel = path.strip_prefix(dir).expect("below").display().to_string();
            if rel == ".git" {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).expect("meta");
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).expect("target");
                out.push((rel, format!("link {}", target.display())));
            } else if meta.is_dir() {
                out.push((rel.clone(), "dir".into()));
                stack.push(path);
            } else {
                let content = std::fs::read_to_string(&path).expect("read");
                let exec = meta.permissions().mode() & 0o111 != 0;
                out.push((rel, format!("file exec={exec} {content}")));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn advancing_a_checked_out_branch_leaves_what_git_read_tree_leaves() {
    let sb = Sandbox::repo();
    let (old, new) = every_kind_of_change(&sb);
    // The oracle: a clone moved by git itself.
    let oracle = Sandbox::new();
    let clone = std::process::Command::new("git")
        .args(["clone", "-q", &sb.path().display().to_string(), "."])
        .current_dir(oracle.path())
        .output()
        .expect("clone");
    assert!(clone.status.success());
    oracle.git(&["reset", "-q", "--hard", &old]);
    oracle.git(&["read-tree", "-m", "-u", &old, &new]);
    oracle.git(&["update-ref", "refs/heads/main", &new]);
    assert_eq!(oracle.git(&["status", "--porcelain"]), "");

    sb.git(&["reset", "-q", "--hard", &old]);
    // The person has unrelated work in progress: it stays.
    sb.write("same.txt", "same, edited\n");
    sb.write("untracked.txt", "mine\n");
    let repo = Repo::discover(sb.path()).expect("repo");
    repo.advance_branch("main", oid(&old), oid(&new), "test")
        .expect("advance");
    assert_eq!(sb.git(&["rev-parse", "main"]).trim(), new);
    assert_eq!(
        sb.git(&["status", "--porcelain"]),
        " M same.txt\n?? untracked.txt\n"
    );
    sb.git(&["fsck", "--strict", "--no-progress"]);
    // Index entries (mode, blob, path) are exactly git's.
    assert_eq!(sb.git(&["ls-files", "-s"]), oracle.git(&["ls-files", "-s"]));
    // A commit now would write the new tree: no stale cached trees.
    sb.git(&["checkout", "--", "same.txt"]);
    assert_eq!(
        sb.git(&["write-tree"]).trim(),
        sb.git(&["rev-parse", &format!("{new}^{{tree}}")]).trim()
    );
    std::fs::remove_file(sb.path().join("untracked.txt")).expect("rm");
    assert_eq!(checkout_state(sb.path()), checkout_state(oracle.path()));
}

#[test]
fn a_path_converge_would_change_blocks_the_update_when_git_would_refuse_it() {
    type Setup = fn(&Sandbox);
    let cases: &[(&str, Setup, Option<&str>)] = &[
        (
            "modified",
            |sb| sb.write("content.txt", "mine\n"),
            Some("content.txt (modified in the worktree)"),
        ),
        (
            "staged",
            |sb| {
                sb.write("content.txt", "mine\n");
                sb.git(&["add", "content.txt"]);
                sb.write("content.txt", "old\n");
            },
            Some("content.txt (staged changes)"),
        ),
        (
            "untracked in the way",
            |sb| sb.write("deep/er/new.txt", "mine\n"),
            Some("deep/er/new.txt (untracked file in the way)"),
        ),
        (
            "mode changed",
            |sb| {
                use std::os::unix::fs::PermissionsExt as _;
                let p = sb.path().join("content.txt");
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700)).expect("chmod");
            },
            Some("content.txt (modified in the worktree)"),
        ),
        (
            "already the new content",
            |sb| sb.write("content.txt", "new\n"),
            None,
        ),
        (
            "unrelated edit",
            |sb| sb.write("same.txt", "edited\n"),
            None,
        ),
        (
            "file in a directory that goes",
            |sb| sb.write("emptied/mine.txt", "mine\n"),
            None,
        ),
        (
            "modified file that becomes a directory",
            |sb| sb.write("becomes-dir", "mine\n"),
            Some("becomes-dir (modified in the worktree)"),
        ),
    ];
    for (name, prepare, blocked) in cases {
        let sb = Sandbox::repo();
        let (old, new) = every_kind_of_change(&sb);
        sb.git(&["reset", "-q", "--hard", &old]);
        prepare(&sb);
        let before = checkout_state(sb.path());
        let repo = Repo::discover(sb.path()).expect("repo");
        let result = repo.advance_branch("main", oid(&old), oid(&new), "test");
        match blocked {
            Some(path) => {
                let Err(GitError::Dirty { paths, .. }) = &result else {
                    panic!("{name}: {result:?}");
                };
                assert!(
                    paths.iter().any(|p| p.starts_with(path)),
                    "{name}: {paths:?}"
                );
                assert_eq!(sb.git(&["rev-parse", "main"]).trim(), old, "{name}");
                assert_eq!(checkout_state(sb.path()), before, "{name}: files changed");
            }
            None => {
                result.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(sb.git(&["rev-parse", "main"]).trim(), new, "{name}");
                sb.git(&["fsck", "--strict", "--no-progress"]);
                // What the person had is still there.
                for (path, state) in &before {
                    if path == "same.txt" || path.starts_with("emptied/mine") {
                        let now = checkout_state(sb.path());
                        assert!(
                            now.contains(&(path.clone(), state.clone())),
                            "{name}: {path} lost"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn an_update_interrupted_after_the_branch_moved_is_finished_by_the_next_one() {
    let sb = Sandbox::repo();
    let (old, new) = every_kind_of_change(&sb);
    sb.git(&["reset", "-q", "--hard", &old]);
    // What a crash between moving the ref and updating the files leaves: the
    // journal, the moved branch, and one file already written.
    let journal = crate::support::checkout_journal(&sb, &old, &new);
    sb.git(&["update-ref", "refs/heads/main", &new, &old]);
    sb.write("content.txt", "new\n");
    let repo = Repo::discover(sb.path()).expect("repo");
    assert_eq!(repo.interrupted_checkouts().expect("journals").len(), 1);
    let recovered = repo.recover_checkouts().expect("recover");
    assert!(
        matches!(
            recovered.as_slice(),
            [converge::git::Recovered::Finished { .. }]
        ),
        "{recovered:?}"
    );
    assert_eq!(sb.git(&["status", "--porcelain"]), "");
    assert!(!journal.exists());
    assert!(repo.interrupted_checkouts().expect("journals").is_empty());
}

#[test]
fn a_sparse_checkout_stays_sparse_and_clean() {
    let sb = Sandbox::repo();
    sb.write("in/a.txt", "a\n");
    sb.write("out/b.txt", "b\n");
    let old = sb.commit_all("old");
    sb.write("in/a.txt", "a2\n");
    sb.write("out/b.txt", "b2\n");
    sb.write("out/c.txt", "c\n");
    let new = sb.commit_all("new");
    sb.git(&["reset", "-q", "--hard", old.trim()]);
    sb.git(&["sparse-checkout", "set", "--no-cone", "/in/"]);
    assert!(!sb.path().join("out").exists());
    let repo = Repo::discover(sb.path()).expect("repo");
    repo.advance_branch("main", oid(&old), oid(&new), "test")
        .expect("advance");
    assert_eq!(sb.read("in/a.txt"), "a2\n");
    assert!(
        !sb.path().join("out/b.txt").exists(),
        "wrote outside the sparse checkout"
    );
    assert_eq!(sb.git(&["status", "--porcelain"]), "");
    // Leaving the sparse checkout brings the new content.
    sb.git(&["sparse-checkout", "disable"]);
    assert_eq!(sb.read("out/b.txt"), "b2\n");
    assert_eq!(sb.git(&["status", "--porcelain"]), "");
}

#[test]
fn a_path_changed_after_a_crash_keeps_the_persons_version_and_no_staged_revert() {
    let sb = Sandbox::repo();
    let (old, new) = every_kind_of_change(&sb);
    sb.git(&["reset", "-q", "--hard", &old]);
    crate::support::checkout_journal(&sb, &old, &new);
    sb.git(&["update-ref", "refs/heads/main", &new, &old]);
    // The person saves content.txt (which the update changes) before the
    // next converge process runs.
    sb.write("content.txt", "the person's\n");
    let repo = Repo::discover(sb.path()).expect("repo");
    let recovered = repo.recover_checkouts().expect("recover");
    assert!(
        matches!(recovered.as_slice(), [converge::git::Recovered::Blocked { paths, .. }] if paths.iter().any(|p| p.starts_with("content.txt"))),
        "{recovered:?}"
    );
    assert_eq!(sb.read("content.txt"), "the person's\n");
    // Nothing staged: a plain `git commit` cannot undo converge's change.
    assert_eq!(sb.git(&["diff", "--cached", "--name-only"]), "");
    assert_eq!(sb.git(&["status", "--porcelain"]), " M content.txt\n");
    let notes = repo.left_alone();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0].1.paths, ["content.txt"]);
    assert!(repo.interrupted_checkouts().expect("journals").is_empty());
}

#[test]
fn a_name_near_the_file_system_limit_is_written() {
    let sb = Sandbox::repo();
    sb.write("a.txt", "a\n");
    let old = sb.commit_all("old");
    let long = format!("{}.txt", "n".repeat(250));
    sb.write(&long, "long\n");
    let new = sb.commit_all("new");
    sb.git(&["reset", "-q", "--hard", old.trim()]);
    let repo = Repo::discover(sb.path()).expect("repo");
    repo.advance_branch("main", oid(&old), oid(&new), "test")
        .expect("advance");
    assert_eq!(sb.read(&long), "long\n");
    assert_eq!(sb.git(&["status", "--porcelain"]), "");
}

#[test]
fn without_core_file_mode_an_executable_bit_on_disk_is_not_a_change() {
    use std::os::unix::fs::PermissionsExt as _;
    let sb = Sandbox::repo();
    sb.write("tool.sh", "old\n");
    let old = sb.commit_all("old");
    sb.write("tool.sh", "new\n");
    let new = sb.commit_all("new");
    sb.git(&["reset", "-q", "--hard", old.trim()]);
    sb.git(&["config", "core.fileMode", "false"]);
    std::fs::set_permissions(
        sb.path().join("tool.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    assert_eq!(sb.git(&["status", "--porcelain"]), "", "git sees no change");
    let repo = Repo::discover(sb.path()).expect("repo");
    repo.advance_branch("main", oid(&old), oid(&new), "test")
        .expect("advance");
    assert_eq!(sb.read("tool.sh"), "new\n");
    assert_eq!(sb.git(&["status", "--porcelain"]), "");
}

#[test]
fn a_branch_never_moves_while_another_git_holds_the_index() {
    let sb = Sandbox::repo();
    sb.write("a.txt", "old\n");
    let old = sb.commit_all("old");
    sb.write("a.txt", "new\n");
    let new = sb.commit_all("new");
    sb.git(&["reset", "-q", "--hard", old.trim()]);
    // A person's `git commit` waiting in its editor holds the index lock.
    let lock = sb.path().join(".git/index.lock");
    std::fs::write(&lock, b"").expect("lock");
    let repo = Repo::discover(sb.path()).expect("repo");
    let refused = repo.advance_branch("main", oid(&old), oid(&new), "test");
    let Err(GitError::Dirty { paths, .. }) = &refused else {
        panic!("{refused:?}");
    };
    assert!(paths[0].contains("index.lock"), "{paths:?}");
    assert_eq!(
        sb.git(&["rev-parse", "main"]).trim(),
        old.trim(),
        "main moved"
    );
    assert_eq!(sb.read("a.txt"), "old\n");
    assert!(lock.exists(), "converge removed someone else's lock");
    std::fs::remove_file(&lock).expect("rm");
    repo.advance_branch("main", oid(&old), oid(&new), "test")
        .expect("advance");
    assert_eq!(sb.git(&["status", "--porcelain"]), "");
}
