//! `converge retry PLAN/TASK`: bump the task's `reset` so the reconciler starts
//! it afresh (`intent::retry`, a declarative retry).

use super::human::{known_task_named, short, snapshot};
use super::source::open_repo;
use super::{CliResult, Ctx, print};

#[derive(Debug, clap::Args)]
pub struct TaskArg {
    /// PLAN/TASK
    pub task: String,
}

pub fn run(ctx: &Ctx, args: &TaskArg) -> CliResult {
    let repo = open_repo(ctx)?;
    let report = snapshot(&repo)?;
    let key = known_task_named(&report, &args.task)?;
    let done = crate::intent::retry(&repo, &super::base_of(&report), &key)?;
    print(&format!(
        "set reset = {} for {key} in {} (committed as {} on {}); the next tick starts it afresh\n",
        done.reset,
        done.file,
        short(&done.committed.to_string()),
        report.base_branch
    ))
}
