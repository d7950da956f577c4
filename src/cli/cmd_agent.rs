//! Agent mode (`CONVERGE_AGENT_TOKEN` set): `task`, `check`, `progress`, `done`,
//! and the built-in simulated agent (`__sim`).

use super::{CliError, CliResult, Ctx, Kind, print};
use crate::agent::{AgentEnv, AgentError};
use crate::check::{Snapshot, run_check};
use crate::git::{GitError, Repo};

fn env() -> CliResult<AgentEnv> {
    AgentEnv::from_env(&|name| std::env::var(name).ok()).map_err(agent_error)
}

fn agent_error(e: AgentError) -> CliError {
    let hint = match &e {
        AgentError::NotInAttempt { .. } => {
            "agent commands are for agents that converge started; people use `converge status`"
        }
        AgentError::BadToken | AgentError::WrongAttempt { .. } => {
            "use the CONVERGE_AGENT_TOKEN and CONVERGE_RUN_DIR converge gave this attempt, unchanged"
        }
        AgentError::AttemptOver { .. } => {
            "the agent exited or was stopped; a later attempt gets its own token"
        }
        _ => "the run directory may have been cleaned up; the attempt cannot report any more",
    };
    CliError::failure(e.to_string()).source(e).hint(hint)
}

/// `converge task`: the assigned task (the prompt of this attempt).
pub fn task() -> CliResult {
    let agent = env()?;
    let path = agent
        .prompt_file
        .clone()
        .unwrap_or_else(|| crate::rundir::layout::prompt(&agent.run_dir));
    let text = std::fs::read_to_string(&path)
        .map_err(|e| CliError::failure(format!("cannot read {}", path.display())).source(e))?;
    print(&text)
}

/// Removes everything inside `dir` (which may not exist).
fn clear_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        if std::fs::symlink_metadata(&path)?.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// `converge check`: runs the task's invariants at the root of this worktree,
/// as the gate will, then takes back whatever they changed there (a report,
/// an edited file), keeping a copy in `<run-dir>/check/`: what a check writes
/// never becomes part of the attempt.
pub fn check(ctx: &Ctx) -> CliResult {
    let agent = env()?;
    let brief = agent.brief().map_err(agent_error)?;
    if brief.invariants.is_empty() {
        return print("this task has no invariants; the gate checks only which files changed\n");
    }
    let worktree_err = |e: GitError| {
        CliError::failure("cannot read the task's worktree")
            .source(e)
            .hint("run `converge check` inside the worktree converge gave this attempt")
    };
    // The worktree of this attempt's task, found from here: never the
    // checkout above a worktree whose `.git` is gone.
    let found = Repo::discover(&ctx.cwd).map_err(worktree_err)?;
    let top = found.workdir().map_err(worktree_err)?.to_owned();
    let repo = Repo::open_task_worktree(&top, &format!("converge/{}", brief.task))
        .map_err(worktree_err)?;
    let root = repo.workdir().map_err(worktree_err)?.to_owned();
    let keep = crate::rundir::layout::check_keep(&agent.run_dir);
    // Emptied, not removed: under the sandbox the directory is granted, its
    // parent (the run directory) is not.
    clear_dir(&keep)
        .map_err(|e| CliError::failure(format!("cannot clear {}", keep.display())).source(e))?;
    let snapshot = Snapshot::capture(&repo).map_err(worktree_err)?;
    let mut out = String::new();
    let mut failed = false;
    for invariant in &brief.invariants {
        let result = run_check(invariant, &root, None, &redactor());
        let verdict = match (result.passed, result.advisory) {
            (true, _) => "passed",
            (false, true) => "failed (advisory)",
            (false, false) => "FAILED",
        };
        failed |= result.blocks();
        out.push_str(&format!(
            "{verdict}: {} ({}, {:.1}s)\n",
            invariant.name,
            result.ending,
            result.duration.as_secs_f64()
        ));
        if !result.passed && !result.output_tail.is_empty() {
            for line in result.output_tail.lines() {
                out.push_str(&format!("  | {line}\n"));
            }
        }
    }
    let taken = snapshot.take_back(&repo, &keep, &redactor()).map_err(|e| {
        CliError::failure("cannot take back what the invariants changed in the worktree")
            .source(e)
            .hint("look at `git status`: files the check wrote would become part of the attempt")
    })?;
    if !taken.is_empty() {
        out.push_str(&format!(
            "took back what the invariants changed, so that it is not part of the attempt: {}\n",
            taken
                .iter()
                .map(|t| t.path.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        if taken.iter().any(|t| t.kept.is_some()) {
            out.push_str(&format!("their versions are in {}\n", keep.display()));
        }
    }
    let _ = agent.emit(
        crate::model::EventKind::Check,
        Some(if failed {
            "invariants failed"
        } else {
            "invariants passed"
        }),
    );
    print(&out)?;
    if failed {
        Err(CliError::reported(Kind::Failure))
    } else {
        Ok(())
    }
}

/// Masks the agent's token and its sensitive environment values.
fn redactor() -> crate::agent::Redactor {
    crate::agent::Redactor::from_env(std::env::vars(), [])
}

/// `converge progress MSG`.
pub fn progress(message: &str) -> CliResult {
    env()?
        .emit(
            crate::model::EventKind::Progress,
            Some(&redactor().redact(message)),
        )
        .map_err(agent_error)
}

/// `converge done`: the attempt is finished; converge checks it next.
pub fn done() -> CliResult {
    env()?
        .emit(crate::model::EventKind::Done, None)
        .map_err(agent_error)?;
    print("done: converge commits what is left and runs the invariants next\n")
}

/// `converge __sim`: the built-in simulated agent.
pub fn sim(ctx: &Ctx) -> CliResult {
    let agent = env()?;
    let code = crate::harness::sim::run(&ctx.cwd, &agent)
        .map_err(|e| CliError::failure("the simulated agent failed").source(e))?;
    match u8::try_from(code) {
        Ok(0) => Ok(()),
        Ok(code) => Err(CliError::reported(Kind::Exit(code))),
        Err(_) => Err(CliError::reported(Kind::Failure)),
    }
}

/// `converge __sandbox [--init|--exec] RUN_DIR -- AGENT...`: the stages that
/// contain an attempt's processes and confine the agent (see
/// [`crate::act::contain`]). The outer stage exits as the agent did.
pub fn sandbox(run_dir: &std::path::Path, agent: &[String], stage: (bool, bool)) -> CliResult {
    use crate::act::contain;
    let failed = |e: contain::ContainError| {
        CliError::failure("the agent's processes could not be contained")
            .source(e)
            .hint("the attempt fails and is retried; check that this machine allows user namespaces (`unshare -Upf --mount-proc true`)")
    };
    match stage {
        (true, _) => contain::run_init(run_dir, agent).map_err(failed),
        (_, true) => exec_agent(run_dir, agent),
        _ => match contain::unshare().map_err(failed)? {
            Ok(()) => contain::exit_like(contain::run_outer(run_dir, agent).map_err(failed)?),
            Err(reason) => {
                contain::warn(
                    run_dir,
                    &format!(
                        "{reason}; the supervisor kills what the agent leaves running, and the agent can see other processes"
                    ),
                );
                exec_agent(run_dir, agent)
            }
        },
    }
}

/// The exec stage: restricts this process with the run's Landlock policy (when
/// the run has one) and executes the agent in its place.
fn exec_agent(run_dir: &std::path::Path, agent: &[String]) -> CliResult {
    use std::os::unix::process::CommandExt;
    let plan_path = crate::rundir::layout::run_plan(run_dir);
    let bytes = std::fs::read(&plan_path)
        .map_err(|e| CliError::failure(format!("cannot read {}", plan_path.display())).source(e))?;
    let plan: crate::act::run::RunPlan = serde_json::from_slice(&bytes).map_err(|e| {
        CliError::failure(format!(
            "{} is not a valid run plan: {e}",
            plan_path.display()
        ))
    })?;
    let [program, args @ ..] = agent else {
        return Err(CliError::bad_input("no agent command given after `--`"));
    };
    if let Some(policy) = plan.sandbox {
        restrict(&policy)?;
    }
    // Only returns when the agent could not be executed.
    let error = std::process::Command::new(program).args(args).exec();
    Err(CliError::failure(format!("cannot start `{program}`")).source(error))
}

fn restrict(policy: &crate::act::sandbox::Policy) -> CliResult {
    match crate::act::sandbox::restrict(policy) {
        Ok(crate::act::sandbox::Enforced::Fully) => {}
        Ok(crate::act::sandbox::Enforced::Partially) => eprintln!(
            "converge: warning: this kernel's Landlock is older than converge asks for; some access is not restricted"
        ),
        Ok(crate::act::sandbox::Enforced::Not) => eprintln!(
            "converge: WARNING: the sandbox is not enforced here; the agent runs unconfined"
        ),
        Err(e) => {
            return Err(CliError::failure("the agent was not started").source(e).hint(
                "`converge doctor` checks Landlock; `[sandbox] required = false` runs agents unconfined where it is missing",
            ));
        }
    }
    Ok(())
}
