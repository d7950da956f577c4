//! The raw-git baselines the reconcile and watch benchmarks measure converge
//! against: git plumbing doing one task's work step by step, and a `sh` script
//! doing a whole DAG's work in order.

use std::path::Path;
use std::time::Duration;

use super::workload::{Shape, Workload};
use super::{Cmd, Stats, git, run_supervised};

/// One task's work in raw git, one process per step, in `repo` (`main` not
/// checked out) with its worktree at `wt`, for the task `plan/task`: the
/// durations and peak RSS of [dispatch: `worktree add -b`, `add`, `commit`;
/// merge: `merge-tree --write-tree`, `commit-tree`, `update-ref`; the whole,
/// with `rev-parse`, `worktree remove` and `branch -D`]. Each command's own
/// wall time is counted, without the supervisor's.
pub fn one_task(repo: &Path, wt: &Path, key: &str) -> ([Duration; 3], [u64; 3]) {
    let _ = std::fs::remove_dir_all(wt);
    let wt_s = wt.to_string_lossy().into_owned();
    let branch = format!("converge/{key}");
    let mut git_steps = [Duration::ZERO; 3];
    let mut git_rss = [0u64; 3];
    let mut step = |slot: usize, args: &[&str]| -> String {
        let (t, rss, out) = run_supervised(repo, &Cmd::new(args), true);
        git_rss[slot] = git_rss[slot].max(rss);
        git_rss[2] = git_rss[2].max(rss);
        git_steps[slot] += t;
        if slot != 2 {
            git_steps[2] += t;
        }
        out.trim().to_owned()
    };
    step(
        0,
        &["git", "worktree", "add", "-q", "-b", &branch, &wt_s, "main"],
    );
    let file = format!("{}.txt", key.replace('/', "-"));
    std::fs::write(wt.join(file), "work\n").expect("write");
    step(0, &["git", "-C", &wt_s, "add", "-A"]);
    step(0, &["git", "-C", &wt_s, "commit", "-q", "-m", "work"]);
    let old = step(2, &["git", "rev-parse", "main"]);
    let tree = step(1, &["git", "merge-tree", "--write-tree", "main", &branch]);
    let commit = step(
        1,
        &[
            "git",
            "commit-tree",
            &tree,
            "-p",
            "main",
            "-p",
            &branch,
            "-m",
            "merge",
        ],
    );
    step(1, &["git", "update-ref", "refs/heads/main", &commit, &old]);
    step(2, &["git", "worktree", "remove", "--force", &wt_s]);
    step(2, &["git", "branch", "-q", "-D", &branch]);
    (git_steps, git_rss)
}

/// A fresh copy of `workload` under `scratch`, and a `sh` script that does, per
/// task and in order, `git worktree add -b`, write, `add`, `commit`,
/// `rev-parse`, `merge-tree --write-tree`, `commit-tree`, `update-ref`,
/// `worktree remove`, `branch -D`: its wall time and peak RSS.
pub fn dag_script(scratch: &Path, workload: &Workload) -> Stats {
    let tasks = workload.tasks;
    let baseline = scratch.join(format!("dag-git-{tasks}"));
    workload.create(&baseline);
    let mut script = String::from("set -e\n");
    for i in 0..tasks {
        script.push_str(&format!(
            "git worktree add -q -b converge/p0/t{i} ../wt-{tasks} main\n             mkdir -p ../wt-{tasks}/p0 && echo {i} > ../wt-{tasks}/p0/{i}.txt\n             git -C ../wt-{tasks} add -A\n             git -C ../wt-{tasks} commit -q -m 'task {i}'\n             old=$(git rev-parse main)\n             tree=$(git merge-tree --write-tree main converge/p0/t{i})\n             c=$(git commit-tree \"$tree\" -p main -p converge/p0/t{i} -m 'merge t{i}')\n             git update-ref refs/heads/main \"$c\" \"$old\"\n             git worktree remove --force ../wt-{tasks}\n             git branch -q -D converge/p0/t{i}\n"
        ));
    }
    let script_path = scratch.join(format!("dag-git-{tasks}.sh"));
    std::fs::write(&script_path, script).expect("script");
    let script_s = script_path.to_string_lossy().into_owned();
    let (git_elapsed, git_rss, _) = run_supervised(&baseline, &Cmd::new(&["sh", &script_s]), true);
    let files = git(
        &baseline,
        &["ls-tree", "-r", "--name-only", "main", "p0"],
        None,
    );
    assert_eq!(
        files.lines().count(),
        tasks,
        "the git script merged every task"
    );
    Stats {
        median: git_elapsed,
        max_rss_kib: git_rss,
    }
}

/// The DAG the reconcile and watch benchmarks converge: one plan of `tasks`
/// sim tasks, random with about two dependencies per task.
pub fn random_dag(tasks: usize) -> Workload {
    Workload {
        tasks,
        shape: Shape::Random {
            density: 4.0 / tasks as f64,
        },
        ..Workload::default()
    }
}
