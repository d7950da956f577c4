//! `converge pause|resume PLAN`: set the plan's `state` and commit it. Paused
//! plans start nothing new; running attempts finish and are checked.

use super::cmd_retry::plan_text;
use super::human::{commit_decision, short, snapshot};
use super::source::open_repo;
use super::{CliError, CliResult, Ctx, PlanArg, print};

pub fn run(ctx: &Ctx, args: &PlanArg, pause: bool) -> CliResult {
    let repo = open_repo(ctx)?;
    let report = snapshot(&repo)?;
    let Some(plan) = report.spec.plans.get(&args.plan) else {
        let hint = crate::spec::suggest::did_you_mean(
            &args.plan,
            report.spec.plans.keys().map(String::as_str),
        )
        .unwrap_or_else(|| "`converge plan show` lists the plans".to_owned());
        return Err(
            CliError::bad_input(format!("there is no valid plan `{}`", args.plan)).hint(hint),
        );
    };
    if plan.id == crate::spec::QUEUE_PLAN {
        return Err(CliError::bad_input("the `queue` plan is always active"));
    }
    let state = if pause { "paused" } else { "active" };
    if plan.state.as_str() == state {
        return print(&format!("{} is already {state}\n", plan.id));
    }
    let text = plan_text(&repo, &report, &plan.file)?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| CliError::failure(format!("cannot edit {}", plan.file)).source(e))?;
    let header = doc
        .get_mut("plan")
        .and_then(toml_edit::Item::as_table_like_mut)
        .ok_or_else(|| CliError::failure(format!("{} has no [plan] table", plan.file)))?;
    header.insert("state", toml_edit::value(state));
    let action = if pause { "pause" } else { "resume" };
    let commit = commit_decision(
        &repo,
        &report,
        vec![(plan.file.clone(), Some(doc.to_string().into_bytes()))],
        action,
        (Some(&plan.id), None),
        vec![format!("state = \"{state}\" for plan {}", plan.id)],
    )?;
    print(&format!(
        "{} is {state} (committed as {} on {})\n",
        plan.id,
        short(&commit.to_string()),
        report.base_branch
    ))
}
