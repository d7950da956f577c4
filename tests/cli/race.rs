//! Racing reconcilers on one repository: two loops of `reconcile --once` at
//! once. The file lock serializes their ticks; no task is dispatched or merged
//! twice, and both end seeing the plan converged.

use std::process::Command;
use std::time::Duration;

use crate::support::{BIN, Sandbox, isolate, random_dag, seeds};

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
                    let mut command = Command::new(BIN);
                    isolate(&mut command, home.path());
                    let out = command
                        .args(["reconcile", "--once"])
                        .current_dir(&dir)
                        .output()
                        .expect("runs");
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
