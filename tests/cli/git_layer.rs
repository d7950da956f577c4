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
        .commit_leftovers("leftovers")
        .expect("commit")
        .expect("something to commit");
    let files = sb.git(&["show", "--name-status", "--format=", &commit.to_string()]);
    assert_eq!(files, "D\tgone.txt\nM\tkeep.txt\nA\tnew/deep.txt\n");
    // The index matches: only the ignored file is left outside git.
    assert_eq!(sb.git(&["status", "--porcelain"]), "");
    assert_eq!(repo.commit_leftovers("again").expect("commit"), None);
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
