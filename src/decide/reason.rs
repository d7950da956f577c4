//! `Reason`: why a task is, or is not, acted on. Its `code()` is the stable
//! reason code (`--explain`, STATUS.md, `converge status --json`); its
//! `Display` is the sentence people read.

use std::fmt;

use crate::model::CommitId;
pub(super) use crate::model::short;
use crate::time::Timestamp;

/// Why a task is, or is not, acted on. The code is stable (STATUS.md, `--explain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    // Reasons for acting.
    Timeout,
    AgentVanished,
    AgentFinished,
    RemovedFromPlan,
    SpecChanged,
    GatePassed,
    Approved,
    Rejected,
    FailedBefore {
        failures: u32,
    },
    AttemptsExhausted {
        failures: u32,
    },
    /// The harness's rate limit has passed; the attempt it cost is not counted.
    RateLimitOver {
        harness: String,
    },
    Ready,
    Queued,
    CleanupAfterMerge,
    ClaimExpired {
        by: String,
    },
    /// A reviewer with write access approved the pull request at its head.
    ReviewApproved {
        number: u64,
        by: String,
    },
    /// A reviewer with write access asked for changes at the head: the next
    /// attempt gets what they said.
    ChangesRequested {
        number: u64,
        by: String,
        feedback: String,
    },
    // Reasons for waiting.
    Running {
        deadline: Timestamp,
    },
    PlanDraft,
    PlanPaused,
    /// Every dependency not merged yet, in `depends_on` order.
    WaitingOnDependency {
        tasks: Vec<String>,
    },
    DependencyBlocked {
        task: String,
    },
    Backoff {
        until: Timestamp,
    },
    /// One of converge's actions on the task failed (the condition
    /// `ActionFailed` says which and why); the task waits out a backoff so
    /// that it does not come first again and hold back the others.
    ActionFailed {
        message: String,
        until: Timestamp,
    },
    AwaitingApproval,
    ApprovalStale {
        approved: String,
        head: CommitId,
    },
    Escalated,
    Merged,
    /// Status claims the task merged and git does not back it: why. The
    /// claim is corrected, and the task starts again.
    StatusUnbacked {
        why: String,
    },
    ClaimedElsewhere {
        by: String,
        until: Timestamp,
    },
    SandboxUnavailable {
        reason: String,
    },
    /// An attempt on this harness hit a rate limit or usage window.
    HarnessCooling {
        harness: String,
        until: Timestamp,
    },
    BudgetSpent {
        budget: String,
        used: String,
        until: Option<Timestamp>,
    },
    // Reasons for deferring an action this tick.
    MaxAgents {
        running: u32,
    },
    /// `dispatches_per_hour` attempts started in the last hour; the next can
    /// start at `next_at`, when the oldest of them is an hour old.
    DispatchRateLimited {
        last_hour: u32,
        limit: u32,
        next_at: Timestamp,
    },
    ActionsPerTick,
    /// `max_open_prs` pull requests of converge's are open.
    ChangeLimit {
        open: u32,
        max: u32,
    },
    /// `prs_per_hour` pull requests were opened in the last hour.
    ChangeRateLimited {
        last_hour: u32,
        limit: u32,
        next_at: Timestamp,
    },
    /// Another pull request, opened earlier, merges into the base branch
    /// this tick: one merge per base branch per tick, oldest first.
    MergeQueued {
        first: u64,
    },
    /// The pull request's merge waits (checks, reviews, mergeability).
    AwaitingChecks {
        number: u64,
        why: String,
        until: Timestamp,
    },
    /// Someone else pushed to the task's branch: converge leaves it alone.
    HandsOff {
        number: u64,
        why: String,
    },
    /// The pull request was closed without merging, not by converge.
    ChangeClosed {
        number: u64,
    },
    /// The forge cannot be asked now (a rate limit, an outage).
    ForgeCooling {
        why: String,
        until: Option<Timestamp>,
    },
}

impl Reason {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::Timeout => "timeout",
            Reason::AgentVanished => "agent-vanished",
            Reason::AgentFinished => "agent-finished",
            Reason::RemovedFromPlan => "removed-from-plan",
            Reason::SpecChanged => "spec-changed",
            Reason::GatePassed => "gate-passed",
            Reason::Approved => "approved",
            Reason::Rejected => "rejected",
            Reason::FailedBefore { .. } => "retry-after-failure",
            Reason::AttemptsExhausted { .. } => "attempts-exhausted",
            Reason::Ready => "ready",
            Reason::Queued => "queued",
            Reason::CleanupAfterMerge => "cleanup-after-merge",
            Reason::ClaimExpired { .. } => "claim-expired",
            Reason::ClaimedElsewhere { .. } => "claimed-elsewhere",
            Reason::SandboxUnavailable { .. } => "sandbox-unavailable",
            Reason::HarnessCooling { .. } => "harness-cooling",
            Reason::RateLimitOver { .. } => "rate-limit-over",
            Reason::BudgetSpent { .. } => "budget-spent",
            Reason::Running { .. } => "running",
            Reason::PlanDraft => "plan-draft",
            Reason::PlanPaused => "plan-paused",
            Reason::WaitingOnDependency { .. } => "waiting-on-dependency",
            Reason::DependencyBlocked { .. } => "dependency-blocked",
            Reason::Backoff { .. } => "backoff",
            Reason::ActionFailed { .. } => "action-failed",
            Reason::AwaitingApproval => "awaiting-approval",
            Reason::ApprovalStale { .. } => "approval-stale",
            Reason::Escalated => "escalated",
            Reason::Merged => "merged",
            Reason::StatusUnbacked { .. } => "status-unbacked",
            Reason::MaxAgents { .. } => "max-agents",
            Reason::DispatchRateLimited { .. } => "dispatch-rate-limited",
            Reason::ActionsPerTick => "actions-per-tick",
            Reason::ReviewApproved { .. } => "review-approved",
            Reason::ChangesRequested { .. } => "changes-requested",
            Reason::ChangeLimit { .. } => "change-limit",
            Reason::ChangeRateLimited { .. } => "change-rate-limited",
            Reason::MergeQueued { .. } => "merge-queued",
            Reason::AwaitingChecks { .. } => "awaiting-checks",
            Reason::HandsOff { .. } => "hands-off",
            Reason::ChangeClosed { .. } => "change-closed",
            Reason::ForgeCooling { .. } => "forge-cooling",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Timeout => f.write_str("the attempt ran past its deadline"),
            Reason::AgentVanished => {
                f.write_str("the agent's process is gone and it never reported done")
            }
            Reason::AgentFinished => f.write_str("the agent finished; its work is checked next"),
            Reason::RemovedFromPlan => f.write_str("the task is no longer in its plan"),
            Reason::SpecChanged => {
                f.write_str("the task's spec changed since this attempt started")
            }
            Reason::GatePassed => f.write_str("its invariants passed"),
            Reason::Approved => f.write_str("a human approved the reviewed commit"),
            Reason::Rejected => f.write_str(
                "a human rejected the reviewed commit; the reason goes to the next attempt",
            ),
            Reason::FailedBefore { failures } => {
                write!(f, "{failures} failed attempt(s); retry {failures} follows")
            }
            Reason::AttemptsExhausted { failures } => {
                write!(
                    f,
                    "{failures} failed attempt(s): the first and every retry `retry_max` allows"
                )
            }
            Reason::Ready => f.write_str("its plan is active and its dependencies are merged"),
            Reason::Queued => f.write_str("a queue item waits to join the `queue` plan"),
            Reason::CleanupAfterMerge => {
                f.write_str("merged; its worktree and branch are no longer needed")
            }
            Reason::ClaimExpired { by } => write!(
                f,
                "reconciler `{by}` claimed it and did not finish by the claim's deadline"
            ),
            Reason::ClaimedElsewhere { by, until } => write!(
                f,
                "reconciler `{by}` owns the attempt (claim valid until {until}, or until it passes its gate and merges)"
            ),
            Reason::Running { deadline } => {
                write!(f, "an agent is working on it (deadline {deadline})")
            }
            Reason::RateLimitOver { harness } => write!(
                f,
                "the rate limit of harness `{harness}` has passed; trying again (the limited attempt is not counted)"
            ),
            Reason::SandboxUnavailable { reason } => write!(
                f,
                "`[sandbox] required` and the sandbox cannot be enforced here: {reason}"
            ),
            Reason::PlanDraft => {
                f.write_str("its plan is a draft; set `state = \"active\"` to start")
            }
            Reason::PlanPaused => write!(
                f,
                "its plan is paused: nothing of it starts or merges; `converge resume` continues it"
            ),
            Reason::WaitingOnDependency { tasks } => {
                write!(f, "waiting for {} to merge", listed(tasks))
            }
            Reason::DependencyBlocked { task } => {
                write!(f, "dependency `{task}` escalated or is blocked")
            }
            Reason::Backoff { until } => write!(f, "backing off after a failure until {until}"),
            Reason::ActionFailed { message, until } => {
                write!(f, "{message}; tried again after {until}")
            }
            Reason::AwaitingApproval => {
                f.write_str("waiting for a human: `converge approve` or `converge reject`")
            }
            Reason::ApprovalStale { approved, head } => write!(
                f,
                "the approval is for {}, but the branch is at {}; review it again",
                short(approved),
                head.short()
            ),
            Reason::Escalated => f.write_str("needs a human: `converge retry` starts it again"),
            Reason::Merged => f.write_str("merged"),
            Reason::StatusUnbacked { why } => {
                write!(f, "{why}; the task is not merged and starts again")
            }
            Reason::ActionsPerTick => f.write_str("this tick's `actions_per_tick` is used up"),
            Reason::BudgetSpent { .. }
            | Reason::HarnessCooling { .. }
            | Reason::MaxAgents { .. }
            | Reason::DispatchRateLimited { .. } => self.fmt_limits(f),
            Reason::ReviewApproved { .. }
            | Reason::ChangesRequested { .. }
            | Reason::ChangeLimit { .. }
            | Reason::ChangeRateLimited { .. }
            | Reason::MergeQueued { .. }
            | Reason::AwaitingChecks { .. }
            | Reason::HandsOff { .. }
            | Reason::ChangeClosed { .. }
            | Reason::ForgeCooling { .. } => self.fmt_forge(f),
        }
    }
}

impl Reason {
    /// The sentences of the limits on starting agents: budgets, harness
    /// cooldowns, `max_agents`, `dispatches_per_hour`. `fmt` sends only these
    /// here; any other reason is written as its code.
    fn fmt_limits(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::BudgetSpent {
                budget,
                used,
                until,
            } => match until {
                Some(until) => write!(
                    f,
                    "the {budget} is spent ({used}); dispatch resumes at {until}"
                ),
                None => write!(
                    f,
                    "the {budget} is spent ({used}); raise it to go on (`converge report` shows the spending)"
                ),
            },
            Reason::HarnessCooling { harness, until } => write!(
                f,
                "harness `{harness}` hit a rate limit or usage window; no agent starts on it until {until}"
            ),
            Reason::MaxAgents { running } => {
                write!(f, "{running} agent(s) running, the `max_agents` limit")
            }
            Reason::DispatchRateLimited {
                last_hour,
                limit,
                next_at,
            } => {
                write!(
                    f,
                    "dispatches_per_hour {limit}/h reached ({last_hour} started in the last hour), next dispatch at {next_at}"
                )
            }
            other => f.write_str(other.code()),
        }
    }

    /// The sentences of the forge's reasons: pull requests, reviews and the
    /// forge's limits. `fmt` sends only these here; any other reason is
    /// written as its code.
    fn fmt_forge(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::ReviewApproved { number, by } => {
                write!(f, "{by} approved pull request #{number} at its head")
            }
            Reason::ChangesRequested { number, by, .. } => write!(
                f,
                "{by} requested changes on pull request #{number}; what they said goes to the next attempt"
            ),
            Reason::ChangeLimit { open, max } => write!(
                f,
                "{open} pull request(s) of converge's open, the `max_open_prs` limit of {max}"
            ),
            Reason::ChangeRateLimited {
                last_hour,
                limit,
                next_at,
            } => write!(
                f,
                "prs_per_hour {limit}/h reached ({last_hour} opened in the last hour), next at {next_at}"
            ),
            Reason::MergeQueued { first } => write!(
                f,
                "pull request #{first} merges into the base branch this tick; one merge a tick, oldest pull request first"
            ),
            Reason::AwaitingChecks { number, why, until } => {
                write!(
                    f,
                    "pull request #{number} waits: {why} (looked at again at {until})"
                )
            }
            Reason::HandsOff { number, why } => write!(
                f,
                "{why}; converge no longer pushes to, updates or merges pull request #{number}: merge it yourself, or close it and delete its branch, then `converge retry` for a new attempt and pull request"
            ),
            Reason::ChangeClosed { number } => write!(
                f,
                "pull request #{number} was closed without merging, not by converge; reopen it for converge to merge it, or `converge retry` for a new attempt and pull request"
            ),
            Reason::ForgeCooling { why, until } => match until {
                Some(until) => write!(f, "the forge is not asked until {until}: {why}"),
                None => write!(f, "the forge cannot be asked now: {why}"),
            },
            other => f.write_str(other.code()),
        }
    }
}

/// `a`, `a` and `b`, `a`, `b` and `c` (each in backticks).
fn listed(tasks: &[String]) -> String {
    let names: Vec<String> = tasks.iter().map(|t| format!("`{t}`")).collect();
    match names.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => "its dependencies".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_of_a_family_has_its_sentence() {
        let at = Timestamp::from_unix(1_800_000_000);
        let family = [
            Reason::BudgetSpent {
                budget: "b".into(),
                used: "u".into(),
                until: None,
            },
            Reason::HarnessCooling {
                harness: "h".into(),
                until: at,
            },
            Reason::MaxAgents { running: 1 },
            Reason::DispatchRateLimited {
                last_hour: 1,
                limit: 1,
                next_at: at,
            },
            Reason::ReviewApproved {
                number: 1,
                by: "b".into(),
            },
            Reason::ChangesRequested {
                number: 1,
                by: "b".into(),
                feedback: "f".into(),
            },
            Reason::ChangeLimit { open: 1, max: 1 },
            Reason::ChangeRateLimited {
                last_hour: 1,
                limit: 1,
                next_at: at,
            },
            Reason::MergeQueued { first: 1 },
            Reason::AwaitingChecks {
                number: 1,
                why: "w".into(),
                until: at,
            },
            Reason::HandsOff {
                number: 1,
                why: "w".into(),
            },
            Reason::ChangeClosed { number: 1 },
            Reason::ForgeCooling {
                why: "w".into(),
                until: None,
            },
        ];
        for reason in family {
            assert_ne!(reason.to_string(), reason.code(), "{reason:?}");
        }
    }
}
