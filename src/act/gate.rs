//! Gate: judge a finished attempt. Leftovers are committed, so nothing is lost
//! and the gate judges exactly what would merge; the tree must be one git can
//! check out; the run must have ended well ([`super::judge`]); the changed
//! paths must be allowed; then the task's invariants run in a checkout converge
//! makes of the commit, confined ([`crate::check::confine`]), or their results
//! are kept from an earlier tick that could not record them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gix::ObjectId;

use crate::git::{GitError, commit_id};
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
use crate::check::CheckResult;
use crate::check::confine::{Confinement, GateCheckout};
use crate::harness::{outcome::Ending, stream::Summary};

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
    // The agent's work comes from its private repository: its objects
    // checked, its leftovers committed, onto the task branch.
    let imported = match import_run(ctx, key, attempt, &run)? {
        Ok(imported) => imported,
        Err(refused) => {
            let (code, message) = refused;
            return Ok(failed(key, attempt, None, code, message, None, outcomes));
        }
    };
    let leftovers = imported.leftovers;
    let Some(head) = imported.tip else {
        return Ok(branch_gone(key, attempt, outcomes));
    };
    let head_id = commit_id(head)?;
    // A tree git cannot check out fails here, before anything reads it through
    // a checkout (it would break the base branch's checkouts once merged).
    if let Some(applied) = refuse_unsafe_tree(ctx, status, (key, attempt), head, &outcomes)? {
        return Ok(applied);
    }
    let summary = usage(ctx, status, key, attempt, &run.dir).map(|(summary, outcome)| {
        outcomes.push(outcome);
        summary
    });
    match refusal(ctx, task, &run, head, summary.as_ref())? {
        Some(Refusal::Ended(ending)) => {
            return Ok(ended(
                ctx,
                status,
                (key, attempt),
                head_id,
                ending,
                outcomes,
            ));
        }
        Some(Refusal::Failed(code, message, tail)) => {
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
        None => {}
    }
    judge_invariants(
        ctx,
        (key, attempt),
        task,
        (&run, leftovers),
        (head, head_id),
        outcomes,
    )
}

/// The branch is gone: the attempt fails, after the `outcomes` gathered so far.
fn branch_gone(key: &TaskKey, attempt: u32, mut outcomes: Vec<Outcome>) -> Applied {
    let branch = key.branch();
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
    Applied::done(
        format!("gate {key} (attempt {attempt}): failed, the branch is gone"),
        outcomes,
    )
}

/// The last phase of a gate: the task's invariants run on `head`, confined
/// (or the gate refuses to run them unconfined), and their verdict.
/// `leftovers`: the import committed what the agent left uncommitted.
fn judge_invariants(
    ctx: &ActCtx<'_>,
    (key, attempt): (&TaskKey, u32),
    task: &Task,
    (run, leftovers): (&Run, bool),
    (head, head_id): (ObjectId, CommitId),
    outcomes: Vec<Outcome>,
) -> Result<Applied, ActError> {
    let tree = ctx.repo.tree_of(head)?;
    let confinement = Confinement::new(
        ctx.repo,
        &ctx.worktree_root,
        &ctx.spec.config.sandbox,
        ctx.sandbox.as_ref(),
        ctx.converge,
    );
    if let Some(message) = confinement
        .refusal()
        .filter(|_| !task.invariants.is_empty())
    {
        return Ok(failed(
            key,
            attempt,
            Some(head_id),
            FailureCode::GateUnconfined,
            message,
            None,
            outcomes,
        ));
    }
    let (results, reused) = invariants(ctx, (key, attempt), task, (run, &confinement), head)?;
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

/// Why an attempt fails before its invariants run.
enum Refusal {
    /// Its agent CLI said how the run ended (a rate limit, credentials, …).
    Ended(Ending),
    /// A failure: its code, message and the end of the agent's log, if kept.
    Failed(FailureCode, String, Option<String>),
}

/// Why the attempt at `head` fails before its invariants run, if it does:
/// how its run ended (told by the agent CLI's own summary, when it tells),
/// no work of its own, or changes to paths it may not change.
fn refusal(
    ctx: &ActCtx<'_>,
    task: &Task,
    run: &Run,
    head: ObjectId,
    summary: Option<&Summary>,
) -> Result<Option<Refusal>, ActError> {
    if let Some((code, message)) = precheck(run.exit.as_ref(), run.done, head, run.fork) {
        let ending = summary
            .filter(|_| matches!(code, FailureCode::NoDone | FailureCode::AgentFailed))
            .and_then(|s| {
                crate::harness::outcome::ending(
                    s,
                    run.exit.as_ref().and_then(|e| e.exit_code),
                    ctx.now,
                )
            });
        if let Some(ending) = ending {
            return Ok(Some(Refusal::Ended(ending)));
        }
        let tail = tail_of(&layout::agent_log(&run.dir), crate::check::TAIL_LINES);
        return Ok(Some(Refusal::Failed(code, message, tail)));
    }
    if let Some(message) = super::judge::no_new_work(ctx, head)? {
        return Ok(Some(Refusal::Failed(FailureCode::NoNewWork, message, None)));
    }
    if let Some(message) = forbidden(ctx, task, run.fork, head)? {
        return Ok(Some(Refusal::Failed(
            FailureCode::ForbiddenPaths,
            message,
            None,
        )));
    }
    Ok(None)
}

/// Why the attempt's changes since its fork are not allowed, if they are not.
fn forbidden(
    ctx: &ActCtx<'_>,
    task: &Task,
    fork: Option<ObjectId>,
    head: ObjectId,
) -> Result<Option<String>, ActError> {
    let Some(fork) = fork else {
        // Converge's own records of the fork (the note, the lease) are gone
        // or damaged: which changes are the attempt's cannot be told, so
        // none pass unchecked. The next attempt notes a fork of its own.
        return Ok(Some(
            "the attempt's fork is unknown (its fork note and its lease are missing or damaged), so its changes cannot be checked against the task's paths and protected files".into(),
        ));
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
    let worktree = dispatch::checkout_of(ctx.repo, key)?
        .unwrap_or_else(|| layout::worktree(&ctx.worktree_root, key));
    let record = runs::read_run(&dir, key, attempt, ctx.secret)?;
    let exit = records::read_exit(&dir)?;
    let done = matches!(
        record.obs.state,
        crate::observe::RunState::Exited { done: true, .. }
    );
    let lease = record.lease.as_ref().and_then(|l| l.fork);
    let fork =
        records::attempt_fork(&Layout::new(ctx.repo.common_dir()), key, lease).map(ObjectId::from);
    Ok(Run {
        dir,
        worktree,
        exit,
        done,
        fork,
    })
}

/// Imports the attempt's work (see [`super::import`]); a refusal of the
/// agent's repository as the failure's code and message.
fn import_run(
    ctx: &ActCtx<'_>,
    key: &TaskKey,
    attempt: u32,
    run: &Run,
) -> Result<Result<super::import::Imported, (FailureCode, String)>, ActError> {
    let message = format!("converge: leftovers of {key} (attempt {attempt})");
    match super::import::import(ctx.repo, key, &run.worktree, &message, &ctx.signer()) {
        Ok(imported) => Ok(Ok(imported)),
        Err(error) => {
            let error = super::import::converge_error(error)?;
            use crate::git::private::ImportError;
            let code = match error {
                ImportError::Tampered { .. } => FailureCode::TamperedRepository,
                ImportError::Leftovers { .. } => FailureCode::UnreadableLeftovers,
                _ => FailureCode::ForgedObject,
            };
            Ok(Err((
                code,
                format!("converge imported nothing of the attempt: {error}"),
            )))
        }
    }
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

/// Runs the task's invariants on `head` in a checkout converge makes of it,
/// confined (see [`crate::check::confine`]), unless a gate whose tick could
/// not record its status (the person's checkout had changes in the status
/// paths) already ran them on the same commit; whether they were kept.
fn invariants(
    ctx: &ActCtx<'_>,
    (key, attempt): (&TaskKey, u32),
    task: &Task,
    (run, confinement): (&Run, &Confinement),
    head: ObjectId,
) -> Result<(Vec<CheckResult>, bool), ActError> {
    let common = ctx.repo.common_dir().to_owned();
    let invariants: Vec<&crate::spec::Invariant> = task
        .invariants
        .iter()
        .filter_map(|name| ctx.spec.config.invariants.get(name))
        .collect();
    let fingerprint = crate::check::invariants_fingerprint(&invariants);
    let head_hex = head.to_string();
    let kept = crate::check::kept_gate(
        &common,
        &key.plan,
        &key.task,
        attempt,
        &head_hex,
        &fingerprint,
    );
    if let Some(results) = kept {
        return Ok((results, true));
    }
    let mut results = Vec::new();
    if !invariants.is_empty() {
        // The commit that merges, never the agent's worktree: what git
        // ignores there, and the worktree's git machinery, stay out.
        let started = std::time::Instant::now();
        let checkout = GateCheckout::make(ctx.repo, head, confinement)?;
        let made = started.elapsed();
        let logs = layout::gate_logs(&run.dir);
        results = invariants
            .iter()
            .map(|invariant| checkout.run(invariant, Some(&logs), &ctx.redactor))
            .collect();
        let ran = started.elapsed();
        checkout.remove()?;
        tracing::debug!(
            checkout_us = made.as_micros() as u64,
            invariants_us = (ran - made).as_micros() as u64,
            remove_us = (started.elapsed() - ran).as_micros() as u64,
            "gate checkout"
        );
    }
    let record = crate::check::GateRecord {
        head: head_hex,
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
