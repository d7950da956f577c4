//! Racing reconcilers on one repository: two loops of `reconcile --once` at
//! once. The file lock serializes their ticks; no task is dispatched or merged
//! twice, and both end seeing the plan converged.

use std::process::Command;
use std::time::Duration;

use crate::support::{Sandbox, converge_at, isolate, random_dag, seeds};

fn run_seed(seed: u64) {
    const TASKS: usize = 20;
    let sb = Sandbox::repo();
    sb.write("README.md", "race\n");
    sb.write("planning/goal.md", "Race.\n");
    sb.write(
        "planning/converge.toml",
        "[reconcile]\ndefault_harness = \"sim\"\nmax_agents = 4\nactions_per_tick = 2\ndispatches_per_hour = 10000\n",
    );
    sb.write(
        "planning/plans/race.toml",
        random_dag("Race", TASKS, seed, |_| false),
    );
    sb.commit_all("plan");
    let dir = sb.path().to_owned();
    let loops: Vec<_> = (0..2)
        .map(|_| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let home = tempfile::tempdir().expect("home");
                let mut busy = 0;
                let mut calm = 0;
                for _ in 0..3000 {
                    let out = converge_at(&dir, home.path(), &["reconcile", "--once"], &[]);
                    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
                    match out.status.code() {
                        Some(3) => busy += 1,
                        Some(0) => {}
                        other => panic!(
                            "seed {seed}: tick exited {other:?}: {stdout}{}",
                            String::from_utf8_lossy(&out.stderr)
                        ),
                    }
                    let merged = std::fs::read_to_string(dir.join("planning/status/race.toml"))
                        .is_ok_and(|s| s.matches("phase = \"merged\"").count() == TASKS);
                    if out.status.code() == Some(0) && stdout.contains("nothing to do") && merged {
                        calm += 1;
                        if calm >= 2 {
                            return busy;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                panic!("seed {seed}: a loop never saw the plan converge");
            })
        })
        .collect();
    let busy: usize = loops.into_iter().map(|l| l.join().expect("loop")).sum();
    let subjects = sb.git(&["log", "--first-parent", "--format=%s", "main"]);
    for i in 0..TASKS {
        let task = format!("race/t{i}");
        // Subjects name one action or list several: "dispatch race/t1, gate race/t2".
        let dispatches = subjects
            .lines()
            .filter_map(|s| s.strip_prefix("converge: "))
            .flat_map(|s| s.split(", "))
            .filter(|a| {
                a.strip_prefix(&format!("dispatch {task}"))
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(" ("))
            })
            .count();
        let merges = subjects
            .lines()
            .filter(|s| s.starts_with(&format!("converge: merge {task} (attempt")))
            .count();
        assert_eq!((dispatches, merges), (1, 1), "seed {seed}: {task}");
        let attempts = std::fs::read_dir(sb.path().join(format!(".git/converge/runs/race/t{i}")))
            .expect("runs")
            .count();
        assert_eq!(attempts, 1, "seed {seed}: {task} ran {attempts} attempts");
    }
    eprintln!("seed {seed}: converged; {busy} ticks found the other reconciler busy");
}

#[test]
fn two_reconcilers_on_one_repository_never_dispatch_or_merge_twice() {
    // More seeds: CONVERGE_RACE_SEEDS=1-20
    for seed in seeds("CONVERGE_RACE_SEEDS", (1, 2)) {
        run_seed(seed);
    }
}

/// Runs `git` in `dir` with the isolated environment.
fn git_in(dir: &std::path::Path, home: &std::path::Path, args: &[&str]) -> String {
    let mut command = Command::new("git");
    isolate(&mut command, home);
    let out = command
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The attempt numbers of a task's run directories in one clone.
fn attempts_run(clone: &std::path::Path, task: &str) -> Vec<u32> {
    std::fs::read_dir(clone.join(format!(".git/converge/runs/race/{task}")))
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn run_seed_on_two_clones(seed: u64) {
    const TASKS: usize = 20;
    let sb = Sandbox::new();
    let home = tempfile::tempdir().expect("home");
    let bare = sb.path().join("remote.git");
    let origin = sb.path().join("origin");
    std::fs::create_dir_all(&origin).expect("origin dir");
    git_in(
        sb.path(),
        home.path(),
        &["init", "-q", "--bare", "-b", "main", "remote.git"],
    );
    git_in(&origin, home.path(), &["init", "-q", "-b", "main"]);
    let write = |path: &str, text: &str| {
        let file = origin.join(path);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("dirs");
        std::fs::write(file, text).expect("write");
    };
    write("README.md", "race\n");
    write("planning/goal.md", "Race across machines.\n");
    write(
        "planning/converge.toml",
        "[reconcile]\nremote = \"origin\"\ndefault_harness = \"sim\"\nmax_agents = 4\nactions_per_tick = 2\ndispatches_per_hour = 10000\nbackoff = { base = \"1ms\", factor = 1, max = \"1ms\" }\n",
    );
    // A third of the tasks fail their first attempt, so retries race too.
    write(
        "planning/plans/race.toml",
        &random_dag("Race", TASKS, seed, |i| (i as u64 + seed).is_multiple_of(3)),
    );
    git_in(&origin, home.path(), &["add", "-A"]);
    git_in(&origin, home.path(), &["commit", "-q", "-m", "plan"]);
    git_in(
        &origin,
        home.path(),
        &["push", "-q", bare.to_str().expect("utf-8"), "main"],
    );
    let clones: Vec<std::path::PathBuf> = ["one", "two"]
        .iter()
        .map(|name| {
            git_in(sb.path(), home.path(), &["clone", "-q", "remote.git", name]);
            let clone = sb.path().join(name);
            // Agents get only the allowed environment: identity from config.
            git_in(&clone, home.path(), &["config", "user.name", "Agent"]);
            git_in(
                &clone,
                home.path(),
                &["config", "user.email", "agent@example.com"],
            );
            clone
        })
        .collect();
    let loops: Vec<_> = clones
        .iter()
        .cloned()
        .map(|dir| {
            std::thread::spawn(move || {
                let home = tempfile::tempdir().expect("home");
                let mut ticks = 0;
                let mut calm = 0;
                let mut lost = 0;
                // The tick before, for the failure message: a wedge shows
                // what the tick that caused it did.
                let mut previous = String::new();
                while ticks < 600 {
                    ticks += 1;
                    let out = converge_at(&dir, home.path(), &["reconcile", "--once"], &[]);
                    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
                    // Exit 3: the tick lost a push race and changed nothing.
                    let lost_race = out.status.code() == Some(3) && stdout.contains("rejected");
                    if out.status.code() != Some(0) && !lost_race {
                        panic!(
                            "seed {seed}: tick in {} exited {:?}: {stdout}{}\n--- the tick before:\n{previous}",
                            dir.display(),
                            out.status.code(),
                            String::from_utf8_lossy(&out.stderr)
                        );
                    }
                    previous = format!(
                        "exit {:?}\n{stdout}{}",
                        out.status.code(),
                        String::from_utf8_lossy(&out.stderr)
                    );
                    if lost_race {
                        lost += 1;
                    }
                    let merged = std::fs::read_to_string(dir.join("planning/status/race.toml"))
                        .is_ok_and(|s| s.matches("phase = \"merged\"").count() == TASKS);
                    if stdout.contains("nothing to do") && merged {
                        calm += 1;
                        if calm >= 2 {
                            return lost;
                        }
                    } else {
                        calm = 0;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                let explain = converge_at(
                    &dir,
                    home.path(),
                    &["reconcile", "--dry-run", "--explain"],
                    &[],
                );
                panic!(
                    "seed {seed}: {} never saw the plan converge:\n{}\n{}",
                    dir.display(),
                    String::from_utf8_lossy(&explain.stdout),
                    std::fs::read_to_string(dir.join("planning/status/race.toml"))
                        .unwrap_or_default()
                );
            })
        })
        .collect();
    let lost: usize = loops.into_iter().map(|l| l.join().expect("loop")).sum();

    let remote_log = git_in(
        sb.path(),
        home.path(),
        &[
            "--git-dir",
            "remote.git",
            "log",
            "--first-parent",
            "--format=%s",
            "main",
        ],
    );
    let status = git_in(
        sb.path(),
        home.path(),
        &[
            "--git-dir",
            "remote.git",
            "show",
            "main:planning/status/race.toml",
        ],
    );
    assert_eq!(
        status.matches("phase = \"merged\"").count(),
        TASKS,
        "seed {seed}: the remote's status has every task merged:\n{status}"
    );
    assert!(
        !status.contains("[tasks.t0.claim]") && !status.contains(".claim]"),
        "seed {seed}: claims end with their attempts:\n{status}"
    );
    for i in 0..TASKS {
        let task = format!("t{i}");
        // Every attempt started on exactly one machine, and was claimed once.
        let mut started: Vec<u32> = clones.iter().flat_map(|c| attempts_run(c, &task)).collect();
        started.sort_unstable();
        let expected: Vec<u32> = (1..=u32::try_from(started.len()).expect("small")).collect();
        assert_eq!(
            started, expected,
            "seed {seed}: attempts of {task} across both clones"
        );
        let attempts = if (i as u64 + seed).is_multiple_of(3) {
            2
        } else {
            1
        };
        assert_eq!(started.len(), attempts, "seed {seed}: {task}");
        for attempt in 1..=attempts {
            let needle = format!("race/{task} (attempt {attempt})");
            let claims = remote_log
                .lines()
                .filter(|s| s.starts_with("converge: claim "))
                .filter(|s| s.contains(&needle))
                .count();
            assert_eq!(claims, 1, "seed {seed}: claims of {needle}:\n{remote_log}");
        }
        let merges = remote_log
            .lines()
            .filter(|s| s.starts_with(&format!("converge: merge race/{task} (attempt")))
            .count();
        assert_eq!(merges, 1, "seed {seed}: merges of {task}");
    }
    // Both clones end converged and clean: no task branches, no worktrees.
    for clone in &clones {
        let branches = git_in(clone, home.path(), &["branch", "--list", "converge/*"]);
        assert_eq!(branches.trim(), "", "seed {seed}: {}", clone.display());
        let worktrees = git_in(clone, home.path(), &["worktree", "list", "--porcelain"]);
        assert_eq!(
            worktrees.matches("worktree ").count(),
            1,
            "seed {seed}: {worktrees}"
        );
    }
    let by_clone: Vec<usize> = clones
        .iter()
        .map(|c| {
            (0..TASKS)
                .map(|i| attempts_run(c, &format!("t{i}")).len())
                .sum()
        })
        .collect();
    eprintln!(
        "seed {seed}: converged; attempts per clone {by_clone:?}; {lost} ticks lost a push race"
    );
}

#[test]
fn two_clones_of_one_remote_never_start_an_attempt_twice() {
    // More seeds: CONVERGE_REMOTE_RACE_SEEDS=1-20
    for seed in seeds("CONVERGE_REMOTE_RACE_SEEDS", (1, 2)) {
        run_seed_on_two_clones(seed);
    }
}
