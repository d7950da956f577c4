//! `converge reconcile`: run ticks.

use std::time::Duration;

use super::source::open_repo;
use super::{CliError, CliResult, Ctx, FailOn, Kind, ReconcileArgs, print};
use crate::decide::Decision;
use crate::runtime::{self, LoopError, LoopOptions, Recorded, TickError, TickReport, Until};
use crate::time::Timestamp;

pub fn run(ctx: &Ctx, args: &ReconcileArgs) -> CliResult {
    let mut repo = open_repo(ctx)?;
    repo.cache_objects();
    let converge = converge_exe()?;
    let until = if args.wait {
        Until::Settled
    } else if args.until_idle {
        Until::Idle
    } else {
        Until::Once
    };
    let env = |name: &str| std::env::var(name).ok();
    let clock = Timestamp::now;
    let options = LoopOptions {
        until,
        dry_run: args.dry_run,
        converge,
        env: &env,
        lock_wait: if args.wait {
            Duration::from_secs(600)
        } else {
            Duration::ZERO
        },
        max_ticks: args.max_ticks,
        clock: &clock,
    };
    let mut deferred = false;
    let mut failed = false;
    let mut output = Ok(());
    let mut matched = Vec::new();
    let result = runtime::reconcile(&repo, &options, &mut |report| {
        deferred |= matches!(report.recorded, Recorded::Deferred { .. })
            || report.applied.iter().any(|a| a.deferred.is_some())
            || report.push_rejected.is_some();
        failed |= report.failed.is_some();
        matched = fail_on(report, &args.fail_on);
        let text = if args.json {
            let mut value = json_report(report);
            if !args.fail_on.is_empty() {
                value["fail_on"] = matched
                    .iter()
                    .map(|m| {
                        serde_json::json!({
                            "task": m.task,
                            "state": m.state.as_str(),
                            "phase": m.phase.as_str(),
                            "reason": m.reason,
                        })
                    })
                    .collect();
            }
            format!("{value}\n")
        } else {
            text_report(report, args.explain)
        };
        if output.is_ok() {
            output = print(&text);
        }
    });
    output?;
    match result {
        Ok(_) => {}
        Err(e) => return Err(loop_error(e)),
    }
    if failed {
        return Err(CliError::reported(Kind::Failure));
    }
    if !matched.is_empty() {
        // With --json the tick's object already lists them (`fail_on`).
        if args.json {
            return Err(CliError::reported(Kind::Failure));
        }
        let lines: String = matched
            .iter()
            .map(|m| format!("{}: {} — {}\n", m.state.as_str(), m.task, m.why))
            .collect();
        print(&lines)?;
        let states: Vec<&str> = args.fail_on.iter().map(|s| s.as_str()).collect();
        return Err(CliError::failure(format!(
            "{} task(s) match --fail-on {}",
            matched.len(),
            states.join(",")
        ))
        .hint("`converge status` shows what each needs; `converge gate PLAN/TASK` the evidence"));
    }
    if deferred {
        return Err(CliError::reported(Kind::Busy));
    }
    Ok(())
}

/// A task in a state `--fail-on` asked about.
struct Matched {
    task: String,
    state: FailOn,
    phase: crate::status::Phase,
    /// The reason code of the task in the decision after the tick.
    reason: &'static str,
    why: String,
}

/// The tasks in a `--fail-on` state after the tick, as the next tick sees
/// them: escalated (or about to be), or awaiting approval.
fn fail_on(report: &TickReport, states: &[FailOn]) -> Vec<Matched> {
    use crate::decide::ActionKind;
    use crate::status::Phase;
    if states.is_empty() {
        return Vec::new();
    }
    report
        .next
        .report
        .iter()
        .filter_map(|r| {
            let state = if r.phase == Phase::Escalated || r.action == Some(ActionKind::Escalate) {
                FailOn::Escalated
            } else if r.phase == Phase::AwaitingApproval {
                FailOn::AwaitingApproval
            } else {
                return None;
            };
            if !states.contains(&state) {
                return None;
            }
            let failure = report
                .status
                .task(&r.key.plan, &r.key.task)
                .and_then(|s| s.last_failure.as_ref())
                .filter(|_| state == FailOn::Escalated);
            let why = failure.map_or_else(
                || r.reason.to_string(),
                |f| format!("{} ({})", f.message, f.reason),
            );
            Some(Matched {
                task: r.key.to_string(),
                state,
                phase: r.phase,
                reason: r.reason.code(),
                why,
            })
        })
        .collect()
}

pub fn converge_exe() -> CliResult<std::path::PathBuf> {
    std::env::current_exe().map_err(|e| {
        CliError::failure("cannot find the converge executable to start agents with").source(e)
    })
}

pub fn loop_error(e: LoopError) -> CliError {
    match e {
        LoopError::Lock(lock @ runtime::LockError::Busy { .. }) => {
            CliError::new(Kind::Busy, lock.to_string())
                .hint("wait for it to finish, or pass `--wait` to wait for the lock")
        }
        LoopError::Lock(other) => {
            CliError::failure("cannot take the reconciler lock").source(other)
        }
        LoopError::Tick(TickError::InvalidSpec {
            commit,
            diagnostics,
        }) => {
            for d in diagnostics
                .iter()
                .filter(|d| d.severity == crate::spec::Severity::Error)
            {
                eprint!("{d}");
            }
            CliError::bad_input(format!(
                "planning/ at {} has errors that stop every plan; nothing was done",
                &commit[..commit.len().min(7)]
            ))
            .hint("fix them on the base branch; `converge plan validate --rev <base>` lists them")
        }
        LoopError::Tick(TickError::Git(git)) => git.into(),
        LoopError::Tick(e @ TickError::Diverged { .. }) => CliError::failure(e.to_string())
            .hint("merge or rebase one onto the other yourself; converge never force-pushes or rewrites history"),
        LoopError::Tick(TickError::Record(
            e @ crate::status::record::RecordError::Conflict { .. },
        )) => CliError::new(
            Kind::Busy,
            "the status branch moved during the tick; nothing was recorded",
        )
        .source(e)
        .hint("run the tick again; it recomputes from the new state"),
        LoopError::Tick(e @ TickError::WorktreeRoot(_)) => CliError::new(Kind::BadInput, e.to_string())
            .hint("set `worktree_root` in planning/converge.toml to a directory outside .git/ and planning/, for example `worktree_root = \"../worktrees\"`, or remove it for `.converge/worktrees`"),
        LoopError::Tick(TickError::Secret(e)) => CliError::failure("the tick failed")
            .source(e)
            .hint("`converge doctor --fix` makes the secret private (chmod 600); if others may have read it, delete it: agents' tokens are minted anew"),
        LoopError::Tick(other) => CliError::failure("the tick failed").source(other),
        LoopError::Recover(e) => CliError::failure("cannot remove what a killed process left behind")
            .source(e)
            .hint("`converge doctor` lists it; check the path's permissions"),
        LoopError::TooManyTicks { ticks } => {
            CliError::failure(format!("stopped after {ticks} ticks without settling"))
                .hint("raise `--max-ticks`, or look at `converge reconcile --explain`")
        }
    }
}

/// One tick for people: what was done, what was recorded.
pub fn text_report(report: &TickReport, explain: bool) -> String {
    let mut out = String::new();
    for line in &report.recovered {
        out.push_str(&format!("{line}\n"));
    }
    for problem in &report.status_problems {
        out.push_str(&format!("warning: {problem}; rebuilt from what exists\n"));
    }
    for plan in &report.spec.invalid_plans {
        out.push_str(&format!(
            "warning: plan `{plan}` does not validate and is not acted on; `converge plan validate` explains each error\n"
        ));
        if explain {
            for line in super::source::plan_errors(&report.diagnostics, plan) {
                out.push_str(&format!("  {line}\n"));
            }
        }
    }
    for done in &report.applied {
        match &done.deferred {
            None => out.push_str(&format!("{}\n", done.line)),
            Some(why) => out.push_str(&format!("{} ({why})\n", done.line)),
        }
    }
    if let Some(failure) = &report.failed {
        out.push_str(&format!("error: {failure}\n"));
    }
    for line in &report.remote {
        out.push_str(&format!("{line}\n"));
    }
    if let Some(rejected) = &report.push_rejected {
        out.push_str(&format!("{rejected}\n"));
    }
    match &report.recorded {
        Recorded::Committed { commit } => out.push_str(&format!(
            "recorded status as {} on {}\n",
            super::human::short(&commit.to_string()),
            report.status_branch
        )),
        Recorded::Unchanged => {
            if report.applied.is_empty() && !explain {
                let waiting = waiting_on(&report.decision);
                if waiting.is_empty() {
                    out.push_str("nothing to do\n");
                }
                for line in waiting {
                    out.push_str(&format!("waiting: {line}\n"));
                }
            }
        }
        Recorded::DryRun { diff } => {
            out.push_str("dry run: nothing was changed\n\nwould do:\n");
            if report.decision.actions.is_empty() {
                out.push_str("  nothing\n");
            }
            for action in &report.decision.actions {
                out.push_str(&format!("  {}\n", describe(action)));
            }
            if diff.is_empty() {
                out.push_str("\nstatus files would not change\n");
            } else {
                out.push_str("\nstatus files before acting (actions change them further):\n");
                out.push_str(diff);
            }
        }
        Recorded::Deferred { reason } => out.push_str(&format!("status not recorded: {reason}\n")),
    }
    if explain {
        out.push_str(&explain_text(&report.decision));
    }
    out
}

/// What holds back work that is ready, and until when: the limits and
/// cool-downs of the tasks not acted on, each said once.
pub fn waiting_on(decision: &Decision) -> Vec<String> {
    use crate::decide::Reason;
    let mut lines: Vec<String> = Vec::new();
    let reasons = decision
        .report
        .iter()
        .filter(|r| r.action.is_none())
        .map(|r| &r.reason)
        .chain(decision.queue.iter().map(|(_, _, reason)| reason));
    for reason in reasons {
        let line = match reason {
            Reason::DispatchRateLimited { .. }
            | Reason::MaxAgents { .. }
            | Reason::HarnessCooling { .. }
            | Reason::BudgetSpent { .. } => reason.to_string(),
            _ => continue,
        };
        if !lines.contains(&line) {
            lines.push(line);
        }
    }
    lines
}

pub fn describe(action: &crate::decide::Action) -> String {
    use crate::decide::Action;
    match action {
        Action::Reap {
            key,
            attempt,
            reason,
        } => format!("reap {key} (attempt {attempt}): {reason}"),
        Action::Cancel {
            key,
            attempt,
            reason,
        } => {
            format!("cancel {key} (attempt {attempt}): {reason}")
        }
        Action::Gate { key, attempt } => format!("gate {key} (attempt {attempt})"),
        Action::Merge { key, head } => format!("merge {key} at {}", &head[..head.len().min(7)]),
        Action::Retry {
            key,
            attempt,
            reason,
        } => format!("retry {key} (attempt {attempt}): {reason}"),
        Action::Escalate { key, reason } => format!("escalate {key}: {reason}"),
        Action::Dispatch { key, attempt } => format!("dispatch {key} (attempt {attempt})"),
        Action::Promote { item } => format!("promote queue item {item}"),
        Action::Cleanup { key } => format!("cleanup {key}"),
    }
}

/// `--explain`: every task, its phase, and why it is or is not acted on.
pub fn explain_text(decision: &Decision) -> String {
    let mut rows = Vec::new();
    for r in &decision.report {
        rows.push(vec![
            r.key.to_string(),
            r.phase.as_str().to_owned(),
            r.action.map_or("-", |a| a.as_str()).to_owned(),
            r.reason.code().to_owned(),
            r.reason.to_string(),
        ]);
    }
    for (item, action, reason) in &decision.queue {
        rows.push(vec![
            format!("queue item {item}"),
            "queued".to_owned(),
            action.map_or("-", |a| a.as_str()).to_owned(),
            reason.code().to_owned(),
            reason.to_string(),
        ]);
    }
    let mut out = String::from("\n");
    out.push_str(&super::table::render(
        &["TASK", "PHASE", "ACTION", "REASON", "WHY"],
        &rows,
    ));
    if let Some(wake) = decision.wake_at {
        out.push_str(&format!("next change expected without any event: {wake}\n"));
    }
    out
}

/// One tick as a JSON object.
pub fn json_report(report: &TickReport) -> serde_json::Value {
    let recorded = match &report.recorded {
        Recorded::Committed { commit } => {
            serde_json::json!({"kind": "committed", "commit": commit.to_string()})
        }
        Recorded::Unchanged => serde_json::json!({"kind": "unchanged"}),
        Recorded::DryRun { diff } => serde_json::json!({"kind": "dry_run", "diff": diff}),
        Recorded::Deferred { reason } => serde_json::json!({"kind": "deferred", "reason": reason}),
    };
    serde_json::json!({
        "base_branch": report.base_branch,
        "status_branch": report.status_branch,
        "spec_commit": report.spec_commit.to_string(),
        "actions": report.decision.actions.iter().map(|a| serde_json::json!({
            "kind": a.kind().as_str(),
            "task": a.key().map(ToString::to_string),
            "text": describe(a),
        })).collect::<Vec<_>>(),
        "applied": report.applied.iter().map(|a| serde_json::json!({
            "text": a.line,
            "deferred": a.deferred,
            "failed": a.failed,
        })).collect::<Vec<_>>(),
        "failed": report.failed,
        "recorded": recorded,
        "tasks": report.decision.report.iter().map(|r| serde_json::json!({
            "task": r.key.to_string(),
            "phase": r.phase.as_str(),
            "action": r.action.map(|a| a.as_str()),
            "reason": r.reason.code(),
            "message": r.reason.to_string(),
        })).collect::<Vec<_>>(),
        "queue": report.decision.queue.iter().map(|(item, action, reason)| serde_json::json!({
            "item": item,
            "action": action.map(|a| a.as_str()),
            "reason": reason.code(),
            "message": reason.to_string(),
        })).collect::<Vec<_>>(),
        "wake_at": report.decision.wake_at.map(|w| w.to_string()),
        "invalid_plans": report.spec.invalid_plans,
        "remote": report.remote,
        "push_rejected": report.push_rejected,
        "recovered": report.recovered,
    })
}
