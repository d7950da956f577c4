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

/// A plan of three sim tasks (a, then b and c) that `init`'s configuration
/// checks with an invariant that passes.
fn init_and_plan(sandbox: &Sandbox, status_on_main: bool) -> String {
    sandbox.write("README.md", "hello\n");
    sandbox.commit_all("initial");
    sandbox.converge(&["init", "--commit"]).success();
    let config = sandbox
        .read("planning/converge.toml")
        .replace(
            "default_harness = \"claude-code\"",
            "default_harness = \"sim\"",
        )
        .replace("command = \"make\"", "command = \"true\"");
    let config = if status_on_main {
        config.replace(
            "status_branch = \"converge-status\"",
            "status_branch = \"main\"",
        )
    } else {
        config
    };
    sandbox.write("planning/converge.toml", config);
    let task = |name: &str, deps: &str| {
        format!(
            "\n[[tasks]]\nname = \"{name}\"\ndescription = \"Write {name}.\"\nscope = \"narrow\"\ngate = \"auto\"\ndepends_on = [{deps}]\n[tasks.sim]\nfiles = [{{ path = \"{name}.txt\", content = \"{name}\\n\" }}]\n"
        )
    };
    sandbox.write(
        "planning/plans/three.toml",
        format!(
            "[plan]\nname = \"Three\"\n{}{}{}",
            task("a", ""),
            task("b", "\"a\""),
            task("c", "\"a\"")
        ),
    );
    let _ = std::fs::remove_file(sandbox.path().join("planning/plans/example.toml"));
    sandbox.commit_all("a plan of three");
    sandbox.git(&["rev-parse", "HEAD"]).trim().to_owned()
}

#[test]
fn under_inits_configuration_main_gets_at_most_two_commits_per_task() {
    let sandbox = Sandbox::repo();
    let start = init_and_plan(&sandbox, false);
    sandbox
        .converge(&["reconcile", "--wait", "--max-ticks", "200"])
        .success();
    let first_parent = sandbox.git(&[
        "log",
        "--first-parent",
        "--format=%s",
        &format!("{start}..main"),
    ]);
    let subjects: Vec<&str> = first_parent.lines().collect();
    assert_eq!(
        subjects
            .iter()
            .filter(|s| s.starts_with("converge: merge three/"))
            .count(),
        3,
        "{first_parent}"
    );
    assert!(subjects.len() <= 2 * 3, "{first_parent}");
    // Status went to its own branch, where the dashboard reads it.
    let md = sandbox.git(&["show", "converge-status:planning/STATUS.md"]);
    assert!(md.contains("3 merged"), "{md}");
    let status = sandbox.converge(&["status"]);
    status.success();
    assert!(status.stdout.contains("merged"), "{}", status.transcript());
    // `history` reads both branches: the status commits and the merges.
    let history = sandbox.converge(&["history", "three"]);
    history.success();
    for subject in [
        "converge: dispatch three/a (attempt 1)",
        "converge: merge three/a (attempt 1)",
        "converge: merged three/a",
    ] {
        assert!(
            history.stdout.contains(subject),
            "{subject}\n{}",
            history.transcript()
        );
    }
}

#[test]
fn with_status_on_main_a_merge_is_told_from_a_status_commit_by_its_subject() {
    let sandbox = Sandbox::repo();
    let start = init_and_plan(&sandbox, true);
    sandbox
        .converge(&["reconcile", "--wait", "--max-ticks", "200"])
        .success();
    let log = sandbox.git(&[
        "log",
        "--first-parent",
        "--format=%s|%p",
        &format!("{start}..main"),
    ]);
    let mut merges = 0;
    for line in log.lines() {
        let (subject, parents) = line.split_once('|').expect("subject|parents");
        let is_merge = parents.split_whitespace().count() == 2;
        // The subject alone says which it is.
        let says_merge = subject.starts_with("converge: merge ");
        assert_eq!(is_merge, says_merge, "{log}");
        merges += usize::from(is_merge);
    }
    assert_eq!(merges, 3, "{log}");
    assert!(log.contains("converge: merged three/a|"), "{log}");
}
