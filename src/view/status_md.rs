//! `planning/STATUS.md`: the human dashboard, in Renovate-style sections. Every
//! entry that needs a human says which command to run. Pure: rendered from the
//! spec, the recorded status and a decision report.

use std::fmt::Write;

use crate::decide::{ActionKind, Decision, Reason, TaskReport};
use crate::spec::Spec;
use crate::status::{Phase, Status, TaskStatus};
use crate::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Section {
    AwaitingApproval,
    Escalated,
    FailedRetrying,
    Running,
    Blocked,
    Ready,
    Queued,
    Merged,
}

impl Section {
    fn title(self) -> &'static str {
        match self {
            Section::AwaitingApproval => "Awaiting approval",
            Section::Escalated => "Escalated",
            Section::FailedRetrying => "Failed, retrying",
            Section::Running => "Running",
            Section::Blocked => "Blocked",
            Section::Ready => "Ready",
            Section::Queued => "Queued",
            Section::Merged => "Merged",
        }
    }

    /// How the summary line counts entries of this section.
    fn counted(self) -> &'static str {
        match self {
            Section::AwaitingApproval => "awaiting approval",
            Section::Escalated => "escalated",
            Section::FailedRetrying => "retrying",
            Section::Running => "running",
            Section::Blocked => "blocked",
            Section::Ready => "ready",
            Section::Queued => "queued",
            Section::Merged => "merged",
        }
    }

    fn blurb(self) -> &'static str {
        match self {
            Section::AwaitingApproval => {
                "Passed their invariants; a human reviews the branch and decides."
            }
            Section::Escalated => {
                "Out of attempts or not retryable: a human decides what happens next."
            }
            Section::FailedRetrying => {
                "Failed an attempt; converge retries after a backoff, with the failure in the next prompt."
            }
            Section::Running => "An agent is working, or converge is checking what it did.",
            Section::Blocked => "A dependency escalated or is itself blocked.",
            Section::Ready => "Ready to start or to merge; waiting only for a slot.",
            Section::Queued => {
                "Waiting for dependencies, a draft or paused plan, or promotion from the queue."
            }
            Section::Merged => "Done; the most recent first.",
        }
    }
}

fn section_of(report: &TaskReport) -> Section {
    match report.phase {
        Phase::AwaitingApproval => Section::AwaitingApproval,
        Phase::Escalated => Section::Escalated,
        Phase::Failed if report.action == Some(ActionKind::Escalate) => Section::Escalated,
        Phase::Failed => Section::FailedRetrying,
        Phase::Running | Phase::Checking => Section::Running,
        Phase::Blocked => Section::Blocked,
        Phase::Merged => Section::Merged,
        Phase::Passed => match report.reason {
            Reason::PlanPaused | Reason::PlanDraft => Section::Queued,
            _ => Section::Ready,
        },
        Phase::Pending | Phase::Cancelled => match report.reason {
            Reason::Ready
            | Reason::MaxAgents { .. }
            | Reason::DispatchRateLimited { .. }
            | Reason::ActionsPerTick => Section::Ready,
            _ => Section::Queued,
        },
    }
}

/// The entries of each section, in section order.
type Sections = std::collections::BTreeMap<Section, Vec<String>>;

/// Renders STATUS.md from the state after a tick: `decision` is what the next
/// tick would do. Nothing here depends on the clock or on the commit the tick
/// read, so a tick that changes nothing renders the same bytes (and writes no
/// commit); the commit itself says when and from which planning commit.
pub fn status_md(spec: &Spec, status: &Status, decision: &Decision, extra: &Extra) -> String {
    let sections = sections(spec, status, decision);
    let mut out = String::new();
    heading(&mut out, &sections);
    invalid_plans(&mut out, spec, status);
    attention(&mut out, status, &extra.attention);
    for section in &extra.sections {
        out.push_str(section);
    }
    for (section, entries) in &sections {
        section_list(&mut out, *section, entries);
    }
    if let Some(wake) = decision.wake_at {
        let _ = writeln!(out, "Next change expected without any event: {wake}.");
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

/// What other parts of converge add to STATUS.md (the autonomy loop's
/// section and Attention entries), rendered by them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extra {
    /// Markdown sections, each ending with a blank line, after Attention.
    pub sections: Vec<String>,
    /// Attention entries (without the leading `- `).
    pub attention: Vec<String>,
}

/// Every task and queue item, as an entry of its section; merged tasks the
/// most recent first.
fn sections(spec: &Spec, status: &Status, decision: &Decision) -> Sections {
    let mut sections = Sections::new();
    let mut merged: Vec<(Option<Timestamp>, String)> = Vec::new();
    for report in &decision.report {
        let st = status.task(&report.key.plan, &report.key.task);
        let section = section_of(report);
        let entry = entry(spec, st, report, section);
        if section == Section::Merged {
            // Ordered by when the work ended, so that the last ones are shown.
            let ended = st.and_then(|s| s.attempts.iter().filter_map(|a| a.ended_at).max());
            merged.push((ended, entry));
            continue;
        }
        sections.entry(section).or_default().push(entry);
    }
    merged.sort_by_key(|entry| std::cmp::Reverse(entry.0));
    if !merged.is_empty() {
        sections.insert(
            Section::Merged,
            merged.into_iter().map(|(_, entry)| entry).collect(),
        );
    }
    for (item, _, reason) in &decision.queue {
        let what = match reason {
            Reason::Queued => "next: promote into the `queue` plan".to_owned(),
            other => format!("waiting to be promoted: {other}"),
        };
        sections
            .entry(Section::Queued)
            .or_default()
            .push(format!("queue item `{item}` — {what}."));
    }
    sections
}

/// A task's entry in `section`.
fn entry(spec: &Spec, st: Option<&TaskStatus>, report: &TaskReport, section: Section) -> String {
    let key = &report.key;
    let attempt = st.map_or(0, |s| s.attempt);
    match section {
        Section::AwaitingApproval => awaiting_approval(spec, st, report),
        Section::Escalated => escalated(st, report),
        Section::FailedRetrying => failed_retrying(spec, st, report),
        Section::Running => format!(
            "**{key}** (attempt {attempt}) — {}. `converge log {key} --follow`",
            report.reason
        ),
        Section::Blocked => format!("**{key}** — {}.", report.reason),
        Section::Ready | Section::Queued => match report.action {
            Some(kind) => format!("{key} — {}; next: {}.", report.reason, kind.as_str()),
            None => format!("{key} — {}.", report.reason),
        },
        Section::Merged => match st.and_then(|s| s.merged_as) {
            Some(commit) => format!("{key} — merged as `{}`.", commit.short()),
            None => format!("{key} — merged."),
        },
    }
}

fn awaiting_approval(spec: &Spec, st: Option<&TaskStatus>, report: &TaskReport) -> String {
    let key = &report.key;
    format!(
        "**{key}** — {}. Review `git diff {base}...{branch}`, then `converge approve {key}` or `converge reject {key} --reason \"...\"`.",
        match &report.reason {
            Reason::AwaitingApproval => format!(
                "passed its invariants at `{}`",
                st.and_then(|s| s.head)
                    .map_or_else(|| "unknown".to_owned(), |h| h.short())
            ),
            other => other.to_string(),
        },
        base = spec
            .plans
            .get(&key.plan)
            .map_or("main", |p| p.base_branch.as_str()),
        branch = key.branch(),
    )
}

fn escalated(st: Option<&TaskStatus>, report: &TaskReport) -> String {
    let key = &report.key;
    let failure = st.and_then(|s| s.last_failure.as_ref());
    let why = failure.map_or_else(
        || report.reason.to_string(),
        |f| format!("{} ({})", f.message, f.reason),
    );
    // A promoted queue item has no `reset`: its file starts it again.
    let again = if key.plan == crate::spec::QUEUE_PLAN {
        format!(
            "edit `planning/queue/done/{}.md` (any change starts it again)",
            key.task
        )
    } else {
        format!("`converge retry {key}` starts it again")
    };
    let mut entry =
        format!("**{key}** — {why}. `converge gate {key}` shows the evidence; {again}.");
    if let Some(tail) = failure.and_then(|f| f.output_tail.as_deref()) {
        entry.push_str(&excerpt(tail));
    }
    entry
}

fn failed_retrying(spec: &Spec, st: Option<&TaskStatus>, report: &TaskReport) -> String {
    let key = &report.key;
    let attempt = st.map_or(0, |s| s.attempt);
    let max = spec
        .plans
        .get(&key.plan)
        .and_then(|p| p.task(&key.task))
        .map_or(0, |t| t.retry_max);
    let why = st
        .and_then(|s| s.last_failure.as_ref())
        .map_or_else(String::new, |f| format!(": {}", f.message));
    let failures = st.map_or(0, |s| s.failures);
    // A failed check's output is gate evidence; the agent's is its log.
    let output = if st
        .and_then(|s| s.last_failure.as_ref())
        .is_some_and(|f| f.reason.is_gate_failure())
    {
        format!("`converge gate {key}` shows the failed check's output")
    } else {
        format!("`converge log {key}` shows the agent's output")
    };
    format!(
        "**{key}** (attempt {attempt} failed; retry {failures} of {max}){why}. {}. {output}.",
        capitalize(&report.reason.to_string())
    )
}

/// The title, the counts of every section, and who writes the file.
fn heading(out: &mut String, sections: &Sections) {
    let _ = writeln!(out, "# converge status\n");
    let counts: Vec<String> = sections
        .iter()
        .map(|(section, entries)| format!("{} {}", entries.len(), section.counted()))
        .collect();
    let _ = writeln!(
        out,
        "{}\n",
        if counts.is_empty() {
            "Nothing to do.".to_owned()
        } else {
            counts.join(" · ")
        }
    );
    let _ = writeln!(
        out,
        "Written by converge on every status commit; do not edit. `converge status` shows the same, `converge reconcile --explain` says why.\n"
    );
}

/// Plans that do not validate (their tasks are left alone).
fn invalid_plans(out: &mut String, spec: &Spec, status: &Status) {
    if spec.invalid_plans.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "## Invalid plans\n\nNot acted on until they validate; other plans proceed.\n"
    );
    for plan in &spec.invalid_plans {
        let errors = status.plans.get(plan).map_or(0, |p| p.errors.len());
        let _ = writeln!(
            out,
            "- `planning/plans/{plan}.toml` — {errors} error(s). `converge plan validate planning/plans/{plan}.toml` lists them."
        );
    }
    out.push('\n');
}

/// The conditions that are true, on any task.
fn attention(out: &mut String, status: &Status, extra: &[String]) {
    let mut attention: Vec<String> = status
        .plans
        .iter()
        .flat_map(|(plan, p)| {
            p.tasks.iter().flat_map(move |(task, t)| {
                t.conditions
                    .iter()
                    .filter(|c| c.status)
                    .map(move |c| format!("- **{plan}/{task}** — {} (`{}`).", c.message, c.reason))
            })
        })
        .collect();
    attention.extend(extra.iter().map(|line| format!("- {line}")));
    if attention.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "## Attention\n\nConditions a human should know about; see docs/status.md.\n"
    );
    for line in &attention {
        let _ = writeln!(out, "{line}");
    }
    out.push('\n');
}

/// One section: its title, what it means, its entries (Merged: the most
/// recent [`MERGED_SHOWN`], then how many more).
fn section_list(out: &mut String, section: Section, entries: &[String]) {
    let _ = writeln!(out, "## {}\n\n{}\n", section.title(), section.blurb());
    let shown = if section == Section::Merged {
        MERGED_SHOWN
    } else {
        usize::MAX
    };
    for entry in entries.iter().take(shown) {
        let _ = writeln!(out, "- {entry}");
    }
    if entries.len() > shown {
        let _ = writeln!(
            out,
            "- … and {} merged before these ({} in all); `planning/status/` records every one.",
            entries.len() - shown,
            entries.len()
        );
    }
    out.push('\n');
}

/// How many lines of a failure's output an escalated entry shows.
const EXCERPT_LINES: usize = 5;

/// How many merged tasks the Merged section lists (the most recent).
pub const MERGED_SHOWN: usize = 20;

/// The last lines of a failure's output, as an indented block under the entry.
fn excerpt(tail: &str) -> String {
    let lines: Vec<&str> = tail.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(EXCERPT_LINES);
    let mut out = String::new();
    if lines.is_empty() {
        return out;
    }
    out.push_str("\n\n  ```text\n");
    for line in &lines[start..] {
        // A fence inside the output must not end the block.
        let _ = writeln!(out, "  {}", line.replace("```", "'''"));
    }
    out.push_str("  ```");
    out
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().collect::<String>() + chars.as_str())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::{Limits, decide};
    use crate::model::TaskKey;
    use crate::observe::{Observation, TaskObs};
    use crate::spec::load::PlanningFiles;
    use crate::status::{AttemptRecord, Failure, PlanStatus, TaskStatus};
    use crate::time::Timestamp;

    const NOW: Timestamp = Timestamp::from_unix(1_800_000_000);
    const LIMITS: Limits = Limits {
        actions_per_tick: 10,
        max_agents: 4,
        dispatches_per_hour: 100,
    };

    fn plan(tasks: usize) -> String {
        let mut text = "[plan]\nname = \"P\"\nstate = \"active\"\n".to_owned();
        for i in 0..tasks {
            text.push_str(&format!(
                "\n[[tasks]]\nname = \"t{i:02}\"\ndescription = \"T.\"\nscope = \"narrow\"\ngate = \"auto\"\nallow_unchecked = true\n"
            ));
        }
        text
    }

    fn spec(files: &[(&str, &str)]) -> Spec {
        let mut all = vec![("planning/goal.md", "Goal.")];
        all.extend_from_slice(files);
        crate::spec::compile(&PlanningFiles::from_texts(all))
            .spec
            .expect("valid")
    }

    fn failed(spec: &Spec, plan: &str, task: &str, reason: &str, tail: &str) -> TaskStatus {
        let t = spec.plans[plan].task(task).expect("task");
        TaskStatus {
            phase: Phase::Escalated,
            attempt: 2,
            failures: 2,
            generation: t.generation.clone(),
            last_failure: Some(Failure {
                attempt: 2,
                reason: reason.parse().expect("a failure code"),
                message: "`test` exited with 101".into(),
                output_tail: Some(tail.into()),
            }),
            ..TaskStatus::default()
        }
    }

    fn render(spec: &Spec, status: &Status, obs: &Observation) -> String {
        let decision = decide(spec, obs, status, NOW, &LIMITS);
        status_md(spec, status, &decision, &Extra::default())
    }

    #[test]
    fn an_escalated_entry_shows_the_end_of_its_failure_and_a_command_that_works() {
        let spec = spec(&[
            ("planning/plans/p.toml", &plan(1)),
            (
                "planning/queue/done/fix.md",
                "---\nscope: narrow\ngate: auto\nallow_unchecked: true\n---\nFix it.\n",
            ),
        ]);
        let tail = "running 3 tests\nline 2\nline 3\nline 4\nline 5\nassertion failed: 1 == 2\n";
        let mut status = Status::default();
        status.plans.insert(
            "p".into(),
            PlanStatus {
                tasks: [(
                    "t00".to_owned(),
                    failed(&spec, "p", "t00", "invariant-failed", tail),
                )]
                .into(),
                ..PlanStatus::default()
            },
        );
        status.plans.insert(
            "queue".into(),
            PlanStatus {
                tasks: [(
                    "fix".to_owned(),
                    failed(&spec, "queue", "fix", "invariant-failed", "boom\n"),
                )]
                .into(),
                ..PlanStatus::default()
            },
        );
        let mut obs = Observation::default();
        obs.promoted.insert("fix".into());
        let md = render(&spec, &status, &obs);
        let escalated = md.split("## Escalated").nth(1).expect("section");
        assert!(
            escalated.contains("  assertion failed: 1 == 2\n") && !escalated.contains("running 3"),
            "the last lines of the output, not all of it:\n{md}"
        );
        assert!(
            escalated.contains("`converge retry p/t00` starts it again"),
            "{md}"
        );
        // `converge retry queue/fix` is refused: a queue item has no `reset`.
        assert!(!md.contains("converge retry queue/fix"), "{md}");
        assert!(
            escalated.contains("edit `planning/queue/done/fix.md` (any change starts it again)"),
            "{md}"
        );
    }

    #[test]
    fn a_failed_check_points_to_the_gate_and_a_failed_agent_to_its_log() {
        let spec = spec(&[("planning/plans/p.toml", &plan(2))]);
        let retrying = |task: &str, reason: &str| TaskStatus {
            phase: Phase::Failed,
            failures: 1,
            attempt: 1,
            next_eligible_at: Some(Timestamp::from_unix(NOW.unix() + 60)),
            ..failed(&spec, "p", task, reason, "x\n")
        };
        let mut status = Status::default();
        status.plans.insert(
            "p".into(),
            PlanStatus {
                tasks: [
                    ("t00".to_owned(), retrying("t00", "invariant-failed")),
                    ("t01".to_owned(), retrying("t01", "agent-failed")),
                ]
                .into(),
                ..PlanStatus::default()
            },
        );
        let md = render(&spec, &status, &Observation::default());
        assert!(
            md.contains("`converge gate p/t00` shows the failed check's output"),
            "{md}"
        );
        assert!(
            md.contains("`converge log p/t01` shows the agent's output"),
            "{md}"
        );
    }

    #[test]
    fn merged_lists_the_most_recent_and_counts_the_rest() {
        let total = MERGED_SHOWN + 5;
        let spec = spec(&[("planning/plans/p.toml", &plan(total))]);
        let mut status = Status::default();
        let mut obs = Observation::default();
        let mut tasks = std::collections::BTreeMap::new();
        for i in 0..total {
            let name = format!("t{i:02}");
            // Merged in reverse name order: t00 last.
            let ended = Timestamp::from_unix(NOW.unix() - 60 * i64::try_from(i).expect("small"));
            tasks.insert(
                name.clone(),
                TaskStatus {
                    phase: Phase::Merged,
                    attempt: 1,
                    generation: spec.plans["p"].task(&name).expect("t").generation.clone(),
                    merged_as: Some(
                        "0123456789abcdef0123456789abcdef01234567"
                            .parse()
                            .expect("hex"),
                    ),
                    attempts: vec![AttemptRecord {
                        number: 1,
                        generation: String::new(),
                        started_at: ended,
                        ended_at: Some(ended),
                        outcome: Some(crate::model::AttemptOutcome::Passed),
                        tokens_in: 0,
                        tokens_out: 0,
                        cost_usd: 0.0,
                        harness: None,
                        model: None,
                        cooldown_until: None,
                    }],
                    ..TaskStatus::default()
                },
            );
            obs.tasks.insert(
                TaskKey::new("p", &name),
                TaskObs {
                    merged: true,
                    ..TaskObs::default()
                },
            );
        }
        status.plans.insert(
            "p".into(),
            PlanStatus {
                tasks,
                ..PlanStatus::default()
            },
        );
        let md = render(&spec, &status, &obs);
        assert!(md.contains(&format!("{total} merged")), "{md}");
        let section = md.split("## Merged").nth(1).expect("section");
        let listed = section.lines().filter(|l| l.contains("merged as")).count();
        assert_eq!(listed, MERGED_SHOWN, "{md}");
        assert!(section.contains("p/t00 — merged as"), "the latest: {md}");
        assert!(!section.contains("p/t24 — merged as"), "the oldest: {md}");
        assert!(
            section.contains(&format!("… and 5 merged before these ({total} in all)")),
            "{md}"
        );
    }
}
