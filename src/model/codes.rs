//! The stable codes: why an attempt failed ([`FailureCode`]), which fact a
//! status condition states ([`ConditionKind`]), how an attempt ended
//! ([`AttemptOutcome`]), and what an agent reported ([`EventKind`]).
//!
//! Each is one enum, its serde name equal to its [`as_str`](FailureCode::as_str),
//! listed once in `ALL` in the order the tables of docs/reconcile.md ("Failure
//! codes", "Conditions") list it; a test holds those tables and these lists to
//! each other.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A string that is not one of a vocabulary's codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{code}` is not a known {vocabulary}")]
pub struct UnknownCode {
    pub vocabulary: &'static str,
    pub code: String,
}

/// The code of `all` spelled `code`, or why there is none.
fn find_code<T: Copy>(
    mut all: impl Iterator<Item = T>,
    as_str: fn(T) -> &'static str,
    code: &str,
    vocabulary: &'static str,
) -> Result<T, UnknownCode> {
    all.find(|c| as_str(*c) == code).ok_or_else(|| UnknownCode {
        vocabulary,
        code: code.to_owned(),
    })
}

/// Defines a vocabulary: the enum with its serde names, `ALL`, `as_str`,
/// `Display` and `FromStr`, all from one list of `Variant = "code"`.
macro_rules! vocabulary {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($case:literal, $what:literal) {
            $($(#[$vmeta:meta])* $variant:ident = $code:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = $case)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every code, in the order the documentation lists them.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The code as recorded (its serde name).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $code,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownCode;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                find_code($name::ALL.iter().copied(), $name::as_str, s, $what)
            }
        }
    };
}

vocabulary! {
    /// Why an attempt failed: `last_failure.reason` in status, shown by
    /// `converge gate` and STATUS.md, fed to the next attempt's prompt
    /// (docs/reconcile.md, "Failure codes").
    pub enum FailureCode ("kebab-case", "failure code") {
        /// A non-advisory invariant failed on the attempt's commit.
        InvariantFailed = "invariant-failed",
        /// A `[merge].invariants` check failed on the merge result.
        MergeInvariantFailed = "merge-invariant-failed",
        /// The work conflicts with the base branch.
        MergeConflict = "merge-conflict",
        /// The attempt changed protected files or files outside its `paths`.
        ForbiddenPaths = "forbidden-paths",
        /// The attempt's commit holds tree entries git refuses to check out.
        UnsafePath = "unsafe-path",
        /// The agent's private repository is not as converge made it.
        TamperedRepository = "tampered-repository",
        /// An object of the agent's is missing, forged, corrupt or of the wrong kind.
        ForgedObject = "forged-object",
        /// git cannot read the files the agent left uncommitted.
        UnreadableLeftovers = "unreadable-leftovers",
        /// The invariants would run unconfined where the sandbox is required.
        GateUnconfined = "gate-unconfined",
        /// The agent exited without `converge done`.
        NoDone = "no-done",
        /// The agent CLI hit a rate limit or usage window.
        RateLimited = "rate-limited",
        /// The model API refused the agent CLI's credentials.
        Authentication = "authentication",
        /// The conversation outgrew the model's context window.
        ContextOverflow = "context-overflow",
        /// The model API or the CLI reported another error.
        ApiError = "api-error",
        /// The CLI refused the agent a tool converge does not grant.
        ToolDenied = "tool-denied",
        /// The agent CLI exited non-zero before the end of its event stream.
        Crashed = "crashed",
        /// The agent ran `converge done` but exited non-zero.
        AgentFailed = "agent-failed",
        /// The attempt changed nothing.
        NoChanges = "no-changes",
        /// The attempt's head is already in the base branch: nothing to merge.
        NoNewWork = "no-new-work",
        /// The attempt ran past its deadline.
        Timeout = "timeout",
        /// The agent's process disappeared without recording its exit.
        AgentVanished = "agent-vanished",
        /// Another reconciler's claim on the attempt ran out.
        ClaimExpired = "claim-expired",
        /// The agent could not be started.
        SpawnFailed = "spawn-failed",
        /// The task's agent CLI is not installed here.
        HarnessUnavailable = "harness-unavailable",
        /// The task branch is gone.
        BranchMissing = "branch-missing",
        /// The task branch moved after its gate.
        BranchMoved = "branch-moved",
        /// A reviewer rejected the work.
        Rejected = "rejected",
        /// A required check on the pull request failed.
        ChecksFailed = "checks-failed",
        /// A required check on the pull request never finished.
        ChecksTimedOut = "checks-timed-out",
        /// A reviewer with write access asked for changes on the pull request.
        ChangesRequested = "changes-requested",
        /// One of converge's own actions on the task kept failing.
        ActionFailed = "action-failed",
    }
}

impl FailureCode {
    /// Failures the gate's invariants reported, whose output (`converge gate`)
    /// says what went wrong.
    pub fn is_gate_failure(self) -> bool {
        matches!(
            self,
            FailureCode::InvariantFailed
                | FailureCode::MergeInvariantFailed
                | FailureCode::ForbiddenPaths
        )
    }
}

vocabulary! {
    /// A fact about a task a human should know: a status condition's `type`
    /// (docs/reconcile.md, "Conditions"). Recorded in Kubernetes' PascalCase, not kebab-case,
    /// as status files always have; the condition's `reason` is the code.
    pub enum ConditionKind ("PascalCase", "condition type") {
        /// Events in the attempt's run directory carried a bad token.
        EventsRejected = "EventsRejected",
        /// One of converge's own actions on the task returned an error.
        ActionFailed = "ActionFailed",
        /// The attempt runs without the sandbox `[sandbox] enabled` asks for.
        Unconfined = "Unconfined",
        /// Status claimed the task merged and git did not back the claim.
        StatusUnbacked = "StatusUnbacked",
    }
}

impl ConditionKind {
    /// The reason code a condition of this type is recorded with.
    pub const fn reason(self) -> &'static str {
        match self {
            ConditionKind::EventsRejected => "token-rejected",
            ConditionKind::ActionFailed => "action-failed",
            ConditionKind::Unconfined => "sandbox-unavailable",
            ConditionKind::StatusUnbacked => "status-unbacked",
        }
    }
}

vocabulary! {
    /// What an agent reports through `converge progress`, `converge check`
    /// and `converge done`: an event's `kind` in its run directory
    /// (docs/agent-protocol.md). Only `done` changes what converge does.
    pub enum EventKind ("kebab-case", "event kind") {
        Progress = "progress",
        Check = "check",
        Done = "done",
    }
}

/// How an attempt ended: an attempt record's `outcome`. `passed`, `merged`
/// and `cancelled`, or the failure code it failed with (`rate-limited` and
/// `authentication` included). Serialized as that one string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AttemptOutcome {
    /// Its gate passed (or waits for approval).
    Passed,
    /// Its work merged.
    Merged,
    /// It was stopped: its task was edited, or its plan paused.
    Cancelled,
    /// It failed with this code.
    Failed(FailureCode),
}

impl AttemptOutcome {
    /// The outcomes that are not failures, in the documentation's order.
    pub const ENDED: &'static [AttemptOutcome] = &[
        AttemptOutcome::Passed,
        AttemptOutcome::Merged,
        AttemptOutcome::Cancelled,
    ];

    /// Every outcome: [`ENDED`](Self::ENDED), then one per failure code.
    pub fn all() -> impl Iterator<Item = AttemptOutcome> {
        Self::ENDED.iter().copied().chain(
            FailureCode::ALL
                .iter()
                .map(|code| AttemptOutcome::Failed(*code)),
        )
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Passed => "passed",
            AttemptOutcome::Merged => "merged",
            AttemptOutcome::Cancelled => "cancelled",
            AttemptOutcome::Failed(code) => code.as_str(),
        }
    }
}

impl fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AttemptOutcome {
    type Err = UnknownCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        find_code(
            AttemptOutcome::all(),
            AttemptOutcome::as_str,
            s,
            "attempt outcome",
        )
    }
}

impl Serialize for AttemptOutcome {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AttemptOutcome {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

vocabulary! {
    /// Why the autonomy loop starts no planner attempt, or pauses itself:
    /// shown by `converge autonomy status`, `reconcile --explain` and
    /// STATUS.md's Autonomy section (docs/autonomy.md, "Reason codes").
    pub enum LoopCode ("kebab-case", "autonomy reason code") {
        /// `[autonomy] enabled` is not true.
        Disabled = "autonomy-disabled",
        /// A person or a guard paused the loop.
        Paused = "autonomy-paused",
        /// A gap analysis said the goal is met.
        GoalMet = "autonomy-goal-met",
        /// A daily cap (runs, items, the planners' share, the whole budget) is reached.
        Cap = "autonomy-cap",
        /// An item of the loop is queued or being worked.
        ItemOpen = "autonomy-item-open",
        /// A planner attempt is running.
        PlannerRunning = "autonomy-planner-running",
        /// The planner's harness is rate-limited.
        Cooldown = "autonomy-cooldown",
        /// The base branch moved while the loop committed; the next tick commits again.
        BaseMoved = "autonomy-base-moved",
        /// The base branch's checkout has changes in the way of the loop's commit.
        CheckoutDirty = "autonomy-checkout-dirty",
        /// The loop's step failed (an error reading or writing git or a run
        /// directory); the tick's tasks went on, the next tick tries again.
        StepFailed = "autonomy-step-failed",
        /// The loop paused itself: its items escalated K times in a row.
        Escalations = "autonomy-escalations",
        /// The loop paused itself: K planner attempts in a row filed nothing.
        Refusals = "autonomy-refusals",
    }
}

#[cfg(test)]
#[path = "codes_tests.rs"]
mod tests;
