//! `Reason`: why a task is, or is not, acted on. Its `code()` is the stable
//! reason code (`--explain`, STATUS.md, `converge status --json`); its
//! `Display` is the sentence people read.

use std::fmt;

use crate::model::CommitId;
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
            Reason::ActionsPerTick => f.write_str("this tick's `actions_per_tick` is used up"),
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

pub(super) fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}
