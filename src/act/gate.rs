//! Gate: judge a finished attempt. Leftovers are committed, so nothing is lost
//! and the gate judges exactly what would merge; the tree must be one git can
//! check out; the run must have ended well ([`super::judge`]); the changed
//! paths must be allowed; then the task's invariants run in its worktree (or
//! their results are kept from an earlier tick that could not record them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gix::ObjectId;

use crate::git::{GitError, Repo, commit_id};
use crate::model::{CommitId, FailureCode, TaskKey};
use crate::observe::runs;
use crate::rundir::records::{self, ExitRecord};
use crate::rundir::{Layout, layout};
use crate::spec::{Gate, Task};
use crate::status::transition::Verdict;
use crate::status::{Evidence, Failure, Status};

use super::dispatch;
use super::judge::{ended, path_violations, precheck, usage};
use super::{ActCtx, ActError, Applied, Outcome, tail_of, task_of};
use crate::check::{CheckResult, run_check};

/// What the gate read of the attempt's run.
struct Run {
    dir: PathBuf,
    worktree: PathBuf,
    exit: Option<ExitRecord>,
    done: bool,
    fork: Option<ObjectId>,
}

pub(super) fn gate(
    ctx: &mut ActCtx<'_>,
    status: &Status,
    key: &TaskKey,
    attempt: u32,
) -> Result<Applied, ActError> {
    let (_, task) = task_of(ctx.spec, key)?;
    let run = read(ctx, key, attempt)?;
    let mut outcomes = Vec::new();
    // The attempt's run ended when its agent exited, not when it is gated
    // (`converge report` durations are the agent's run).
    if let Some(exit) = &run.exit {
        outcomes.push(Outcome::RunEnded {
            attempt,
            at: exit.ended_at,
        });
    }
    // A tree git cannot check out fails here, before anything reads it through
    // a checkout (it would break the base branch's checkouts once merged).
    let branch = key.branch();
    if let Some(tip) = ctx.repo.branch_tip(&branch)?
        && let Some(applied) = refuse_unsafe_tree(ctx, status, (key, attempt), tip, &outcomes)?
    {
        return Ok(applied);
    }
    let leftovers = commit_leftovers(ctx, key, attempt, &run)?;
    let Some(head) = ctx.repo.branch_tip(&branch)? else {
        outcomes.push(Outcome::Failed {
            attempt,
            head: None,
            failure: Failure {
                attempt,
                reason: FailureCode::BranchMissing,
                message: format!("the task branch {branch} is gone"),
                output_tail: None,
            },
        });
        return Ok(Applied::done(
            format!("gate {key} (attempt {attempt}): failed, the branch is gone"),
            outcomes,
        ));
    };
    let head_id = commit_id(head)?;
    if leftovers
        && let Some(applied) = refuse_unsafe_tree(ctx, status, (key, attempt), head, &outcomes)?
    {
        return Ok(applied);
    }
    let summary = usage(ctx, status, key, attempt, &run.dir).map(|(summary, outcome)| {
        outcomes.push(outcome);
        summary
    });
    if let Some((code, message)) = precheck(run.exit.as_ref(), run.done, head, run.fork) {
        let ending = summary
            .as_ref()
            .filter(|_| matches!(code, FailureCode::NoDone | FailureCode::AgentFailed))
            .and_then(|s| {
                crate::harness::outcome::ending(
                    s,
                    run.exit.as_ref().and_then(|e| e.exit_code),
                    ctx.now,
                )
            });
        if let Some(ending) = ending {
            return Ok(ended(
                ctx,
                status,
                (key, attempt),
                head_id,
                ending,
                outcomes,
            ));
        }
        let tail = tail_of(&layout::agent_log(&run.dir), crate::check::TAIL_LINES);
        return Ok(failed(
            key,
            attempt,
            Some(head_id),
            code,
            message,
            tail,
            outcomes,
        ));
    }
    if let Some(message) = super::judge::no_new_work(ctx, head)? {
        return Ok(failed(
            key,
            attempt,
            Some(head_id),
            FailureCode::NoNewWork,
            message,
            None,
            outcomes,
        ));
    }
    if let Some(message) = forbidden(ctx, task, run.fork, head)? {
        return Ok(failed(
            key,
            attempt,
            Some(head_id),
            FailureCode::ForbiddenPaths,
            message,
            None,
            outcomes,
        ));
    }
    let tree = ctx.repo.tree_of(head)?;
    let (results, reused) = invariants(ctx, key, attempt, task, &run, head)?;
    let note = match (leftovers, reused) {
        (true, _) => " (committed leftovers)",
        (false, true) => " (results kept from an earlier tick)",
        (false, false) => "",
    };
    let evidence = results
        .iter()
        .map(|r| (r.name.clone(), r.evidence(tree)))
        .collect();
    Ok(judged(
        (key, attempt),
        task,
        head_id,
        (&results, evidence),
        note,
        outcomes,
    ))
}

/// Why the attempt's changes since its fork are not allowed, if they are not.
fn forbidden(
    ctx: &ActCtx<'_>,
    task: &Task,
    fork: Option<ObjectId>,
    head: ObjectId,
) -> Result<Option<String>, ActError> {
    let Some(fork) = fork else {
        return Ok(None);
    };
    let changed: Vec<String> = ctx
        .repo
        .changed_files(fork, head)?
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    let violations = path_violations(task, &changed, ctx.spec.config.merge.protect_git_files)
        .unwrap_or_default();
    Ok((!violations.is_empty()).then(|| {
        format!(
            "the attempt changed files it may not: {}",
            violations.join(", ")
        )
    }))
}

/// The attempt's run directory, checkout, exit record, `done` and fork.
fn read(ctx: &ActCtx<'_>, key: &TaskKey, attempt: u32) -> Result<Run, ActError> {
    let dir = Layout::new(ctx.repo.common_dir()).run(key, attempt);
    // Where the attempt was checked out: at the root it started under, which a
    // change of `worktree_root` since then does not move.
    let worktree = dispatch::checkout_of(ctx.repo, &key.branch())?
        .unwrap_or_else(|| layout::worktree(&ctx.worktree_root, key));
    let record = runs::read_run(&dir, key, attempt, ctx.secret)?;
    let exit = records::read_exit(&dir)?;
    let done = matches!(
        record.obs.state,
        crate::observe::RunState::Exited { done: true, .. }
    );
    let fork = record
        .lease
        .as_ref()
        .and_then(|l| ObjectId::from_hex(l.fork.as_bytes()).ok());
    Ok(Run {
        dir,
        worktree,
        exit,
        done,
        fork,
    })
}

/// Commits what the agent left uncommitted in its worktree; whether it left any.
fn commit_leftovers(
    ctx: &ActCtx<'_>,
    key: &TaskKey,
    attempt: u32,
    run: &Run,
) -> Result<bool, ActError> {
    if !run.worktree.exists() {
        return Ok(false);
    }
    let wt = Repo::discover(&run.worktree)?;
    // An agent killed mid-commit (at its deadline, or when its supervisor
    // died) leaves git's locks behind; none of its processes is alive now.
    if crate::rundir::procs::processes_of_run(&run.dir).is_empty() {
        wt.clear_index_lock()?;
        ctx.repo.clear_ref_lock(&key.branch())?;
    }
    if wt.head_branch()?.as_deref() == Some(key.branch().as_str()) {
        let message = format!("converge: leftovers of {key} (attempt {attempt})");
        return Ok(wt.commit_leftovers(&message, &ctx.signer())?.is_some());
    }
    Ok(false)
}

/// A failed gate (before any invariant ran): `outcomes` gathered so far, then the failure.
fn failed(
    key: &TaskKey,
    attempt: u32,
    head: Option<CommitId>,
    code: FailureCode,
    message: String,
    output_tail: Option<String>,
    mut outcomes: Vec<Outcome>,
) -> Applied {
    let line = format!("gate {key} (attempt {attempt}): failed, {message}");
    outcomes.push(Outcome::Failed {
        attempt,
        head,
        failure: Failure {
            attempt,
            reason: code,
            message,
            output_tail,
        },
    });
    Applied::done(line, outcomes)
}

/// Runs the task's invariants on `head` in its worktree, unless a gate whose
/// tick could not record its status (the person's checkout had changes in the
/// status paths) already ran them on the same commit; whether they were kept.
fn invariants(
    ctx: &ActCtx<'_>,
    key: &TaskKey,
    attempt: u32,
    task: &Task,
    run: &Run,
    head: ObjectId,
) -> Result<(Vec<CheckResult>, bool), ActError> {
    let common = ctx.repo.common_dir().to_owned();
    let head = head.to_string();
    let invariants: Vec<&crate::spec::Invariant> = task
        .invariants
        .iter()
        .filter_map(|name| ctx.spec.config.invariants.get(name))
        .collect();
    let fingerprint = crate::check::invariants_fingerprint(&invariants);
    let kept = crate::check::kept_gate(&common, &key.plan, &key.task, attempt, &head, &fingerprint);
    if let Some(results) = kept {
        return Ok((results, true));
    }
    let results: Vec<CheckResult> = invariants
        .iter()
        .map(|invariant| {
            run_check(
                invariant,
                &run.worktree,
                Some(&layout::gate_logs(&run.dir)),
                &ctx.redactor,
            )
        })
        .collect();
    let record = crate::check::GateRecord {
        head,
        invariants: fingerprint,
        results,
    };
    crate::check::keep_gate(&common, &key.plan, &key.task, attempt, &record).map_err(|source| {
        GitError::Io {
            path: Layout::new(&common).gates(),
            source,
        }
    })?;
    Ok((record.results, false))
}

/// The gate's verdict on the invariants' `results` at `head`.
fn judged(
    (key, attempt): (&TaskKey, u32),
    task: &Task,
    head: CommitId,
    (results, evidence): (&[CheckResult], BTreeMap<String, Evidence>),
    note: &str,
    mut outcomes: Vec<Outcome>,
) -> Applied {
    let (verdict, line) = match results.iter().find(|r| r.blocks()) {
        Some(failed) => {
            let message = format!("invariant `{}` failed: {}", failed.name, failed.ending);
            let line = format!(
                "gate {key} (attempt {attempt}){note}: failed, {message}; `converge gate {key}` shows its output"
            );
            let failure = Failure {
                attempt,
                reason: FailureCode::InvariantFailed,
                message,
                output_tail: Some(failed.output_tail.clone()).filter(|t| !t.is_empty()),
            };
            (Verdict::Failed(failure), line)
        }
        None => {
            let (verdict, next) = match task.gate {
                Gate::Auto => (Verdict::Passed, ""),
                Gate::HumanReview | Gate::HumanApprove => {
                    (Verdict::AwaitingApproval, "; awaiting approval")
                }
            };
            let line = format!(
                "gate {key} (attempt {attempt}){note}: passed ({}){next}",
                checks(results)
            );
            (verdict, line)
        }
    };
    outcomes.push(Outcome::Gated {
        attempt,
        head,
        evidence,
        verdict,
    });
    Applied::done(line, outcomes)
}

/// `lint passed, docs failed (advisory)`, or `no invariants`.
fn checks(results: &[CheckResult]) -> String {
    if results.is_empty() {
        return "no invariants".to_owned();
    }
    results
        .iter()
        .map(|r| {
            let how = if r.passed {
                "passed"
            } else {
                "failed (advisory)"
            };
            format!("{} {how}", r.name)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Fails the attempt whose commit `head` holds tree entries git refuses to
/// check out (`..`, `.git` and its aliases; see `git::safe`), with reason
/// `unsafe-path`. `None` when the tree is safe.
fn refuse_unsafe_tree(
    ctx: &ActCtx<'_>,
    status: &Status,
    (key, attempt): (&TaskKey, u32),
    head: ObjectId,
    before: &[Outcome],
) -> Result<Option<Applied>, ActError> {
    let unsafe_entries = ctx.repo.unsafe_entries(ctx.repo.tree_of(head)?)?;
    if unsafe_entries.is_empty() {
        return Ok(None);
    }
    let dir: &Path = &Layout::new(ctx.repo.common_dir()).run(key, attempt);
    let mut outcomes = before.to_vec();
    outcomes.extend(usage(ctx, status, key, attempt, dir).map(|(_, usage)| usage));
    let head = commit_id(head)?;
    let message = format!(
        "the attempt's commit {} holds tree entries git refuses to check out: {}",
        head.short(),
        unsafe_entries.join(", ")
    );
    Ok(Some(failed(
        key,
        attempt,
        Some(head),
        FailureCode::UnsafePath,
        message,
        None,
        outcomes,
    )))
}
