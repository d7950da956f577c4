//! `converge pause|resume PLAN`: set the plan's `state` and commit it
//! (`intent::set_plan_state`). Paused plans start nothing new; running
//! attempts finish and are checked.

use super::human::{short, snapshot};
use super::source::open_repo;
use super::{CliResult, Ctx, print};
use crate::intent::{self, StateChange};
use crate::spec::PlanState;

#[derive(Debug, clap::Args)]
pub struct PlanArg {
    /// The plan id (file stem under planning/plans/).
    pub plan: String,
}

pub fn run(ctx: &Ctx, args: &PlanArg, pause: bool) -> CliResult {
    let repo = open_repo(ctx)?;
    let report = snapshot(&repo)?;
    let state = if pause {
        PlanState::Paused
    } else {
        PlanState::Active
    };
    let base = super::base_of(&report);
    match intent::set_plan_state(&repo, &base, &args.plan, state)? {
        StateChange::Already => print(&format!("{} is already {}\n", args.plan, state.as_str())),
        StateChange::Committed { commit } => print(&format!(
            "{} is {} (committed as {} on {})\n",
            args.plan,
            state.as_str(),
            short(&commit.to_string()),
            report.base_branch
        )),
    }
}
