//! The status converge records per plan in `planning/status/<plan>.toml`.
//!
//! Status is a record, not the truth (design §1.2): "merged" is re-read from git
//! ancestry and "running" from a live lease on every tick. What only status can
//! hold is history: attempts, failures and their reasons, backoff, gate evidence.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{AttemptOutcome, CommitId, ConditionKind, FailureCode, Recorded};
use crate::time::Timestamp;

/// Where a task is in its life. `decide` derives the next step from this, the
/// spec and what it observes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Not started; waiting for its plan, dependencies or limits.
    #[default]
    Pending,
    /// An agent is working on an attempt.
    Running,
    /// The attempt finished; converge is running its invariants.
    Checking,
    /// Invariants passed; a human gate waits for `converge approve`.
    AwaitingApproval,
    /// Invariants passed and the gate allows merging.
    Passed,
    /// Merged into the base branch.
    Merged,
    /// The attempt failed; another follows after backoff.
    Failed,
    /// Attempts are exhausted or the failure cannot be retried: a human decides.
    Escalated,
    /// A dependency escalated or was cancelled.
    Blocked,
    /// Removed from the plan.
    Cancelled,
}

impl Phase {
    pub const ALL: &'static [Phase] = &[
        Phase::Pending,
        Phase::Running,
        Phase::Checking,
        Phase::AwaitingApproval,
        Phase::Passed,
        Phase::Merged,
        Phase::Failed,
        Phase::Escalated,
        Phase::Blocked,
        Phase::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Running => "running",
            Phase::Checking => "checking",
            Phase::AwaitingApproval => "awaiting_approval",
            Phase::Passed => "passed",
            Phase::Merged => "merged",
            Phase::Failed => "failed",
            Phase::Escalated => "escalated",
            Phase::Blocked => "blocked",
            Phase::Cancelled => "cancelled",
        }
    }

    /// Whether the task is finished for good (until a human resets it).
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Merged | Phase::Escalated | Phase::Cancelled)
    }
}

/// The status of one plan.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PlanStatus {
    /// The planning commit this status was computed from.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::model::lenient"
    )]
    pub spec: Option<CommitId>,
    /// Validation errors when the plan is invalid (converge does not act on it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    #[serde(default)]
    pub tasks: BTreeMap<String, TaskStatus>,
}

/// The status of one task.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TaskStatus {
    pub phase: Phase,
    /// The spec generation this status was computed for; a different generation
    /// in the spec means the task was edited.
    #[serde(default)]
    pub generation: String,
    /// The current (or last) attempt; 0 before the first dispatch.
    #[serde(default)]
    pub attempt: u32,
    /// Failed attempts of this generation.
    #[serde(default)]
    pub failures: u32,
    /// Failures in a row of converge's own actions on this task (a dispatch,
    /// gate, merge or cleanup that returned an error), each recorded with the
    /// condition `ActionFailed` and a backoff; reset when one succeeds.
    /// `retry_max` of them (at least one) escalate the task.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub action_failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The head commit of the task branch when last observed.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::model::lenient"
    )]
    pub head: Option<CommitId>,
    /// The commit on the base branch that merged the task.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::model::lenient"
    )]
    pub merged_as: Option<CommitId>,
    /// No retry before this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_eligible_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Failure>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Gate evidence of the current attempt, by invariant.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gate: BTreeMap<String, Evidence>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<AttemptRecord>,
    /// Which reconciler owns the task's current attempt, when reconcilers on
    /// several machines share a remote (`[reconcile].remote`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<Claim>,
    /// The task's change on the forge (a pull request), once converge
    /// proposed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<ChangeRecord>,
}

/// A change (pull request) converge opened for the task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRecord {
    pub number: u64,
    /// The head converge last pushed to the change's branch: any other head
    /// there is someone else's.
    pub pushed: CommitId,
    pub opened_at: Timestamp,
    /// Its merge waits (checks, reviews, mergeability).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<ChangeWait>,
    /// Someone else pushed to the branch: converge no longer touches it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hands_off: Option<String>,
    /// converge's own merge of the base branch into `pushed` (the forge
    /// required the branch to be up to date), now the change's head: the
    /// work is the gated work, merged as the head converge pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<CommitId>,
}

impl ChangeRecord {
    /// The head converge put on the change's branch last: its update, else
    /// what it pushed.
    pub fn tip(&self) -> CommitId {
        self.updated.unwrap_or(self.pushed)
    }
}

/// How the reason of a wait for required checks begins: a change's
/// `checks_timeout` counts from the start of such a wait, not from an earlier
/// wait for something else (a review, a draft).
pub const CHECKS_WAIT: &str = "required checks ";

impl ChangeWait {
    /// Whether a wait for `why` goes on this one (both for required checks,
    /// or both for something else), or starts anew.
    pub fn goes_on_as(&self, why: &str) -> bool {
        self.why.starts_with(CHECKS_WAIT) == why.starts_with(CHECKS_WAIT)
    }
}

/// Why a change's merge waits, since when (at the pushed head), and when it
/// is looked at again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeWait {
    pub why: String,
    pub since: Timestamp,
    pub until: Timestamp,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A reconciler's claim on a task: pushed before it starts an agent, so that two
/// machines sharing a remote never both start the same task. The owner runs,
/// gates and merges its attempt; others leave the task alone, and count it
/// against `max_agents`, until the owner lets go (the attempt failed, escalated
/// or merged) or, while no gate has passed, until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The reconciler's id (`<git-common-dir>/converge/reconciler-id`).
    pub by: String,
    /// The attempt the claim is for.
    pub attempt: u32,
    /// The claimed attempt's deadline plus a grace period: a claim whose owner
    /// never started or finished the attempt by then is treated as abandoned.
    pub until: Timestamp,
}

/// A fact about a task, Kubernetes style.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: ConditionKind,
    pub status: bool,
    /// A reason code (see `decide::Reason`).
    pub reason: String,
    pub message: String,
    pub since: Timestamp,
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub attempt: u32,
    /// Its code (docs/reconcile.md, "Failure codes").
    pub reason: FailureCode,
    pub message: String,
    /// The end of the relevant output, fed to the next attempt's prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tail: Option<String>,
}

/// The result of one invariant on one attempt, bound to the tree it ran on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub passed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub advisory: bool,
    pub duration_ms: u64,
    /// The tree id the invariant ran on.
    pub tree: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output_tail: String,
    /// SHA-256 of the full log under the run directory.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub log_digest: String,
}

/// One attempt, kept for history, reports and rate limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub number: u32,
    pub generation: String,
    pub started_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
    /// How the attempt ended, once it is over: `passed`, `merged`,
    /// `cancelled` or its failure code. A recorded code this version does
    /// not know is kept as it was written ([`Recorded::Unknown`]) and read as
    /// none by [`AttemptRecord::outcome`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Recorded<AttemptOutcome>>,
    #[serde(default)]
    pub tokens_in: u64,
    #[serde(default)]
    pub tokens_out: u64,
    #[serde(default)]
    pub cost_usd: f64,
    /// The harness that ran the attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness: Option<String>,
    /// The model it was asked to use (the task's `model`, else the harness's
    /// `models[scope]`), when one was named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The attempt hit a rate limit or usage window of its harness, which
    /// cools down until then: no task starts on it before. Such an attempt
    /// does not count against `retry_max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_until: Option<Timestamp>,
}

impl AttemptRecord {
    /// How the attempt ended, when it is over and its recorded outcome is a
    /// code this version knows.
    pub fn outcome(&self) -> Option<AttemptOutcome> {
        self.outcome.as_ref().and_then(Recorded::known)
    }
}

/// Status of every plan, by plan id.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Status {
    pub plans: BTreeMap<String, PlanStatus>,
}

impl Status {
    pub fn task(&self, plan: &str, task: &str) -> Option<&TaskStatus> {
        self.plans.get(plan).and_then(|p| p.tasks.get(task))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("{file} is not a valid status file: {message}")]
    Parse { file: String, message: String },
    #[error("cannot encode the status of plan `{plan}`")]
    Encode {
        plan: String,
        #[source]
        source: toml::ser::Error,
    },
}

/// The header of every status file.
const HEADER: &str = "# Written by converge; do not edit. Humans decide through planning/approvals/\n# and the plan files; see docs/status.md.\n\n";

/// Encodes a plan's status as TOML with every table's keys sorted, so that the
/// same status always gives the same bytes and diffs stay minimal.
pub fn to_toml(plan: &str, status: &PlanStatus) -> Result<String, StatusError> {
    let encode = |source| StatusError::Encode {
        plan: plan.to_owned(),
        source,
    };
    // Through toml::Value, whose tables are ordered maps: sorted keys at every level.
    let value = toml::Value::try_from(status).map_err(encode)?;
    let body = toml::to_string(&value).map_err(encode)?;
    Ok(format!("{HEADER}{body}"))
}

/// Decodes a status file. Status is converge's own output, so a file it cannot
/// read is reported with its path and treated by callers as absent (status is
/// rebuilt from observation) rather than trusted partially.
pub fn from_toml(file: &str, text: &str) -> Result<PlanStatus, StatusError> {
    toml::from_str(text).map_err(|e: toml::de::Error| StatusError::Parse {
        file: file.to_owned(),
        message: e.message().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PlanStatus {
        let mut tasks = BTreeMap::new();
        tasks.insert(
            "define-types".into(),
            TaskStatus {
                phase: Phase::Failed,
                generation: "0123456789abcdef".into(),
                attempt: 2,
                failures: 2,
                branch: Some("converge/auth/define-types".into()),
                head: Some("a".repeat(40).parse().expect("hex")),
                next_eligible_at: Some(Timestamp::from_unix(1_700_000_000)),
                last_failure: Some(Failure {
                    attempt: 2,
                    reason: FailureCode::InvariantFailed,
                    message: "`test` exited with 101".into(),
                    output_tail: Some("thread 'main' panicked\n".into()),
                }),
                gate: BTreeMap::from([(
                    "test".into(),
                    Evidence {
                        passed: false,
                        exit_code: Some(101),
                        advisory: false,
                        duration_ms: 1234,
                        tree: "b".repeat(40),
                        output_tail: "panicked".into(),
                        log_digest: "c".repeat(64),
                    },
                )]),
                attempts: vec![AttemptRecord {
                    number: 1,
                    generation: "0123456789abcdef".into(),
                    started_at: Timestamp::from_unix(1_699_999_000),
                    ended_at: Some(Timestamp::from_unix(1_699_999_500)),
                    outcome: Some(AttemptOutcome::Failed(FailureCode::AgentFailed).into()),
                    tokens_in: 1000,
                    tokens_out: 200,
                    cost_usd: 0.01,
                    harness: Some("claude-code".into()),
                    model: None,
                    cooldown_until: None,
                }],
                ..TaskStatus::default()
            },
        );
        tasks.insert("a-first".into(), TaskStatus::default());
        PlanStatus {
            spec: Some("d".repeat(40).parse().expect("hex")),
            errors: vec![],
            tasks,
        }
    }

    #[test]
    fn round_trips() {
        let status = sample();
        let text = to_toml("auth", &status).expect("encodes");
        assert_eq!(from_toml("x", &text).expect("decodes"), status);
    }

    #[test]
    fn output_is_sorted_and_stable() {
        let text = to_toml("auth", &sample()).expect("encodes");
        assert_eq!(text, to_toml("auth", &sample()).expect("encodes"));
        let a = text.find("[tasks.a-first]").expect("a-first");
        let d = text.find("[tasks.define-types]").expect("define-types");
        assert!(a < d, "{text}");
        // Keys inside a table are sorted too.
        let attempt = text.find("\nattempt = 2").expect("attempt");
        let phase = text.find("\nphase = \"failed\"").expect("phase");
        assert!(attempt < phase, "{text}");
        assert!(
            text.contains("next_eligible_at = \"2023-11-14T22:13:20Z\""),
            "{text}"
        );
    }

    #[test]
    fn a_plans_spec_commit_keeps_its_recorded_text() {
        let text = format!("spec = \"{}\"\n", "d".repeat(40));
        let read = from_toml("x", &text).expect("decodes");
        assert_eq!(read.spec, Some("d".repeat(40).parse().expect("hex")));
        assert!(
            to_toml("x", &read).expect("encodes").contains(&text),
            "the same bytes"
        );
        let damaged =
            from_toml("x", "spec = \"d\"\n[tasks.t]\nphase = \"failed\"\n").expect("decodes");
        assert_eq!(damaged.spec, None);
        assert_eq!(damaged.tasks["t"].phase, Phase::Failed);
    }

    #[test]
    fn a_damaged_commit_id_reads_as_absent_and_keeps_the_rest() {
        let text = to_toml("auth", &sample())
            .expect("encodes")
            .replace(&"a".repeat(40), "not-a-commit");
        let read = from_toml("x", &text).expect("decodes");
        let task = &read.tasks["define-types"];
        assert_eq!(task.head, None);
        assert_eq!(task.attempts.len(), 1);
        let mut expected = sample();
        expected.tasks.get_mut("define-types").expect("task").head = None;
        assert_eq!(read, expected);
        // A value of another type is damage like any other.
        assert!(from_toml("x", "[tasks.t]\nphase = \"failed\"\nhead = 3\n").is_err());
    }

    /// The outcomes status files have always held read as the same codes,
    /// and are written back as the same text.
    #[test]
    fn attempt_outcomes_keep_their_recorded_text() {
        let file = |outcome: &str| {
            format!(
                "[tasks.t]\nphase = \"failed\"\n\n[[tasks.t.attempts]]\nnumber = 1\ngeneration = \"g\"\nstarted_at = \"2023-11-14T22:13:20Z\"\noutcome = \"{outcome}\"\n"
            )
        };
        for outcome in AttemptOutcome::all() {
            let read = from_toml("x", &file(outcome.as_str())).expect("decodes");
            let attempts = &read.tasks["t"].attempts;
            assert_eq!(attempts[0].outcome(), Some(outcome));
            let text = to_toml("x", &read).expect("encodes");
            assert!(
                text.contains(&format!("outcome = \"{}\"\n", outcome.as_str())),
                "{text}"
            );
        }
        assert_eq!(
            from_toml("x", &file("rate-limited"))
                .expect("decodes")
                .tasks["t"]
                .attempts[0]
                .outcome(),
            Some(AttemptOutcome::Failed(FailureCode::RateLimited))
        );
    }

    #[test]
    fn an_unknown_attempt_outcome_reads_as_none_and_is_written_back_as_it_was() {
        // A later version's code (or a hand edit): this version acts on no
        // outcome, keeps the rest of the record, and loses nothing when it
        // writes the record back.
        let text = to_toml("auth", &sample())
            .expect("encodes")
            .replace("outcome = \"agent-failed\"", "outcome = \"exploded\"");
        assert!(text.contains("exploded"), "{text}");
        let read = from_toml("x", &text).expect("decodes");
        let attempt = &read.tasks["define-types"].attempts[0];
        assert_eq!(attempt.outcome(), None);
        let mut expected = sample();
        expected
            .tasks
            .get_mut("define-types")
            .expect("task")
            .attempts[0]
            .outcome = Some(Recorded::Unknown("exploded".into()));
        assert_eq!(read, expected);
        assert_eq!(to_toml("auth", &read).expect("encodes"), text);
        // A value of another type is damage like any other.
        assert!(
            from_toml(
                "x",
                "[[tasks.t.attempts]]\nnumber = 1\ngeneration = \"g\"\nstarted_at = \"2023-11-14T22:13:20Z\"\noutcome = 3\n"
            )
            .is_err()
        );
    }

    #[test]
    fn corrupt_files_are_reported_with_their_path() {
        let error = from_toml("planning/status/auth.toml", "tasks = 3").expect_err("invalid");
        assert!(
            error
                .to_string()
                .starts_with("planning/status/auth.toml is not a valid status file"),
            "{error}"
        );
    }
}
