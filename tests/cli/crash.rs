//! Crash injection (`cargo test --features crash-points`): a 20-task plan
//! converges while converge aborts at seeded random points, and nothing is
//! lost, duplicated or left behind.

use std::process::Command;
use std::time::Duration;

use crate::support::{Sandbox, converge_at, random_dag, seeds};

const TASKS: usize = 20;

struct Tick {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn tick(sb: &Sandbox, home: &std::path::Path, armed: &str) -> Tick {
    let output = converge_at(
        sb.path(),
        home,
        &["reconcile", "--once"],
        &[(converge::crash::ENV, armed)],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "converge panicked: {stderr}");
    Tick {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: stderr.into_owned(),
    }
}

fn run_seed(seed: u64) {
    let sb = Sandbox::repo();
    let home = tempfile::tempdir().expect("home");
    // Which points are armed on each tick comes from the seed too.
    let mut state = seed.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1;
    let mut below = move |n: u64| {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    };
    sb.write("README.md", "crash test\n");
    sb.write("planning/goal.md", "Survive crashes.\n");
    sb.write(
        "planning/converge.toml",
        "[reconcile]\ndefault_harness = \"sim\"\nmax_agents = 4\nactions_per_tick = 1\ndispatches_per_hour = 10000\nbackoff = { base = \"1s\", factor = 1, max = \"1s\" }\n",
    );
    sb.write(
        "planning/plans/crashy.toml",
        random_dag("Crashy", TASKS, seed, |i| i % 2 == 1),
    );
    sb.commit_all("plan");

    let mut crashed = 0;
    let mut armed_ticks = 0;
    let mut calm = 0;
    for _ in 0..2000 {
        // Arm each crash point with probability 3/4 until 50 ticks crashed.
        let armed: Vec<&str> = if crashed < 50 {
            converge::crash::POINTS
                .iter()
                .copied()
                .filter(|_| below(4) != 0)
                .collect()
        } else {
            Vec::new()
        };
        armed_ticks += usize::from(!armed.is_empty());
        let t = tick(&sb, home.path(), &armed.join(","));
        match t.code {
            // Aborted (killed by SIGABRT): no exit code.
            None => crashed += 1,
            Some(0 | 3) => {}
            Some(code) => {
                let keep = keep(&sb, seed);
                panic!(
                    "seed {seed}: tick exited with {code} (kept in {}): {}{}",
                    keep.display(),
                    t.stdout,
                    t.stderr
                )
            }
        }
        if t.code == Some(0) && t.stdout.contains("nothing to do") && armed.is_empty() {
            calm += 1;
            if calm >= 3 && all_merged(&sb) {
                break;
            }
        } else {
            calm = 0;
        }
        std::thread::sleep(Duration::from_millis(15));
    }
    // Supervisors that aborted after spawning their agent crashed too.
    let spawn_crashes = supervisor_crashes(&sb);
    assert!(
        crashed + spawn_crashes >= 50,
        "seed {seed}: only {crashed} + {spawn_crashes} crashes in {armed_ticks} armed ticks"
    );
    if !all_merged(&sb) {
        let explain = converge_at(
            sb.path(),
            home.path(),
            &["reconcile", "--dry-run", "--explain"],
            &[],
        );
        let keep = keep(&sb, seed);
        panic!(
            "seed {seed}: did not converge (kept in {}) ({crashed} crashes):\n{}{}",
            keep.display(),
            String::from_utf8_lossy(&explain.stdout),
            String::from_utf8_lossy(&explain.stderr)
        );
    }

    eprintln!(
        "seed {seed}: converged through {crashed} aborted ticks and {spawn_crashes} aborted supervisors"
    );
    // Every task merged exactly once.
    let subjects = sb.git(&["log", "--first-parent", "--format=%s", "main"]);
    for i in 0..TASKS {
        let merges = subjects
            .lines()
            .filter(|s| s.starts_with(&format!("converge: merge crashy/t{i} (attempt")))
            .count();
        assert_eq!(merges, 1, "seed {seed}: t{i} merged {merges} times");
        assert_eq!(sb.read(&format!("f/{i}.txt")), format!("{i}\n"));
    }
    // Nothing left behind: worktrees, branches, processes.
    let worktrees = sb.git(&["worktree", "list", "--porcelain"]);
    assert_eq!(
        worktrees.matches("worktree ").count(),
        1,
        "seed {seed}: {worktrees}"
    );
    let branches = sb.git(&["branch", "--list", "converge/*"]);
    assert_eq!(branches, "", "seed {seed}");
    let runs = sb.path().join(".git/converge/runs/crashy");
    for task in std::fs::read_dir(&runs).expect("runs") {
        for attempt in std::fs::read_dir(task.expect("task").path()).expect("attempts") {
            let dir = attempt.expect("attempt").path();
            assert!(
                converge::observe::runs::processes_of_run(&dir).is_empty(),
                "seed {seed}: processes of {} still run",
                dir.display()
            );
        }
    }
    let doctor = converge_at(sb.path(), home.path(), &["doctor"], &[]);
    assert!(
        doctor.status.success(),
        "seed {seed}: doctor: {}",
        String::from_utf8_lossy(&doctor.stdout)
    );
    assert_eq!(sb.git(&["status", "--porcelain"]), "", "seed {seed}");
    sb.git(&["fsck", "--strict", "--no-progress"]);
    // What a person's next commit would write is what main holds.
    assert_eq!(
        sb.git(&["write-tree"]),
        sb.git(&["rev-parse", "main^{tree}"]),
        "seed {seed}: the index would commit other files"
    );
}

/// Copies a failed run's repository where a person can look at it.
fn keep(sb: &Sandbox, seed: u64) -> std::path::PathBuf {
    let keep = std::env::temp_dir().join(format!("converge-crash-seed-{seed}"));
    let _ = std::fs::remove_dir_all(&keep);
    let _ = Command::new("cp")
        .arg("-a")
        .arg(sb.path())
        .arg(&keep)
        .status();
    keep
}

fn all_merged(sb: &Sandbox) -> bool {
    let Ok(text) = std::fs::read_to_string(sb.path().join("planning/status/crashy.toml")) else {
        return false;
    };
    text.matches("phase = \"merged\"").count() == TASKS
}

fn supervisor_crashes(sb: &Sandbox) -> usize {
    let mut count = 0;
    let runs = sb.path().join(".git/converge/runs/crashy");
    let Ok(tasks) = std::fs::read_dir(runs) else {
        return 0;
    };
    for task in tasks.flatten() {
        for attempt in std::fs::read_dir(task.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let log =
                std::fs::read_to_string(attempt.path().join("supervisor.log")).unwrap_or_default();
            count += usize::from(log.contains("crash point"));
        }
    }
    count
}

#[test]
fn a_plan_converges_through_crashes_at_every_point_without_losing_or_repeating_work() {
    // More seeds: CONVERGE_CRASH_SEEDS=1-20
    for seed in seeds("CONVERGE_CRASH_SEEDS", (1, 2)) {
        run_seed(seed);
    }
}
