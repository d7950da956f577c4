//! Dispatch on a real repository: branch at the base tip, a linked worktree,
//! the agent running there with its token; idempotent re-runs; retries that keep
//! the earlier attempt's commits.

use std::path::Path;
use std::time::{Duration, Instant};

use converge::act::dispatch::{Attempt, dispatch};
use converge::agent::Secret;
use converge::git::Repo;
use converge::harness::Launch;
use converge::observe::TaskKey;
use converge::rundir::{Layout, layout};
use converge::time::Timestamp;

use crate::support::{BIN, Sandbox};

fn attempt<'a>(repo: &Repo, key: &'a TaskKey, number: u32, fork: &str) -> Attempt<'a> {
    Attempt {
        key,
        attempt: number,
        fork: gix::ObjectId::from_hex(fork.as_bytes()).expect("sha"),
        launch: Launch {
            program: "sh".into(),
            args: vec![
                "-c".into(),
                "echo \"attempt $CONVERGE_TASK\" >> agent-was-here.txt; printf %s \"$CONVERGE_AGENT_TOKEN\" > token.txt".into(),
            ],
        },
        env: vec![("PATH".into(), std::env::var("PATH").unwrap_or_default())],
        prompt: "Do the thing.\n".into(),
        deadline: Timestamp::from_unix(Timestamp::now().unix() + 120),
        generation: "g".into(),
        harness: "mine".into(),
        brief: b"{}".to_vec(),
        sandbox: None,
        signer: converge::git::Signer::Person,
        worktree_root: Layout::new(repo.common_dir()).default_worktree_root(),
    }
}

fn wait_for(path: &Path) {
    let started = Instant::now();
    while !path.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn dispatch_starts_an_agent_in_a_fresh_worktree_and_is_idempotent() {
    let sandbox = Sandbox::repo();
    sandbox.write("README.md", "hello\n");
    let fork = sandbox.commit_all("initial");
    let repo = Repo::discover(sandbox.path()).expect("repo");
    let secret = Secret::from_bytes(b"dispatch test secret, long enough".to_vec());
    let key = TaskKey::new("p", "a");

    let started = dispatch(
        &repo,
        &secret,
        &attempt(&repo, &key, 1, &fork),
        Path::new(BIN),
    )
    .expect("dispatches");
    assert!(!started.adopted);
    assert_eq!(
        started.worktree,
        layout::worktree(
            &Layout::new(repo.common_dir()).default_worktree_root(),
            &key
        )
    );
    assert_eq!(sandbox.git(&["rev-parse", "converge/p/a"]).trim(), fork);
    // The worktree is a repository of its own on the task branch, not a
    // linked worktree of the main repository.
    let worktrees = sandbox.git(&["worktree", "list", "--porcelain"]);
    assert!(!worktrees.contains("converge/p/a"), "{worktrees}");
    let wt = started.worktree.to_string_lossy().into_owned();
    assert_eq!(
        sandbox
            .git(&["-C", &wt, "rev-parse", "--abbrev-ref", "HEAD"])
            .trim(),
        "converge/p/a"
    );
    assert_eq!(
        sandbox
            .git(&["-C", &wt, "rev-parse", "--git-common-dir"])
            .trim(),
        ".git"
    );
    assert_eq!(
        std::fs::read_to_string(started.run_dir.join("prompt.md")).expect("prompt"),
        "Do the thing.\n"
    );

    wait_for(&started.run_dir.join("exit.json"));
    let token = std::fs::read_to_string(started.worktree.join("token.txt"))
        .expect("the agent ran in the worktree");
    assert_eq!(secret.verify(&token, "p", "a", 1), Ok(()));
    assert!(
        !sandbox.path().join("agent-was-here.txt").exists(),
        "the agent wrote outside its worktree"
    );

    // Running dispatch again for the same attempt adopts it: no second agent.
    let again = dispatch(
        &repo,
        &secret,
        &attempt(&repo, &key, 1, &fork),
        Path::new(BIN),
    )
    .expect("adopts");
    assert!(again.adopted);
    std::thread::sleep(Duration::from_millis(300));
    let marks =
        std::fs::read_to_string(started.worktree.join("agent-was-here.txt")).expect("marks");
    assert_eq!(marks.lines().count(), 1, "the agent ran twice:\n{marks}");
}

#[test]
fn a_retry_keeps_the_earlier_attempt_and_starts_from_the_new_base() {
    let sandbox = Sandbox::repo();
    sandbox.write("README.md", "hello\n");
    let fork = sandbox.commit_all("initial");
    let repo = Repo::discover(sandbox.path()).expect("repo");
    let secret = Secret::from_bytes(b"dispatch test secret, long enough".to_vec());
    let key = TaskKey::new("p", "a");
    let first = dispatch(
        &repo,
        &secret,
        &attempt(&repo, &key, 1, &fork),
        Path::new(BIN),
    )
    .expect("dispatches");
    wait_for(&first.run_dir.join("exit.json"));
    // Attempt 1's work, committed in its worktree.
    let wt = first.worktree.to_str().expect("utf-8").to_owned();
    sandbox.git(&["-C", &wt, "add", "agent-was-here.txt"]);
    sandbox.git(&["-C", &wt, "commit", "-q", "-m", "attempt 1's work"]);
    let attempt_one = sandbox
        .git(&["rev-parse", "converge/p/a"])
        .trim()
        .to_owned();
    // The base moves on.
    sandbox.write("NEWS.md", "news\n");
    let new_base = sandbox.commit_all("base moves");

    let second = dispatch(
        &repo,
        &secret,
        &attempt(&repo, &key, 2, &new_base),
        Path::new(BIN),
    )
    .expect("retries");
    assert!(!second.adopted);
    // Attempt 1's commits are kept, with what it left uncommitted on top.
    let kept = sandbox
        .git(&["rev-parse", "refs/converge/attempts/p/a/1"])
        .trim()
        .to_owned();
    sandbox.git(&["merge-base", "--is-ancestor", &attempt_one, &kept]);
    assert_eq!(
        sandbox.git(&["log", "-1", "--format=%s", &kept]).trim(),
        "converge: leftovers of p/a before attempt 2",
        "attempt 1's uncommitted work was lost"
    );
    assert_eq!(sandbox.git(&["rev-parse", "converge/p/a"]).trim(), new_base);
    wait_for(&second.run_dir.join("exit.json"));
    assert!(
        second.worktree.join("NEWS.md").exists(),
        "the retry must start from the current base"
    );
    let marks = std::fs::read_to_string(second.worktree.join("agent-was-here.txt")).expect("marks");
    assert_eq!(
        marks.lines().count(),
        1,
        "attempt 1's uncommitted state leaked into attempt 2:\n{marks}"
    );
    let token = std::fs::read_to_string(second.worktree.join("token.txt")).expect("token");
    assert_eq!(secret.verify(&token, "p", "a", 2), Ok(()));
}

#[test]
fn a_crash_between_moving_the_branch_and_the_worktree_never_reuses_the_old_checkout() {
    // Found by crash injection: the retry moved the branch, crashed before
    // replacing the worktree, and the next dispatch adopted the stale checkout;
    // the agent then committed the difference (status files included) as work.
    let sandbox = Sandbox::repo();
    sandbox.write("README.md", "hello\n");
    let fork = sandbox.commit_all("initial");
    let repo = Repo::discover(sandbox.path()).expect("repo");
    let secret = Secret::from_bytes(b"dispatch test secret, long enough".to_vec());
    let key = TaskKey::new("p", "a");
    let first = dispatch(
        &repo,
        &secret,
        &attempt(&repo, &key, 1, &fork),
        Path::new(BIN),
    )
    .expect("dispatches");
    wait_for(&first.run_dir.join("exit.json"));
    sandbox.write("planning/status/p.toml", "# status\n");
    let new_base = sandbox.commit_all("base moves");
    // The retry's branch move happened; its worktree replacement did not.
    sandbox.git(&["update-ref", "refs/heads/converge/p/a", &new_base]);
    let second = dispatch(
        &repo,
        &secret,
        &attempt(&repo, &key, 2, &new_base),
        Path::new(BIN),
    )
    .expect("retries");
    wait_for(&second.run_dir.join("exit.json"));
    let wt = second.worktree.to_str().expect("utf-8").to_owned();
    assert_eq!(
        sandbox.git(&["-C", &wt, "rev-parse", "HEAD"]).trim(),
        new_base,
        "the checkout is the new base"
    );
    let status = sandbox.git(&["-C", &wt, "status", "--porcelain"]);
    assert!(
        !status.contains("planning/"),
        "the old checkout leaked into the new attempt:\n{status}"
    );
    let marks = std::fs::read_to_string(second.worktree.join("agent-was-here.txt")).expect("marks");
    assert_eq!(marks.lines().count(), 1, "{marks}");
}
