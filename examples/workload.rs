//! Generates a benchmark workload: a repository with N commits and plans of M
//! `sim` tasks in a chosen DAG shape, ready for `converge reconcile`.
//!
//! ```sh
//! cargo run --release --example workload -- /tmp/w --commits 10000 --tasks 1000 --shape random --density 0.002
//! cd /tmp/w && converge reconcile --wait
//! ```

#[path = "../benches/common/mod.rs"]
mod common;

use std::path::PathBuf;

use clap::Parser;

use common::workload::{Shape, Workload};

#[derive(Parser, Debug)]
#[command(about = "Generate a repository and a plan of sim tasks for converge")]
struct Args {
    /// Where to create the repository (must not exist or be empty).
    dir: PathBuf,
    /// Commits on main; the first adds planning/.
    #[arg(long, default_value_t = 1)]
    commits: usize,
    /// Tasks per plan.
    #[arg(long, default_value_t = 100)]
    tasks: usize,
    /// Plans, each with --tasks tasks.
    #[arg(long, default_value_t = 1)]
    plans: usize,
    /// chain, diamonds, fan-out or random.
    #[arg(long, default_value = "random")]
    shape: String,
    /// For --shape random: the probability of an edge between any two tasks.
    #[arg(long, default_value_t = 0.02)]
    density: f64,
    /// Seed of the random shape.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Every Nth task fails its first attempt (0: none).
    #[arg(long, default_value_t = 0)]
    fail_every: usize,
    /// The invariant command every task runs.
    #[arg(long, default_value = "true")]
    invariant: String,
    /// Write the plans as drafts (nothing is dispatched).
    #[arg(long)]
    draft: bool,
}

fn main() {
    let args = Args::parse();
    let shape = match Shape::parse(&args.shape, args.density) {
        Ok(shape) => shape,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::exit(2);
        }
    };
    if std::fs::read_dir(&args.dir).is_ok_and(|mut d| d.next().is_some()) {
        eprintln!(
            "error: {} is not empty; choose a new directory",
            args.dir.display()
        );
        std::process::exit(2);
    }
    let workload = Workload {
        commits: args.commits,
        plans: args.plans,
        tasks: args.tasks,
        shape,
        seed: args.seed,
        fail_every: args.fail_every,
        invariant: args.invariant,
        active: !args.draft,
        ..Workload::default()
    };
    let generated = workload.create(&args.dir);
    println!(
        "created {}: {} commits, {} plan(s), {} tasks, {} dependencies ({:?})",
        args.dir.display(),
        args.commits.max(1),
        args.plans,
        generated.tasks,
        generated.edges,
        shape
    );
}
