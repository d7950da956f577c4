//! `converge reconcile`: run ticks.

use std::time::Duration;

use clap::ValueEnum;

pub use super::error::loop_error;
use super::source::open_repo;
use super::{CliError, CliResult, Ctx, Kind, print};
use crate::decide::Decision;
use crate::runtime::{self, LoopOptions, Recorded, TickReport, Until};
use crate::time::Timestamp;
use crate::view::{AppliedView, FailOnView, RecordedView, TickView};

#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    /// One tick (the default; accepted for scripts that say so).
    #[arg(long, conflicts_with_all = ["until_idle", "wait"])]
    pub once: bool,
    /// Decide and show, change nothing: the actions and the status diff.
    #[arg(long)]
    pub dry_run: bool,
    /// For every task, why it is or is not acted on, with a reason code.
    #[arg(long)]
    pub explain: bool,
    /// Tick again while a tick acts.
    #[arg(long)]
    pub until_idle: bool,
    /// Like --until-idle, and also wait for running agents and backoffs (for CI
    /// jobs, where a detached agent would die with the job).
    #[arg(long)]
    pub wait: bool,
    /// One JSON object per tick.
    #[arg(long)]
    pub json: bool,
    /// Stop with an error after this many ticks.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub max_ticks: u32,
    /// Exit 1, listing them, when tasks are in this state after the ticks (for
    /// CI jobs). Repeatable, or comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "STATE")]
    pub fail_on: Vec<FailOn>,
}

/// Task states `converge reconcile --fail-on` fails for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum FailOn {
    /// Escalated, or about to be: a human must decide.
    Escalated,
    /// Passed its invariants and waits for `converge approve` or `reject`.
    AwaitingApproval,
}

impl FailOn {
    pub fn as_str(self) -> &'static str {
        match self {
            FailOn::Escalated => "escalated",
            FailOn::AwaitingApproval => "awaiting-approval",
        }
    }
}

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
    // CONVERGE_NOW (test-only) fixes the ticks' clock.
    let fixed = fixed_now(&env)?;
    let clock = move || fixed.unwrap_or_else(Timestamp::now);
    let cache = runtime::Cache::default();
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
        cache: &cache,
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
            let mut view = tick_view(report);
            if !args.fail_on.is_empty() {
                view.fail_on = Some(
                    matched
                        .iter()
                        .map(|m| FailOnView {
                            task: m.task.clone(),
                            state: m.state.as_str().to_owned(),
                            phase: m.phase.as_str().to_owned(),
                            reason: m.reason.to_owned(),
                        })
                        .collect(),
                );
            }
            match crate::view::to_json(&view) {
                Ok(value) => format!("{value}\n"),
                Err(e) => {
                    output = Err(CliError::failure("cannot encode the tick as JSON").source(e));
                    return;
                }
            }
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
    for line in report.schedules.lines(explain) {
        out.push_str(&format!("{line}\n"));
    }
    for line in &report.autonomy.lines {
        out.push_str(&format!("{line}\n"));
    }
    if explain && let Some((code, why)) = &report.autonomy.wait {
        out.push_str(&format!("autonomy: waits [{code}]: {why}\n"));
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
                out.push_str(&format!("  {action}\n"));
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

/// One tick as its view.
pub fn tick_view(report: &TickReport) -> TickView {
    let recorded = match &report.recorded {
        Recorded::Committed { commit } => RecordedView::Committed {
            commit: commit.to_string(),
        },
        Recorded::Unchanged => RecordedView::Unchanged,
        Recorded::DryRun { diff } => RecordedView::DryRun { diff: diff.clone() },
        Recorded::Deferred { reason } => RecordedView::Deferred {
            reason: reason.clone(),
        },
    };
    TickView {
        base_branch: report.base_branch.clone(),
        status_branch: report.status_branch.clone(),
        spec_commit: report.spec_commit.to_string(),
        applied: report
            .applied
            .iter()
            .map(|a| AppliedView {
                text: a.line.clone(),
                deferred: a.deferred.clone(),
                failed: a.failed.clone(),
            })
            .collect(),
        failed: report.failed.clone(),
        recorded,
        invalid_plans: report.spec.invalid_plans.clone(),
        remote: report.remote.clone(),
        push_rejected: report.push_rejected.clone(),
        recovered: report.recovered.clone(),
        autonomy: report.autonomy.lines.clone(),
        autonomy_waits: report.autonomy.wait.as_ref().map(|(code, _)| code.clone()),
        ..TickView::of_decision(&report.decision)
    }
}

/// `CONVERGE_NOW` (test-only): the ticks' fixed clock, if set; a bad value
/// is refused with a hint (`reconcile` and `watch` read it alike).
pub(super) fn fixed_now(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Timestamp>, CliError> {
    Timestamp::fixed_by(env).map_err(|e| {
        CliError::bad_input(e).hint("CONVERGE_NOW is for tests only; unset it to use the clock")
    })
}
