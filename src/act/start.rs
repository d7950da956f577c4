//! Dispatch (a task's first attempt) and retry (later ones): the prompt, the
//! harness's launch and environment (its homes in the run directory are
//! created here), then the detached run (`dispatch`). Nothing is reported
//! before the attempt has started: a dispatch that fails leaves status as it
//! was, so that the failure is recorded once, as such, and a rejection is
//! counted once, not once per failed try.

use std::path::{Path, PathBuf};

use crate::decide::Reason;
use crate::harness::{self, Launch};
use crate::model::{FailureCode, TaskKey};
use crate::observe::Availability;
use crate::rundir::{Brief, Layout, RunError, layout};
use crate::spec::{Harness, Invariant, Task};
use crate::status::transition::Start;
use crate::status::{Failure, Status, TaskStatus};

use super::dispatch::{self, Attempt};
use super::escalate::rejection_for;
use super::{ActCtx, ActError, Applied, Outcome, task_of};

/// What the attempt runs: its task, its harness and model, its invariants.
struct Setup<'a> {
    task: &'a Task,
    harness: &'a Harness,
    model: Option<&'a str>,
    invariants: Vec<&'a Invariant>,
}

pub(super) fn start(
    ctx: &mut ActCtx<'_>,
    status: &Status,
    key: &TaskKey,
    attempt: u32,
    reason: Option<&Reason>,
) -> Result<Applied, ActError> {
    let (plan, task) = task_of(ctx.spec, key)?;
    let config = &ctx.spec.config;
    let fresh = TaskStatus::default();
    let st = status.task(&key.plan, &key.task).unwrap_or(&fresh);
    let edited = st.generation != task.generation;
    let rejected = reason.and_then(|r| rejection_for(ctx.spec, key, st.attempt, r));
    // The next prompt tells the agent why the last attempt failed; a rate
    // limit or a failed action of converge's own was not the agent's doing.
    let previous = match reason {
        Some(_) if rejected.is_some() => rejected.clone(),
        // An edited task starts over: earlier failures were of another spec.
        Some(Reason::SpecChanged) if edited => None,
        Some(_) => st.last_failure.clone().filter(|f| {
            !matches!(
                f.reason,
                FailureCode::RateLimited | FailureCode::ActionFailed
            )
        }),
        None => None,
    };
    let Some(harness_def) = config.harnesses.get(&task.harness) else {
        return Err(ActError::UnknownTask { key: key.clone() });
    };
    let what = Setup {
        task,
        harness: harness_def,
        model: task
            .model
            .as_deref()
            .or_else(|| harness_def.models.get(&task.scope).map(String::as_str)),
        invariants: task
            .invariants
            .iter()
            .filter_map(|n| config.invariants.get(n))
            .collect(),
    };
    let run = Layout::new(ctx.repo.common_dir()).run(key, attempt);
    let merged = super::context::dependency_merges(ctx.repo, plan, task, status)?;
    let context = harness::context::Context {
        capabilities: &ctx.spec.capabilities,
        dependencies: &merged,
    };
    let prompt = harness::prompt(
        &ctx.spec.goal,
        &context,
        plan,
        task,
        config,
        attempt,
        previous.as_ref(),
    );
    let launch = match launch(ctx, key, &what, &run, &prompt) {
        Ok(launch) => launch,
        // Retrying cannot help until the configuration changes: a human
        // decides, and `converge retry` starts it again after the fix.
        Err(e) => return Ok(unavailable(key, attempt, task, &e)),
    };
    let started = run_attempt(ctx, key, attempt, &what, &run, launch, prompt)?;
    let outcome = Outcome::Started(Start {
        attempt,
        generation: task.generation.clone(),
        harness: task.harness.clone(),
        model: what.model.map(str::to_owned),
        branch: key.branch(),
        fork: crate::git::commit_id(ctx.base_tip)?,
        edited,
        spec_changed: matches!(reason, Some(Reason::SpecChanged)),
        rejection: rejected,
        unconfined: unconfined(ctx, attempt),
    });
    let verb = if reason.is_some() {
        "retry"
    } else {
        "dispatch"
    };
    let adopted = if started.adopted { ", adopted" } else { "" };
    let why = reason.map(|r| format!(": {r}")).unwrap_or_default();
    Ok(Applied::done(
        format!(
            "{verb} {key} (attempt {attempt}, {harness}{adopted}){why}",
            harness = task.harness
        ),
        vec![outcome],
    ))
}

/// How the harness starts the agent; an error when it cannot here.
fn launch(
    ctx: &ActCtx<'_>,
    key: &TaskKey,
    what: &Setup<'_>,
    run: &Path,
    prompt: &str,
) -> Result<Launch, String> {
    let config = &ctx.spec.config;
    let task_name = key.to_string();
    let launch = harness::launch(
        what.harness,
        &harness::LaunchInput {
            prompt_file: &layout::prompt(run),
            prompt,
            worktree: &layout::worktree(&ctx.worktree_root, key),
            task: &task_name,
            converge: ctx.converge,
            model: what.model,
            invariants: what.invariants.clone(),
            confined: config.sandbox.enabled,
        },
    )
    .map_err(|e| e.to_string())?;
    // An agent CLI that is not installed fails every attempt the same way.
    if what.harness.kind.streams()
        && !harness::env::program_exists(&launch.program, (ctx.env)("PATH").as_deref())
    {
        let name = &what.task.harness;
        return Err(format!(
            "the `{}` CLI of harness `{name}` is not installed here (not found on PATH); install it, or set `command` in [harness.{name}] to its path",
            launch.program
        ));
    }
    Ok(launch)
}

/// The task's harness cannot start it here: escalated, nothing started.
fn unavailable(key: &TaskKey, attempt: u32, task: &Task, error: &str) -> Applied {
    Applied::done(
        format!("escalate {key}: {error}"),
        vec![Outcome::Unavailable {
            generation: task.generation.clone(),
            failure: Failure {
                attempt,
                reason: FailureCode::HarnessUnavailable,
                message: format!(
                    "{error}; run this task with the `sim` harness or a `command` harness (docs/configuration.md)"
                ),
                output_tail: None,
            },
        }],
    )
}

/// Starts the attempt's run under its supervisor, in the task's worktree.
fn run_attempt(
    ctx: &ActCtx<'_>,
    key: &TaskKey,
    attempt: u32,
    what: &Setup<'_>,
    run: &Path,
    launch: Launch,
    prompt: String,
) -> Result<dispatch::Started, ActError> {
    let config = &ctx.spec.config;
    let task = what.task;
    let brief = Brief {
        task: key.to_string(),
        attempt,
        invariants: task
            .invariants
            .iter()
            .filter_map(|n| config.invariants.get(n).cloned())
            .collect(),
        sim: task.sim.clone(),
        planner: None,
    };
    let timeout = task.timeout.unwrap_or(config.reconcile.task_timeout);
    let extra = harness_extra_env(what.harness, ctx.env, run, &what.invariants)?;
    Ok(dispatch::dispatch(
        ctx.repo,
        ctx.secret,
        &Attempt {
            key,
            attempt,
            fork: ctx.base_tip,
            launch,
            env: harness::env::with_converge_on_path(
                harness::agent_env(config, ctx.env, &extra),
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
    )?)
}

/// Enabled but not enforceable here (and not required, or decide would have
/// held the dispatch back): the agent runs unconfined, and status says so.
fn unconfined(ctx: &ActCtx<'_>, attempt: u32) -> Option<String> {
    match &ctx.sandbox {
        Some(Availability::Unavailable { reason }) if ctx.spec.config.sandbox.enabled => {
            Some(format!(
                "attempt {attempt} runs without the sandbox `[sandbox] enabled` asks for: {reason}; `[sandbox] required = true` refuses to dispatch instead"
            ))
        }
        _ => None,
    }
}

/// The harness's environment (see [`harness::env::extra_env`]), with Codex's
/// home prepared in the run directory.
pub(super) fn harness_extra_env(
    harness: &Harness,
    env: &dyn Fn(&str) -> Option<String>,
    run: &Path,
    invariants: &[&Invariant],
) -> Result<Vec<(&'static str, String)>, RunError> {
    let codex = match harness.kind {
        crate::spec::HarnessKind::Codex => Some(codex_home(env, run)?),
        _ => None,
    };
    Ok(harness::env::extra_env(
        harness,
        env,
        run,
        codex.as_deref(),
        invariants,
    ))
}

/// Codex writes its sessions and logs under `CODEX_HOME`, which the sandbox
/// must let it write, so each run gets `<run>/codex`: a copy of the user's
/// `config.toml` (providers, profiles) from `$CODEX_HOME` or `~/.codex`, and a
/// link to their `auth.json` (a ChatGPT login), when they exist.
fn codex_home(env: &dyn Fn(&str) -> Option<String>, run: &Path) -> Result<PathBuf, RunError> {
    let home = layout::harness_home(run, "codex");
    let write = |path: &Path| {
        let path = path.to_owned();
        move |source| RunError::Write { path, source }
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
            let harness = Harness::builtin("h", kind);
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
        let claude = Harness::builtin("h", ClaudeCode);
        let env = harness_extra_env(&claude, &env, run.path(), &[]).expect("env");
        assert!(env.contains(&("TZ", "UTC".to_owned())));
        assert!(env.contains(&(
            "CLAUDE_CONFIG_DIR",
            run.path().join("claude").to_string_lossy().into_owned()
        )));
    }
}
