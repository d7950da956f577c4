//! `converge approve|reject PLAN/TASK`: a human decision, bound to the commit
//! that was reviewed (`intent::review`).

use super::human::{known_task_named, short, snapshot};
use super::source::open_repo;
use super::{CliResult, Ctx, print};
use crate::intent::{self, Review, Verdict};
use crate::status::Phase;
use crate::time::Timestamp;

#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    /// PLAN/TASK
    pub task: String,
    /// Why; a rejection's reason is given to the next attempt's agent.
    #[arg(long)]
    pub reason: Option<String>,
    /// The reviewed commit (default: the task branch's head now).
    #[arg(long, value_name = "REV")]
    pub commit: Option<String>,
}

pub fn run(ctx: &Ctx, args: &ApproveArgs, approve: bool) -> CliResult {
    let repo = open_repo(ctx)?;
    let report = snapshot(&repo)?;
    let key = known_task_named(&report, &args.task)?;
    let review = Review {
        verdict: if approve {
            Verdict::Approve
        } else {
            Verdict::Reject
        },
        reason: args.reason.as_deref(),
        commit: args.commit.as_deref(),
    };
    let done = intent::review(
        &repo,
        &super::base_of(&report),
        &key,
        &review,
        Timestamp::now(),
    )?;
    let reviewed = done.reviewed.to_string();
    let mut out = String::new();
    if done.phase != Phase::AwaitingApproval {
        out.push_str(&format!(
            "note: {key} is {} now; the decision takes effect when it awaits approval at {}\n",
            done.phase.as_str(),
            short(&reviewed)
        ));
    }
    out.push_str(&format!(
        "{} {key} at {} ({}, committed as {} on {})\n",
        if approve { "approved" } else { "rejected" },
        short(&reviewed),
        done.path,
        short(&done.committed.to_string()),
        report.base_branch
    ));
    out.push_str(if approve {
        "the next tick merges it\n"
    } else {
        "the next tick starts a new attempt with your reason in its prompt\n"
    });
    print(&out)
}
