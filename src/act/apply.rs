//! One function per action (DESIGN §4). Each carries out its side effects
//! idempotently and updates the status the tick will record. An action that
//! cannot proceed because a human's worktree is dirty is `Deferred`, with
//! nothing changed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gix::ObjectId;

use crate::agent::{Brief, Secret};
use crate::decide::{Action, Reason};
use crate::git::{GitError, Repo, TrialMerge};
use crate::harness;
use crate::observe::TaskKey;
use crate::observe::runs::{self, ExitRecord, run_dir};
use crate::spec::{Backoff, Decision as Verdict, Gate, Plan, Spec, Task};
use crate::status::{AttemptRecord, Evidence, Failure, Phase, Status, TaskStatus};
use crate::time::Timestamp;

use super::check::{CheckResult, run_check};
use super::dispatch::{self, Attempt, DispatchError, worktree_path};
use crate::observe::Availability;

/// Everything the actions of one tick share.
pub struct ActCtx<'a> {
    pub repo: &'a Repo,
    pub spec: &'a Spec,
    pub secret: &'a Secret,
    /// The converge executable (supervisor and `sim` agent).
    pub converge: &'a Path,
    pub now: Timestamp,
    /// Where the agent's allowed environment variables are read from.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub base_branch: String,
    /// The base tip; moves when this tick merges.
    pub base_tip: ObjectId,
    /// Masks the secret and sensitive environment values in what acts write.
    pub redactor: crate::agent::Redactor,
    /// Whether Landlock works here, when `[sandbox] enabled` asked.
    pub sandbox: Option<Availability>,
    /// Where task worktrees live (`[reconcile] worktree_root`, resolved).
    pub worktree_root: PathBuf,
}

impl ActCtx<'_> {
    /// Who converge's own commits are written as (see [`crate::spec::Reconcile::signer`]).
    pub fn signer(&self) -> crate::git::Signer {
        self.spec.config.reconcile.signer(self.env)
    }
}

/// What a CLI harness needs in its agent's environment besides `env_allow`:
/// its API settings from converge's environment, its own homes in the run
/// directory (which the sandbox lets it write), OpenCode's permission rules,
/// and `TZ=UTC`.
fn harness_extra_env(
    harness: &crate::spec::Harness,
    env: &dyn Fn(&str) -> Option<String>,
    run: &Path,
    invariants: &[&crate::spec::Invariant],
) -> Result<Vec<(&'static str, String)>, super::run::RunError> {
    let mut extra: Vec<(&'static str, String)> = harness::harness_env(harness.kind)
        .iter()
        .filter_map(|name| env(name).map(|value| (*name, value)))
        .collect();
    match harness.kind {
        crate::spec::HarnessKind::ClaudeCode => {
            extra.push((
                "CLAUDE_CONFIG_DIR",
                run.join("claude").to_string_lossy().into_owned(),
            ));
            extra.push(("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".to_owned()));
        }
        crate::spec::HarnessKind::Codex => {
            let home = codex_home(env, run)?;
            extra.push(("CODEX_HOME", home.to_string_lossy().into_owned()));
        }
        crate::spec::HarnessKind::Opencode => {
            // OpenCode keeps sessions, logs and caches under the XDG data,
            // state and cache homes, which the sandbox must let it write: the
            // run's.
            let base = run.join("opencode");
            for (name, dir) in [
                ("XDG_DATA_HOME", "data"),
                ("XDG_STATE_HOME", "state"),
                ("XDG_CACHE_HOME", "cache"),
            ] {
                extra.push((name, base.join(dir).to_string_lossy().into_owned()));
            }
            extra.push((
                "OPENCODE_CONFIG_CONTENT",
                harness::opencode_permissions(invariants),
            ));
            extra.push(("OPENCODE_DISABLE_AUTOUPDATE", "1".to_owned()));
            extra.push(("OPENCODE_DISABLE_MODELS_FETCH", "1".to_owned()));
        }
        crate::spec::HarnessKind::Command | crate::spec::HarnessKind::Sim => {}
    }
    if harness.kind.streams() {
        // Clock times in rate-limit messages ("try again at 8:29 AM") are
        // then UTC, which is how converge reads them.
        extra.push(("TZ", "UTC".to_owned()));
    }
    Ok(extra)
}

/// Whether `program` can be executed: a path that exists, or a name found in
/// one of `path`'s directories.
pub(crate) fn program_exists(program: &str, path: Option<&str>) -> bool {
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    path.unwrap_or_default()
        .split(':')
        .filter(|d| !d.is_empty())
        .any(|d| Path::new(d).join(program).is_file())
}

/// Codex writes its sessions and logs under `CODEX_HOME`, which the sandbox
/// must let it write, so each run gets `<run>/codex`: a copy of the user's
/// `config.toml` (providers, profiles) from `$CODEX_HOME` or `~/.codex`, and a
/// link to their `auth.json` (a ChatGPT login), when they exist.
fn codex_home(
    env: &dyn Fn(&str) -> Option<String>,
    run: &Path,
) -> Result<PathBuf, super::run::RunError> {
    let home = run.join("codex");
    let write = |path: &Path| {
        let path = path.to_owned();
        move |source| super::run::RunError::Write { path, source }
    };
    std::fs::create_dir_all(&home).map_err(write(&home))?;
    let user = env("CODEX_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".codex")));
    if let Some(user) = user.filter(|u| u != &home) {
        let config = user.join("config.toml");
        if config.is_file() {
            std::fs::copy(&config, home.join("config.toml")).map_err(write(&home))?;
        }
        let auth = user.join("auth.json");
        let link = home.join("auth.json");
        if auth.is_file() && !link.exists() {
            std::os::unix::fs::symlink(&auth, &link).map_err(write(&link))?;
        }
    }
    Ok(home)
}

/// The condition of a task whose attempt runs without the sandbox it asked for.
pub const UNCONFINED: &str = "Unconfined";

impl std::fmt::Debug for ActCtx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActCtx")
            .field("base_branch", &self.base_branch)
            .field("base_tip", &self.base_tip)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// What an action did, for the tick's output and commit message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// One line for people: `dispatch auth/login (attempt 1)`.
    pub line: String,
    /// Files the status commit must also change (queue moves).
    pub files: Vec<(String, Option<Vec<u8>>)>,
    /// Set when the action could not proceed and changed nothing.
    pub deferred: Option<String>,
    /// Set when the action failed with this error (chain); the failure is
    /// recorded on its task (see [`action_failed`]).
    pub failed: Option<String>,
}

impl Applied {
    fn done(line: String) -> Applied {
        Applied {
            line,
            files: Vec::new(),
            deferred: None,
            failed: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ActError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Dispatch(#[from] DispatchError),
    #[error(transparent)]
    Run(#[from] runs::RunError),
    #[error(transparent)]
    Record(#[from] super::run::RunError),
    #[error(transparent)]
    Harness(#[from] harness::HarnessError),
    #[error("the base branch {branch} moved while merging; the tick is recomputed")]
    BaseMoved { branch: String },
    #[error("task {key} is not in the spec")]
    UnknownTask { key: TaskKey },
}

/// Carries out one action.
pub fn apply(
    ctx: &mut ActCtx<'_>,
    status: &mut Status,
    action: &Action,
) -> Result<Applied, ActError> {
    match action {
        Action::Reap {
            key,
            attempt,
            reason,
        } => reap(ctx, status, key, *attempt, reason),
        Action::Cancel {
            key,
            attempt,
            reason,
        } => cancel(ctx, status, key, *attempt, reason),
        Action::Gate { key, attempt } => gate(ctx, status, key, *attempt),
        Action::Merge { key, head } => merge(ctx, status, key, head),
        Action::Retry {
            key,
            attempt,
            reason,
        } => start(ctx, status, key, *attempt, Some(reason)),
        Action::Escalate { key, reason } => Ok(escalate(ctx, status, key, reason)),
        Action::Dispatch { key, attempt } => start(ctx, status, key, *attempt, None),
        Action::Promote { item } => promote(ctx, item),
        Action::Cleanup { key } => cleanup(ctx, status, key),
    }
}

fn task_of<'s>(spec: &'s Spec, key: &TaskKey) -> Result<(&'s Plan, &'s Task), ActError> {
    spec.plans
        .get(&key.plan)
        .and_then(|p| p.task(&key.task).map(|t| (p, t)))
        .ok_or_else(|| ActError::UnknownTask { key: key.clone() })
}

fn entry<'s>(status: &'s mut Status, key: &TaskKey) -> &'s mut TaskStatus {
    status
        .plans
        .entry(key.plan.clone())
        .or_default()
        .tasks
        .entry(key.task.clone())
        .or_default()
}

/// The wait before retry `failures + 1`: `base * factor^(failures-1)`, at most `max`.
pub fn backoff_delay(backoff: &Backoff, failures: u32) -> Duration {
    let exponent = i32::try_from(failures.saturating_sub(1)).unwrap_or(i32::MAX);
    let secs = backoff.base.as_secs_f64() * backoff.factor.powi(exponent);
    let max = backoff.max.as_secs_f64();
    Duration::from_secs_f64(if secs.is_finite() { secs.min(max) } else { max })
}

/// Records a failed attempt: the failure, the count, the backoff.
fn fail(ctx: &ActCtx<'_>, st: &mut TaskStatus, attempt: u32, failure: Failure) {
    st.failures += 1;
    st.phase = Phase::Failed;
    st.next_eligible_at = Some(ctx.now.plus(backoff_delay(
        &ctx.spec.config.reconcile.backoff,
        st.failures,
    )));
    finish_attempt(st, attempt, ctx.now, &failure.reason);
    st.last_failure = Some(Failure { attempt, ..failure });
}

/// Failures in a row that escalate an action on a task removed from its plan
/// (which has no `retry_max`): as many as the default `retry_max` (3) allows,
/// the first and three retries.
const REMOVED_TASK_ACTION_FAILURES: u32 = 4;

/// Records that `action` failed with `error` (its chain) on its task, after
/// the tick took back what the action had changed in status: the condition
/// `ActionFailed` (reason `action-failed`) naming the action and the error,
/// and a backoff (`[reconcile].backoff`) that `decide` honours, so the task
/// does not come first again next tick and hold back the others. The task's
/// `retry_max` failures in a row (at least one) escalate it with that
/// failure. An action of no task (a promotion) is only reported.
pub fn action_failed(
    ctx: &ActCtx<'_>,
    status: &mut Status,
    action: &Action,
    error: &str,
) -> Applied {
    let what = match (action, action.key()) {
        (_, Some(key)) => format!("{} {key}", action.kind().as_str()),
        (Action::Promote { item }, None) => format!("promote queue item {item}"),
        (_, None) => action.kind().as_str().to_owned(),
    };
    let failed = |line: String| Applied {
        line,
        files: Vec::new(),
        deferred: None,
        failed: Some(error.to_owned()),
    };
    let Some(key) = action.key() else {
        return failed(format!("{what} failed: {error}"));
    };
    let task = ctx
        .spec
        .plans
        .get(&key.plan)
        .and_then(|p| p.task(&key.task));
    let st = entry(status, key);
    if st.phase == Phase::Escalated && task.is_some_and(|t| t.generation != st.generation) {
        // A human restarted the task (`converge retry`): count afresh.
        st.action_failures = 0;
    }
    st.action_failures += 1;
    let count = st.action_failures;
    // A task removed from its plan (its cleanup failing) has no `retry_max`:
    // the default's.
    // As for attempts, `retry_max` counts the tries after the first.
    let limit = task.map_or(REMOVED_TASK_ACTION_FAILURES, |t| t.retry_max + 1);
    let message = format!("`{what}` failed: {error}");
    let condition = crate::status::Condition {
        kind: crate::decide::ACTION_FAILED.to_owned(),
        status: true,
        reason: "action-failed".to_owned(),
        message: format!("{message} (failure {count} of {limit} in a row)"),
        since: ctx.now,
    };
    match st
        .conditions
        .iter_mut()
        .find(|c| c.kind == crate::decide::ACTION_FAILED)
    {
        Some(c) => {
            c.message = condition.message;
        }
        None => st.conditions.push(condition),
    }
    if count >= limit {
        st.phase = Phase::Escalated;
        st.next_eligible_at = None;
        if let Some(task) = task {
            st.generation = task.generation.clone();
        }
        st.last_failure = Some(Failure {
            attempt: st.attempt,
            reason: "action-failed".into(),
            message: match task {
                Some(_) => format!(
                    "{message}; it failed {count} time(s) in a row, so a human decides (fix the cause, then `converge retry {key}`)"
                ),
                None => format!(
                    "{message}; it failed {count} time(s) in a row and the task is no longer in its plan (fix the cause, then `converge doctor --fix` removes what is left of it)"
                ),
            },
            output_tail: None,
        });
        return failed(format!(
            "{what} failed {count} time(s) in a row, escalated: {error}"
        ));
    }
    let until = ctx
        .now
        .plus(backoff_delay(&ctx.spec.config.reconcile.backoff, count));
    st.next_eligible_at = Some(until);
    failed(format!(
        "{what} failed ({count} of {limit}), tried again after {until}: {error}"
    ))
}

/// An action on the task succeeded: failures of earlier actions are over.
pub fn action_succeeded(status: &mut Status, key: &TaskKey) {
    if let Some(st) = status
        .plans
        .get_mut(&key.plan)
        .and_then(|p| p.tasks.get_mut(&key.task))
        && st.action_failures > 0
    {
        st.action_failures = 0;
        st.conditions
            .retain(|c| c.kind != crate::decide::ACTION_FAILED);
    }
}

/// Records the failure of `attempt` (and the head it was judged at).
fn fail_at(
    ctx: &ActCtx<'_>,
    status: &mut Status,
    key: &TaskKey,
    attempt: u32,
    head: Option<String>,
    failure: Failure,
) {
    let st = entry(status, key);
    st.attempt = st.attempt.max(attempt);
    if head.is_some() {
        st.head = head;
    }
    fail(ctx, st, attempt, failure);
}

fn finish_attempt(st: &mut TaskStatus, attempt: u32, now: Timestamp, outcome: &str) {
    if let Some(record) = st.attempts.iter_mut().find(|a| a.number == attempt) {
        record.ended_at.get_or_insert(now);
        record.outcome = Some(outcome.to_owned());
    }
}

fn tail_of(path: &Path, lines: usize) -> Option<String> {
    let text = std::fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&text);
    let kept = super::exec::last_lines(&text, lines).join("\n");
    (!kept.trim().is_empty()).then_some(kept)
}

/// Kills the run's supervisor and agent process groups, if they are still the
/// processes the lease names.
pub fn kill_run(dir: &Path) -> Result<(), ActError> {
    let Some(lease) = runs::read_lease(dir)? else {
        kill_stragglers(dir);
        return Ok(());
    };
    let kill = rustix::process::Signal::KILL;
    if let Some(agent) = lease.agent_pid
        && is_group_leader(agent)
    {
        super::run::signal_group(agent, kill);
    }
    if runs::process_alive(lease.pid, lease.start_ticks) {
        super::run::signal_group(lease.pid, kill);
    }
    kill_stragglers(dir);
    Ok(())
}

/// Kills what is left of a run by its environment: an agent whose pid never
/// reached the lease (its supervisor died first), or a process that left the
/// agent's group.
fn kill_stragglers(dir: &Path) {
    for pid in runs::processes_of_run(dir) {
        if let Some(raw) = super::run::pid_of(pid) {
            let _ = rustix::process::kill_process(raw, rustix::process::Signal::KILL);
        }
    }
}

/// Whether `pid` is alive and leads its own process group (as converge's agents
/// do), so that signalling the group cannot hit an unrelated process.
fn is_group_leader(pid: u32) -> bool {
    let Some(raw) = super::run::pid_of(pid) else {
        return false;
    };
    runs::process_alive(pid, None)
        && rustix::process::getpgid(Some(raw)).is_ok_and(|group| group == raw)
}

/// Writes the exit record the supervisor could not write.
fn write_exit(dir: &Path, now: Timestamp, timed_out: bool) -> Result<(), ActError> {
    // No run directory: status said "running" but the run left no record here
    // (it was cleaned up, or started on another machine). Nothing to close.
    if !dir.exists() || runs::read_exit(dir)?.is_some() {
        return Ok(());
    }
    let record = ExitRecord {
        exit_code: None,
        signal: Some(9),
        ended_at: now,
        timed_out,
        spawn_error: None,
    };
    let bytes = serde_json::to_vec_pretty(&record).unwrap_or_default();
    super::run::write_record(&dir.join("exit.json"), &bytes)?;
    Ok(())
}

fn reap(
    ctx: &mut ActCtx<'_>,
    status: &mut Status,
    key: &TaskKey,
    attempt: u32,
    reason: &Reason,
) -> Result<Applied, ActError> {
    let dir = run_dir(ctx.repo.common_dir(), key, attempt);
    kill_run(&dir)?;
    let timed_out = matches!(reason, Reason::Timeout);
    write_exit(&dir, ctx.now, timed_out)?;
    let (code, message) = match reason {
        Reason::Timeout => (
            "timeout",
            "the attempt ran past its deadline; its processes were killed".to_owned(),
        ),
        Reason::ClaimExpired { by } => (
            "claim-expired",
            format!(
                "reconciler `{by}` claimed the attempt and did not finish it by the claim's deadline"
            ),
        ),
        _ => (
            "agent-vanished",
            "the agent's process disappeared without `converge done`".to_owned(),
        ),
    };
    fail_at(
        ctx,
        status,
        key,
        attempt,
        None,
        Failure {
            attempt,
            reason: code.into(),
            message,
            output_tail: tail_of(&dir.join("agent.log"), super::check::TAIL_LINES),
        },
    );
    Ok(Applied::done(format!(
        "reap {key} (attempt {attempt}): {reason}"
    )))
}

fn cancel(
    ctx: &mut ActCtx<'_>,
    status: &mut Status,
    key: &TaskKey,
    attempt: u32,
    reason: &Reason,
) -> Result<Applied, ActError> {
    let dir = run_dir(ctx.repo.common_dir(), key, attempt);
    kill_run(&dir)?;
    write_exit(&dir, ctx.now, false)?;
    match reason {
        Reason::RemovedFromPlan => {
            // The task is gone from its plan: so is its status. Cleanup keeps its
            // work under refs/converge/attempts/ and removes the worktree.
            if let Some(plan) = status.plans.get_mut(&key.plan) {
                plan.tasks.remove(&key.task);
            }
        }
        _ => {
            let st = entry(status, key);
            st.phase = Phase::Cancelled;
            finish_attempt(st, attempt, ctx.now, "cancelled");
        }
    }
    Ok(Applied::done(format!(
        "cancel {key} (attempt {attempt}): {reason}"
    )))
}

fn escalate(ctx: &ActCtx<'_>, status: &mut Status, key: &TaskKey, reason: &Reason) -> Applied {
    let st = entry(status, key);
    if matches!(reason, Reason::Rejected) {
        st.failures += 1;
        st.last_failure = Some(rejection(ctx.spec, key, st.attempt));
    }
    st.phase = Phase::Escalated;
    st.next_eligible_at = None;
    Applied::done(format!("escalate {key}: {reason}"))
}

/// The failure a human's rejection stands for.
fn rejection(spec: &Spec, key: &TaskKey, attempt: u32) -> Failure {
    let approval = spec.approvals.get(&(key.plan.clone(), key.task.clone()));
    Failure {
        attempt,
        reason: "rejected".into(),
        message: approval.and_then(|a| a.reason.clone()).map_or_else(
            || "a reviewer rejected the work".to_owned(),
            |r| format!("a reviewer rejected the work: {r}"),
        ),
        output_tail: None,
    }
}

/// Dispatch (first attempt) and retry (later ones).
fn start(
    ctx: &mut ActCtx<'_>,
    status: &mut Status,
    key: &TaskKey,
    attempt: u32,
    reason: Option<&Reason>,
) -> Result<Applied, ActError> {
    let (plan, task) = task_of(ctx.spec, key)?;
    let config = &ctx.spec.config;
    let st = entry(status, key);
    // Nothing of `st` changes before the attempt has started (below): a
    // dispatch that fails leaves status as it was, so that the failure is
    // recorded once, as such, and a rejection is counted once, not once per
    // failed try.
    let edited = st.generation != task.generation;
    let rejected =
        matches!(reason, Some(Reason::Rejected)).then(|| rejection(ctx.spec, key, st.attempt));
    // The next prompt tells the agent why the last attempt failed; a rate
    // limit or a failed action of converge's own was not the agent's doing.
    let previous = match reason {
        Some(_) if rejected.is_some() => rejected.clone(),
        // An edited task starts over: earlier failures were of another spec.
        Some(Reason::SpecChanged) if edited => None,
        Some(_) => st
            .last_failure
            .clone()
            .filter(|f| f.reason != "rate-limited" && f.reason != "action-failed"),
        None => None,
    };
    let Some(harness_def) = config.harnesses.get(&task.harness) else {
        return Err(ActError::UnknownTask { key: key.clone() });
    };
    let common = ctx.repo.common_dir().to_owned();
    let run = run_dir(&common, key, attempt);
    let worktree = worktree_path(&ctx.worktree_root, key);
    let prompt = harness::prompt(
        &ctx.spec.goal,
        plan,
        task,
        config,
        attempt,
        previous.as_ref(),
    );
    let prompt_file = run.join("prompt.md");
    let task_name = key.to_string();
    let model = task
        .model
        .as_deref()
        .or_else(|| harness_def.models.get(&task.scope).map(String::as_str));
    let invariants: Vec<&crate::spec::Invariant> = task
        .invariants
        .iter()
        .filter_map(|n| config.invariants.get(n))
        .collect();
    let launch = match harness::launch(
        harness_def,
        &harness::LaunchInput {
            prompt_file: &prompt_file,
            prompt: &prompt,
            worktree: &worktree,
            task: &task_name,
            converge: ctx.converge,
            model,
            invariants: invariants.clone(),
            confined: config.sandbox.enabled,
        },
    )
    .map_err(|e| e.to_string())
    .and_then(|launch| {
        // An agent CLI that is not installed fails every attempt the same way.
        if harness_def.kind.streams()
            && !program_exists(&launch.program, (ctx.env)("PATH").as_deref())
        {
            Err(format!(
                "the `{}` CLI of harness `{}` is not installed here (not found on PATH); install it, or set `command` in [harness.{}] to its path",
                launch.program, task.harness, task.harness
            ))
        } else {
            Ok(launch)
        }
    }) {
        Ok(launch) => launch,
        Err(e) => {
            // Retrying cannot help until the configuration changes: a human
            // decides, and `converge retry` starts it again after the fix.
            st.phase = Phase::Escalated;
            st.generation = task.generation.clone();
            st.last_failure = Some(Failure {
                attempt,
                reason: "harness-unavailable".into(),
                message: format!(
                    "{e}; run this task with the `sim` harness or a `command` harness (docs/configuration.md)"
                ),
                output_tail: None,
            });
            return Ok(Applied::done(format!("escalate {key}: {e}")));
        }
    };
    let brief = Brief {
        task: key.to_string(),
        attempt,
        invariants: task
            .invariants
            .iter()
            .filter_map(|n| config.invariants.get(n).cloned())
            .collect(),
        sim: task.sim.clone(),
    };
    let timeout = task.timeout.unwrap_or(config.reconcile.task_timeout);
    let started = dispatch::dispatch(
        ctx.repo,
        ctx.secret,
        &Attempt {
            key,
            attempt,
            fork: ctx.base_tip,
            launch,
            env: with_converge_on_path(
                harness::agent_env(
                    config,
                    ctx.env,
                    &harness_extra_env(harness_def, ctx.env, &run, &invariants)?,
                ),
                ctx.converge,
            ),
            prompt,
            deadline: ctx.now.plus(timeout),
            generation: task.generation.clone(),
            harness: task.harness.clone(),
            brief: serde_json::to_vec_pretty(&brief).unwrap_or_default(),
            sandbox: config.sandbox.enabled.then_some(config.sandbox.required),
            signer: ctx.signer(),
            worktree_root: ctx.worktree_root.clone(),
        },
        ctx.converge,
    )?;
    // Enabled but not enforceable here (and not required, or decide would
    // have held the dispatch back): the agent runs unconfined, and status says so.
    st.conditions.retain(|c| c.kind != UNCONFINED);
    if config.sandbox.enabled
        && let Some(Availability::Unavailable { reason }) = &ctx.sandbox
    {
        st.conditions.push(crate::status::Condition {
            kind: UNCONFINED.to_owned(),
            status: true,
            reason: "sandbox-unavailable".to_owned(),
            message: format!(
                "attempt {attempt} runs without the sandbox `[sandbox] enabled` asks for: {reason}; `[sandbox] required = true` refuses to dispatch instead"
            ),
            since: ctx.now,
        });
    }
    if edited {
        st.failures = 0;
        if matches!(reason, Some(Reason::SpecChanged)) {
            st.last_failure = None;
        }
    }
    if let Some(failure) = rejected {
        st.failures += 1;
        st.last_failure = Some(failure);
    }
    st.phase = Phase::Running;
    st.attempt = attempt;
    st.generation = task.generation.clone();
    st.branch = Some(key.branch());
    st.head = Some(ctx.base_tip.to_string());
    st.merged_as = None;
    st.next_eligible_at = None;
    st.gate.clear();
    if !st.attempts.iter().any(|a| a.number == attempt) {
        st.attempts.push(AttemptRecord {
            number: attempt,
            generation: task.generation.clone(),
            started_at: ctx.now,
            ended_at: None,
            outcome: None,
            tokens_in: 0,
            tokens_out: 0,
            cost_usd: 0.0,
            harness: Some(task.harness.clone()),
            model: model.map(str::to_owned),
            cooldown_until: None,
        });
    }
    let verb = if reason.is_some() {
        "retry"
    } else {
        "dispatch"
    };
    let adopted = if started.adopted { ", adopted" } else { "" };
    let why = reason.map(|r| format!(": {r}")).unwrap_or_default();
    Ok(Applied::done(format!(
        "{verb} {key} (attempt {attempt}, {harness}{adopted}){why}",
        harness = task.harness
    )))
}

/// Puts the directory of the running converge first on the agent's `PATH`, so
/// that `converge done` and friends reach this very binary.
fn with_converge_on_path(mut env: Vec<(String, String)>, converge: &Path) -> Vec<(String, String)> {
    let Some(dir) = converge.parent().map(|d| d.to_string_lossy().into_owned()) else {
        return env;
    };
    match env.iter_mut().find(|(name, _)| name == "PATH") {
        Some((_, value)) if value.split(':').next() != Some(dir.as_str()) => {
            *value = format!("{dir}:{value}");
        }
        Some(_) => {}
        None => env.push(("PATH".to_owned(), dir)),
    }
    env
}

/// Reads the attempt's event stream from `agent.log` when its harness is an
/// agent CLI, and records the tokens and cost it reports in the attempt's
/// record (priced from the price table when the CLI reports no cost).
fn read_stream(
    ctx: &ActCtx<'_>,
    status: &mut Status,
    key: &TaskKey,
    attempt: u32,
    dir: &Path,
) -> Option<harness::stream::Summary> {
    let st = entry(status, key);
    let record = st.attempts.iter_mut().find(|a| a.number == attempt)?;
    let name = record.harness.clone()?;
    let kind = ctx.spec.config.harnesses.get(&name)?.kind;
    if !kind.streams() {
        return None;
    }
    let log = std::fs::read(dir.join("agent.log")).unwrap_or_default();
    let summary = harness::stream::summarize(kind, ctx.now, &String::from_utf8_lossy(&log));
    record.tokens_in = summary.tokens_in;
    record.tokens_out = summary.tokens_out;
    record.cost_usd = summary.cost_usd.filter(|c| *c > 0.0).unwrap_or_else(|| {
        harness::prices::cost(
            &ctx.spec.config.prices,
            record.model.as_deref(),
            summary.tokens_in,
            summary.tokens_out,
        )
    });
    Some(summary)
}

/// Records how an unfinished attempt of an agent CLI ended (see
/// `harness::outcome`): a rate limit cools its harness down without using up
/// the attempt, refused credentials escalate, anything else fails.
fn ended(
    ctx: &ActCtx<'_>,
    status: &mut Status,
    key: &TaskKey,
    attempt: u32,
    head: String,
    ending: harness::outcome::Ending,
    dir: &Path,
) -> Applied {
    use harness::outcome::Ending;
    let output_tail = tail_of(&dir.join("agent.log"), super::check::TAIL_LINES);
    let st = entry(status, key);
    st.attempt = st.attempt.max(attempt);
    st.head = Some(head);
    match ending {
        Ending::RateLimited { until, message } => {
            st.phase = Phase::Failed;
            st.next_eligible_at = Some(until);
            finish_attempt(st, attempt, ctx.now, "rate-limited");
            let harness = st
                .attempts
                .iter_mut()
                .find(|a| a.number == attempt)
                .map(|a| {
                    a.cooldown_until = Some(until);
                    a.harness.clone().unwrap_or_default()
                })
                .unwrap_or_default();
            st.last_failure = Some(Failure {
                attempt,
                reason: "rate-limited".into(),
                message: format!(
                    "{message}; harness `{harness}` cools down until {until}, and this attempt does not count against `retry_max`"
                ),
                output_tail: None,
            });
            Applied::done(format!(
                "gate {key} (attempt {attempt}): rate-limited, harness `{harness}` cools down until {until}"
            ))
        }
        Ending::Authentication { message } => {
            st.failures += 1;
            st.phase = Phase::Escalated;
            finish_attempt(st, attempt, ctx.now, "authentication");
            st.last_failure = Some(Failure {
                attempt,
                reason: "authentication".into(),
                message: format!(
                    "{message}; the model API refused the credentials the agent got: check the API key in converge's environment (docs/configuration.md, harnesses), then `converge retry {key}`"
                ),
                output_tail,
            });
            Applied::done(format!(
                "gate {key} (attempt {attempt}): escalated, the model API refused the credentials"
            ))
        }
        Ending::Failed { reason, message } => {
            fail(
                ctx,
                st,
                attempt,
                Failure {
                    attempt,
                    reason: reason.into(),
                    message: message.clone(),
                    output_tail,
                },
            );
            Applied::done(format!("gate {key} (attempt {attempt}): failed, {message}"))
        }
    }
}

/// Why a gate failed before any invariant ran.
fn precheck(
    exit: Option<&ExitRecord>,
    done: bool,
    head: ObjectId,
    fork: Option<ObjectId>,
) -> Option<(&'static str, String)> {
    let Some(exit) = exit else {
        if done {
            // The supervisor died; the agent reported done (see `read_run`).
            return (fork == Some(head)).then(|| {
                (
                    "no-changes",
                    "the attempt changed nothing: the task branch is still at its fork".into(),
                )
            });
        }
        return Some((
            "agent-vanished",
            "the agent's process disappeared without recording its exit".into(),
        ));
    };
    if let Some(error) = &exit.spawn_error {
        return Some((
            "spawn-failed",
            format!("the agent could not start: {error}"),
        ));
    }
    if exit.timed_out {
        return Some((
            "timeout",
            "the attempt ran past its deadline; its processes were killed".into(),
        ));
    }
    let code = exit
        .exit_code
        .map_or_else(|| "a signal".to_owned(), |c| format!("code {c}"));
    if !done {
        return Some((
            "no-done",
            format!("the agent exited ({code}) without running `converge done`"),
        ));
    }
    if exit.exit_code != Some(0) {
        return Some((
            "agent-failed",
            format!("the agent ran `converge done` but exited with {code}"),
        ));
    }
    if fork == Some(head) {
        return Some((
            "no-changes",
            "the attempt changed nothing: the task branch is still at its fork".into(),
        ));
    }
    None
}

/// Files the attempt changed that it may not: protected paths, and paths
/// outside the task's `paths` globs.
fn path_violations(task: &Task, changed: &[String]) -> Result<Vec<String>, globset::Error> {
    let mut builder = globset::GlobSetBuilder::new();
    for pattern in &task.paths {
        builder.add(
            globset::GlobBuilder::new(pattern.trim_start_matches("./"))
                .literal_separator(true)
                .build()?,
        );
    }
    let allowed = builder.build()?;
    Ok(changed
        .iter()
        .filter_map(|path| {
            let protected = crate::spec::paths::PROTECTED
                .iter()
                .any(|p| path.starts_with(p));
            if protected {
                Some(format!("{path} (protected)"))
            } else if !task.paths.is_empty() && !allowed.is_match(path) {
                Some(format!("{path} (outside `paths`)"))
            } else {
                None
            }
        })
        .collect())
}

/// The prefix of a `[merge]` invariant's evidence in a task's `gate` table
/// (`merge:NAME`; no invariant name contains `:`).
pub const MERGE_EVIDENCE: &str = "merge:";

fn evidence(result: &CheckResult, tree: ObjectId) -> Evidence {
    Evidence {
        passed: result.passed,
        exit_code: result.exit_code,
        advisory: result.advisory,
        duration_ms: u64::try_from(result.duration.as_millis()).unwrap_or(u64::MAX),
        tree: tree.to_string(),
        output_tail: result.output_tail.clone(),
        log_digest: result.log_digest.clone(),
    }
}

fn gate(
    ctx: &mut ActCtx<'_>,
    status: &mut Status,
    key: &TaskKey,
    attempt: u32,
) -> Result<Applied, ActError> {
    let (_, task) = task_of(ctx.spec, key)?;
    let common = ctx.repo.common_dir().to_owned();
    let dir = run_dir(&common, key, attempt);
    // Where the attempt was checked out: at the root it started under, which a
    // change of `worktree_root` since then does not move.
    let worktree = dispatch::checkout_of(ctx.repo, &key.branch())?
        .unwrap_or_else(|| worktree_path(&ctx.worktree_root, key));
    let record = runs::read_run(&dir, key, attempt, ctx.secret)?;
    let exit = runs::read_exit(&dir)?;
    // The attempt's run ended when its agent exited, not when it is gated
    // (`converge report` durations are the agent's run).
    if let Some(exit) = &exit
        && let Some(run) = entry(status, key)
            .attempts
            .iter_mut()
            .find(|a| a.number == attempt)
    {
        run.ended_at.get_or_insert(exit.ended_at);
    }
    let done = matches!(
        record.obs.state,
        crate::observe::RunState::Exited { done: true, .. }
    );
    let fork = record
        .lease
        .as_ref()
        .and_then(|l| ObjectId::from_hex(l.fork.as_bytes()).ok());
    // A tree git cannot check out fails here, before anything reads it through
    // a checkout (it would break the base branch's checkouts once merged).
    let branch = key.branch();
    if let Some(tip) = ctx.repo.branch_tip(&branch)?
        && let Some(applied) = refuse_unsafe_tree(ctx, status, key, attempt, tip)?
    {
        return Ok(applied);
    }
    // Work the agent left uncommitted is committed, so nothing is lost and the
    // gate judges exactly what would merge.
    let mut leftovers = false;
    if worktree.exists() {
        let wt = Repo::discover(&worktree)?;
        // An agent killed mid-commit (at its deadline, or when its supervisor
        // died) leaves git's locks behind; none of its processes is alive now.
        if runs::processes_of_run(&dir).is_empty() {
            wt.clear_index_lock()?;
            ctx.repo.clear_ref_lock(&key.branch())?;
        }
        if wt.head_branch()?.as_deref() == Some(key.branch().as_str()) {
            let message = format!("converge: leftovers of {key} (attempt {attempt})");
            leftovers = wt.commit_leftovers(&message, &ctx.signer())?.is_some();
        }
    }
    let Some(head) = ctx.repo.branch_tip(&branch)? else {
        fail_at(
            ctx,
            status,
            key,
            attempt,
            None,
            Failure {
                attempt,
                reason: "branch-missing".into(),
                message: format!("the task branch {branch} is gone"),
                output_tail: None,
            },
        );
        return Ok(Applied::done(format!(
            "gate {key} (attempt {attempt}): failed, the branch is gone"
        )));
    };
    if leftovers && let Some(applied) = refuse_unsafe_tree(ctx, status, key, attempt, head)? {
        return Ok(applied);
    }
    let st_head = head.to_string();
    let summary = read_stream(ctx, status, key, attempt, &dir);
    if let Some((code, message)) = precheck(exit.as_ref(), done, head, fork) {
        let ending = summary
            .as_ref()
            .filter(|_| matches!(code, "no-done" | "agent-failed"));
        if let Some(ending) = ending.and_then(|s| {
            harness::outcome::ending(s, exit.as_ref().and_then(|e| e.exit_code), ctx.now)
        }) {
            return Ok(ended(ctx, status, key, attempt, st_head, ending, &dir));
        }
        fail_at(
            ctx,
            status,
            key,
            attempt,
            Some(st_head),
            Failure {
                attempt,
                reason: code.into(),
                message: message.clone(),
                output_tail: tail_of(&dir.join("agent.log"), super::check::TAIL_LINES),
            },
        );
        return Ok(Applied::done(format!(
            "gate {key} (attempt {attempt}): failed, {message}"
        )));
    }
    if let Some(fork) = fork {
        let changed: Vec<String> = ctx
            .repo
            .changed_files(fork, head)?
            .into_iter()
            .map(|(path, _)| path)
            .collect();
        let violations = path_violations(task, &changed).unwrap_or_default();
        if !violations.is_empty() {
            let message = format!(
                "the attempt changed files it may not: {}",
                violations.join(", ")
            );
            fail_at(
                ctx,
                status,
                key,
                attempt,
                Some(st_head),
                Failure {
                    attempt,
                    reason: "forbidden-paths".into(),
                    message: message.clone(),
                    output_tail: None,
                },
            );
            return Ok(Applied::done(format!(
                "gate {key} (attempt {attempt}): failed, {message}"
            )));
        }
    }
    let tree = ctx.repo.tree_of(head)?;
    let invariants: Vec<&crate::spec::Invariant> = task
        .invariants
        .iter()
        .filter_map(|name| ctx.spec.config.invariants.get(name))
        .collect();
    let fingerprint = super::check::invariants_fingerprint(&invariants);
    // A gate whose tick could not record its status (the person's checkout
    // had changes in the status paths) is not run again on the same commit.
    let kept = super::check::kept_gate(
        &common,
        &key.plan,
        &key.task,
        attempt,
        &st_head,
        &fingerprint,
    );
    let reused = kept.is_some();
    let results = match kept {
        Some(results) => results,
        None => {
            let results: Vec<CheckResult> = invariants
                .iter()
                .map(|invariant| {
                    run_check(invariant, &worktree, Some(&dir.join("gate")), &ctx.redactor)
                })
                .collect();
            let record = super::check::GateRecord {
                head: st_head.clone(),
                invariants: fingerprint,
                results,
            };
            super::check::keep_gate(&common, &key.plan, &key.task, attempt, &record).map_err(
                |source| GitError::Io {
                    path: common.join("converge").join("gates"),
                    source,
                },
            )?;
            record.results
        }
    };
    let st = entry(status, key);
    st.attempt = st.attempt.max(attempt);
    st.head = Some(st_head);
    st.gate = results
        .iter()
        .map(|r| (r.name.clone(), evidence(r, tree)))
        .collect();
    let leftover_note = match (leftovers, reused) {
        (true, _) => " (committed leftovers)",
        (false, true) => " (results kept from an earlier tick)",
        (false, false) => "",
    };
    if let Some(failed) = results.iter().find(|r| r.blocks()) {
        let message = format!("invariant `{}` failed: {}", failed.name, failed.ending);
        fail(
            ctx,
            st,
            attempt,
            Failure {
                attempt,
                reason: "invariant-failed".into(),
                message: message.clone(),
                output_tail: Some(failed.output_tail.clone()).filter(|t| !t.is_empty()),
            },
        );
        return Ok(Applied::done(format!(
            "gate {key} (attempt {attempt}){leftover_note}: failed, {message}; `converge gate {key}` shows its output"
        )));
    }
    st.phase = match task.gate {
        Gate::Auto => Phase::Passed,
        Gate::HumanReview | Gate::HumanApprove => Phase::AwaitingApproval,
    };
    st.next_eligible_at = None;
    finish_attempt(st, attempt, ctx.now, "passed");
    let checks = if results.is_empty() {
        "no invariants".to_owned()
    } else {
        results
            .iter()
            .map(|r| {
                format!(
                    "{} {}",
                    r.name,
                    if r.passed {
                        "passed"
                    } else {
                        "failed (advisory)"
                    }
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let next = match task.gate {
        Gate::Auto => "",
        _ => "; awaiting approval",
    };
    Ok(Applied::done(format!(
        "gate {key} (attempt {attempt}){leftover_note}: passed ({checks}){next}"
    )))
}

/// Fails the attempt whose commit `head` holds tree entries git refuses to
/// check out (`..`, `.git` and its aliases; see `git::safe`), with reason
/// `unsafe-path`. `None` when the tree is safe.
fn refuse_unsafe_tree(
    ctx: &ActCtx<'_>,
    status: &mut Status,
    key: &TaskKey,
    attempt: u32,
    head: ObjectId,
) -> Result<Option<Applied>, ActError> {
    let unsafe_entries = ctx.repo.unsafe_entries(ctx.repo.tree_of(head)?)?;
    if unsafe_entries.is_empty() {
        return Ok(None);
    }
    let dir = run_dir(ctx.repo.common_dir(), key, attempt);
    read_stream(ctx, status, key, attempt, &dir);
    let message = format!(
        "the attempt's commit {} holds tree entries git refuses to check out: {}",
        &head.to_string()[..7],
        unsafe_entries.join(", ")
    );
    fail_at(
        ctx,
        status,
        key,
        attempt,
        Some(head.to_string()),
        Failure {
            attempt,
            reason: "unsafe-path".into(),
            message: message.clone(),
            output_tail: None,
        },
    );
    Ok(Some(Applied::done(format!(
        "gate {key} (attempt {attempt}): failed, {message}"
    ))))
}

/// Where the merge result is checked out for `[merge].invariants`.
/// `<plan>.<task>`: names never contain `.`, so no two tasks share one (a
/// `--` could: plan `a`, task `b--c` and plan `a--b`, task `c`).
fn merge_check_path(common: &Path, key: &TaskKey) -> PathBuf {
    common
        .join("converge")
        .join("merge-checks")
        .join(format!("{}.{}", key.plan, key.task))
}

fn merge(
    ctx: &mut ActCtx<'_>,
    status: &mut Status,
    key: &TaskKey,
    head: &str,
) -> Result<Applied, ActError> {
    let (plan, task) = task_of(ctx.spec, key)?;
    let branch = key.branch();
    let tip = ctx.repo.branch_tip(&branch)?;
    let attempt = status.task(&key.plan, &key.task).map_or(0, |s| s.attempt);
    let wanted = ObjectId::from_hex(head.as_bytes()).ok();
    let Some(head_id) = tip.filter(|t| Some(*t) == wanted) else {
        // The branch moved after its gate: what passed is not what would merge.
        fail_at(
            ctx,
            status,
            key,
            attempt,
            None,
            Failure {
                attempt,
                reason: "branch-moved".into(),
                message: format!(
                    "{branch} moved after its invariants passed; the work is checked again on a new attempt"
                ),
                output_tail: None,
            },
        );
        return Ok(Applied::done(format!(
            "merge {key}: refused, the branch moved after its gate"
        )));
    };
    let base = ctx.base_tip;
    let tree = match ctx.repo.trial_merge(base, head_id)? {
        TrialMerge::Clean { tree } => tree,
        TrialMerge::Conflicts { paths } => {
            let message = format!(
                "merging into {} conflicts in {}; the next attempt starts from the new base",
                ctx.base_branch,
                paths.join(", ")
            );
            fail_at(
                ctx,
                status,
                key,
                attempt,
                None,
                Failure {
                    attempt,
                    reason: "merge-conflict".into(),
                    message: message.clone(),
                    output_tail: None,
                },
            );
            return Ok(Applied::done(format!("merge {key}: {message}")));
        }
    };
    let approval = ctx
        .spec
        .approvals
        .get(&(key.plan.clone(), key.task.clone()))
        .filter(|a| a.decision == Verdict::Approve && a.commit == head);
    let mut message = format!(
        "converge: merge {key} (attempt {attempt})\n\n{}\n\n",
        first_line(&task.description)
    );
    if let Some(a) = approval {
        message.push_str(&format!(
            "Approved-by: {}\n",
            a.by.as_deref().unwrap_or("a reviewer")
        ));
    }
    message.push_str(&format!(
        "Converge-Action: merge\nConverge-Plan: {}\nConverge-Task: {}\nConverge-Attempt: {attempt}\n",
        plan.id, task.name
    ));
    let commit = ctx
        .repo
        .write_commit(tree, &[base, head_id], &message, &ctx.signer())?;
    crate::crash::point("mid-merge");

    let merge_invariants = &ctx.spec.config.merge.invariants;
    if !merge_invariants.is_empty() {
        let common = ctx.repo.common_dir().to_owned();
        let path = merge_check_path(&common, key);
        ctx.repo.remove_checkout(&path)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| GitError::Io {
                path: parent.to_owned(),
                source,
            })?;
        }
        ctx.repo.add_detached_worktree(&path, commit)?;
        let log_dir = run_dir(&common, key, attempt).join("merge");
        let results: Vec<CheckResult> = merge_invariants
            .iter()
            .filter_map(|n| ctx.spec.config.invariants.get(n))
            .map(|inv| run_check(inv, &path, Some(&log_dir), &ctx.redactor))
            .collect();
        ctx.repo.remove_checkout(&path)?;
        // The evidence, next to the gate's: `converge gate` shows it.
        let st = entry(status, key);
        for result in &results {
            st.gate.insert(
                format!("{MERGE_EVIDENCE}{}", result.name),
                evidence(result, tree),
            );
        }
        if let Some(failed) = results.iter().find(|r| r.blocks()) {
            let message = format!(
                "merge invariant `{}` failed on the merge result: {}",
                failed.name, failed.ending
            );
            fail_at(
                ctx,
                status,
                key,
                attempt,
                None,
                Failure {
                    attempt,
                    reason: "merge-invariant-failed".into(),
                    message: message.clone(),
                    output_tail: Some(failed.output_tail.clone()).filter(|t| !t.is_empty()),
                },
            );
            return Ok(Applied::done(format!(
                "merge {key}: {message}; `converge gate {key}` shows its output"
            )));
        }
    }

    match ctx.repo.advance_branch(
        &ctx.base_branch,
        base,
        commit,
        &format!("converge: merge {key}"),
    ) {
        Ok(_) => {}
        Err(e @ GitError::Dirty { .. }) => {
            return Ok(Applied {
                line: format!("merge {key}: deferred"),
                files: Vec::new(),
                deferred: Some(format!(
                    "{e}; commit or stash them (`git stash push -- <path>`), or run converge in a clone of its own; the merge goes ahead on the first tick they are out of the way"
                )),
                failed: None,
            });
        }
        Err(GitError::Conflict { .. }) => {
            return Err(ActError::BaseMoved {
                branch: ctx.base_branch.clone(),
            });
        }
        Err(other) => return Err(other.into()),
    }
    ctx.base_tip = commit;
    crate::crash::point("after-merge");
    let st = entry(status, key);
    st.phase = Phase::Merged;
    st.merged_as = Some(commit.to_string());
    st.next_eligible_at = None;
    finish_attempt(st, attempt, ctx.now, "merged");
    Ok(Applied::done(format!(
        "merge {key} (attempt {attempt}) into {} as {}",
        ctx.base_branch,
        &commit.to_string()[..7]
    )))
}

fn first_line(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
}

fn promote(ctx: &mut ActCtx<'_>, item: &str) -> Result<Applied, ActError> {
    let from = format!("planning/queue/{item}.md");
    let to = format!("planning/queue/done/{item}.md");
    let content = ctx.repo.read_blob_at(ctx.base_tip, &from)?;
    let Some(content) = content else {
        return Ok(Applied::done(format!("promote {item}: already promoted")));
    };
    Ok(Applied {
        line: format!("promote queue item {item} into the `queue` plan"),
        files: vec![(from, None), (to, Some(content))],
        deferred: None,
        failed: None,
    })
}

fn cleanup(ctx: &mut ActCtx<'_>, status: &mut Status, key: &TaskKey) -> Result<Applied, ActError> {
    let attempt = status.task(&key.plan, &key.task).map_or(0, |s| s.attempt);
    // The branch is the last proof of a merge whose status was never recorded
    // (a crash right after merging): keep its head as the merge record before
    // the branch goes, or the task would later look un-merged.
    let in_spec = ctx
        .spec
        .plans
        .get(&key.plan)
        .is_some_and(|p| p.task(&key.task).is_some());
    if in_spec
        && let Some(head) = ctx.repo.branch_tip(&key.branch())?
        && status
            .task(&key.plan, &key.task)
            .is_none_or(|s| s.merged_as.is_none())
        && ctx.repo.is_ancestor(head, ctx.base_tip)?
    {
        let st = entry(status, key);
        st.merged_as = Some(head.to_string());
        st.phase = Phase::Merged;
    }
    retire(
        ctx.repo,
        key,
        ctx.base_tip,
        attempt,
        (&ctx.signer(), &ctx.worktree_root),
    )?;
    if !in_spec && let Some(plan) = status.plans.get_mut(&key.plan) {
        plan.tasks.remove(&key.task);
    }
    Ok(Applied::done(format!(
        "cleanup {key}: removed its worktree and branch"
    )))
}

/// Removes a task's worktree and branch without losing work: what the worktree
/// holds uncommitted is committed first, and a head that is not in `base` is
/// kept as `refs/converge/attempts/<plan>/<task>/<attempt>`. Shared by
/// `cleanup` and `converge doctor --fix`.
pub fn retire(
    repo: &Repo,
    key: &TaskKey,
    base: ObjectId,
    attempt: u32,
    (signer, root): (&crate::git::Signer, &Path),
) -> Result<(), ActError> {
    let branch = key.branch();
    let worktree =
        dispatch::checkout_of(repo, &branch)?.unwrap_or_else(|| worktree_path(root, key));
    let run = run_dir(repo.common_dir(), key, attempt);
    kill_stragglers(&run);
    repo.clear_ref_lock(&branch)?;
    if worktree.exists()
        && let Ok(wt) = Repo::discover(&worktree)
        && wt.head_branch()?.as_deref() == Some(branch.as_str())
        && wt.head_is_safe()?
    {
        wt.clear_index_lock()?;
        wt.commit_leftovers(
            &format!("converge: leftovers of {key} before cleanup"),
            signer,
        )?;
    }
    repo.remove_checkout(&worktree)?;
    if let Some(head) = repo.branch_tip(&branch)? {
        if !repo.is_ancestor(head, base)? {
            dispatch::keep_attempt(repo, key, attempt, head)?;
        }
        repo.delete_branch(&branch, head)?;
    }
    crate::git::remove_file_if_exists(&runs::fork_marker(repo.common_dir(), key))?;
    super::check::forget_gates(repo.common_dir(), &key.plan, &key.task);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_agent_cli_gets_its_credentials_its_homes_in_the_run_and_utc() {
        let run = tempfile::tempdir().expect("run");
        let user = tempfile::tempdir().expect("codex home");
        std::fs::write(user.path().join("config.toml"), "model = \"m\"\n").expect("write");
        let user_home = user.path().to_string_lossy().into_owned();
        let env = |name: &str| match name {
            "ANTHROPIC_API_KEY" | "OPENAI_API_KEY" => Some(format!("{name}-value")),
            "CODEX_HOME" => Some(user_home.clone()),
            _ => None,
        };
        let names = |kind: crate::spec::HarnessKind| -> Vec<&'static str> {
            let harness = crate::spec::Harness::builtin("h", kind);
            harness_extra_env(&harness, &env, run.path(), &[])
                .expect("env")
                .into_iter()
                .map(|(n, _)| n)
                .collect()
        };
        use crate::spec::HarnessKind::{ClaudeCode, Codex, Command, Opencode, Sim};
        assert_eq!(
            names(ClaudeCode),
            [
                "ANTHROPIC_API_KEY",
                "CLAUDE_CONFIG_DIR",
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
                "TZ"
            ]
        );
        assert_eq!(names(Codex), ["OPENAI_API_KEY", "CODEX_HOME", "TZ"]);
        // Codex's home is the run's, with the user's configuration copied.
        assert_eq!(
            std::fs::read_to_string(run.path().join("codex/config.toml")).expect("copied"),
            "model = \"m\"\n"
        );
        assert_eq!(
            names(Opencode),
            [
                "ANTHROPIC_API_KEY",
                "OPENAI_API_KEY",
                "XDG_DATA_HOME",
                "XDG_STATE_HOME",
                "XDG_CACHE_HOME",
                "OPENCODE_CONFIG_CONTENT",
                "OPENCODE_DISABLE_AUTOUPDATE",
                "OPENCODE_DISABLE_MODELS_FETCH",
                "TZ"
            ]
        );
        assert!(names(Command).is_empty() && names(Sim).is_empty());
        let claude = crate::spec::Harness::builtin("h", ClaudeCode);
        let env = harness_extra_env(&claude, &env, run.path(), &[]).expect("env");
        assert!(env.contains(&("TZ", "UTC".to_owned())));
        assert!(env.contains(&(
            "CLAUDE_CONFIG_DIR",
            run.path().join("claude").to_string_lossy().into_owned()
        )));
    }

    #[test]
    fn only_existing_programs_count_as_installed() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("claude"), "").expect("write");
        let path = format!("/nowhere::{}", dir.path().display());
        assert!(program_exists("claude", Some(&path)));
        assert!(!program_exists("codex", Some(&path)));
        assert!(!program_exists("claude", None));
        let full = dir.path().join("claude");
        assert!(program_exists(full.to_str().expect("utf-8"), None));
        assert!(!program_exists("/nowhere/claude", Some(&path)));
    }

    #[test]
    fn backoff_grows_by_the_factor_up_to_the_maximum() {
        let b = Backoff {
            base: Duration::from_secs(30),
            factor: 2.0,
            max: Duration::from_secs(300),
        };
        let delays: Vec<u64> = (1..=6).map(|n| backoff_delay(&b, n).as_secs()).collect();
        assert_eq!(delays, [30, 60, 120, 240, 300, 300]);
        assert_eq!(backoff_delay(&b, 0).as_secs(), 30);
        assert_eq!(backoff_delay(&b, u32::MAX).as_secs(), 300);
    }

    #[test]
    fn the_gate_refuses_protected_paths_and_paths_outside_the_task() {
        let mut task = crate::spec::compile(&crate::spec::PlanningFiles::from_texts([
            ("planning/goal.md", "g"),
            (
                "planning/plans/p.toml",
                "[plan]\nname = \"P\"\n[[tasks]]\nname = \"t\"\ndescription = \"d\"\nscope = \"narrow\"\ngate = \"auto\"\npaths = [\"src/*.rs\"]\n",
            ),
        ]))
        .spec
        .expect("valid")
        .plans["p"]
            .tasks[0]
            .clone();
        let changed =
            |paths: &[&str]| -> Vec<String> { paths.iter().map(|p| (*p).to_owned()).collect() };
        assert!(
            path_violations(&task, &changed(&["src/lib.rs"]))
                .expect("globs")
                .is_empty()
        );
        assert_eq!(
            path_violations(
                &task,
                &changed(&["src/a/deep.rs", "planning/plans/p.toml", ".github/x.yml"])
            )
            .expect("globs"),
            [
                "src/a/deep.rs (outside `paths`)",
                "planning/plans/p.toml (protected)",
                ".github/x.yml (protected)"
            ]
        );
        task.paths.clear();
        assert_eq!(
            path_violations(&task, &changed(&["anything.txt", "planning/goal.md"])).expect("globs"),
            ["planning/goal.md (protected)"]
        );
    }

    #[test]
    fn prechecks_classify_how_an_attempt_ended() {
        let id = |n: u8| ObjectId::from_bytes_or_panic(&[n; 20]);
        let exit = |code: Option<i32>| ExitRecord {
            exit_code: code,
            signal: None,
            ended_at: Timestamp::from_unix(0),
            timed_out: false,
            spawn_error: None,
        };
        let code = |e: Option<&ExitRecord>, done: bool, head: u8| {
            precheck(e, done, id(head), Some(id(1))).map(|(c, _)| c)
        };
        assert_eq!(code(None, false, 2), Some("agent-vanished"));
        // The supervisor died after the agent reported done: its work counts.
        assert_eq!(code(None, true, 2), None);
        assert_eq!(code(None, true, 1), Some("no-changes"));
        assert_eq!(code(Some(&exit(Some(0))), false, 2), Some("no-done"));
        assert_eq!(code(Some(&exit(Some(3))), true, 2), Some("agent-failed"));
        assert_eq!(code(Some(&exit(Some(0))), true, 1), Some("no-changes"));
        assert_eq!(code(Some(&exit(Some(0))), true, 2), None);
        let timed_out = ExitRecord {
            timed_out: true,
            ..exit(None)
        };
        assert_eq!(code(Some(&timed_out), false, 2), Some("timeout"));
    }
}
