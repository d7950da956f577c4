//! The autonomy loop's twelve-hour simulation (docs/benchmarks.md#autonomy):
//! the scripted run of the integration test (a goal of six bullet points,
//! the sim planner with a duplicate, an invalid item, a rate limit and a
//! first item that always fails; sim agents; a real `sh` invariant), driven
//! by `converge reconcile --until-idle` with `CONVERGE_NOW` ten minutes
//! further each run: 72 runs are twelve simulated hours. It reports the wall
//! time (target: under 2 minutes), the ticks, the planner runs and the
//! simulated cost, against git plumbing doing the same items' work (one
//! worktree, commit and merge per item filed) in the same round.
//!
//! Run: `cargo bench --bench autonomy` (3 rounds) or `-- --quick` (1).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{git, median, ms, project, write};

const BIN: &str = env!("CARGO_BIN_EXE_converge");

const GOAL: &str =
    "# Goal\n\n- Login\n- Logout\n- Export CSV\n- Search\n- Profile page\n- Dark mode\n";

const CONFIG: &str = r#"[reconcile]
default_harness = "sim"
task_timeout = "12h"
backoff = { base = "1m", factor = 2, max = "10m" }

[budget]
usd_per_day = 1.0

[invariants.features]
kind = "lint"
command = "sh"
args = ["-c", "for f in features/*.md; do test -s \"$f\" || exit 1; done"]
timeout = "30s"

[autonomy]
enabled = true
max_items_per_day = 9
max_runs_per_day = 30
review_every = 3
budget_share = 0.5

[autonomy.sim]
usd_per_run = 0.02
duplicate_runs = [3]
invalid_runs = [6]
rate_limited_runs = [8]
fail_first = ["Search"]
"#;

struct Outcome {
    wall: Duration,
    ticks: u64,
    runs: u64,
    items: u64,
    merges: u64,
    usd: f64,
    state: String,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--supervise") {
        common::supervise(args[2] == "capture", &args[3..]);
        return;
    }
    let rounds = if args.iter().any(|a| a == "--quick") {
        1
    } else {
        3
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut walls = Vec::new();
    let mut baselines = Vec::new();
    let mut last = None;
    for round in 0..rounds {
        let repo = dir.path().join(format!("loop-{round}"));
        let outcome = twelve_hours(&repo);
        assert_eq!(outcome.state, "goal-met", "the simulation met its goal");
        let base = git_baseline(&dir.path().join(format!("git-{round}")), outcome.items);
        walls.push(outcome.wall);
        baselines.push(base);
        last = Some(outcome);
    }
    let o = last.expect("a round");
    let wall = median(walls);
    let base = median(baselines);
    println!("| benchmark | median wall | baseline (same run) | ratio | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| autonomy loop, 12 simulated hours (72 `reconcile --until-idle` runs, {} ticks; {} planner runs, {} items filed, {} merged, simulated cost ${:.2}) | {:.1} s | git plumbing for the {} items' work: {:.1} ms | {:.0}x | under 2 minutes |",
        o.ticks,
        o.runs,
        o.items,
        o.merges,
        o.usd,
        wall.as_secs_f64(),
        o.items,
        ms(base),
        wall.as_secs_f64() / base.as_secs_f64(),
    );
    println!("\n{rounds} round(s); medians of wall time.");
}

fn twelve_hours(repo: &Path) -> Outcome {
    project(repo, CONFIG);
    write(repo, "planning/goal.md", GOAL);
    write(
        repo,
        "planning/capabilities.md",
        "# Capabilities\n\n- (nothing yet)\n",
    );
    git(repo, &["add", "-A"], None);
    git(repo, &["commit", "-q", "-m", "a goal"], None);
    let now = converge::time::Timestamp::now().unix() / 60 * 60 + 60;
    let started = Instant::now();
    let mut ticks = 0;
    for step in 0..72 {
        let at = converge::time::Timestamp::from_unix(now + step * 600).to_string();
        let out = Command::new(BIN)
            .args(["reconcile", "--until-idle", "--json"])
            .env("CONVERGE_NOW", &at)
            .current_dir(repo)
            .output()
            .expect("converge runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        ticks += String::from_utf8_lossy(&out.stdout).lines().count() as u64;
        std::thread::sleep(Duration::from_millis(100));
    }
    let wall = started.elapsed();
    let out = Command::new(BIN)
        .args(["autonomy", "status", "--json"])
        .current_dir(repo)
        .output()
        .expect("converge runs");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let n = |k: &str| v["totals"][k].as_u64().unwrap_or_default();
    Outcome {
        wall,
        ticks,
        runs: n("runs"),
        items: n("items"),
        merges: n("merges"),
        usd: v["totals"]["usd"].as_f64().unwrap_or_default(),
        state: v["state"].as_str().unwrap_or_default().to_owned(),
    }
}

/// git doing each item's work: a worktree, a commit, a merge, a cleanup.
fn git_baseline(repo: &Path, items: u64) -> Duration {
    project(repo, "");
    git(repo, &["add", "-A"], None);
    git(repo, &["commit", "-q", "-m", "start"], None);
    git(repo, &["checkout", "-q", "--detach"], None);
    let mut total = Duration::ZERO;
    for i in 0..items {
        let (steps, _) =
            common::baseline::one_task(repo, &repo.join(".wt"), &format!("queue/item-{i}"));
        total += steps[2];
    }
    total
}
