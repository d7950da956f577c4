//! Reconcile benchmarks:
//!
//! 1. a no-op tick (`reconcile --once` with nothing to do) on a 10,000-commit
//!    repository with 1,000 tasks;
//! 2. the orchestration overhead of one task (the dispatch, gate, merge and
//!    cleanup ticks; the agent's own time excluded) against raw `git` doing the
//!    same work (`worktree add`, `commit`, `merge-tree --write-tree`,
//!    `commit-tree`, `update-ref`, `worktree remove`, `branch -D`), measured in
//!    the same run;
//! 3. a 100-task DAG with instant `sim` agents and `true` invariants, from
//!    nothing to merged (`reconcile --wait`).
//!
//! Run: `cargo bench --bench reconcile` (add `-- --quick` for a smoke run).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Cmd, Rng, Row, Stats, build_history_with, git, measure, print_rows, run_supervised};

const BIN: &str = env!("CARGO_BIN_EXE_converge");

fn main() {
    let Some(runs) = common::rounds(21) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rows = Vec::new();

    // 1. No-op tick.
    let repo = dir.path().join("noop");
    build_history_with(&repo, 10_000, 20, 50, "state = \"draft\"\n");
    git(&repo, &["reset", "-q", "--hard", "main"], None);
    let tick = Cmd::new(&[BIN, "reconcile", "--once"]).check(|out| {
        assert!(
            out.contains("recorded status"),
            "the first tick records status: {out}"
        );
    });
    let [noop] = measure(runs, &repo, &[tick])[..] else {
        unreachable!()
    };
    let after = std::process::Command::new(BIN)
        .args(["reconcile", "--once"])
        .current_dir(&repo)
        .output()
        .expect("tick");
    assert!(
        String::from_utf8_lossy(&after.stdout).contains("nothing to do"),
        "timed ticks were no-ops"
    );
    rows.push(Row {
        name: "no-op tick, 10,000 commits, 1,000 tasks (20 draft plans)".into(),
        measured: noop,
        baseline: None,
        target: "< 50 ms, < 64 MiB",
    });

    // 2. One task's orchestration against raw git.
    let template = dir.path().join("one-template");
    one_task_template(&template);
    let (converge, git_baseline) = one_task(&template, dir.path(), runs);
    rows.push(Row {
        name: "one task: dispatch + gate + merge + cleanup ticks (agent excluded)".into(),
        measured: converge,
        baseline: Some((
            "git worktree add, commit, merge-tree, commit-tree, update-ref, worktree remove, branch -D",
            git_baseline,
        )),
        target: "< 1.5x git",
    });

    // 3. A 100-task DAG from nothing to merged.
    let dag = dir.path().join("dag");
    dag_repo(&dag, 100);
    let started = Instant::now();
    let (elapsed, rss, out) = run_supervised(
        &dag,
        &Cmd::new(&[BIN, "reconcile", "--wait", "--max-ticks", "5000"]),
        true,
    );
    let _ = started;
    let status = git(&dag, &["show", "main:planning/status/dag.toml"], None);
    let merged = status.matches("phase = \"merged\"").count();
    assert_eq!(merged, 100, "all tasks merged: {out}");
    rows.push(Row {
        name: "100-task DAG, instant sim agents, `true` invariants, to merged (--wait)".into(),
        measured: Stats {
            median: elapsed,
            max_rss_kib: rss,
        },
        baseline: None,
        target: "< 30 s",
    });

    print_rows(rows, runs);
    println!("The 100-task DAG runs once.");
}

fn write(root: &Path, path: &str, text: &str) {
    let full = root.join(path);
    std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
    std::fs::write(full, text).expect("write");
}

/// A new repository with a README, `planning/goal.md` and this configuration.
fn project(repo: &Path, config: &str) {
    std::fs::create_dir_all(repo).expect("mkdir");
    git(repo, &["init", "-q", "-b", "main"], None);
    git(repo, &["config", "user.name", "Bench"], None);
    git(repo, &["config", "user.email", "bench@example.com"], None);
    write(repo, "README.md", "bench\n");
    write(repo, "planning/goal.md", "Benchmark.\n");
    write(repo, "planning/converge.toml", config);
}

/// A repository with one sim task (no invariants), main not checked out.
fn one_task_template(repo: &Path) {
    project(repo, "[reconcile]\ndefault_harness = \"sim\"\n");
    write(
        repo,
        "planning/plans/one.toml",
        "[plan]\nname = \"One\"\n\n[[tasks]]\nname = \"t\"\ndescription = \"d\"\nscope = \"narrow\"\ngate = \"auto\"\n[tasks.sim]\nfiles = [{ path = \"work.txt\", content = \"work\\n\" }]\n",
    );
    git(repo, &["add", "-A"], None);
    git(repo, &["commit", "-q", "-m", "plan"], None);
    git(repo, &["checkout", "-q", "--detach"], None);
}

fn fresh_copy(template: &Path, into: &Path) -> PathBuf {
    let _ = std::fs::remove_dir_all(into);
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(template)
        .arg(into)
        .status()
        .expect("cp");
    assert!(status.success());
    into.to_owned()
}

/// Per round, on fresh copies: converge's four ticks (timed, waiting untimed
/// for the agent between dispatch and gate) and git's commands doing the same.
fn one_task(template: &Path, scratch: &Path, runs: usize) -> (Stats, Stats) {
    let mut converge_times = Vec::new();
    let mut git_times = Vec::new();
    let mut converge_rss = 0;
    let mut git_rss = 0;
    for round in 0..=runs {
        let repo = fresh_copy(template, &scratch.join("one-converge"));
        let mut total = Duration::ZERO;
        let expect = [
            "dispatch one/t",
            "gate one/t",
            "merge one/t",
            "cleanup one/t",
        ];
        for (i, expected) in expect.iter().enumerate() {
            if i == 1 {
                let exit = repo.join(".git/converge/runs/one/t/1/exit.json");
                let until = Instant::now() + Duration::from_secs(30);
                while !exit.exists() && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            let (t, rss, out) =
                run_supervised(&repo, &Cmd::new(&[BIN, "reconcile", "--once"]), true);
            assert!(out.contains(expected), "expected `{expected}`: {out}");
            total += t;
            converge_rss = converge_rss.max(rss);
        }
        let repo = fresh_copy(template, &scratch.join("one-git"));
        let wt = scratch.join("one-git-wt");
        let _ = std::fs::remove_dir_all(&wt);
        let wt_s = wt.to_string_lossy().into_owned();
        let started = Instant::now();
        let mut step = |args: &[&str]| -> String {
            let (_, rss, out) = run_supervised(&repo, &Cmd::new(args), true);
            git_rss = git_rss.max(rss);
            out.trim().to_owned()
        };
        step(&[
            "git",
            "worktree",
            "add",
            "-q",
            "-b",
            "converge/one/t",
            &wt_s,
            "main",
        ]);
        std::fs::write(wt.join("work.txt"), "work\n").expect("write");
        step(&["git", "-C", &wt_s, "add", "-A"]);
        step(&["git", "-C", &wt_s, "commit", "-q", "-m", "work"]);
        let old = step(&["git", "rev-parse", "main"]);
        let tree = step(&[
            "git",
            "merge-tree",
            "--write-tree",
            "main",
            "converge/one/t",
        ]);
        let commit = step(&[
            "git",
            "commit-tree",
            &tree,
            "-p",
            "main",
            "-p",
            "converge/one/t",
            "-m",
            "merge",
        ]);
        step(&["git", "update-ref", "refs/heads/main", &commit, &old]);
        step(&["git", "worktree", "remove", "--force", &wt_s]);
        step(&["git", "branch", "-q", "-D", "converge/one/t"]);
        let git_total = started.elapsed();
        if round > 0 {
            converge_times.push(total);
            git_times.push(git_total);
        }
    }
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    (
        Stats {
            median: median(converge_times),
            max_rss_kib: converge_rss,
        },
        Stats {
            median: median(git_times),
            max_rss_kib: git_rss,
        },
    )
}

/// A plan of `tasks` sim tasks, each depending on up to two earlier ones.
fn dag_repo(repo: &Path, tasks: usize) {
    project(
        repo,
        "[reconcile]\ndefault_harness = \"sim\"\nmax_agents = 8\nactions_per_tick = 8\ndispatches_per_hour = 100000\n\n[invariants.ok]\nkind = \"custom\"\ncommand = \"true\"\n",
    );
    let mut rng = Rng(7);
    let mut text = String::from("[plan]\nname = \"DAG\"\n");
    for i in 0..tasks {
        let mut deps: Vec<String> = Vec::new();
        for _ in 0..2.min(i) {
            let d = format!("\"t{}\"", rng.below(i as u64));
            if !deps.contains(&d) {
                deps.push(d);
            }
        }
        text.push_str(&format!(
            "\n[[tasks]]\nname = \"t{i}\"\ndescription = \"Task {i}.\"\nscope = \"narrow\"\ngate = \"auto\"\ninvariants = [\"ok\"]\ndepends_on = [{}]\n[tasks.sim]\nfiles = [{{ path = \"f/{i}.txt\", content = \"{i}\\n\" }}]\n",
            deps.join(", ")
        ));
    }
    write(repo, "planning/plans/dag.toml", &text);
    git(repo, &["add", "-A"], None);
    git(repo, &["commit", "-q", "-m", "plan"], None);
}
