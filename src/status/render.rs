//! `planning/STATUS.md`: the human dashboard, in Renovate-style sections. Every
//! entry that needs a human says which command to run. Pure: rendered from the
//! spec, the recorded status and a decision report.

use std::fmt::Write;

use crate::decide::{ActionKind, Decision, Reason, TaskReport};
use crate::spec::Spec;

use super::model::{Phase, Status};

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
            Section::Merged => "Done.",
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

/// Renders STATUS.md from the state after a tick: `decision` is what the next
/// tick would do. Nothing here depends on the clock or on the commit the tick
/// read, so a tick that changes nothing renders the same bytes (and writes no
/// commit); the commit itself says when and from which planning commit.
pub fn status_md(spec: &Spec, status: &Status, decision: &Decision) -> String {
    let mut sections: std::collections::BTreeMap<Section, Vec<String>> =
        std::collections::BTreeMap::new();
    for report in &decision.report {
        let key = &report.key;
        let st = status.task(&key.plan, &key.task);
        let attempt = st.map_or(0, |s| s.attempt);
        let section = section_of(report);
        let entry = match section {
            Section::AwaitingApproval => format!(
                "**{key}** — {}. Review `git diff {base}...{branch}`, then `converge approve {key}` or `converge reject {key} --reason \"...\"`.",
                match &report.reason {
                    Reason::AwaitingApproval => format!(
                        "passed its invariants at `{}`",
                        short(st.and_then(|s| s.head.as_deref()).unwrap_or("unknown"))
                    ),
                    other => other.to_string(),
                },
                base = spec
                    .plans
                    .get(&key.plan)
                    .map_or("main", |p| p.base_branch.as_str()),
                branch = key.branch(),
            ),
            Section::Escalated => {
                let why = st.and_then(|s| s.last_failure.as_ref()).map_or_else(
                    || report.reason.to_string(),
                    |f| format!("{} ({})", f.message, f.reason),
                );
                format!(
                    "**{key}** — {why}. `converge gate {key}` shows the evidence; `converge retry {key}` starts it again."
                )
            }
            Section::FailedRetrying => {
                let max = spec
                    .plans
                    .get(&key.plan)
                    .and_then(|p| p.task(&key.task))
                    .map_or(0, |t| t.retry_max);
                let why = st
                    .and_then(|s| s.last_failure.as_ref())
                    .map_or_else(String::new, |f| format!(": {}", f.message));
                let failures = st.map_or(0, |s| s.failures);
                format!(
                    "**{key}** (attempt {attempt} failed; retry {failures} of {max}){why}. {}. `converge log {key}` shows the output.",
                    capitalize(&report.reason.to_string())
                )
            }
            Section::Running => format!(
                "**{key}** (attempt {attempt}) — {}. `converge log {key} --follow`",
                report.reason
            ),
            Section::Blocked => format!("**{key}** — {}.", report.reason),
            Section::Ready | Section::Queued => match report.action {
                Some(kind) => format!("{key} — {}; next: {}.", report.reason, kind.as_str()),
                None => format!("{key} — {}.", report.reason),
            },
            Section::Merged => match st.and_then(|s| s.merged_as.as_deref()) {
                Some(commit) => format!("{key} — merged as `{}`.", short(commit)),
                None => format!("{key} — merged."),
            },
        };
        sections.entry(section).or_default().push(entry);
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

    let mut out = String::new();
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
    if !spec.invalid_plans.is_empty() {
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
    let attention: Vec<String> = status
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
    if !attention.is_empty() {
        let _ = writeln!(
            out,
            "## Attention\n\nConditions a human should know about; see docs/status.md.\n"
        );
        for line in &attention {
            let _ = writeln!(out, "{line}");
        }
        out.push('\n');
    }
    for (section, entries) in &sections {
        let _ = writeln!(out, "## {}\n\n{}\n", section.title(), section.blurb());
        for entry in entries {
            let _ = writeln!(out, "- {entry}");
        }
        out.push('\n');
    }
    if let Some(wake) = decision.wake_at {
        let _ = writeln!(out, "Next change expected without any event: {wake}.");
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().collect::<String>() + chars.as_str())
        .unwrap_or_default()
}
