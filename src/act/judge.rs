//! How an attempt ended, before any invariant runs: its exit record and
//! `done` event ([`precheck`]), what its agent CLI reported (tokens, cost, a
//! rate limit or refused credentials: [`usage`], [`ended`]), and the files it
//! may not change ([`path_violations`]).

use std::path::Path;

use gix::ObjectId;

use crate::harness::{self, outcome::Ending, stream::Summary};
use crate::model::{CommitId, FailureCode, TaskKey};
use crate::rundir::records::ExitRecord;
use crate::rundir::{Layout, layout};
use crate::spec::Task;
use crate::status::{Failure, Status};

use super::{ActCtx, Applied, Outcome, tail_of};

/// Why a gate failed before any invariant ran.
pub(super) fn precheck(
    exit: Option<&ExitRecord>,
    done: bool,
    head: ObjectId,
    fork: Option<ObjectId>,
) -> Option<(FailureCode, String)> {
    let Some(exit) = exit else {
        if done {
            // The supervisor died; the agent reported done (see `read_run`).
            return (fork == Some(head)).then(|| {
                (
                    FailureCode::NoChanges,
                    "the attempt changed nothing: the task branch is still at its fork".into(),
                )
            });
        }
        return Some((
            FailureCode::AgentVanished,
            "the agent's process disappeared without recording its exit".into(),
        ));
    };
    if let Some(error) = &exit.spawn_error {
        return Some((
            FailureCode::SpawnFailed,
            format!("the agent could not start: {error}"),
        ));
    }
    if exit.timed_out {
        return Some((
            FailureCode::Timeout,
            "the attempt ran past its deadline; its processes were killed".into(),
        ));
    }
    let code = exit
        .exit_code
        .map_or_else(|| "a signal".to_owned(), |c| format!("code {c}"));
    if !done {
        return Some((
            FailureCode::NoDone,
            format!("the agent exited ({code}) without running `converge done`"),
        ));
    }
    if exit.exit_code != Some(0) {
        return Some((
            FailureCode::AgentFailed,
            format!("the agent ran `converge done` but exited with {code}"),
        ));
    }
    if fork == Some(head) {
        return Some((
            FailureCode::NoChanges,
            "the attempt changed nothing: the task branch is still at its fork".into(),
        ));
    }
    None
}

/// Why the gate refuses `head` because the base branch already contains it
/// (the agent left its branch at the base tip or another commit of the base):
/// merging it would record a merge of nothing. `None` when it holds new work.
/// (A head a person merged by hand after its gate passed is merged by converge
/// all the same: see docs/reconcile.md.)
pub(super) fn no_new_work(
    ctx: &ActCtx<'_>,
    head: ObjectId,
) -> Result<Option<String>, crate::git::GitError> {
    if !ctx.repo.is_ancestor(head, ctx.base_tip)? {
        return Ok(None);
    }
    Ok(Some(format!(
        "the task branch's head {} is already in {}: it holds no work of its own to merge (the branch was moved onto the base); the next attempt starts from the base",
        &head.to_string()[..7],
        ctx.base_branch
    )))
}

/// Files the attempt changed that it may not: protected paths (with
/// `.gitattributes` and `.gitmodules` unless `protect_git_files` is off), and
/// paths outside the task's `paths` globs.
pub(super) fn path_violations(
    task: &Task,
    changed: &[String],
    protect_git_files: bool,
) -> Result<Vec<String>, globset::Error> {
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
            let protected = crate::spec::paths::is_protected(path, protect_git_files);
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

/// Reads the attempt's event stream from `agent.log` when its harness is an
/// agent CLI: the summary, and the tokens and cost it reports for the
/// attempt's record (priced from the price table when the CLI reports no cost).
pub(super) fn usage(
    ctx: &ActCtx<'_>,
    status: &Status,
    key: &TaskKey,
    attempt: u32,
    dir: &Path,
) -> Option<(Summary, Outcome)> {
    let record = status
        .task(&key.plan, &key.task)?
        .attempts
        .iter()
        .find(|a| a.number == attempt)?;
    let name = record.harness.clone()?;
    let kind = ctx.spec.config.harnesses.get(&name)?.kind;
    if !kind.streams() {
        return None;
    }
    let log = std::fs::read(layout::agent_log(dir)).unwrap_or_default();
    let summary = harness::stream::summarize(kind, ctx.now, &String::from_utf8_lossy(&log));
    let cost_usd = summary.cost_usd.filter(|c| *c > 0.0).unwrap_or_else(|| {
        harness::prices::cost(
            &ctx.spec.config.prices,
            record.model.as_deref(),
            summary.tokens_in,
            summary.tokens_out,
        )
    });
    let outcome = Outcome::Usage {
        attempt,
        tokens_in: summary.tokens_in,
        tokens_out: summary.tokens_out,
        cost_usd,
    };
    Some((summary, outcome))
}

/// How an unfinished attempt of an agent CLI ended (see `harness::outcome`):
/// a rate limit cools its harness down without using up the attempt, refused
/// credentials escalate, anything else fails. `outcomes`: what the gate
/// gathered before.
pub(super) fn ended(
    ctx: &ActCtx<'_>,
    status: &Status,
    (key, attempt): (&TaskKey, u32),
    head: CommitId,
    ending: Ending,
    mut outcomes: Vec<Outcome>,
) -> Applied {
    let dir = Layout::new(ctx.repo.common_dir()).run(key, attempt);
    let output_tail = tail_of(&layout::agent_log(&dir), crate::check::TAIL_LINES);
    let (line, outcome) = match ending {
        Ending::RateLimited { until, message } => {
            let harness = status
                .task(&key.plan, &key.task)
                .and_then(|st| st.attempts.iter().find(|a| a.number == attempt))
                .map(|a| a.harness.clone().unwrap_or_default())
                .unwrap_or_default();
            let failure = Failure {
                attempt,
                reason: FailureCode::RateLimited,
                message: format!(
                    "{message}; harness `{harness}` cools down until {until}, and this attempt does not count against `retry_max`"
                ),
                output_tail: None,
            };
            (
                format!(
                    "gate {key} (attempt {attempt}): rate-limited, harness `{harness}` cools down until {until}"
                ),
                Outcome::RateLimited {
                    attempt,
                    head,
                    until,
                    failure,
                },
            )
        }
        Ending::Authentication { message } => (
            format!(
                "gate {key} (attempt {attempt}): escalated, the model API refused the credentials"
            ),
            Outcome::Refused {
                attempt,
                head,
                failure: Failure {
                    attempt,
                    reason: FailureCode::Authentication,
                    message: format!(
                        "{message}; the model API refused the credentials the agent got: check the API key in converge's environment (docs/configuration.md, harnesses), then `converge retry {key}`"
                    ),
                    output_tail,
                },
            },
        ),
        Ending::Failed { reason, message } => (
            format!("gate {key} (attempt {attempt}): failed, {message}"),
            Outcome::Failed {
                attempt,
                head: Some(head),
                failure: Failure {
                    attempt,
                    reason,
                    message,
                    output_tail,
                },
            },
        ),
    };
    outcomes.push(outcome);
    Applied::done(line, outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    #[test]
    fn the_gate_refuses_protected_paths_and_paths_outside_the_task() {
        let mut task = crate::spec::compile(&crate::spec::PlanningFiles::from_texts([
            ("planning/goal.md", "g"),
            (
                "planning/plans/p.toml",
                "[plan]\nname = \"P\"\n[[tasks]]\nname = \"t\"\ndescription = \"d\"\nscope = \"narrow\"\ngate = \"auto\"\nallow_unchecked = true\npaths = [\"src/*.rs\"]\n",
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
            path_violations(&task, &changed(&["src/lib.rs"]), true)
                .expect("globs")
                .is_empty()
        );
        assert_eq!(
            path_violations(
                &task,
                &changed(&["src/a/deep.rs", "planning/plans/p.toml", ".github/x.yml"]),
                true
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
            path_violations(&task, &changed(&["anything.txt", "planning/goal.md"]), true)
                .expect("globs"),
            ["planning/goal.md (protected)"]
        );
        let git_files = changed(&[
            ".converge/worktrees/p/s/x",
            ".gitattributes",
            "sub/.gitattributes",
            ".gitmodules",
            ".GITATTRIBUTES",
            ".gitignore",
        ]);
        assert_eq!(
            path_violations(&task, &git_files, true).expect("globs"),
            [
                ".converge/worktrees/p/s/x (protected)",
                ".gitattributes (protected)",
                "sub/.gitattributes (protected)",
                ".gitmodules (protected)",
                ".GITATTRIBUTES (protected)",
            ]
        );
        // The opt-out lets `.gitattributes` and `.gitmodules` through, never `.converge/`.
        assert_eq!(
            path_violations(&task, &git_files, false).expect("globs"),
            [".converge/worktrees/p/s/x (protected)"]
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
            precheck(e, done, id(head), Some(id(1))).map(|(c, _)| c.as_str())
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
