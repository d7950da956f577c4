//! `observe` on a real repository: branches, ancestry, worktrees, run records,
//! promoted queue items.

use converge::agent::Secret;
use converge::git::Repo;
use converge::observe::runs::{Lease, process_start_ticks};
use converge::observe::{RunState, TaskKey, observe};
use converge::rundir::Layout;
use converge::status::{PlanStatus, Status, TaskStatus};
use converge::time::Timestamp;

use crate::support::Sandbox;

fn lease(fork: &str, pid: u32) -> String {
    serde_json::to_string(&Lease {
        pid,
        start_ticks: process_start_ticks(pid),
        started_at: Timestamp::from_unix(1_000),
        deadline: Timestamp::from_unix(4_000_000_000),
        fork: fork.parse().ok(),
        generation: "g".into(),
        harness: "sim".into(),
        agent_pid: None,
    })
    .expect("json")
}

/// The message of converge's merge commit of `p/<task>` (act/merge.rs).
fn merge_message(task: &str) -> String {
    format!(
        "converge: merge p/{task} (attempt 1)\n\nDo {task}.\n\nConverge-Action: merge\nConverge-Plan: p\nConverge-Task: {task}\nConverge-Attempt: 1\n"
    )
}

#[test]
fn observe_reads_branches_ancestry_worktrees_runs_and_the_queue() {
    let sandbox = Sandbox::repo();
    sandbox.write("README.md", "start\n");
    sandbox.write(
        "planning/queue/done/fix-typo.md",
        "---\nscope: narrow\ngate: auto\nallow_unchecked: true\n---\nFix.\n",
    );
    let fork = sandbox.commit_all("initial");

    // z: merged earlier (converge's merge commit) and cleaned up; only
    // status remembers its merge.
    sandbox.git(&["switch", "-q", "-c", "converge/p/z"]);
    sandbox.write("z.txt", "z\n");
    sandbox.commit_all("z's work");
    sandbox.git(&["switch", "-q", "main"]);
    sandbox.git(&[
        "merge",
        "-q",
        "--no-ff",
        "-m",
        &merge_message("z"),
        "converge/p/z",
    ]);
    sandbox.git(&["branch", "-q", "-D", "converge/p/z"]);
    let z_merge = sandbox.git(&["rev-parse", "main"]).trim().to_owned();
    // a: work merged into main by converge (its merge commit).
    sandbox.git(&["switch", "-q", "-c", "converge/p/a"]);
    sandbox.write("a.txt", "a\n");
    sandbox.commit_all("a's work");
    sandbox.git(&["switch", "-q", "main"]);
    sandbox.git(&[
        "merge",
        "-q",
        "--no-ff",
        "-m",
        &merge_message("a"),
        "converge/p/a",
    ]);
    // b: dispatched, no work yet: at its fork, an ancestor of main, not merged.
    sandbox.git(&["branch", "converge/p/b", &fork]);
    // c: work not merged, checked out in a linked worktree.
    sandbox.git(&["branch", "converge/p/c", "main"]);
    let worktree = sandbox.path().join(".worktrees-c");
    sandbox.git(&[
        "worktree",
        "add",
        "-q",
        worktree.to_str().expect("utf-8"),
        "converge/p/c",
    ]);
    std::fs::write(worktree.join("c.txt"), "c\n").expect("write");
    sandbox.git(&["-C", worktree.to_str().expect("utf-8"), "add", "c.txt"]);
    sandbox.git(&[
        "-C",
        worktree.to_str().expect("utf-8"),
        "commit",
        "-q",
        "-m",
        "c's work",
    ]);
    let main = sandbox.git(&["rev-parse", "main"]).trim().to_owned();

    let repo = Repo::discover(sandbox.path()).expect("repo");
    let common = repo.common_dir().to_owned();
    let secret = Secret::from_bytes(b"observe test secret, long enough".to_vec());
    for (task, attempt) in [("a", 1), ("b", 1), ("c", 2)] {
        let dir = Layout::new(&common).run(&TaskKey::new("p", task), attempt);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let fork_of = if task == "c" { &main } else { &fork };
        std::fs::write(dir.join("lease.json"), lease(fork_of, std::process::id())).expect("lease");
    }
    // z: only status remembers its merge; a: passed, its merge not recorded.
    let mut status = Status::default();
    status.plans.insert(
        "p".into(),
        PlanStatus {
            tasks: [
                (
                    "z".to_owned(),
                    TaskStatus {
                        merged_as: Some(z_merge.parse().expect("a commit id")),
                        ..TaskStatus::default()
                    },
                ),
                (
                    "a".to_owned(),
                    TaskStatus {
                        attempt: 1,
                        phase: converge::status::Phase::Passed,
                        ..TaskStatus::default()
                    },
                ),
            ]
            .into(),
            ..PlanStatus::default()
        },
    );

    let base = repo.resolve_commit("main").expect("main");
    let obs = observe(&repo, &status, base, &secret, &Default::default()).expect("observes");

    assert_eq!(obs.base_tip, main);
    let task = |t: &str| {
        obs.tasks
            .get(&TaskKey::new("p", t))
            .cloned()
            .unwrap_or_default()
    };
    assert!(task("a").merged, "a's work is in main");
    assert!(
        !task("b").merged,
        "b is at its fork point: dispatched, not merged"
    );
    assert_eq!(
        task("b").branch_head.map(|h| h.to_string()).as_deref(),
        Some(fork.as_str())
    );
    assert!(!task("c").merged && task("c").worktree);
    assert!(task("z").merged && task("z").branch_head.is_none());
    let running = task("c").run.expect("c has a run");
    assert_eq!(running.attempt, 2);
    assert!(matches!(running.state, RunState::Running { .. }));
    assert_eq!(obs.running(), 3);
    assert_eq!(obs.promoted.iter().collect::<Vec<_>>(), ["fix-typo"]);
}

#[test]
fn a_fresh_branch_at_the_base_tip_is_not_merged_when_its_lease_is_missing() {
    // Found by crash injection: a retry moved the task branch to the base tip
    // and crashed before writing the new lease; against the old lease's fork
    // the branch looked "moved and in the base", so dependents merged early.
    let sandbox = Sandbox::repo();
    sandbox.write("README.md", "start\n");
    let old_fork = sandbox.commit_all("initial");
    sandbox.write("NEWS.md", "news\n");
    let base = sandbox.commit_all("base moves");
    sandbox.git(&["branch", "converge/p/a", &base]);
    let common = sandbox.path().join(".git");
    let key = TaskKey::new("p", "a");
    let run = Layout::new(&common).run(&key, 1);
    std::fs::create_dir_all(&run).expect("mkdir");
    std::fs::write(run.join("lease.json"), lease(&old_fork, u32::MAX - 3)).expect("lease");
    std::fs::write(
        run.join("exit.json"),
        "{\"exit_code\":1,\"signal\":null,\"ended_at\":\"2026-01-01T00:00:00Z\"}",
    )
    .expect("exit");
    // Dispatch notes the new fork before it moves the branch.
    let marker = Layout::new(&common).fork_marker(&key);
    std::fs::create_dir_all(marker.parent().expect("parent")).expect("mkdir");
    std::fs::write(&marker, &base).expect("marker");
    let repo = Repo::discover(sandbox.path()).expect("repo");
    let secret = Secret::from_bytes(b"observe test secret, long enough".to_vec());
    let base_id = gix::ObjectId::from_hex(base.as_bytes()).expect("sha");
    let obs = observe(
        &repo,
        &Status::default(),
        base_id,
        &secret,
        &Default::default(),
    )
    .expect("observes");
    assert!(
        !obs.task(&key).expect("a").merged,
        "a fresh branch is not merged work"
    );
}
