//! The error policy: how a task answers an action that failed with an error
//! (not a failed attempt, which is an outcome). The first error no longer ends
//! the tick: the failure is the task's, recorded as the condition
//! `ActionFailed` (reason `action-failed`) with a backoff (`[reconcile].backoff`)
//! that `decide` honours, so the task does not come first again next tick and
//! hold back the others; the task's `retry_max` failures in a row escalate it.
//! Only a base branch that moved under a merge stops the tick (the next one
//! recomputes). An action of no task (a promotion) is only reported.
//!
//! [`error_policy`] decides (pure); [`failed`] turns the decision into the
//! task's [`Outcome::ActionFailed`] and the tick's line.

use crate::decide::Action;
use crate::model::FailureCode;
use crate::spec::{Backoff, Task};
use crate::status::transition::{ActionFailure, AfterFailure, backoff_delay};
use crate::status::{Failure, Phase, Status, TaskStatus};
use crate::time::Timestamp;

use super::{ActCtx, ActError, Applied, Outcome};

/// Failures in a row that escalate an action on a task removed from its plan
/// (which has no `retry_max`): as many as the default `retry_max` (3) allows,
/// the first and three retries.
const REMOVED_TASK_ACTION_FAILURES: u32 = 4;

/// How the tick answers an action's error.
#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    /// The tick stops here: the base moved under a merge, and the next tick
    /// recomputes.
    StopTick,
    /// An action of no task: only reported.
    Report,
    /// Failure `count` of `limit` in a row: the task is tried again from `until` on.
    Defer {
        count: u32,
        limit: u32,
        until: Timestamp,
    },
    /// `count` failures in a row reached `limit`: a human decides.
    Escalate { count: u32, limit: u32 },
}

/// The tick stops: why, and what of the action stands (see [`ActError::BaseMoved`]).
#[derive(Debug)]
pub struct Stop {
    pub reason: String,
    pub kept: Vec<Outcome>,
}

/// How `action`, on task `task` (none when the task left its plan) whose status
/// is `st`, answers `err` at `now`.
pub fn error_policy(
    action: &Action,
    err: &ActError,
    (task, st): (Option<&Task>, Option<&TaskStatus>),
    now: Timestamp,
    backoff: &Backoff,
) -> Disposition {
    if matches!(err, ActError::BaseMoved { .. }) {
        return Disposition::StopTick;
    }
    if action.key().is_none() {
        return Disposition::Report;
    }
    let default = TaskStatus::default();
    let st = st.unwrap_or(&default);
    // A human restarted the task (`converge retry`): count afresh.
    let restarted =
        st.phase == Phase::Escalated && task.is_some_and(|t| t.generation != st.generation);
    let count = if restarted { 0 } else { st.action_failures } + 1;
    // As for attempts, `retry_max` counts the tries after the first; a task
    // removed from its plan (its cleanup failing) has none: the default's.
    let limit = task.map_or(REMOVED_TASK_ACTION_FAILURES, |t| t.retry_max + 1);
    if count >= limit {
        Disposition::Escalate { count, limit }
    } else {
        Disposition::Defer {
            count,
            limit,
            until: now.plus(backoff_delay(backoff, count)),
        }
    }
}

/// Answers `action`'s error `err` by the policy: the line for the tick and the
/// outcome for the task (`Err` when the tick stops).
pub fn failed(
    ctx: &ActCtx<'_>,
    status: &Status,
    action: &Action,
    err: ActError,
) -> Result<Applied, Stop> {
    let key = action.key();
    // A forge cooling down (a rate limit, an outage) is no failure of the
    // action: it did nothing and is taken again when the forge is back.
    if let ActError::Forge(e) = &err
        && let Some((why, until)) = e.cooling()
    {
        return Ok(Applied {
            line: format!("{action}: waits for the forge until {until}"),
            files: Vec::new(),
            deferred: Some(format!("the forge is cooling down until {until}: {why}")),
            failed: None,
            outcomes: Vec::new(),
        });
    }
    let task = key.and_then(|k| ctx.spec.plans.get(&k.plan).and_then(|p| p.task(&k.task)));
    let st = key.and_then(|k| status.task(&k.plan, &k.task));
    let backoff = &ctx.spec.config.reconcile.backoff;
    let disposition = error_policy(action, &err, (task, st), ctx.now, backoff);
    let error = crate::check::error_chain(&err);
    let what = match (action, key) {
        (_, Some(key)) => format!("{} {key}", action.kind().as_str()),
        (Action::Promote { item }, None) => format!("promote queue item {item}"),
        (_, None) => action.kind().as_str().to_owned(),
    };
    let message = format!("`{what}` failed: {error}");
    let condition = |count, limit| format!("{message} (failure {count} of {limit} in a row)");
    let (line, outcome) = match disposition {
        Disposition::StopTick => {
            let (branch, kept) = match err {
                ActError::BaseMoved { branch, kept } => (branch, kept),
                _ => (ctx.base_branch.clone(), Vec::new()),
            };
            return Err(Stop {
                reason: format!("{branch} moved during the tick; recomputed next tick"),
                kept,
            });
        }
        Disposition::Report => (format!("{what} failed: {error}"), None),
        Disposition::Defer {
            count,
            limit,
            until,
        } => (
            format!("{what} failed ({count} of {limit}), tried again after {until}: {error}"),
            Some(ActionFailure {
                count,
                message: condition(count, limit),
                then: AfterFailure::Retry { until },
            }),
        ),
        Disposition::Escalate { count, limit } => {
            let why = match (task, key) {
                (Some(_), Some(key)) => format!(
                    "it failed {count} time(s) in a row, so a human decides (fix the cause, then `converge retry {key}`)"
                ),
                _ => format!(
                    "it failed {count} time(s) in a row and the task is no longer in its plan (fix the cause, then `converge doctor --fix` removes what is left of it)"
                ),
            };
            (
                format!("{what} failed {count} time(s) in a row, escalated: {error}"),
                Some(ActionFailure {
                    count,
                    message: condition(count, limit),
                    then: AfterFailure::Escalate {
                        generation: task.map(|t| t.generation.clone()),
                        failure: Failure {
                            attempt: st.map_or(0, |s| s.attempt),
                            reason: FailureCode::ActionFailed,
                            message: format!("{message}; {why}"),
                            output_tail: None,
                        },
                    },
                }),
            )
        }
    };
    Ok(Applied {
        line,
        files: Vec::new(),
        deferred: None,
        failed: Some(error),
        outcomes: outcome.map(Outcome::ActionFailed).into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TaskKey;

    fn task(retry_max: u32) -> Task {
        let plan = format!(
            "[plan]\nname = \"P\"\n[[tasks]]\nname = \"t\"\ndescription = \"d\"\nscope = \"narrow\"\ngate = \"auto\"\nallow_unchecked = true\nretry_max = {retry_max}\n"
        );
        crate::spec::compile(&crate::spec::PlanningFiles::from_texts([
            ("planning/goal.md", "g"),
            ("planning/plans/p.toml", plan.as_str()),
        ]))
        .spec
        .expect("valid")
        .plans["p"]
            .tasks[0]
            .clone()
    }

    fn key() -> TaskKey {
        TaskKey {
            plan: "p".into(),
            task: "t".into(),
        }
    }

    fn unknown() -> ActError {
        ActError::UnknownTask { key: key() }
    }

    #[test]
    fn failures_in_a_row_back_off_until_retry_max_then_escalate() {
        let now = Timestamp::from_unix(1_000);
        let backoff = Backoff::default();
        let gate = Action::Gate {
            key: key(),
            attempt: 1,
        };
        let task = task(1);
        let st = |failures: u32| TaskStatus {
            action_failures: failures,
            generation: task.generation.clone(),
            ..TaskStatus::default()
        };
        let policy = |st: Option<&TaskStatus>, task: Option<&Task>| {
            error_policy(&gate, &unknown(), (task, st), now, &backoff)
        };
        // `retry_max = 1`: the first try and one retry.
        assert_eq!(
            policy(None, Some(&task)),
            Disposition::Defer {
                count: 1,
                limit: 2,
                until: now.plus(backoff_delay(&backoff, 1))
            }
        );
        assert_eq!(
            policy(Some(&st(1)), Some(&task)),
            Disposition::Escalate { count: 2, limit: 2 }
        );
        // A task no longer in its plan gets the default's four.
        assert_eq!(
            policy(Some(&st(3)), None),
            Disposition::Escalate { count: 4, limit: 4 }
        );
        // Escalated, then restarted by a human at a new generation: afresh.
        let restarted = TaskStatus {
            phase: Phase::Escalated,
            generation: "older".into(),
            ..st(2)
        };
        assert!(matches!(
            policy(Some(&restarted), Some(&task)),
            Disposition::Defer { count: 1, .. }
        ));
        // Still escalated at its generation: the count goes on.
        let still = TaskStatus {
            phase: Phase::Escalated,
            ..st(2)
        };
        assert!(matches!(
            policy(Some(&still), Some(&task)),
            Disposition::Escalate { count: 3, .. }
        ));
    }

    #[test]
    fn a_moved_base_stops_the_tick_and_a_promotion_is_only_reported() {
        let now = Timestamp::from_unix(1_000);
        let backoff = Backoff::default();
        let moved = ActError::BaseMoved {
            branch: "main".into(),
            kept: Vec::new(),
        };
        let merge = Action::Merge {
            key: key(),
            head: "1111111111111111111111111111111111111111"
                .parse()
                .expect("hex"),
        };
        assert_eq!(
            error_policy(&merge, &moved, (None, None), now, &backoff),
            Disposition::StopTick
        );
        let promote = Action::Promote { item: "x".into() };
        assert_eq!(
            error_policy(&promote, &unknown(), (None, None), now, &backoff),
            Disposition::Report
        );
    }
}
