//! The configuration: `planning/converge.toml` as validated.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Scope;
use super::duration_text;

/// Harness names that exist without a `[harness.<name>]` table.
pub const BUILTIN_HARNESSES: &[(&str, HarnessKind)] = &[
    ("claude-code", HarnessKind::ClaudeCode),
    ("codex", HarnessKind::Codex),
    ("opencode", HarnessKind::Opencode),
    ("sim", HarnessKind::Sim),
];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    pub reconcile: Reconcile,
    pub invariants: BTreeMap<String, Invariant>,
    pub merge: Merge,
    pub harnesses: BTreeMap<String, Harness>,
    pub forge: Forge,
    pub schedules: Vec<Schedule>,
    pub sandbox: Sandbox,
    pub budget: Budget,
    /// `[serve]`: the HTTP endpoints of `converge watch`.
    pub serve: Serve,
    /// `[autonomy]`: the gap-analysis loop (docs/autonomy.md).
    pub autonomy: Autonomy,
    /// USD per million tokens by model name (or name prefix), for CLIs that
    /// report no cost (`[prices]`).
    pub prices: BTreeMap<String, ModelPrice>,
    /// What each invariant checks, in words (`description`), for `invariant list`.
    /// Kept apart from [`Invariant`] so that the description is not part of the
    /// definition a gate's evidence is bound to.
    pub invariant_descriptions: BTreeMap<String, String>,
}

/// A model's price in USD per million input and output tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ModelPrice {
    pub input: f64,
    pub output: f64,
}

impl ModelPrice {
    pub const fn new(input: f64, output: f64) -> Self {
        ModelPrice { input, output }
    }
}

/// Daily spending limits across all plans (`[budget]`), per UTC day, counted
/// from the attempts recorded in status. When one is spent, nothing is
/// dispatched until the next day.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Budget {
    pub tokens_per_day: Option<u64>,
    pub usd_per_day: Option<f64>,
}

/// `[autonomy]`: the loop that proposes the next queue item from the goal
/// and capabilities, refreshes capabilities.md after merges and reviews every
/// few merges (issue #17; docs/autonomy.md).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Autonomy {
    pub enabled: bool,
    /// The planner's harness; `[reconcile] default_harness` when unset.
    pub harness: Option<String>,
    pub model: Option<String>,
    /// Queue items the loop may file per UTC day.
    pub max_items_per_day: u32,
    /// A review attempt after this many merges; 0: never.
    pub review_every: u32,
    /// The share of `[budget] usd_per_day` planner attempts may spend, 0 < x <= 1.
    pub budget_share: f64,
    /// Planner attempts the loop may start per UTC day.
    pub max_runs_per_day: u32,
    /// The loop pauses itself after this many of its items escalated in a row.
    pub max_consecutive_escalations: u32,
    /// The loop stops when a gap analysis says the goal is met.
    pub stop_when_goal_met: bool,
    /// `[autonomy.sim]`: what the built-in `sim` planner does (demos and
    /// tests; docs/autonomy.md#the-sim-planner).
    pub sim: PlannerSim,
}

/// `[autonomy.sim]`: the script of the built-in `sim` planner. It proposes
/// the goal's bullet points missing from capabilities.md, one per gap
/// analysis; these settings make it misbehave on purpose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannerSim {
    /// What each planner attempt reports it cost, in USD.
    pub usd_per_run: f64,
    /// Planner attempts (counted from 1 over the loop's life) whose gap
    /// analysis proposes its previous proposal again.
    pub duplicate_runs: Vec<u32>,
    /// Planner attempts whose gap analysis proposes an item that does not compile.
    pub invalid_runs: Vec<u32>,
    /// Planner attempts that end in a rate limit, as a CLI reports one.
    pub rate_limited_runs: Vec<u32>,
    /// Goal bullet points whose items' agents always fail.
    pub failing: Vec<String>,
    /// Goal bullet points whose first item's agent always fails; the items
    /// proposed after it escalated work.
    pub fail_first: Vec<String>,
}

impl Default for PlannerSim {
    fn default() -> Self {
        PlannerSim {
            usd_per_run: 0.05,
            duplicate_runs: Vec::new(),
            invalid_runs: Vec::new(),
            rate_limited_runs: Vec::new(),
            failing: Vec::new(),
            fail_first: Vec::new(),
        }
    }
}

impl Default for Autonomy {
    fn default() -> Self {
        Autonomy {
            enabled: false,
            harness: None,
            model: None,
            max_items_per_day: 10,
            review_every: 5,
            budget_share: 0.25,
            max_runs_per_day: 40,
            max_consecutive_escalations: 3,
            stop_when_goal_met: true,
            sim: PlannerSim::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reconcile {
    pub base_branch: String,
    pub status_branch: String,
    pub remote: Option<String>,
    pub actions_per_tick: u32,
    /// The resync interval of `converge watch` (file events and wake times
    /// trigger ticks sooner); 5 minutes unless set.
    #[serde(with = "duration_text")]
    pub interval: Duration,
    pub max_agents: u32,
    pub dispatches_per_hour: u32,
    #[serde(with = "duration_text")]
    pub task_timeout: Duration,
    /// How long after a claimed attempt's deadline its claim lapses, so that
    /// another reconciler may take the attempt over (docs/reconcile.md).
    #[serde(with = "duration_text")]
    pub claim_grace: Duration,
    pub backoff: Backoff,
    /// The harness of tasks whose plan and task name none.
    pub default_harness: String,
    /// converge's own identity for the commits it makes by itself (status,
    /// merges, leftovers), when `committer` is set; see [`Reconcile::signer`].
    pub committer: Option<Identity>,
    /// `[reconcile] worktree_root` as written: where task worktrees live,
    /// relative to the checkout or absolute; unset: `.converge/worktrees`.
    pub worktree_root: Option<String>,
    /// How many attempts per task `converge gc` keeps the run records and
    /// kept heads of (the newest; more are kept while running or unmerged).
    pub keep_attempts: u32,
}

/// A name and an email, as in `converge <converge@localhost>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub name: String,
    pub email: String,
}

/// converge's identity when neither `[reconcile] committer` nor
/// `GIT_COMMITTER_NAME` names one.
pub const DEFAULT_COMMITTER: (&str, &str) = ("converge", "converge@localhost");

impl Reconcile {
    /// Who converge's own commits are written as: `[reconcile] committer`
    /// when set (explicit configuration wins over the environment), else
    /// `GIT_COMMITTER_NAME`/`GIT_COMMITTER_EMAIL` from `env` (a run that fixes
    /// its identity, like CI or a test), else `converge <converge@localhost>`.
    /// git's `user.name`/`user.email` name the person and are not used.
    pub fn signer(&self, env: &dyn Fn(&str) -> Option<String>) -> crate::git::Signer {
        let (name, email) = match &self.committer {
            Some(identity) => (identity.name.clone(), identity.email.clone()),
            None => {
                let name = env("GIT_COMMITTER_NAME").filter(|n| !n.trim().is_empty());
                match name {
                    Some(name) => (
                        name,
                        env("GIT_COMMITTER_EMAIL")
                            .filter(|e| !e.trim().is_empty())
                            .unwrap_or_else(|| DEFAULT_COMMITTER.1.to_owned()),
                    ),
                    None => (
                        DEFAULT_COMMITTER.0.to_owned(),
                        DEFAULT_COMMITTER.1.to_owned(),
                    ),
                }
            }
        };
        crate::git::Signer::Converge { name, email }
    }
}

impl Default for Reconcile {
    fn default() -> Self {
        Reconcile {
            base_branch: "main".into(),
            status_branch: "main".into(),
            remote: None,
            actions_per_tick: 1,
            interval: Duration::from_secs(5 * 60),
            max_agents: 4,
            dispatches_per_hour: 20,
            task_timeout: Duration::from_secs(30 * 60),
            claim_grace: Duration::from_secs(10 * 60),
            backoff: Backoff::default(),
            default_harness: "claude-code".into(),
            committer: None,
            worktree_root: None,
            keep_attempts: 5,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Backoff {
    #[serde(with = "duration_text")]
    pub base: Duration,
    pub factor: f64,
    #[serde(with = "duration_text")]
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(30),
            factor: 2.0,
            max: Duration::from_secs(30 * 60),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvariantKind {
    TestSuite,
    Typecheck,
    Lint,
    Coverage,
    Custom,
}

impl InvariantKind {
    pub const NAMES: &'static [&'static str] =
        &["test_suite", "typecheck", "lint", "coverage", "custom"];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "test_suite" => Self::TestSuite,
            "typecheck" => Self::Typecheck,
            "lint" => Self::Lint,
            "coverage" => Self::Coverage,
            "custom" => Self::Custom,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TestSuite => "test_suite",
            Self::Typecheck => "typecheck",
            Self::Lint => "lint",
            Self::Coverage => "coverage",
            Self::Custom => "custom",
        }
    }
}

/// A check that converge runs (never the agent) in a task's worktree or on a merge result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invariant {
    pub name: String,
    pub kind: InvariantKind,
    /// The program; run directly, never through a shell.
    pub command: String,
    pub args: Vec<String>,
    #[serde(with = "duration_text")]
    pub timeout: Duration,
    pub expected_exit_code: i32,
    /// Advisory failures are reported but do not fail the gate.
    pub advisory: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Merge {
    /// Invariants run on the merge result before the base ref moves.
    pub invariants: Vec<String>,
    /// Whether agents may not change `.gitattributes` and `.gitmodules`
    /// (`protect_git_files`, default true).
    pub protect_git_files: bool,
}

impl Default for Merge {
    fn default() -> Self {
        Merge {
            invariants: Vec::new(),
            protect_git_files: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HarnessKind {
    ClaudeCode,
    Codex,
    Opencode,
    Command,
    Sim,
}

impl HarnessKind {
    pub const NAMES: &'static [&'static str] =
        &["claude-code", "codex", "opencode", "command", "sim"];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "claude-code" => Self::ClaudeCode,
            "codex" => Self::Codex,
            "opencode" => Self::Opencode,
            "command" => Self::Command,
            "sim" => Self::Sim,
            _ => return None,
        })
    }

    /// The agent CLIs, whose output is a JSON event stream converge reads.
    pub fn streams(self) -> bool {
        matches!(self, Self::ClaudeCode | Self::Codex | Self::Opencode)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClaudeCode => "claude-code",
            Self::Codex => "codex",
            Self::Opencode => "opencode",
            Self::Command => "command",
            Self::Sim => "sim",
        }
    }
}

/// How an agent is run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Harness {
    pub name: String,
    pub kind: HarnessKind,
    /// The program, for `command` harnesses (and an override of the CLI path for others).
    pub command: Option<String>,
    /// Arguments; `{prompt_file}`, `{worktree}` and `{task}` are replaced.
    pub args: Vec<String>,
    /// Model per task scope.
    pub models: BTreeMap<Scope, String>,
    /// Declared in `converge.toml` (false for built-in defaults).
    pub declared: bool,
}

impl Harness {
    pub fn builtin(name: &str, kind: HarnessKind) -> Self {
        Harness {
            name: name.into(),
            kind,
            command: None,
            args: Vec::new(),
            models: BTreeMap::new(),
            declared: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Forge {
    Local,
    Github(Github),
}

impl Forge {
    /// The GitHub forge's settings, when it is the forge.
    pub fn github(&self) -> Option<&Github> {
        match self {
            Forge::Github(g) => Some(g),
            Forge::Local => None,
        }
    }
}

/// `[forge] kind = "github"`: pull requests on GitHub (docs/github.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Github {
    /// `owner/name`.
    pub repo: String,
    /// The REST API's root: `https://api.github.com`, or GitHub Enterprise's
    /// `https://HOST/api/v3`.
    pub api_url: String,
    /// The git remote task branches are pushed to (`[reconcile].remote` by
    /// default).
    pub remote: String,
    pub merge_method: MergeMethod,
    /// Open pull requests of converge's at most; dispatch waits beyond it.
    pub max_open_prs: u32,
    /// Pull requests opened per rolling hour at most.
    pub prs_per_hour: u32,
    /// Labels put on every pull request converge opens.
    pub labels: Vec<String>,
    /// How long a required check may stay unreported or pending on a head
    /// before the task is escalated with a diagnosis.
    #[serde(with = "duration_text")]
    pub checks_timeout: Duration,
    /// The title of the dashboard issue that mirrors STATUS.md
    /// (`dashboard_title`); `None` when `dashboard = false`.
    pub dashboard: Option<String>,
}

/// How GitHub merges a pull request (`merge_method` of the merge call).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MergeMethod {
    Merge,
    Squash,
    Rebase,
}

impl MergeMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            MergeMethod::Merge => "merge",
            MergeMethod::Squash => "squash",
            MergeMethod::Rebase => "rebase",
        }
    }
}

/// The time zone a schedule's crontab line is read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// A fixed offset east of UTC, in seconds (`0`: UTC).
    Offset(i32),
    /// A zone of the IANA database (`Europe/Berlin`), with its daylight
    /// saving time.
    Named(chrono_tz::Tz),
}

impl Serialize for Zone {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Zone::Offset(0) => s.serialize_str("UTC"),
            Zone::Offset(secs) => {
                let sign = if *secs < 0 { '-' } else { '+' };
                let abs = secs.unsigned_abs();
                s.serialize_str(&format!("{sign}{:02}:{:02}", abs / 3600, abs % 3600 / 60))
            }
            Zone::Named(tz) => s.serialize_str(tz.name()),
        }
    }
}

/// A crontab line that enqueues a template (`[[schedule]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Schedule {
    /// Names the items it enqueues: `planning/queue/<name>-<YYYYMMDD>-<HHMM>.md`.
    pub name: String,
    /// A 5-field crontab line (validated).
    pub cron: String,
    /// File name under `planning/queue/templates/`.
    pub queue: String,
    /// The time zone the crontab line is read in.
    pub zone: Zone,
    pub missed: Missed,
    /// How late a fire time may be found and still count as on time.
    pub grace: Duration,
}

/// What a schedule does with fire times older than its grace (after downtime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Missed {
    /// Drop them; the next fire time is the next one on time.
    Skip,
    /// Enqueue one item for the newest of them.
    Once,
}

impl Missed {
    pub fn as_str(self) -> &'static str {
        match self {
            Missed::Skip => "skip",
            Missed::Once => "once",
        }
    }
}

/// The longest schedule name: its items' names add `-YYYYMMDD-HHMM` and stay
/// within [`crate::spec::names::MAX_NAME_LEN`].
pub const MAX_SCHEDULE_NAME_LEN: usize = 48;

/// A schedule's grace when `grace` is not set.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sandbox {
    /// Agents run under Landlock: they may write only their worktree, their
    /// run directory and a private temporary directory.
    pub enabled: bool,
    /// Refuse to dispatch when the sandbox cannot be enforced (instead of
    /// warning and running unconfined).
    pub required: bool,
    pub env_allow: Vec<String>,
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox {
            enabled: false,
            required: false,
            env_allow: DEFAULT_ENV_ALLOW.iter().map(|s| (*s).to_owned()).collect(),
        }
    }
}

/// `[serve]`: where `converge watch` serves its dashboard, API, metrics and
/// webhook. Off unless `listen` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Serve {
    pub listen: Option<std::net::SocketAddr>,
}

pub const DEFAULT_ENV_ALLOW: &[&str] = &["PATH", "HOME", "LANG", "TERM", "TMPDIR"];
