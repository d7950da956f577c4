//! Status commits: compare-and-swap, updateInstead for a clean checkout,
//! deferral for a dirty one, nothing written when nothing changed.

use converge::git::Repo;
use converge::status::record::{Change, Message, Outcome, RecordError, record, trailers};

use crate::support::Sandbox;

fn message() -> Message {
    Message {
        action: "dispatch".into(),
        plan: Some("auth".into()),
        task: Some("define-types".into()),
        attempt: Some(1),
        spec: "0123456789abcdef0123456789abcdef01234567".into(),
        body: vec!["dispatch auth/define-types (attempt 1): ready".into()],
        summary: None,
    }
}

fn changes(text: &str) -> Vec<Change> {
    vec![
        Change {
            path: "planning/status/auth.toml".into(),
            content: Some(text.as_bytes().to_vec()),
        },
        Change {
            path: "planning/STATUS.md".into(),
            content: Some(b"# converge status\n".to_vec()),
        },
    ]
}

fn repo_with_history() -> (Sandbox, gix::ObjectId) {
    let sandbox = Sandbox::repo();
    sandbox.write("README.md", "hello\n");
    sandbox.write("planning/goal.md", "Goal.\n");
    let head = sandbox.commit_all("initial");
    (
        sandbox,
        gix::ObjectId::from_hex(head.as_bytes()).expect("sha"),
    )
}

#[test]
fn a_clean_checkout_moves_with_the_status_commit() {
    let (sandbox, head) = repo_with_history();
    let repo = Repo::discover(sandbox.path()).expect("repo");
    let outcome = record(
        &repo,
        "main",
        head,
        &changes("phase = 'running'\n"),
        &message(),
        &converge::git::Signer::Person,
    )
    .expect("records");
    let Outcome::Committed { commit, worktree } = outcome else {
        panic!("expected a commit, got {outcome:?}");
    };
    assert_eq!(
        sandbox.git(&["rev-parse", "main"]).trim(),
        commit.to_string()
    );
    assert!(worktree.is_some());
    assert_eq!(
        sandbox.git(&["status", "--porcelain"]),
        "",
        "the checkout must match the new commit"
    );
    assert_eq!(
        sandbox.read("planning/status/auth.toml"),
        "phase = 'running'\n"
    );
    let log = sandbox.git(&["log", "-1", "--format=%s%n%b%an"]);
    assert!(
        log.starts_with("converge: dispatch auth/define-types (attempt 1)\n"),
        "{log}"
    );
    assert!(
        log.contains(
            "Converge-Attempt: 1\nConverge-Spec: 0123456789abcdef0123456789abcdef01234567\n"
        ),
        "{log}"
    );
    assert!(log.ends_with("Test Committer\n"), "{log}");
    let found = sandbox.git(&["log", "--grep=Converge-Task: define-types", "--format=%H"]);
    assert_eq!(found.trim(), commit.to_string());
    let body = sandbox.git(&["log", "-1", "--format=%B"]);
    assert_eq!(
        trailers(&body),
        [
            ("Converge-Action".to_owned(), "dispatch".to_owned()),
            ("Converge-Plan".to_owned(), "auth".to_owned()),
            ("Converge-Task".to_owned(), "define-types".to_owned()),
            ("Converge-Attempt".to_owned(), "1".to_owned()),
            (
                "Converge-Spec".to_owned(),
                "0123456789abcdef0123456789abcdef01234567".to_owned()
            ),
        ]
    );
    // Only the given files changed.
    let changed = sandbox.git(&["diff", "--name-only", "HEAD~1", "HEAD"]);
    assert_eq!(changed, "planning/STATUS.md\nplanning/status/auth.toml\n");
}

#[test]
fn a_dirty_path_defers_and_nothing_moves_but_unrelated_edits_do_not() {
    let (sandbox, head) = repo_with_history();
    // The status file the commit writes is modified in the checkout.
    sandbox.write("planning/status/auth.toml", "# my notes\n");
    sandbox.write("README.md", "hello, uncommitted edit\n");
    let repo = Repo::discover(sandbox.path()).expect("repo");
    let error = record(
        &repo,
        "main",
        head,
        &changes("x = 1\n"),
        &message(),
        &converge::git::Signer::Person,
    )
    .expect_err("deferred");
    assert!(matches!(error, RecordError::Deferred { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("planning/status/auth.toml (untracked file in the way)"),
        "{error}"
    );
    assert_eq!(sandbox.git(&["rev-parse", "main"]).trim(), head.to_string());
    assert_eq!(sandbox.read("README.md"), "hello, uncommitted edit\n");
    assert_eq!(sandbox.read("planning/status/auth.toml"), "# my notes\n");
    // Out of the way, the commit goes through; the unrelated edit stays.
    std::fs::remove_file(sandbox.path().join("planning/status/auth.toml")).expect("rm");
    record(
        &repo,
        "main",
        head,
        &changes("x = 1\n"),
        &message(),
        &converge::git::Signer::Person,
    )
    .expect("recorded");
    assert_eq!(sandbox.read("README.md"), "hello, uncommitted edit\n");
    assert_eq!(sandbox.git(&["status", "--porcelain"]), " M README.md\n");
}

#[test]
fn a_moved_branch_is_a_conflict_not_an_overwrite() {
    let (sandbox, head) = repo_with_history();
    sandbox.git(&["switch", "-q", "-c", "elsewhere"]);
    sandbox.write("other.txt", "someone else's commit\n");
    sandbox.commit_all("concurrent");
    sandbox.git(&["switch", "-q", "main"]);
    sandbox.git(&["merge", "-q", "--ff-only", "elsewhere"]);
    let moved = sandbox.git(&["rev-parse", "main"]).trim().to_owned();
    let repo = Repo::discover(sandbox.path()).expect("repo");
    let error = record(
        &repo,
        "main",
        head,
        &changes("x = 1\n"),
        &message(),
        &converge::git::Signer::Person,
    )
    .expect_err("conflict");
    assert!(matches!(error, RecordError::Conflict { .. }), "{error}");
    assert_eq!(
        sandbox.git(&["rev-parse", "main"]).trim(),
        moved,
        "the other commit must survive"
    );
}

#[test]
fn nothing_changed_writes_nothing_and_other_branches_leave_the_checkout_alone() {
    let (sandbox, head) = repo_with_history();
    let repo = Repo::discover(sandbox.path()).expect("repo");
    let unchanged = vec![Change {
        path: "planning/goal.md".into(),
        content: Some(b"Goal.\n".to_vec()),
    }];
    assert_eq!(
        record(
            &repo,
            "main",
            head,
            &unchanged,
            &message(),
            &converge::git::Signer::Person
        )
        .expect("ok"),
        Outcome::Unchanged
    );
    assert_eq!(sandbox.git(&["rev-parse", "main"]).trim(), head.to_string());

    // A dedicated status branch that is not checked out: the checkout is untouched,
    // even when it is dirty.
    sandbox.git(&["branch", "converge-status"]);
    sandbox.write("README.md", "dirty, and it does not matter\n");
    let outcome = record(
        &repo,
        "converge-status",
        head,
        &changes("x = 1\n"),
        &message(),
        &converge::git::Signer::Person,
    )
    .expect("records");
    assert!(
        matches!(outcome, Outcome::Committed { worktree: None, .. }),
        "{outcome:?}"
    );
    assert!(!sandbox.path().join("planning/status/auth.toml").exists());
    assert_eq!(sandbox.git(&["rev-parse", "main"]).trim(), head.to_string());
}
