//! Plans, their tasks, queue items and approvals, as validated.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{duration_text, option_duration_text};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanState {
    Draft,
    Active,
    Paused,
}

impl PlanState {
    pub const NAMES: &'static [&'static str] = &["draft", "active", "paused"];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "draft" => Self::Draft,
            "active" => Self::Active,
            "paused" => Self::Paused,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Active => "active",
            Self::Paused => "paused",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    Worktree,
    Sandbox,
}

impl Isolation {
    pub const NAMES: &'static [&'static str] = &["worktree", "sandbox"];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Narrow,
    Medium,
    Broad,
}

impl Scope {
    pub const NAMES: &'static [&'static str] = &["narrow", "medium", "broad"];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "narrow" => Self::Narrow,
            "medium" => Self::Medium,
            "broad" => Self::Broad,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Narrow => "narrow",
            Self::Medium => "medium",
            Self::Broad => "broad",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    /// Merge when the invariants pass.
    Auto,
    /// A human reviews the passed work before it merges.
    HumanReview,
    /// A human approves before it merges (the same mechanism, a stronger word).
    HumanApprove,
}

impl Gate {
    pub const NAMES: &'static [&'static str] = &["auto", "human_review", "human_approve"];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "auto" => Self::Auto,
            "human_review" => Self::HumanReview,
            "human_approve" => Self::HumanApprove,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::HumanReview => "human_review",
            Self::HumanApprove => "human_approve",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// The file stem; used in branch names and status paths.
    pub id: String,
    /// Path of the plan file, relative to the repository root.
    pub file: String,
    pub name: String,
    pub base_branch: String,
    pub state: PlanState,
    pub token_budget: Option<u64>,
    pub default_harness: Option<String>,
    pub isolation: Isolation,
    /// Tasks in file order.
    pub tasks: Vec<Task>,
}

impl Plan {
    pub fn task(&self, name: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Task {
    pub name: String,
    pub description: String,
    pub scope: Scope,
    pub gate: Gate,
    pub depends_on: Vec<String>,
    pub invariants: Vec<String>,
    pub retry_max: u32,
    /// The effective harness: the task's, else the plan's default, else the
    /// configuration's default.
    pub harness: String,
    pub model: Option<String>,
    #[serde(with = "option_duration_text")]
    pub timeout: Option<Duration>,
    pub paths: Vec<String>,
    pub reset: u64,
    /// Hash of the normalized task spec; see [`crate::spec::generation`].
    pub generation: String,
    /// What the built-in `sim` agent does for this task (`[tasks.sim]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sim: Option<Sim>,
    /// 1-based line of the task's `name` in the plan file, for messages.
    #[serde(skip)]
    pub line: usize,
}

/// The script of the built-in simulated agent for one task: deterministic edits,
/// a commit, and a way to fail on purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sim {
    pub files: Vec<SimFile>,
    /// The commit message of the agent's commit.
    pub message: Option<String>,
    /// Attempts up to this number fail: files with `on_fail` get that content
    /// instead; if no file has one, the agent exits with code 1 without `done`.
    pub fail_attempts: u32,
    #[serde(with = "duration_text")]
    pub sleep: Duration,
    pub exit_code: i32,
    /// Whether the agent calls `converge done` (default true).
    pub done: bool,
    /// Whether the agent commits its edits (default true); otherwise converge
    /// commits them as leftovers.
    pub commit: bool,
}

/// One file the simulated agent writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimFile {
    /// Relative to the worktree root.
    pub path: String,
    pub edit: SimEdit,
    /// Content written instead on a failing attempt.
    pub on_fail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SimEdit {
    /// Replace the file with this content.
    Content(String),
    /// Append this to the file (creating it).
    Append(String),
    /// Delete the file.
    Delete,
}

/// An ad-hoc task from `planning/queue/<name>.md`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueItem {
    pub name: String,
    pub file: String,
    pub description: String,
    pub scope: Scope,
    pub gate: Gate,
    pub invariants: Vec<String>,
    pub harness: Option<String>,
    pub model: Option<String>,
    #[serde(with = "option_duration_text")]
    pub timeout: Option<Duration>,
    pub retry_max: u32,
    pub paths: Vec<String>,
    /// `plan/task` references.
    pub depends_on: Vec<(String, String)>,
    /// `allow_unchecked: true`: it may merge with no check run on it.
    pub allow_unchecked: bool,
    /// What the built-in `sim` agent does (`sim` in the front matter).
    pub sim: Option<Sim>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Approve,
    Reject,
}

/// A human decision on one task, bound to the commit that was reviewed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Approval {
    pub plan: String,
    pub task: String,
    pub decision: Decision,
    pub commit: String,
    pub reason: Option<String>,
    pub by: Option<String>,
    pub file: String,
}
