//! Table tests for `derive`: one per rule of how status follows the decision.

use super::*;
use crate::decide::{ActionKind, Reason, TaskReport};
use crate::model::CommitId;
use crate::observe::{RunObs, TaskObs};
use crate::spec::diag::{Code, Location};
use crate::spec::load::PlanningFiles;
use crate::status::{Claim, PlanStatus};

const CONFIG: &str = "[invariants.test]\nkind = \"test_suite\"\ncommand = \"true\"\n";
const PLAN: &str = r#"
[plan]
name = "P"
[[tasks]]
name = "a"
description = "A"
scope = "narrow"
gate = "auto"
allow_unchecked = true
[[tasks]]
name = "b"
description = "B"
scope = "narrow"
gate = "auto"
allow_unchecked = true
depends_on = ["a"]
"#;
const NOW: Timestamp = Timestamp::from_unix(1_800_000_000);
const COMMIT: &str = "1111111111111111111111111111111111111111";
const OLD_COMMIT: &str = "2222222222222222222222222222222222222222";
const HEAD: &str = "3333333333333333333333333333333333333333";
const FORGED: &str = "4444444444444444444444444444444444444444";
const MERGE: &str = "5555555555555555555555555555555555555555";

fn id(hex: &str) -> CommitId {
    hex.parse().expect("a commit id")
}

fn spec() -> Spec {
    let loaded = crate::spec::compile(&PlanningFiles::from_texts([
        ("planning/goal.md", "Goal"),
        ("planning/converge.toml", CONFIG),
        ("planning/plans/p.toml", PLAN),
    ]));
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    loaded.spec.expect("valid spec")
}

fn key(task: &str) -> TaskKey {
    TaskKey::new("p", task)
}

fn task(phase: Phase, attempt: u32) -> TaskStatus {
    TaskStatus {
        phase,
        attempt,
        generation: "old-generation".to_owned(),
        ..TaskStatus::default()
    }
}

fn status(plans: &[(&str, &[(&str, TaskStatus)])]) -> Status {
    Status {
        plans: plans
            .iter()
            .map(|(plan, tasks)| {
                let tasks = tasks
                    .iter()
                    .map(|(t, s)| ((*t).to_owned(), s.clone()))
                    .collect();
                (
                    (*plan).to_owned(),
                    PlanStatus {
                        tasks,
                        ..PlanStatus::default()
                    },
                )
            })
            .collect(),
    }
}

fn report(task: &str, phase: Phase, action: Option<ActionKind>) -> TaskReport {
    TaskReport {
        key: key(task),
        phase,
        action,
        reason: Reason::Ready,
    }
}

fn decision(report: Vec<TaskReport>) -> Decision {
    Decision {
        actions: Vec::new(),
        report,
        queue: Vec::new(),
        wake_at: None,
        settle_at: None,
    }
}

/// Derives `status` against `spec`, `decision`, `obs` and `diagnostics`, with
/// `before` as read.
fn derived(
    spec: &Spec,
    mut status: Status,
    before: &Status,
    decision: &Decision,
    obs: &Observation,
    diagnostics: &[Diagnostic],
) -> Status {
    let input = Inputs {
        spec,
        decision,
        observation: obs,
        diagnostics,
        spec_commit: COMMIT,
        now: NOW,
    };
    derive(&mut status, before, &input);
    status
}

/// The common case: status derived from itself, nothing observed.
fn derived_simply(spec: &Spec, status: Status, decision: &Decision) -> Status {
    let before = status.clone();
    derived(
        spec,
        status,
        &before,
        decision,
        &Observation::default(),
        &[],
    )
}

fn phase_of(status: &Status, task: &str) -> Phase {
    status.task("p", task).expect("task in status").phase
}

#[test]
fn every_task_of_a_valid_plan_gets_an_entry_and_fresh_tasks_the_spec_generation() {
    let spec = spec();
    let generation = |t: &str| spec.plans["p"].task(t).expect("task").generation.clone();
    // (status of `a` before, whether it takes the spec's generation)
    let cases = [
        (None, true),
        (Some(task(Phase::Pending, 0)), true),
        (Some(task(Phase::Running, 1)), false),
        (Some(task(Phase::Failed, 2)), false),
        // Escalated before its first attempt: only an edit restarts it.
        (Some(task(Phase::Escalated, 0)), false),
    ];
    for (before, takes) in cases {
        let entries: Vec<(&str, TaskStatus)> =
            before.clone().map(|s| ("a", s)).into_iter().collect();
        let out = derived_simply(&spec, status(&[("p", &entries)]), &decision(Vec::new()));
        let a = out.task("p", "a").expect("a has an entry");
        let want = if takes {
            generation("a")
        } else {
            "old-generation".to_owned()
        };
        assert_eq!(a.generation, want, "{before:?}");
        assert_eq!(
            out.task("p", "b").expect("b has an entry").generation,
            generation("b")
        );
    }
}

#[test]
fn derived_phases_are_written_only_for_tasks_without_an_action() {
    let spec = spec();
    // (phase in status, phase in the decision, action, phase after)
    let cases = [
        (Phase::Running, Phase::Pending, None, Phase::Pending),
        (Phase::Pending, Phase::Blocked, None, Phase::Blocked),
        (Phase::Passed, Phase::Merged, None, Phase::Merged),
        (
            Phase::Passed,
            Phase::AwaitingApproval,
            None,
            Phase::AwaitingApproval,
        ),
        // An action this tick: the executor's outcome decides, not the report.
        (
            Phase::Failed,
            Phase::Pending,
            Some(ActionKind::Retry),
            Phase::Failed,
        ),
        (
            Phase::Passed,
            Phase::Merged,
            Some(ActionKind::Merge),
            Phase::Passed,
        ),
        // Phases that are not derived are the executor's.
        (Phase::Pending, Phase::Running, None, Phase::Pending),
        (Phase::Running, Phase::Failed, None, Phase::Running),
        (Phase::Pending, Phase::Escalated, None, Phase::Pending),
        // A cancelled task is not made pending again.
        (Phase::Cancelled, Phase::Pending, None, Phase::Cancelled),
        (Phase::Cancelled, Phase::Blocked, None, Phase::Blocked),
    ];
    for (current, reported, action, want) in cases {
        let out = derived_simply(
            &spec,
            status(&[("p", &[("a", task(current, 1))])]),
            &decision(vec![report("a", reported, action)]),
        );
        assert_eq!(
            phase_of(&out, "a"),
            want,
            "{current:?} reported {reported:?} with {action:?}"
        );
    }
}

#[test]
fn a_merge_found_in_git_records_its_merge_commit_never_the_branch_head() {
    let spec = spec();
    let mut obs = Observation::default();
    obs.tasks.insert(
        key("a"),
        TaskObs {
            merged: true,
            merged_as: Some(id(MERGE)),
            branch_head: Some(id(HEAD)),
            ..TaskObs::default()
        },
    );
    // (merged_as before, after)
    for before in [None, Some(MERGE)] {
        let a = TaskStatus {
            merged_as: before.map(id),
            ..task(Phase::Passed, 1)
        };
        let st = status(&[("p", &[("a", a)])]);
        let out = derived(
            &spec,
            st.clone(),
            &st,
            &decision(vec![report("a", Phase::Merged, None)]),
            &obs,
            &[],
        );
        let a = out.task("p", "a").expect("a");
        assert_eq!(a.phase, Phase::Merged);
        assert_eq!(a.merged_as, Some(id(MERGE)));
        assert!(a.conditions.is_empty(), "{:?}", a.conditions);
    }
}

/// One row of how a status claim of a merge is checked against git.
struct Claimed {
    /// Status as the tick read it: phase and `merged_as`.
    read: (Phase, Option<&'static str>),
    /// What an action of the tick made of it (`None`: no action).
    acted: Option<(Phase, Option<&'static str>)>,
    /// The merge commit git shows for the task, if any.
    git: Option<&'static str>,
    /// What the decision reports for the task.
    reported: Phase,
    /// Status after derive: phase, `merged_as`, whether `StatusUnbacked` is noted.
    want: (Phase, Option<&'static str>, bool),
}

#[test]
fn a_status_claim_of_a_merge_that_git_does_not_back_is_corrected_and_noted() {
    use Phase::{Merged, Passed, Pending, Running};
    let rows = [
        // A hand-written claim naming a commit that is no merge of the task.
        Claimed {
            read: (Merged, Some(FORGED)),
            acted: None,
            git: None,
            reported: Pending,
            want: (Pending, None, true),
        },
        // A claim without a commit, and none in git.
        Claimed {
            read: (Merged, None),
            acted: None,
            git: None,
            reported: Pending,
            want: (Pending, None, true),
        },
        // A claim naming the wrong commit of a task git shows merged.
        Claimed {
            read: (Merged, Some(FORGED)),
            acted: None,
            git: Some(MERGE),
            reported: Merged,
            want: (Merged, Some(MERGE), true),
        },
        // A backed claim stays as it is.
        Claimed {
            read: (Merged, Some(MERGE)),
            acted: None,
            git: Some(MERGE),
            reported: Merged,
            want: (Merged, Some(MERGE), false),
        },
        // A claim without a commit that git completes (status written by an
        // older converge) is no discrepancy.
        Claimed {
            read: (Merged, None),
            acted: None,
            git: Some(MERGE),
            reported: Merged,
            want: (Merged, Some(MERGE), false),
        },
        // The corrected task started again this tick: the start stands.
        Claimed {
            read: (Merged, Some(FORGED)),
            acted: Some((Running, None)),
            git: None,
            reported: Pending,
            want: (Running, None, true),
        },
        // A merge this tick (observed before it) is no claim to correct.
        Claimed {
            read: (Passed, None),
            acted: Some((Merged, Some(MERGE))),
            git: None,
            reported: Passed,
            want: (Merged, Some(MERGE), false),
        },
    ];
    let spec = spec();
    for (i, row) in rows.iter().enumerate() {
        let with = |(phase, merged_as): (Phase, Option<&str>)| TaskStatus {
            merged_as: merged_as.map(id),
            ..task(phase, 1)
        };
        let before = status(&[("p", &[("a", with(row.read))])]);
        let current = status(&[("p", &[("a", with(row.acted.unwrap_or(row.read)))])]);
        let mut obs = Observation::default();
        obs.tasks.insert(
            key("a"),
            TaskObs {
                merged: row.git.is_some(),
                merged_as: row.git.map(id),
                unbacked: Some("status records p/a as merged as 4444444".to_owned()),
                ..TaskObs::default()
            },
        );
        let action = row.acted.map(|_| ActionKind::Dispatch);
        let out = derived(
            &spec,
            current,
            &before,
            &decision(vec![report("a", row.reported, action)]),
            &obs,
            &[],
        );
        let a = out.task("p", "a").expect("a");
        let noted = a
            .conditions
            .iter()
            .find(|c| c.kind == STATUS_UNBACKED)
            .map(|c| (c.reason.clone(), c.message.clone()));
        assert_eq!(
            (a.phase, a.merged_as, noted.is_some()),
            (row.want.0, row.want.1.map(id), row.want.2),
            "row {i}"
        );
        if let Some((reason, message)) = noted {
            assert_eq!(reason, "status-unbacked");
            assert!(message.contains("4444444"), "row {i}: {message}");
        }
    }
}

#[test]
fn the_status_unbacked_condition_stays_until_the_task_merges() {
    let spec = spec();
    let mut a = task(Phase::Running, 2);
    a.conditions.push(Condition {
        kind: STATUS_UNBACKED,
        status: true,
        reason: "status-unbacked".to_owned(),
        message: "m".to_owned(),
        since: NOW,
    });
    let st = status(&[("p", &[("a", a)])]);
    let out = derived_simply(&spec, st.clone(), &decision(vec![]));
    assert_eq!(out.task("p", "a").expect("a").conditions.len(), 1);
    let mut obs = Observation::default();
    obs.tasks.insert(
        key("a"),
        TaskObs {
            merged: true,
            merged_as: Some(id(MERGE)),
            ..TaskObs::default()
        },
    );
    let out = derived(
        &spec,
        st.clone(),
        &st,
        &decision(vec![report("a", Phase::Merged, None)]),
        &obs,
        &[],
    );
    assert!(out.task("p", "a").expect("a").conditions.is_empty());
}

#[test]
fn an_invalid_plan_carries_its_errors_and_keeps_its_tasks() {
    let mut spec = spec();
    spec.invalid_plans.push("bad".to_owned());
    let mut at = Diagnostic::error(Code::TomlSyntax, "planning/plans/bad.toml", "expected `=`");
    at.location = Some(Location {
        line: 3,
        column: 7,
        line_text: "name \"x\"".to_owned(),
        width: 1,
    });
    let anywhere = Diagnostic::error(Code::TomlSyntax, "planning/plans/bad.toml", "no tasks");
    let warning = Diagnostic {
        severity: Severity::Warning,
        ..Diagnostic::error(Code::TomlSyntax, "planning/plans/bad.toml", "a warning")
    };
    let elsewhere = Diagnostic::error(Code::TomlSyntax, "planning/plans/other.toml", "other");
    let cases: [(Vec<Diagnostic>, Vec<&str>); 2] = [
        (
            vec![at, anywhere, warning, elsewhere],
            vec![
                "planning/plans/bad.toml:3:7: expected `=`",
                "planning/plans/bad.toml: no tasks",
            ],
        ),
        (
            Vec::new(),
            vec!["planning/plans/bad.toml does not validate; `converge plan validate` lists why"],
        ),
    ];
    for (diagnostics, want) in cases {
        let st = status(&[("bad", &[("x", task(Phase::Running, 1))])]);
        let out = derived(
            &spec,
            st.clone(),
            &st,
            &decision(Vec::new()),
            &Observation::default(),
            &diagnostics,
        );
        let bad = &out.plans["bad"];
        assert_eq!(bad.errors, want);
        assert!(
            bad.tasks.contains_key("x"),
            "an invalid plan keeps its tasks"
        );
    }
    // A plan that becomes valid again sheds its errors.
    let mut st = status(&[("p", &[])]);
    st.plans.get_mut("p").expect("p").errors = vec!["old".to_owned()];
    let out = derived_simply(&self::spec(), st, &decision(Vec::new()));
    assert!(out.plans["p"].errors.is_empty());
}

#[test]
fn tasks_and_plans_gone_from_the_spec_are_dropped_once_nothing_of_theirs_lingers() {
    let spec = spec();
    let gone = TaskKey::new("p", "gone");
    // (what is observed of p/gone, whether it stays)
    let cases = [
        (None, false),
        (Some(TaskObs::default()), false),
        (
            Some(TaskObs {
                worktree: true,
                ..TaskObs::default()
            }),
            true,
        ),
        (
            Some(TaskObs {
                branch_head: Some(id(HEAD)),
                ..TaskObs::default()
            }),
            true,
        ),
        (
            Some(run_obs(1, RunState::Running { deadline: NOW }, 0)),
            true,
        ),
        (Some(run_obs(1, RunState::Vanished, 0)), false),
    ];
    for (seen, stays) in cases {
        let mut obs = Observation::default();
        if let Some(seen) = seen.clone() {
            obs.tasks.insert(gone.clone(), seen);
        }
        let st = status(&[
            ("p", &[("gone", task(Phase::Running, 1))]),
            ("removed", &[("x", task(Phase::Merged, 1))]),
        ]);
        let out = derived(&spec, st.clone(), &st, &decision(Vec::new()), &obs, &[]);
        assert_eq!(out.task("p", "gone").is_some(), stays, "{seen:?}");
        assert!(out.task("p", "a").is_some());
        assert!(
            !out.plans.contains_key("removed"),
            "a plan gone from the spec with no task left is dropped"
        );
    }
}

fn run_obs(attempt: u32, state: RunState, rejected_events: u32) -> TaskObs {
    TaskObs {
        run: Some(RunObs {
            attempt,
            state,
            generation: None,
            rejected_events,
        }),
        ..TaskObs::default()
    }
}

#[test]
fn a_claim_ends_with_its_attempt() {
    let spec = spec();
    let claim = |attempt| Claim {
        by: "elsewhere".to_owned(),
        attempt,
        until: NOW,
    };
    // (phase, attempt, claimed attempt, claim kept)
    let cases = [
        (Phase::Running, 1, 1, true),
        (Phase::Passed, 1, 1, true),
        (Phase::Failed, 1, 1, false),
        (Phase::Escalated, 1, 1, false),
        (Phase::Merged, 1, 1, false),
        (Phase::Cancelled, 1, 1, false),
        // A claim for the next attempt, not started yet.
        (Phase::Failed, 1, 2, true),
        (Phase::Pending, 0, 1, true),
        (Phase::Pending, 1, 1, false),
    ];
    for (phase, attempt, claimed, kept) in cases {
        let a = TaskStatus {
            claim: Some(claim(claimed)),
            ..task(phase, attempt)
        };
        let out = derived_simply(&spec, status(&[("p", &[("a", a)])]), &decision(Vec::new()));
        assert_eq!(
            out.task("p", "a").expect("a").claim.is_some(),
            kept,
            "{phase:?} attempt {attempt}, claim for attempt {claimed}"
        );
    }
}

#[test]
fn a_plans_spec_commit_moves_only_when_its_status_changes() {
    let spec = spec();
    let settled = || {
        let mut st = derived_simply(&spec, status(&[("p", &[])]), &decision(Vec::new()));
        st.plans.get_mut("p").expect("p").spec = Some(OLD_COMMIT.parse().expect("hex"));
        st
    };
    // Nothing else changed: the commit it was computed from stays.
    let before = settled();
    let out = derived_simply(&spec, before.clone(), &decision(Vec::new()));
    assert_eq!(out, before);
    // A task's status changed (by acting): the plan is stamped with this commit.
    let mut acted = before.clone();
    acted
        .plans
        .get_mut("p")
        .expect("p")
        .tasks
        .get_mut("a")
        .expect("a")
        .attempt = 1;
    let out = derived(
        &spec,
        acted,
        &before,
        &decision(Vec::new()),
        &Observation::default(),
        &[],
    );
    assert_eq!(out.plans["p"].spec, Some(COMMIT.parse().expect("hex")));
    // A plan new to status is stamped too.
    let out = derived_simply(&spec, Status::default(), &decision(Vec::new()));
    assert_eq!(out.plans["p"].spec, Some(COMMIT.parse().expect("hex")));
}

#[test]
fn rejected_events_of_the_current_attempt_are_noted_until_the_next_attempt() {
    let spec = spec();
    let noted = |count: u32, attempt: u32| {
        format!(
            "{count} event(s) of attempt {attempt} carried a token that does not verify for it and were ignored"
        )
    };
    let earlier = Timestamp::from_unix(1_700_000_000);
    let existing = |message: String| Condition {
        kind: EVENTS_REJECTED.to_owned(),
        status: true,
        reason: "token-rejected".to_owned(),
        message,
        since: earlier,
    };
    // (condition before, run attempt, rejected events, condition after: message and since)
    let cases = [
        (None, 2, 3, Some((noted(3, 2), NOW))),
        (
            Some(existing(noted(3, 2))),
            2,
            3,
            Some((noted(3, 2), earlier)),
        ),
        (
            Some(existing(noted(1, 2))),
            2,
            4,
            Some((noted(4, 2), earlier)),
        ),
        // The run is an earlier attempt's, or none was rejected: no condition.
        (Some(existing(noted(3, 1))), 1, 3, None),
        (Some(existing(noted(3, 2))), 2, 0, None),
        (None, 1, 5, None),
    ];
    for (before, run_attempt, rejected, want) in cases {
        let a = TaskStatus {
            conditions: before.clone().into_iter().collect(),
            ..task(Phase::Running, 2)
        };
        let mut obs = Observation::default();
        obs.tasks.insert(
            key("a"),
            run_obs(run_attempt, RunState::Running { deadline: NOW }, rejected),
        );
        let st = status(&[("p", &[("a", a)])]);
        let out = derived(&spec, st.clone(), &st, &decision(Vec::new()), &obs, &[]);
        let got: Vec<(String, Timestamp)> = out
            .task("p", "a")
            .expect("a")
            .conditions
            .iter()
            .map(|c| {
                assert_eq!(
                    (c.kind.as_str(), c.reason.as_str()),
                    (EVENTS_REJECTED.as_str(), "token-rejected")
                );
                (c.message.clone(), c.since)
            })
            .collect();
        assert_eq!(
            got,
            want.into_iter().collect::<Vec<_>>(),
            "{before:?}, run {run_attempt}, {rejected}"
        );
    }
}

#[test]
fn other_conditions_are_left_alone() {
    let spec = spec();
    let other = Condition {
        kind: crate::decide::ACTION_FAILED.to_owned(),
        status: true,
        reason: "action-failed".to_owned(),
        message: "dispatch failed".to_owned(),
        since: NOW,
    };
    let a = TaskStatus {
        conditions: vec![other.clone()],
        ..task(Phase::Running, 1)
    };
    let out = derived_simply(&spec, status(&[("p", &[("a", a)])]), &decision(Vec::new()));
    assert_eq!(out.task("p", "a").expect("a").conditions, vec![other]);
}
