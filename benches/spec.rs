//! Spec benchmarks: `plan validate` of a 10,000-task plan, and loading the spec
//! from a commit of a 10,000-commit repository against `git cat-file --batch`
//! reading the same blobs, measured in the same run.
//!
//! Run: `cargo bench --bench spec` (add `-- --quick` for a smoke run).
//! Results are printed as a markdown table; docs/benchmarks.md records them.
//!
//! Peak RSS is measured per command: the bench re-executes itself as a small
//! supervisor (`--supervise CMD...`) whose only child is the measured command,
//! so `getrusage(RUSAGE_CHILDREN)` reports exactly that command's peak.

mod common;

use std::path::Path;

use common::{Cmd, Rng, Row, build_history, measure, print_rows};

const BIN: &str = env!("CARGO_BIN_EXE_converge");

fn main() {
    let Some(runs) = common::rounds(31) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rows = Vec::new();

    // 1. plan validate of a generated 10,000-task plan.
    let plan_dir = dir.path().join("validate");
    let (bytes, edges) = write_big_plan(&plan_dir, 10_000, 3, 42);
    let validate = Cmd::new(&[BIN, "plan", "validate"]).check(|out| {
        assert!(
            out.contains("10000 tasks") && out.contains("no problems"),
            "unexpected output: {out}"
        );
    });
    let [validate] = measure(runs, &plan_dir, &[validate])[..] else {
        unreachable!()
    };
    rows.push(Row {
        name: format!(
            "plan validate, 10,000 tasks ({edges} dependencies, {} KiB)",
            bytes / 1024
        ),
        measured: validate,
        baseline: None,
        target: "< 150 ms, < 64 MiB",
    });

    // 2. Spec load from a commit of a 10,000-commit repository, for a small and a
    //    large planning/ tree.
    for (plans, tasks) in [(5, 20), (20, 50)] {
        let repo = dir.path().join(format!("repo-{plans}x{tasks}"));
        let blobs = build_history(&repo, 10_000, plans, tasks);
        let batch_input: String = blobs.iter().map(|b| format!("{b}\n")).collect();
        let expected = format!("{} tasks", plans * tasks);
        let git = Cmd::new(&["git", "cat-file", "--batch"]).stdin(batch_input.as_bytes());
        let load = Cmd::new(&[BIN, "plan", "validate", "--rev", "main"]).check(|out| {
            assert!(out.contains(&expected), "unexpected output: {out}");
        });
        let [git, load] = measure(runs, &repo, &[git, load])[..] else {
            unreachable!()
        };
        rows.push(Row {
            name: format!(
                "spec load from a commit (10,000 commits; {} blobs: {plans} plans, {} tasks)",
                blobs.len(),
                plans * tasks
            ),
            measured: load,
            baseline: Some(("git cat-file --batch, same blobs", git)),
            target: "< 3x git",
        });
    }

    print_rows(rows, runs);
}

/// Tasks as a compact array of inline tables (10,000 `[[tasks]]` tables would
/// exceed the 1 MiB file limit). Each task depends on up to `deps` random earlier
/// tasks, so the graph is a DAG.
fn plan_text(tasks: usize, deps: usize, seed: u64) -> (String, usize) {
    let mut rng = Rng(seed | 1);
    let mut out = String::from("tasks = [\n");
    let mut edges = 0;
    for i in 0..tasks {
        let mut chosen: Vec<usize> = Vec::new();
        for _ in 0..deps.min(i) {
            let d = rng.below(i as u64) as usize;
            if !chosen.contains(&d) {
                chosen.push(d);
            }
        }
        edges += chosen.len();
        let list: Vec<String> = chosen.iter().map(|d| format!("\"t{d}\"")).collect();
        out.push_str(&format!(
            "{{name=\"t{i}\",description=\"d\",scope=\"narrow\",gate=\"auto\",depends_on=[{}]}},\n",
            list.join(",")
        ));
    }
    out.push_str("]\n[plan]\nname = \"Generated\"\n");
    (out, edges)
}

fn write_big_plan(dir: &Path, tasks: usize, deps: usize, seed: u64) -> (usize, usize) {
    std::fs::create_dir_all(dir.join("planning/plans")).expect("mkdir");
    std::fs::write(dir.join("planning/goal.md"), "Benchmark.\n").expect("write");
    // Merges are checked, so `auto` tasks without invariants of their own are valid.
    std::fs::write(
        dir.join("planning/converge.toml"),
        "[invariants.ok]\nkind = \"custom\"\ncommand = \"true\"\n\n[merge]\ninvariants = [\"ok\"]\n",
    )
    .expect("write");
    let (text, edges) = plan_text(tasks, deps, seed);
    assert!(
        text.len() < 1024 * 1024,
        "generated plan is {} bytes, over the 1 MiB limit",
        text.len()
    );
    std::fs::write(dir.join("planning/plans/big.toml"), &text).expect("write");
    (text.len(), edges)
}
