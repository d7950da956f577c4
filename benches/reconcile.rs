//! Reconcile benchmarks, each next to a git baseline measured in the same run
//! where git does comparable work:
//!
//! 1. a no-op tick (`reconcile --once` with nothing to do) on a 10,000-commit
//!    repository with 1,000 tasks;
//! 2. `decide` alone (in process) at 1,000 and 10,000 tasks, against
//!    `git for-each-ref` listing as many task branches;
//! 3. one task's orchestration (the dispatch, gate, merge and cleanup ticks; the
//!    agent's own time excluded), as a whole and per step: dispatch against
//!    `git worktree add` + `git add` + `git commit`, merge against
//!    `git merge-tree --write-tree` + `git commit-tree` + `git update-ref`;
//!    Then importing an attempt's objects from the agent's private repository
//!    (converge's hash-checked copy) against `git fetch` of the same branch;
//! 4. full convergence of 100- and 1,000-task DAGs with instant `sim` agents
//!    and `true` invariants (`reconcile --wait`), against a script of raw git
//!    doing each task's worktree, commit, merge and cleanup in order.
//!
//! Run: `cargo bench --bench reconcile` (add `-- --quick` for a smoke run,
//! which skips the 1,000-task convergence). Workloads come from
//! `benches/common/workload.rs`, also a program:
//! `cargo run --release --example workload -- --help`.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::workload::{Shape, Workload};
use common::{
    Cmd, Row, Stats, build_history_with, git, measure, median, print_rows, project, run_supervised,
    write,
};

const BIN: &str = env!("CARGO_BIN_EXE_converge");

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--decide") {
        decide_mode(&args[2..]);
        return;
    }
    if args.get(1).map(String::as_str) == Some("--import") {
        import_mode(&args[2..]);
        return;
    }
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
    // The baseline: git's own "anything to do here?" on the same repository.
    let status = Cmd::new(&["git", "status", "--porcelain"]);
    let [git_status, noop] = measure(runs, &repo, &[status, tick])[..] else {
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
        baseline: Some(("git status --porcelain", git_status)),
        target: "< 50 ms, < 64 MiB",
    });

    // 2. `decide` alone.
    for tasks in [1_000usize, 10_000] {
        let (decide, listing) = decide_alone(dir.path(), tasks, runs);
        rows.push(Row {
            name: format!(
                "`decide` alone, {tasks} tasks (half merged), in process; peak RSS of the process"
            ),
            measured: decide,
            baseline: Some(("git for-each-ref over as many task branches", listing)),
            target: "-",
        });
    }

    // 3. One task's orchestration against raw git, as a whole and per step.
    let template = dir.path().join("one-template");
    one_task_template(&template);
    let one = one_task(&template, dir.path(), runs);
    rows.push(Row {
        name: "one task: dispatch tick (branch, worktree, lease, agent started, status commit)"
            .into(),
        measured: one.dispatch,
        baseline: Some(("git worktree add -b, add, commit", one.git_dispatch)),
        target: "-",
    });
    rows.push(Row {
        name: "one task: merge tick (trial merge, CAS, status commit)".into(),
        measured: one.merge,
        baseline: Some((
            "git merge-tree --write-tree, commit-tree, update-ref",
            one.git_merge,
        )),
        target: "-",
    });
    rows.push(Row {
        name: "one task: dispatch + gate + merge + cleanup ticks (agent excluded)".into(),
        measured: one.total,
        baseline: Some((
            "git worktree add, commit, merge-tree, commit-tree, update-ref, worktree remove, branch -D",
            one.git_total,
        )),
        target: "< 1.5x git",
    });

    // 3b. Importing an attempt's objects from its private repository.
    let (import, fetch) = import_rounds(dir.path(), runs);
    rows.push(Row {
        name: "import an attempt's work from its private repository (5 commits, 200 files; objects hash-checked)".into(),
        measured: import,
        baseline: Some(("git fetch of the same branch from the private repository", fetch)),
        target: "< 2x git",
    });

    // 4. DAGs from nothing to merged, against git doing each task's work.
    for (tasks, target) in [(100usize, "< 30 s"), (1_000, "-")] {
        if !common::full_run() && tasks > 100 {
            println!("(--quick or --rounds: the {tasks}-task convergence is skipped)\n");
            continue;
        }
        let (converge, git_script) = converge_dag(dir.path(), tasks);
        rows.push(Row {
            name: format!(
                "{tasks}-task DAG, instant sim agents, `true` invariants, to merged (--wait)"
            ),
            measured: converge,
            baseline: Some((
                "a sh script of git: per task worktree add, add, commit, merge-tree, commit-tree, update-ref, worktree remove, branch -D",
                git_script,
            )),
            target,
        });
    }

    print_rows(rows, runs);
    println!("The DAG convergences run once each.");
}

/// The bench binary started as `--decide DIR ITERATIONS`: loads `planning/` from
/// DIR, marks the first half of every plan's tasks merged (in status and in the
/// observation), times `decide` ITERATIONS times and prints the median in
/// nanoseconds and the number of actions.
fn decide_mode(args: &[String]) {
    use converge::decide::{Limits, decide};
    use converge::observe::{Observation, TaskKey, TaskObs};
    use converge::status::{Phase, Status, TaskStatus};
    let root = Path::new(&args[0]);
    let iterations: usize = args[1].parse().expect("iterations");
    let files = converge::spec::PlanningFiles::read_dir(root).expect("planning/");
    let spec = converge::spec::compile(&files).spec.expect("a valid spec");
    let mut status = Status::default();
    let mut obs = Observation::default();
    for plan in spec.plans.values() {
        let half = plan.tasks.len() / 2;
        let plan_status = status.plans.entry(plan.id.clone()).or_default();
        for (i, task) in plan.tasks.iter().enumerate() {
            let merged = i < half;
            plan_status.tasks.insert(
                task.name.clone(),
                TaskStatus {
                    phase: if merged {
                        Phase::Merged
                    } else {
                        Phase::Pending
                    },
                    generation: task.generation.clone(),
                    attempt: u32::from(merged),
                    merged_as: merged.then(|| converge::model::CommitId::from_bytes([0x11; 20])),
                    ..TaskStatus::default()
                },
            );
            if merged {
                obs.tasks.insert(
                    TaskKey::new(&plan.id, &task.name),
                    TaskObs {
                        merged: true,
                        ..TaskObs::default()
                    },
                );
            }
        }
    }
    let limits = Limits::from(&spec.config.reconcile);
    let now = converge::time::Timestamp::from_unix(1_800_000_000);
    let mut times = Vec::with_capacity(iterations);
    let mut actions = 0;
    for _ in 0..iterations {
        let started = Instant::now();
        let decision = decide(&spec, &obs, &status, now, &limits);
        times.push(started.elapsed());
        actions = decision.actions.len();
        std::hint::black_box(decision);
    }
    times.sort();
    println!("{} {actions}", times[times.len() / 2].as_nanos());
}

/// `decide` at `tasks` tasks (plans of 1,000) against `git for-each-ref`
/// listing `tasks` branches, in the same rounds.
fn decide_alone(scratch: &Path, tasks: usize, runs: usize) -> (Stats, Stats) {
    let root = scratch.join(format!("decide-{tasks}"));
    let workload = Workload {
        plans: tasks / 1_000,
        tasks: 1_000,
        shape: Shape::Random { density: 0.002 },
        ..Workload::default()
    };
    workload.create(&root);
    let mut refs = String::new();
    for p in 0..workload.plans {
        for t in 0..workload.tasks {
            refs.push_str(&format!("create refs/heads/converge/p{p}/t{t} main\n"));
        }
    }
    git(&root, &["update-ref", "--stdin"], Some(refs.as_bytes()));
    git(&root, &["pack-refs", "--all"], None);
    let me = std::env::current_exe().expect("current exe");
    let me = me.to_string_lossy().into_owned();
    let root_s = root.to_string_lossy().into_owned();
    let listing = [
        "git",
        "for-each-ref",
        "--format=%(refname)",
        "refs/heads/converge/",
    ];
    assert_eq!(
        git(&root, &listing[1..], None).lines().count(),
        tasks,
        "git lists every task branch"
    );
    let listing = Cmd::new(&listing);
    let mut decide_times = Vec::new();
    let mut decide_rss = 0;
    let mut git_times = Vec::new();
    let mut git_rss = 0;
    for round in 0..=runs {
        let (_, rss, out) =
            run_supervised(&root, &Cmd::new(&[&me, "--decide", &root_s, "21"]), true);
        let nanos: u64 = out
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .expect("decide prints its time");
        let [listed] = measure(1, &root, std::slice::from_ref(&listing))[..] else {
            unreachable!()
        };
        if round > 0 {
            decide_times.push(Duration::from_nanos(nanos));
            decide_rss = decide_rss.max(rss);
            git_times.push(listed.median);
            git_rss = git_rss.max(listed.max_rss_kib);
        }
    }
    (
        Stats {
            median: median(decide_times),
            max_rss_kib: decide_rss,
        },
        Stats {
            median: median(git_times),
            max_rss_kib: git_rss,
        },
    )
}

/// A DAG of `tasks` sim tasks (random, about two dependencies each) from
/// nothing to merged with `reconcile --wait`, and a git script doing the same
/// work per task in the same order, each once.
fn converge_dag(scratch: &Path, tasks: usize) -> (Stats, Stats) {
    let workload = common::baseline::random_dag(tasks);
    let repo = scratch.join(format!("dag-{tasks}"));
    let generated = workload.create(&repo);
    let (elapsed, rss, out) = run_supervised(
        &repo,
        &Cmd::new(&[BIN, "reconcile", "--wait", "--max-ticks", "100000"]),
        true,
    );
    let status = git(&repo, &["show", "main:planning/status/p0.toml"], None);
    let merged = status.matches("phase = \"merged\"").count();
    assert_eq!(merged, tasks, "all tasks merged: {out:.2000}");
    eprintln!(
        "{tasks}-task DAG ({} dependencies) converged in {:.1} s",
        generated.edges,
        elapsed.as_secs_f64()
    );

    let git_script = common::baseline::dag_script(scratch, &workload);
    (
        Stats {
            median: elapsed,
            max_rss_kib: rss,
        },
        git_script,
    )
}

/// A repository with one sim task (no invariants), main not checked out.
fn one_task_template(repo: &Path) {
    project(repo, "[reconcile]\ndefault_harness = \"sim\"\n");
    write(
        repo,
        "planning/plans/one.toml",
        "[plan]\nname = \"One\"\n\n[[tasks]]\nname = \"t\"\ndescription = \"d\"\nscope = \"narrow\"\ngate = \"auto\"\nallow_unchecked = true\n[tasks.sim]\nfiles = [{ path = \"work.txt\", content = \"work\\n\" }]\n",
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

/// One task's medians, converge's and git's, per step and in total.
struct OneTask {
    dispatch: Stats,
    merge: Stats,
    total: Stats,
    git_dispatch: Stats,
    git_merge: Stats,
    git_total: Stats,
}

/// Per round, on fresh copies: converge's four ticks (timed, waiting untimed
/// for the agent between dispatch and gate) and git's commands doing the same.
fn one_task(template: &Path, scratch: &Path, runs: usize) -> OneTask {
    // [dispatch, merge, total] for converge, then for git.
    let mut times: [Vec<Duration>; 6] = Default::default();
    let mut converge_rss = [0u64; 3];
    let mut git_rss = [0u64; 3];
    for round in 0..=runs {
        let repo = fresh_copy(template, &scratch.join("one-converge"));
        let mut total = Duration::ZERO;
        let mut steps = [Duration::ZERO; 4];
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
            steps[i] = t;
            let slot = match i {
                0 => 0,
                2 => 1,
                _ => 2,
            };
            converge_rss[slot] = converge_rss[slot].max(rss);
            converge_rss[2] = converge_rss[2].max(rss);
        }
        let repo = fresh_copy(template, &scratch.join("one-git"));
        let (git_steps, rss) =
            common::baseline::one_task(&repo, &scratch.join("one-git-wt"), "one/t");
        for (slot, r) in rss.into_iter().enumerate() {
            git_rss[slot] = git_rss[slot].max(r);
        }
        if round > 0 {
            times[0].push(steps[0]);
            times[1].push(steps[2]);
            times[2].push(total);
            times[3].push(git_steps[0]);
            times[4].push(git_steps[1]);
            times[5].push(git_steps[2]);
        }
    }
    let [d, m, t, gd, gm, gt] = times.map(median);
    let stats = |median, max_rss_kib| Stats {
        median,
        max_rss_kib,
    };
    OneTask {
        dispatch: stats(d, converge_rss[0]),
        merge: stats(m, converge_rss[1]),
        total: stats(t, converge_rss[2]),
        git_dispatch: stats(gd, git_rss[0]),
        git_merge: stats(gm, git_rss[1]),
        git_total: stats(gt, git_rss[2]),
    }
}

/// The bench binary started as `--import MAIN WORKTREE`: imports the agent's
/// branch `converge/p/t` from its private repository at WORKTREE into MAIN,
/// as the gate does, and prints how many objects it copied.
fn import_mode(args: &[String]) {
    let repo = converge::git::Repo::discover(Path::new(&args[0])).expect("main");
    let wt = Path::new(&args[1]);
    let head = converge::git::private::private_head(wt, "converge/p/t")
        .expect("the agent's branch")
        .expect("present");
    let copied = repo.import_objects(wt, head).expect("import");
    println!("copied {copied}");
}

/// Per round, on fresh copies: a private repository made by converge, five
/// commits of an agent's (200 files, untimed), then the import (timed, its own
/// process) against `git fetch` of the same branch into another copy.
fn import_rounds(scratch: &Path, runs: usize) -> (Stats, Stats) {
    let template = scratch.join("import-template");
    project(&template, "[reconcile]\n");
    for i in 0..300 {
        write(
            &template,
            &format!("src/d{}/f{i}.txt", i % 30),
            &format!("base {i}\n"),
        );
    }
    git(&template, &["add", "-A"], None);
    git(&template, &["commit", "-q", "-m", "base"], None);
    let exe = std::env::current_exe().expect("bench exe");
    let exe = exe.to_string_lossy().into_owned();
    let mut times: [Vec<Duration>; 2] = Default::default();
    let mut rss = [0u64; 2];
    for round in 0..=runs {
        let main = fresh_copy(&template, &scratch.join("import-main"));
        let wt = scratch.join("import-wt");
        let _ = std::fs::remove_dir_all(&wt);
        let repo = converge::git::Repo::discover(&main).expect("main");
        let fork = repo.resolve_commit("main").expect("main");
        repo.create_private(&wt, "converge/p/t", fork)
            .expect("private");
        for c in 0..5 {
            for i in 0..40 {
                let n = c * 40 + i;
                write(
                    &wt,
                    &format!("src/d{}/f{n}.txt", n % 30),
                    &format!("agent {c} {n}\n"),
                );
            }
            git(&wt, &["add", "-A"], None);
            git(&wt, &["commit", "-q", "-m", &format!("work {c}")], None);
        }
        let main_s = main.to_string_lossy().into_owned();
        let wt_s = wt.to_string_lossy().into_owned();
        let (t, r, out) =
            run_supervised(&main, &Cmd::new(&[&exe, "--import", &main_s, &wt_s]), true);
        assert!(out.contains("copied "), "{out}");
        let other = fresh_copy(&template, &scratch.join("import-git"));
        let (tg, rg, _) = run_supervised(
            &other,
            &Cmd::new(&["git", "fetch", "-q", &wt_s, "converge/p/t"]),
            true,
        );
        git(&other, &["cat-file", "-e", "FETCH_HEAD^{commit}"], None);
        if round == 0 {
            continue;
        }
        times[0].push(t);
        times[1].push(tg);
        rss[0] = rss[0].max(r);
        rss[1] = rss[1].max(rg);
    }
    let stats = |mut t: Vec<Duration>, max_rss_kib: u64| {
        t.sort();
        Stats {
            median: t[t.len() / 2],
            max_rss_kib,
        }
    };
    let [converge, fetch] = times;
    (stats(converge, rss[0]), stats(fetch, rss[1]))
}
