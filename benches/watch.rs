//! `converge watch` benchmarks (docs/benchmarks.md#watch), each against git
//! doing the same work in the same run where git has a counterpart:
//!
//! 1. idle CPU of the daemon on a repository with 1,000 tasks (no baseline:
//!    git has no watching daemon on Linux; the target is absolute);
//! 2. commit-to-dispatch latency: from `git commit` of a new plan returning to
//!    the agent's lease being written, against `git worktree add -b` of a
//!    branch in the same repository;
//! 3. one task's overhead inside the daemon: the summed durations of every
//!    tick from the commit to the cleanup (dispatch, gate, merge, cleanup and
//!    any tick with nothing to do in between; the agent runs detached and is
//!    not counted), against git plumbing doing the same work;
//! 4. a DAG from nothing to merged under the daemon, against the `sh` script
//!    of git doing each task's work in order (100 tasks with `--quick`, 1,000
//!    in a full run).
//!
//! Run: `cargo bench --bench watch` (about 15 minutes: the git script for
//! 1,000 tasks takes most) or `cargo bench --bench watch -- --quick`.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Stats, build_history_with, git, median, ms, project, write};

const BIN: &str = env!("CARGO_BIN_EXE_converge");

fn main() {
    let Some(runs) = common::rounds(21) else {
        return;
    };
    let full = common::full_run();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut table = Vec::new();

    // 1. Idle CPU.
    let window = if full {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(10)
    };
    let (cpu, rss) = idle_cpu(dir.path(), window);
    table.push(format!(
        "| idle `watch`, 1,000 tasks (20 draft plans, 1,000 commits), CPU over {} s | {:.3}% of one core | {:.1} MiB | - | - | < 0.5% |",
        window.as_secs(),
        cpu * 100.0,
        rss as f64 / 1024.0
    ));

    // 2 and 3. One plan committed per round.
    let rounds = rounds_of_one_task(dir.path(), runs);
    table.push(format!(
        "| commit-to-dispatch latency: `git commit` of a one-task plan returns → the agent's lease is written | {:.1} ms | - | `git worktree add -b` in the same repository: {:.1} ms | {:.2}x | median ≤ 100 ms |",
        ms(rounds.latency),
        ms(rounds.worktree_add),
        rounds.latency.as_secs_f64() / rounds.worktree_add.as_secs_f64()
    ));
    table.push(format!(
        "| one task inside the daemon: every tick from the commit to the cleanup ({:.1} ticks; agent excluded) | {:.1} ms | - | git worktree add, commit, merge-tree, commit-tree, update-ref, worktree remove, branch -D: {:.1} ms | {:.2}x | ≤ 1.0x git |",
        rounds.ticks,
        ms(rounds.daemon),
        ms(rounds.git),
        rounds.daemon.as_secs_f64() / rounds.git.as_secs_f64()
    ));

    // 4. A DAG under the daemon.
    let tasks = if full { 1_000 } else { 100 };
    let (daemon, script) = dag(dir.path(), tasks);
    table.push(format!(
        "| {tasks}-task DAG, instant sim agents, `true` invariants, to merged under `watch` | {:.1} s | {:.1} MiB | a sh script of git doing each task's work in order: {:.1} s | {:.2}x | ≤ 0.3x |",
        daemon.median.as_secs_f64(),
        daemon.max_rss_kib as f64 / 1024.0,
        script.median.as_secs_f64(),
        daemon.median.as_secs_f64() / script.median.as_secs_f64()
    ));

    println!("| benchmark | measured | peak RSS | baseline (same run) | ratio | target |");
    println!("|---|---|---|---|---|---|");
    for row in table {
        println!("{row}");
    }
    println!(
        "\n{runs} rounds of the one-task rows (medians); the idle window and the DAG run once."
    );
}

/// A running `converge watch`, logging JSON to a file; killed when dropped.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(repo: &Path, log: PathBuf) -> Daemon {
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(BIN)
            .args(["watch", "--log-format", "json"])
            .current_dir(repo)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("CONVERGE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("converge watch starts");
        Daemon { child, log }
    }

    /// The `tick` events logged so far.
    fn ticks(&self) -> Vec<serde_json::Value> {
        let mut text = String::new();
        std::fs::File::open(&self.log)
            .and_then(|mut f| f.read_to_string(&mut text))
            .expect("log");
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["fields"]["message"] == "tick")
            .map(|v| v["fields"].clone())
            .collect()
    }

    fn wait_ticks(&self, at_least: usize, timeout: Duration) -> Vec<serde_json::Value> {
        let until = Instant::now() + timeout;
        loop {
            let ticks = self.ticks();
            if ticks.len() >= at_least {
                return ticks;
            }
            assert!(
                Instant::now() < until,
                "no tick within {timeout:?}: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Utime + stime of the daemon and its reaped children, in seconds.
    fn cpu(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("/proc/pid/stat");
        // Fields after the command name, which ends with the last ')'.
        let rest = &stat[stat.rfind(')').expect("comm") + 2..];
        let fields: Vec<u64> = rest
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        // utime, stime, cutime, cstime are fields 14-17 (11-14 here).
        let ticks: u64 = fields[11..15].iter().sum();
        ticks as f64 / 100.0
    }

    /// Peak RSS in KiB.
    fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc/pid/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn duration_of(tick: &serde_json::Value) -> Duration {
    Duration::from_secs_f64(tick["duration_ms"].as_f64().expect("duration_ms") / 1000.0)
}

/// The daemon's CPU share over `window`, once its first tick is done.
fn idle_cpu(scratch: &Path, window: Duration) -> (f64, u64) {
    let repo = scratch.join("idle");
    build_history_with(&repo, 1_000, 20, 50, "state = \"draft\"\n");
    git(&repo, &["reset", "-q", "--hard", "main"], None);
    git(&repo, &["config", "user.name", "Bench"], None);
    git(&repo, &["config", "user.email", "bench@example.com"], None);
    let daemon = Daemon::start(&repo, scratch.join("idle.log"));
    daemon.wait_ticks(1, Duration::from_secs(60));
    // The first tick's own writes are followed by one more tick.
    std::thread::sleep(Duration::from_secs(1));
    let before = daemon.cpu();
    let started = Instant::now();
    std::thread::sleep(window);
    let used = daemon.cpu() - before;
    let share = used / started.elapsed().as_secs_f64();
    (share, daemon.peak_rss())
}

struct Rounds {
    latency: Duration,
    worktree_add: Duration,
    daemon: Duration,
    ticks: f64,
    git: Duration,
}

/// A one-task plan whose sim agent writes its own file.
fn one_plan(name: &str) -> String {
    format!(
        "[plan]\nname = \"{name}\"\n\n[[tasks]]\nname = \"t\"\ndescription = \"d\"\nscope = \"narrow\"\ngate = \"auto\"\nallow_unchecked = true\n[tasks.sim]\nfiles = [{{ path = \"{name}.txt\", content = \"work\\n\" }}]\n"
    )
}

/// Per round, under one daemon: commit a new one-task plan, time until its
/// agent's lease exists, then wait for the task to be merged and cleaned up
/// and sum the ticks in between. Beside it, on a copy made before the daemon
/// started, git does the same work.
fn rounds_of_one_task(scratch: &Path, runs: usize) -> Rounds {
    let repo = scratch.join("rounds");
    project(
        &repo,
        "[reconcile]\ndefault_harness = \"sim\"\ndispatches_per_hour = 1000000\n",
    );
    git(&repo, &["add", "-A"], None);
    git(&repo, &["commit", "-q", "-m", "start"], None);
    let plain = scratch.join("rounds-git");
    let status = Command::new("git")
        .args(["clone", "-q", "--no-local"])
        .arg(&repo)
        .arg(&plain)
        .status()
        .expect("clone");
    assert!(status.success());
    git(&plain, &["checkout", "-q", "--detach"], None);
    git(&plain, &["config", "user.name", "Bench"], None);
    git(&plain, &["config", "user.email", "bench@example.com"], None);
    let daemon = Daemon::start(&repo, scratch.join("rounds.log"));
    daemon.wait_ticks(1, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));

    let mut latencies = Vec::new();
    let mut adds = Vec::new();
    let mut sums = Vec::new();
    let mut tick_counts = Vec::new();
    let mut gits = Vec::new();
    for round in 0..=runs {
        let name = format!("l{round}");
        let before = daemon.ticks().len();
        write(
            &repo,
            &format!("planning/plans/{name}.toml"),
            &one_plan(&name),
        );
        git(&repo, &["add", "-A"], None);
        git(
            &repo,
            &["commit", "-q", "-m", &format!("plan {name}")],
            None,
        );
        let committed = Instant::now();
        let lease = repo.join(format!(".git/converge/runs/{name}/t/1/lease.json"));
        let until = committed + Duration::from_secs(30);
        while !lease.exists() {
            assert!(Instant::now() < until, "{name} was never dispatched");
            std::thread::sleep(Duration::from_micros(500));
        }
        let latency = committed.elapsed();
        // Merged and cleaned up: the branch is gone; then the ticks the
        // cleanup's own writes set off.
        let branch = repo.join(format!(".git/refs/heads/converge/{name}/t"));
        let worktrees = repo.join(".git/worktrees");
        loop {
            assert!(Instant::now() < until, "{name} was never cleaned up");
            let busy = branch.exists()
                || std::fs::read_dir(&worktrees).is_ok_and(|mut d| d.next().is_some());
            if !busy {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(400));
        let ticks = daemon.ticks();
        let merged = git(
            &repo,
            &["show", &format!("main:planning/status/{name}.toml")],
            None,
        );
        assert!(merged.contains("phase = \"merged\""), "{name}: {merged}");
        let spent: Duration = ticks[before..].iter().map(duration_of).sum();

        // git's worktree add in the same repository, and its whole work for
        // one task on the plain clone.
        let add = Instant::now();
        let wt = scratch.join("rounds-wt");
        let wt_s = wt.to_string_lossy().into_owned();
        git(
            &repo,
            &["worktree", "add", "-q", "-b", "bench/add", &wt_s, "main"],
            None,
        );
        let add = add.elapsed();
        git(&repo, &["worktree", "remove", "--force", &wt_s], None);
        git(&repo, &["branch", "-q", "-D", "bench/add"], None);
        let (steps, _) = common::baseline::one_task(
            &plain,
            &scratch.join("rounds-git-wt"),
            &format!("{name}/t"),
        );
        if round > 0 {
            latencies.push(latency);
            adds.push(add);
            sums.push(spent);
            tick_counts.push((ticks.len() - before) as f64);
            gits.push(steps[2]);
        }
    }
    Rounds {
        latency: median(latencies),
        worktree_add: median(adds),
        daemon: median(sums),
        ticks: tick_counts.iter().sum::<f64>() / tick_counts.len() as f64,
        git: median(gits),
    }
}

/// A DAG of `tasks` from nothing to merged under the daemon (as
/// `benches/reconcile.rs` runs it with `reconcile --wait`), then the git script.
fn dag(scratch: &Path, tasks: usize) -> (Stats, Stats) {
    let workload = common::baseline::random_dag(tasks);
    let repo = scratch.join(format!("watch-dag-{tasks}"));
    workload.create(&repo);
    let started = Instant::now();
    let daemon = Daemon::start(&repo, scratch.join(format!("watch-dag-{tasks}.log")));
    // Settled: a tick that did nothing with no agent running; nothing can
    // happen after it without an outside event.
    let until = started + Duration::from_secs(3600);
    let (elapsed, rss) = loop {
        assert!(Instant::now() < until, "the DAG did not settle in an hour");
        let ticks = daemon.ticks();
        if ticks
            .iter()
            .any(|t| t["actions"] == 0 && t["agents_running"] == 0 && t["wake_at"].is_null())
            && ticks.len() > 1
        {
            break (started.elapsed(), daemon.peak_rss());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(daemon);
    let status = git(&repo, &["show", "main:planning/status/p0.toml"], None);
    let merged = status.matches("phase = \"merged\"").count();
    assert_eq!(merged, tasks, "all tasks merged");
    eprintln!(
        "{tasks}-task DAG under watch: {:.1} s",
        elapsed.as_secs_f64()
    );
    let script = common::baseline::dag_script(scratch, &workload);
    (
        Stats {
            median: elapsed,
            max_rss_kib: rss,
        },
        script,
    )
}
