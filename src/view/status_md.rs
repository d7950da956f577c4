//! `planning/STATUS.md`: the human dashboard, in Renovate-style sections. Every
//! entry that needs a human says which command to run. Pure: a rendering of
//! the [`StatusView`] of a decision (and of the autonomy loop's view).

use std::fmt::Write;

use super::autonomy::AutonomyView;
use super::status::{Section, StatusView, TaskView};
use crate::decide::Reason;
use crate::time::Timestamp;

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

/// The entries of each section, in section order.
type Sections = std::collections::BTreeMap<Section, Vec<String>>;

/// Renders STATUS.md from the view of the state after a tick (`view.tasks`:
/// what the next tick would do) and the autonomy loop's view, when the loop
/// has one. Nothing here depends on the clock or on the commit the tick read,
/// so a tick that changes nothing renders the same bytes (and writes no
/// commit); the commit itself says when and from which planning commit.
pub fn status_md(view: &StatusView, autonomy: Option<&AutonomyView>) -> String {
    let sections = sections(view);
    let mut out = String::new();
    heading(&mut out, &sections);
    invalid_plans(&mut out, view);
    attention(&mut out, view, autonomy.map_or(&[], |a| &a.attention));
    if let Some(autonomy) = autonomy {
        out.push_str(&super::autonomy::section(autonomy));
    }
    for (section, entries) in &sections {
        section_list(&mut out, *section, entries);
    }
    if let Some(wake) = view.wake_at {
        let _ = writeln!(out, "Next change expected without any event: {wake}.");
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

/// Every task and queue item, as an entry of its section; merged tasks the
/// most recent first.
fn sections(view: &StatusView) -> Sections {
    let mut sections = Sections::new();
    let mut merged: Vec<(Option<Timestamp>, String)> = Vec::new();
    for task in &view.tasks {
        let entry = entry(task);
        if task.section == Section::Merged {
            // Ordered by when the work ended, so that the last ones are shown.
            merged.push((task.ended_at, entry));
            continue;
        }
        sections.entry(task.section).or_default().push(entry);
    }
    merged.sort_by_key(|entry| std::cmp::Reverse(entry.0));
    if !merged.is_empty() {
        sections.insert(
            Section::Merged,
            merged.into_iter().map(|(_, entry)| entry).collect(),
        );
    }
    for item in &view.queue {
        let what = if item.reason == Reason::Queued.code() {
            "next: promote into the `queue` plan".to_owned()
        } else {
            format!("waiting to be promoted: {}", item.message)
        };
        sections
            .entry(Section::Queued)
            .or_default()
            .push(format!("queue item `{}` — {what}.", item.item));
    }
    sections
}

/// A task's entry in its section.
fn entry(t: &TaskView) -> String {
    let key = &t.task;
    match t.section {
        Section::AwaitingApproval => awaiting_approval(t),
        Section::Escalated => escalated(t),
        Section::FailedRetrying => failed_retrying(t),
        Section::Running => format!(
            "**{key}** (attempt {}) — {}. `converge log {key} --follow`",
            t.attempt, t.message
        ),
        Section::Blocked => format!("**{key}** — {}.", t.message),
        Section::Ready | Section::Queued => match &t.next_action {
            Some(kind) => format!("{key} — {}; next: {kind}.", t.message),
            None => format!("{key} — {}.", t.message),
        },
        Section::Merged => match t.merged_as {
            Some(commit) => format!("{key} — merged as `{}`.", commit.short()),
            None => format!("{key} — merged."),
        },
    }
}

fn awaiting_approval(t: &TaskView) -> String {
    let key = &t.task;
    format!(
        "**{key}** — {}. Review `git diff {base}...{branch}`, then `converge approve {key}` or `converge reject {key} --reason \"...\"`.",
        if t.reason == Reason::AwaitingApproval.code() {
            format!(
                "passed its invariants at `{}`",
                t.head.map_or_else(|| "unknown".to_owned(), |h| h.short())
            )
        } else {
            t.message.clone()
        },
        base = t.plan_base_branch.as_deref().unwrap_or("main"),
        branch = t.branch,
    )
}

fn escalated(t: &TaskView) -> String {
    let key = &t.task;
    let failure = t.last_failure.as_ref();
    let why = failure.map_or_else(
        || t.message.clone(),
        |f| format!("{} ({})", f.message, f.reason),
    );
    // A promoted queue item has no `reset`: its file starts it again.
    let again = match t.plan_and_name() {
        (crate::spec::QUEUE_PLAN, name) => {
            format!("edit `planning/queue/done/{name}.md` (any change starts it again)")
        }
        _ => format!("`converge retry {key}` starts it again"),
    };
    let mut entry =
        format!("**{key}** — {why}. `converge gate {key}` shows the evidence; {again}.");
    if let Some(tail) = failure.and_then(|f| f.output_tail.as_deref()) {
        entry.push_str(&excerpt(tail));
    }
    entry
}

fn failed_retrying(t: &TaskView) -> String {
    let key = &t.task;
    let failure = t.last_failure.as_ref();
    let why = failure.map_or_else(String::new, |f| format!(": {}", f.message));
    // A failed check's output is gate evidence; the agent's is its log.
    let output = if failure.is_some_and(|f| f.reason.is_gate_failure()) {
        format!("`converge gate {key}` shows the failed check's output")
    } else {
        format!("`converge log {key}` shows the agent's output")
    };
    format!(
        "**{key}** (attempt {} failed; retry {} of {}){why}. {}. {output}.",
        t.attempt,
        t.failures,
        t.retry_max,
        super::capitalize(&t.message)
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
fn invalid_plans(out: &mut String, view: &StatusView) {
    if view.invalid_plans.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "## Invalid plans\n\nNot acted on until they validate; other plans proceed.\n"
    );
    for plan in &view.invalid_plans {
        let errors = view.plan_errors.get(plan).map_or(0, Vec::len);
        let _ = writeln!(
            out,
            "- `planning/plans/{plan}.toml` — {errors} error(s). `converge plan validate planning/plans/{plan}.toml` lists them."
        );
    }
    out.push('\n');
}

/// The conditions that are true, on any task, then `extra` entries.
fn attention(out: &mut String, view: &StatusView, extra: &[String]) {
    let mut attention: Vec<String> = view
        .conditions
        .iter()
        .map(|c| format!("- **{}** — {} (`{}`).", c.task, c.message, c.reason))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::{Limits, decide};
    use crate::model::TaskKey;
    use crate::observe::{Observation, TaskObs};
    use crate::spec::Spec;
    use crate::spec::load::PlanningFiles;
    use crate::status::{AttemptRecord, Failure, Phase, PlanStatus, Status, TaskStatus};

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
        let view = StatusView::new("main", "", spec, status, &decision);
        status_md(&view, None)
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
    fn the_json_view_carries_what_status_md_shows() {
        let spec = spec(&[("planning/plans/p.toml", &plan(1))]);
        let escalated = failed(&spec, "p", "t00", "invariant-failed", "boom\n");
        let mut status = Status::default();
        let plan = status.plans.entry("p".into()).or_default();
        plan.tasks.insert("t00".into(), escalated);
        let decision = decide(&spec, &Observation::default(), &status, NOW, &LIMITS);
        let view = StatusView::new("main", "", &spec, &status, &decision);
        let json = crate::view::to_json(&view).expect("json");
        let task = &json["tasks"][0];
        assert_eq!(task["section"], "escalated", "{json}");
        assert_eq!(task["last_failure"]["output_tail"], "boom\n", "{json}");
        assert_eq!(task["branch"], "converge/p/t00", "{json}");
        assert!(task["retry_max"].is_u64(), "{json}");
        assert!(
            json["conditions"].is_array() && json["queue"].is_array(),
            "{json}"
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
                        outcome: Some(crate::model::AttemptOutcome::Passed.into()),
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
