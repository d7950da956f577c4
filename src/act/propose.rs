//! Propose: passed work goes to the forge as a change (a pull request) —
//! pushed, opened or updated in place, labelled, with converge's gate as a
//! commit status. What the forge reports becomes the task's outcome: the
//! change's number and the head pushed, or hands-off when someone else
//! pushed to the branch.

use crate::forge::{Proposal, Proposed};
use crate::model::{CommitId, TaskKey};
use crate::spec::{Plan, Task};
use crate::status::Status;

use super::{ActCtx, ActError, Applied, Outcome};

pub(super) fn propose(
    ctx: &mut ActCtx<'_>,
    status: &Status,
    key: &TaskKey,
    head: CommitId,
    opens: bool,
) -> Result<Applied, ActError> {
    let super::PassedTask {
        plan,
        task,
        attempt,
        change: record,
    } = super::passed_task(ctx.spec, status, key)?;
    let proposal = Proposal {
        key: key.clone(),
        head,
        pushed: record.map(crate::status::ChangeRecord::tip),
        number: record.map(|c| c.number),
        base_branch: ctx.base_branch.clone(),
        title: title(key, task),
        body: body(ctx, status, key, (plan, task), attempt, head),
        gate: gate_line(status, key, attempt),
    };
    match ctx.forge.propose(&proposal)? {
        Proposed::Change { number } => {
            let verb = if record.is_some_and(|c| c.number == number) {
                "updated"
            } else {
                "opened"
            };
            Ok(Applied::done(
                format!(
                    "propose {key} (attempt {attempt}): {verb} pull request #{number} at {}",
                    head.short()
                ),
                vec![Outcome::Proposed { number, head }],
            ))
        }
        // An open change converge opened: it leaves it alone from now on.
        Proposed::HandsOff { why } if record.is_some() && !opens => Ok(Applied::done(
            format!("propose {key}: hands off, {why}"),
            vec![Outcome::HandsOff { why }],
        )),
        // No open change of converge's (none yet, or the last one was
        // closed), and the branch on the forge holds someone else's
        // commits: a human decides (converge never pushes over them).
        Proposed::HandsOff { why } => Ok(Applied::done(
            format!("propose {key}: {why}; escalated"),
            vec![
                Outcome::Failed {
                    attempt,
                    head: Some(head),
                    failure: crate::status::Failure {
                        attempt,
                        reason: crate::model::FailureCode::BranchMoved,
                        message: format!(
                            "{why}; converge does not push over it: delete or rename that branch on the forge, then `converge retry`"
                        ),
                        output_tail: None,
                    },
                },
                Outcome::Escalated { rejection: None },
            ],
        )),
    }
}

/// The gate's evidence in a line: the invariants that passed, and those
/// that failed but are advisory.
fn gate_line(status: &Status, key: &TaskKey, attempt: u32) -> String {
    let gate = status.task(&key.plan, &key.task).map(|s| &s.gate);
    let mut passed: Vec<&String> = Vec::new();
    let mut advisory: Vec<&String> = Vec::new();
    for (name, evidence) in gate.into_iter().flatten() {
        if name.starts_with(super::merge::MERGE_EVIDENCE) {
            continue;
        }
        if evidence.passed {
            passed.push(name);
        } else {
            advisory.push(name);
        }
    }
    let mut line = format!("attempt {attempt} passed converge's gate");
    if passed.is_empty() && advisory.is_empty() {
        line.push_str(" (no invariants)");
    }
    if !passed.is_empty() {
        let names: Vec<&str> = passed.iter().map(|n| n.as_str()).collect();
        line.push_str(&format!(": {}", names.join(", ")));
    }
    if !advisory.is_empty() {
        let names: Vec<&str> = advisory.iter().map(|n| n.as_str()).collect();
        line.push_str(&format!("; advisory failures: {}", names.join(", ")));
    }
    line
}

fn title(key: &TaskKey, task: &Task) -> String {
    let first = task
        .description
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let mut title = format!("converge: {key}");
    if !first.is_empty() {
        title.push_str(" — ");
        title.push_str(first);
    }
    title.chars().take(200).collect()
}

/// The task, the attempt, the gate's evidence, the dependencies' pull
/// requests, and the hidden marker that names the task.
fn body(
    ctx: &ActCtx<'_>,
    status: &Status,
    key: &TaskKey,
    (plan, task): (&Plan, &Task),
    attempt: u32,
    head: CommitId,
) -> String {
    let mut out = format!(
        "{}\n\n**Task** `{key}` (plan `{}`), attempt {attempt}, at `{}`.\n",
        task.description.trim(),
        plan.id,
        head.short()
    );
    let st = status.task(&key.plan, &key.task);
    if let Some(gate) = st.map(|s| &s.gate).filter(|g| !g.is_empty()) {
        out.push_str("\n**converge's gate**\n\n| invariant | result |\n|---|---|\n");
        for (name, e) in gate {
            let result = if e.passed {
                "passed"
            } else {
                "failed (advisory)"
            };
            out.push_str(&format!("| `{name}` | {result} |\n"));
        }
    }
    let deps: Vec<String> = task
        .depends_on
        .iter()
        .map(|d| {
            let pr = status
                .task(&key.plan, d)
                .and_then(|s| s.change.as_ref())
                .map(|c| format!(" (#{})", c.number))
                .unwrap_or_default();
            format!("- `{}/{d}`{pr}", key.plan)
        })
        .collect();
    if !deps.is_empty() {
        out.push_str("\n**Depends on**\n\n");
        out.push_str(&deps.join("\n"));
        out.push('\n');
    }
    out.push_str(&format!(
        "\nOpened by converge from `planning/` on `{}`; pushes by anyone else make converge leave this pull request alone.\n\n{}\n",
        ctx.base_branch,
        crate::forge::github::marker(key)
    ));
    out
}
