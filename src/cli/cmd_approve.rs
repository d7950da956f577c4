//! `converge approve|reject PLAN/TASK`: a human decision, bound to the commit
//! that was reviewed, written to planning/approvals/ and committed on the base
//! branch.

use super::human::{commit_decision, known_task_named, short, snapshot};
use super::source::open_repo;
use super::{ApproveArgs, CliError, CliResult, Ctx, print};
use crate::status::Phase;
use crate::time::Timestamp;

pub fn run(ctx: &Ctx, args: &ApproveArgs, approve: bool) -> CliResult {
    let repo = open_repo(ctx)?;
    let report = snapshot(&repo)?;
    let key = known_task_named(&report, &args.task)?;
    if !approve && args.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
        return Err(CliError::bad_input("a rejection needs a reason")
            .hint("pass `--reason \"...\"`: it is given to the next attempt's agent"));
    }
    let commit = match &args.commit {
        Some(rev) => repo.resolve_commit(rev)?,
        None => repo.branch_tip(&key.branch())?.ok_or_else(|| {
            CliError::bad_input(format!("{key} has no branch to review")).hint(
                "a task can be approved once it awaits approval; `converge status` shows which do",
            )
        })?,
    };
    let st = report.status.task(&key.plan, &key.task);
    let phase = st.map_or(Phase::Pending, |s| s.phase);
    let mut notes = Vec::new();
    if phase != Phase::AwaitingApproval {
        notes.push(format!(
            "note: {key} is {} now; the decision takes effect when it awaits approval at {}",
            phase.as_str(),
            short(&commit.to_string())
        ));
    }
    let signature = repo.signature();
    let by = format!("{} <{}>", signature.name, signature.email);
    let mut table = toml::Table::new();
    table.insert(
        "decision".into(),
        toml::Value::String(if approve { "approve" } else { "reject" }.into()),
    );
    table.insert("commit".into(), toml::Value::String(commit.to_string()));
    if let Some(reason) = args.reason.as_deref().filter(|r| !r.trim().is_empty()) {
        table.insert(
            "reason".into(),
            toml::Value::String(reason.trim().to_owned()),
        );
    }
    table.insert("by".into(), toml::Value::String(by.clone()));
    table.insert(
        "at".into(),
        toml::Value::String(Timestamp::now().to_string()),
    );
    let text = toml::to_string(&table)
        .map_err(|e| CliError::failure("cannot encode the approval").source(e))?;
    let path = format!("planning/approvals/{}/{}.toml", key.plan, key.task);
    let action = if approve { "approve" } else { "reject" };
    let committed = commit_decision(
        &repo,
        &report,
        vec![(path.clone(), Some(text.into_bytes()))],
        action,
        (Some(&key.plan), Some(&key.task)),
        vec![format!("{action} {key} at {commit} by {by}")],
    )?;
    let mut out = String::new();
    for note in notes {
        out.push_str(&note);
        out.push('\n');
    }
    out.push_str(&format!(
        "{} {key} at {} ({path}, committed as {} on {})\n",
        if approve { "approved" } else { "rejected" },
        short(&commit.to_string()),
        short(&committed.to_string()),
        report.base_branch
    ));
    out.push_str(if approve {
        "the next tick merges it\n"
    } else {
        "the next tick starts a new attempt with your reason in its prompt\n"
    });
    print(&out)
}
