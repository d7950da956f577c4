//! `converge history [PLAN]`: the status commits, read back from their trailers.

use super::human::short;
use super::source::open_repo;
use super::{CliResult, Ctx, print};
use crate::spec::base::{base_source, remote_settings};
use crate::status::record::trailers;
use crate::time::Timestamp;

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// Only this plan.
    pub plan: Option<String>,
    /// At most this many commits.
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub limit: usize,
}

pub fn run(ctx: &Ctx, args: &HistoryArgs) -> CliResult {
    let repo = open_repo(ctx)?;
    let base = base_source(&repo)?;
    let depth = args.limit.saturating_mul(20).max(1000);
    let mut commits = repo.log(base.commit, depth)?;
    // Status commits live on the status branch when it is not the base
    // branch (what `converge init` writes); people's decisions and merges on
    // the base branch. Both, newest first, each commit once.
    let (_, status_branch) = remote_settings(&repo, base.commit)?;
    if let Some(tip) = match status_branch.filter(|b| *b != base.rev) {
        Some(branch) => repo.branch_tip(&branch)?,
        None => None,
    } {
        let seen: std::collections::HashSet<_> = commits.iter().map(|(id, ..)| *id).collect();
        let status = repo.log(tip, depth)?;
        commits.extend(status.into_iter().filter(|(id, ..)| !seen.contains(id)));
        commits.sort_by_key(|(_, time, _)| std::cmp::Reverse(*time));
    }
    let mut rows = Vec::new();
    for (id, time, message) in commits {
        let t = trailers(&message);
        let get = |k: &str| t.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        let Some(action) = get("Converge-Action") else {
            continue;
        };
        let plan = get("Converge-Plan");
        if args.plan.as_ref().is_some_and(|p| plan.as_ref() != Some(p)) {
            continue;
        }
        let task = match (plan, get("Converge-Task")) {
            (Some(p), Some(t)) => format!("{p}/{t}"),
            (Some(p), None) => p,
            _ => "-".to_owned(),
        };
        let subject = message.lines().next().unwrap_or("").to_owned();
        rows.push(vec![
            short(&id.to_string()).to_owned(),
            Timestamp::from_unix(time).to_string(),
            action,
            task,
            get("Converge-Attempt").unwrap_or_else(|| "-".into()),
            subject,
        ]);
        if rows.len() >= args.limit {
            break;
        }
    }
    if rows.is_empty() {
        return print("no converge commits yet\n");
    }
    print(&super::table::render(
        &["COMMIT", "DATE", "ACTION", "TASK", "ATTEMPT", "SUBJECT"],
        &rows,
    ))
}
