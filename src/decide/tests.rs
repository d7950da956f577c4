//! Table tests for `decide`: every action, every reason, the limits.

use std::collections::BTreeMap;
use std::time::Duration;

use super::limits::{HOUR, starts_since};
use super::*;
use crate::model::{AttemptOutcome, CommitId, FailureCode};
use crate::observe::{Availability, RunObs};
use crate::spec::load::PlanningFiles;
use crate::status::{AttemptRecord, Claim, PlanStatus};

const CONFIG: &str = "[invariants.test]\nkind = \"test_suite\"\ncommand = \"true\"\n";

/// A diamond: b and c depend on a, d on b and c; c is human-reviewed.
const DIAMOND: &str = r#"
[plan]
name = "Diamond"
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
[[tasks]]
name = "c"
description = "C"
scope = "narrow"
gate = "human_review"
depends_on = ["a"]
retry_max = 2
[[tasks]]
name = "d"
description = "D"
scope = "narrow"
gate = "auto"
allow_unchecked = true
depends_on = ["b", "c"]
"#;

const NOW: Timestamp = Timestamp::from_unix(1_800_000_000);
const SHA: &str = "1111111111111111111111111111111111111111";
const OTHER: &str = "2222222222222222222222222222222222222222";

fn id(hex: &str) -> CommitId {
    hex.parse().expect("a commit id")
}

fn spec_with(plan: &str, extra: &[(&str, &str)]) -> Spec {
    let base = [
        ("planning/goal.md", "Goal"),
        ("planning/converge.toml", CONFIG),
        ("planning/plans/p.toml", plan),
    ];
    let loaded = crate::spec::compile(&PlanningFiles::from_texts(
        base.into_iter().chain(extra.iter().copied()),
    ));
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    loaded.spec.expect("valid spec")
}

fn spec() -> Spec {
    spec_with(DIAMOND, &[])
}

fn key(task: &str) -> TaskKey {
    TaskKey::new("p", task)
}

fn generation(spec: &Spec, task: &str) -> String {
    spec.plans["p"].task(task).expect("task").generation.clone()
}

/// Status for one task, at the spec's current generation.
fn st(spec: &Spec, task: &str, phase: Phase, attempt: u32) -> TaskStatus {
    TaskStatus {
        phase,
        attempt,
        generation: generation(spec, task),
        head: (attempt > 0).then(|| id(SHA)),
        ..TaskStatus::default()
    }
}

fn status(entries: Vec<(&str, TaskStatus)>) -> Status {
    let tasks = entries
        .into_iter()
        .map(|(t, s)| (t.to_owned(), s))
        .collect();
    Status {
        plans: BTreeMap::from([(
            "p".to_owned(),
            PlanStatus {
                tasks,
                ..PlanStatus::default()
            },
        )]),
    }
}

fn merged(tasks: &[&str]) -> Observation {
    let mut obs = Observation::default();
    for t in tasks {
        obs.tasks.insert(
            key(t),
            TaskObs {
                merged: true,
                ..TaskObs::default()
            },
        );
    }
    obs
}

/// `task` merged (in git), its branch still there.
fn merged_with_branch(task: &str) -> Observation {
    let mut obs = merged(&[task]);
    obs.tasks.get_mut(&key(task)).expect("task").branch_head = Some(id(SHA));
    obs
}

fn with_run(mut obs: Observation, task: &str, attempt: u32, state: RunState) -> Observation {
    let entry = obs.tasks.entry(key(task)).or_default();
    entry.run = Some(RunObs {
        attempt,
        generation: None,
        state,
        rejected_events: 0,
    });
    entry.worktree = true;
    entry.branch_head = Some(id(SHA));
    obs
}

const WIDE: Limits = Limits {
    actions_per_tick: 100,
    max_agents: 100,
    dispatches_per_hour: 100,
};

fn run(spec: &Spec, obs: &Observation, status: &Status) -> Decision {
    decide(spec, obs, status, NOW, &WIDE)
}

/// The actions chosen for one task.
fn actions_for(decision: &Decision, task: &str) -> Vec<Action> {
    decision
        .actions
        .iter()
        .filter(|a| a.key() == Some(&key(task)))
        .cloned()
        .collect()
}

/// The human-readable reason reported for a task.
fn reason_text(decision: &Decision, task: &str) -> String {
    decision
        .report
        .iter()
        .find(|r| r.key == key(task))
        .map(|r| r.reason.to_string())
        .expect("task reported")
}

/// The report line of a task: (action, reason code, phase).
fn line(decision: &Decision, task: &str) -> (Option<&'static str>, &'static str, &'static str) {
    let r = decision
        .report
        .iter()
        .find(|r| r.key == key(task))
        .expect("task reported");
    (
        r.action.map(ActionKind::as_str),
        r.reason.code(),
        r.phase.as_str(),
    )
}

#[test]
fn a_fresh_plan_dispatches_its_roots_and_explains_the_rest() {
    let spec = spec();
    let d = run(&spec, &Observation::default(), &Status::default());
    assert_eq!(
        d.actions,
        [Action::Dispatch {
            key: key("a"),
            attempt: 1
        }]
    );
    assert_eq!(line(&d, "a"), (Some("dispatch"), "ready", "pending"));
    assert_eq!(line(&d, "b"), (None, "waiting-on-dependency", "pending"));
    assert_eq!(line(&d, "d"), (None, "waiting-on-dependency", "pending"));
    assert_eq!(reason_text(&d, "d"), "waiting for `b` and `c` to merge");
}

#[test]
fn draft_and_paused_plans_dispatch_nothing() {
    for (state, code) in [("draft", "plan-draft"), ("paused", "plan-paused")] {
        let spec = spec_with(
            &DIAMOND.replace(
                "name = \"Diamond\"",
                &format!("name = \"Diamond\"\nstate = \"{state}\""),
            ),
            &[],
        );
        let d = run(&spec, &Observation::default(), &Status::default());
        assert!(d.actions.is_empty(), "{state}");
        assert_eq!(line(&d, "a"), (None, code, "pending"));
    }
}

#[test]
fn a_paused_plan_gates_finished_attempts_but_merges_nothing() {
    let spec = spec_with(
        &DIAMOND.replace(
            "name = \"Diamond\"",
            "name = \"Diamond\"\nstate = \"paused\"",
        ),
        &[],
    );
    // The attempt that finished is gated, so its evidence is ready at resume.
    let obs = with_run(
        Observation::default(),
        "a",
        1,
        RunState::Exited {
            done: true,
            exit_code: Some(0),
        },
    );
    let running = status(vec![("a", st(&spec, "a", Phase::Running, 1))]);
    assert_eq!(
        run(&spec, &obs, &running).actions,
        [Action::Gate {
            key: key("a"),
            attempt: 1
        }]
    );
    // Passed, approved or not: held until the plan is resumed.
    let passed = status(vec![
        ("a", st(&spec, "a", Phase::Passed, 1)),
        ("c", st(&spec, "c", Phase::AwaitingApproval, 1)),
    ]);
    let approved = spec_with(
        &DIAMOND.replace(
            "name = \"Diamond\"",
            "name = \"Diamond\"\nstate = \"paused\"",
        ),
        &[(
            "planning/approvals/p/c.toml",
            &format!("decision = \"approve\"\ncommit = \"{SHA}\"\n"),
        )],
    );
    let d = run(&approved, &merged(&[]), &passed);
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert_eq!(line(&d, "a"), (None, "plan-paused", "passed"));
    let d = run(&approved, &merged(&["a"]), &passed);
    assert_eq!(line(&d, "c"), (None, "plan-paused", "awaiting_approval"));
    // Resumed, both merge.
    let active = spec_with(
        DIAMOND,
        &[(
            "planning/approvals/p/c.toml",
            &format!("decision = \"approve\"\ncommit = \"{SHA}\"\n"),
        )],
    );
    assert_eq!(
        line(&run(&active, &merged(&[]), &passed), "a"),
        (Some("merge"), "gate-passed", "passed")
    );
    assert_eq!(
        line(&run(&active, &merged(&["a"]), &passed), "c"),
        (Some("merge"), "approved", "awaiting_approval")
    );
}

#[test]
fn running_agents_are_left_alone_until_their_deadline() {
    let spec = spec();
    let status = status(vec![("a", st(&spec, "a", Phase::Running, 1))]);
    let later = Timestamp::from_unix(NOW.unix() + 60);
    let obs = with_run(
        Observation::default(),
        "a",
        1,
        RunState::Running { deadline: later },
    );
    let d = run(&spec, &obs, &status);
    assert!(d.actions.is_empty());
    assert_eq!(line(&d, "a"), (None, "running", "running"));
    assert_eq!(d.wake_at, Some(later));
    let obs = with_run(
        Observation::default(),
        "a",
        1,
        RunState::Running { deadline: NOW },
    );
    let d = run(&spec, &obs, &status);
    assert_eq!(
        d.actions,
        [Action::Reap {
            key: key("a"),
            attempt: 1,
            reason: Reason::Timeout
        }]
    );
}

#[test]
fn editing_a_running_task_cancels_its_attempt() {
    let spec = spec();
    let mut a = st(&spec, "a", Phase::Running, 1);
    a.generation = "0000000000000000".into();
    let obs = with_run(
        Observation::default(),
        "a",
        1,
        RunState::Running {
            deadline: Timestamp::from_unix(NOW.unix() + 60),
        },
    );
    let d = run(&spec, &obs, &status(vec![("a", a)]));
    assert_eq!(
        d.actions,
        [Action::Cancel {
            key: key("a"),
            attempt: 1,
            reason: Reason::SpecChanged
        }]
    );
}

#[test]
fn an_attempt_superseded_by_an_edit_is_neither_gated_nor_offered_for_approval() {
    // The agent finished, but the task was edited while it worked: its work
    // answers a spec that no longer exists.
    let spec = spec();
    let mut a = st(&spec, "a", Phase::Running, 1);
    a.generation = "0000000000000000".into();
    let obs = with_run(
        Observation::default(),
        "a",
        1,
        RunState::Exited {
            done: true,
            exit_code: Some(0),
        },
    );
    let d = run(&spec, &obs, &status(vec![("a", a)]));
    assert_eq!(
        d.actions,
        [Action::Cancel {
            key: key("a"),
            attempt: 1,
            reason: Reason::SpecChanged
        }]
    );
    // Cancelled, the task starts afresh on the edited spec.
    let mut cancelled = st(&spec, "a", Phase::Cancelled, 1);
    cancelled.generation = "0000000000000000".into();
    let d = run(&spec, &obs, &status(vec![("a", cancelled)]));
    assert_eq!(
        d.actions,
        [Action::Retry {
            key: key("a"),
            attempt: 2,
            reason: Reason::SpecChanged
        }]
    );
}

#[test]
fn a_run_newer_than_status_is_judged_by_the_generation_of_its_lease() {
    // A crash lost the status of attempt 2's dispatch (status still shows a
    // cancelled attempt 1 with another generation). The run's lease says it
    // was started for today's spec: it is gated, not cancelled (cancelling
    // it left status behind again, and the task was cancelled forever).
    let spec = spec();
    let mut a = st(&spec, "a", Phase::Cancelled, 1);
    a.generation = String::new();
    let mut obs = with_run(
        Observation::default(),
        "a",
        2,
        RunState::Exited {
            done: true,
            exit_code: Some(0),
        },
    );
    let current = spec.plans["p"].task("a").expect("a").generation.clone();
    if let Some(run) = obs.tasks.get_mut(&key("a")).and_then(|t| t.run.as_mut()) {
        run.generation = Some(current);
    }
    let d = run(&spec, &obs, &status(vec![("a", a.clone())]));
    assert!(
        matches!(d.actions.as_slice(), [Action::Gate { attempt: 2, .. }]),
        "{:?}",
        d.actions
    );
    // A lease for an older generation is superseded.
    if let Some(run) = obs.tasks.get_mut(&key("a")).and_then(|t| t.run.as_mut()) {
        run.generation = Some("0000000000000000".into());
    }
    let d = run(&spec, &obs, &status(vec![("a", a)]));
    assert!(
        matches!(d.actions.as_slice(), [Action::Cancel { attempt: 2, .. }]),
        "{:?}",
        d.actions
    );
}

#[test]
fn vanished_agents_are_reaped() {
    let spec = spec();
    let status = status(vec![("a", st(&spec, "a", Phase::Running, 1))]);
    let obs = with_run(Observation::default(), "a", 1, RunState::Vanished);
    assert_eq!(
        line(&run(&spec, &obs, &status), "a"),
        (Some("reap"), "agent-vanished", "running")
    );
    // Status says running, but no run record exists at all.
    assert_eq!(
        line(&run(&spec, &Observation::default(), &status), "a"),
        (Some("reap"), "agent-vanished", "running")
    );
}

#[test]
fn finished_attempts_are_gated_once() {
    let spec = spec();
    let obs = with_run(
        Observation::default(),
        "a",
        1,
        RunState::Exited {
            done: true,
            exit_code: Some(0),
        },
    );
    let running = status(vec![("a", st(&spec, "a", Phase::Running, 1))]);
    assert_eq!(
        run(&spec, &obs, &running).actions,
        [Action::Gate {
            key: key("a"),
            attempt: 1
        }]
    );
    // Once the gate recorded its result, the same run record is not gated again.
    let passed = status(vec![("a", st(&spec, "a", Phase::Passed, 1))]);
    assert_eq!(
        run(&spec, &obs, &passed).actions,
        [Action::Merge {
            key: key("a"),
            head: id(SHA)
        }]
    );
}

#[test]
fn a_run_newer_than_status_is_adopted_not_duplicated() {
    // The tick that dispatched attempt 1 crashed before recording it.
    let spec = spec();
    let obs = with_run(
        Observation::default(),
        "a",
        1,
        RunState::Running {
            deadline: Timestamp::from_unix(NOW.unix() + 60),
        },
    );
    let d = run(&spec, &obs, &Status::default());
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert_eq!(line(&d, "a"), (None, "running", "running"));
    let obs = with_run(
        Observation::default(),
        "a",
        1,
        RunState::Exited {
            done: true,
            exit_code: Some(0),
        },
    );
    assert_eq!(
        run(&spec, &obs, &Status::default()).actions,
        [Action::Gate {
            key: key("a"),
            attempt: 1
        }]
    );
}

#[test]
fn passed_auto_tasks_merge_once_dependencies_are_merged() {
    let spec = spec();
    let s = status(vec![("b", st(&spec, "b", Phase::Passed, 1))]);
    assert_eq!(
        line(&run(&spec, &Observation::default(), &s), "b"),
        (None, "waiting-on-dependency", "passed")
    );
    let d = run(&spec, &merged(&["a"]), &s);
    assert_eq!(
        actions_for(&d, "b"),
        [Action::Merge {
            key: key("b"),
            head: id(SHA)
        }]
    );
    assert_eq!(line(&d, "b"), (Some("merge"), "gate-passed", "passed"));
    // Its sibling became ready with the same merge.
    assert_eq!(
        actions_for(&d, "c"),
        [Action::Dispatch {
            key: key("c"),
            attempt: 1
        }]
    );
}

#[test]
fn human_gates_wait_for_an_approval_of_the_reviewed_commit() {
    let approval = |decision: &str, commit: &str| {
        format!("decision = \"{decision}\"\ncommit = \"{commit}\"\n")
    };
    let base = spec();
    let s = status(vec![("c", st(&base, "c", Phase::AwaitingApproval, 1))]);
    let obs = merged(&["a"]);
    assert_eq!(
        line(&run(&base, &obs, &s), "c"),
        (None, "awaiting-approval", "awaiting_approval")
    );

    let stale = spec_with(
        DIAMOND,
        &[("planning/approvals/p/c.toml", &approval("approve", OTHER))],
    );
    assert_eq!(
        line(&run(&stale, &obs, &s), "c"),
        (None, "approval-stale", "awaiting_approval")
    );

    let approved = spec_with(
        DIAMOND,
        &[("planning/approvals/p/c.toml", &approval("approve", SHA))],
    );
    let d = run(&approved, &obs, &s);
    assert_eq!(
        actions_for(&d, "c"),
        [Action::Merge {
            key: key("c"),
            head: id(SHA)
        }]
    );
    assert_eq!(line(&d, "c").1, "approved");

    let rejected = spec_with(
        DIAMOND,
        &[("planning/approvals/p/c.toml", &approval("reject", SHA))],
    );
    let d = run(&rejected, &obs, &s);
    assert_eq!(
        actions_for(&d, "c"),
        [Action::Retry {
            key: key("c"),
            attempt: 2,
            reason: Reason::Rejected
        }]
    );
    // c allows 2 retries after its first attempt: a rejection after one
    // failure retries, after two it escalates.
    let mut failed_once = st(&base, "c", Phase::AwaitingApproval, 2);
    failed_once.failures = 1;
    let d = run(&rejected, &obs, &status(vec![("c", failed_once.clone())]));
    assert_eq!(
        actions_for(&d, "c"),
        [Action::Retry {
            key: key("c"),
            attempt: 3,
            reason: Reason::Rejected
        }]
    );
    let mut failed_twice = failed_once;
    failed_twice.attempt = 3;
    failed_twice.failures = 2;
    let d = run(&rejected, &obs, &status(vec![("c", failed_twice)]));
    assert_eq!(
        actions_for(&d, "c"),
        [Action::Escalate {
            key: key("c"),
            reason: Reason::Rejected
        }]
    );
}

#[test]
fn failures_back_off_retry_and_escalate() {
    let spec = spec();
    let mut a = st(&spec, "a", Phase::Failed, 1);
    a.failures = 1;
    a.next_eligible_at = Some(Timestamp::from_unix(NOW.unix() + 30));
    let d = run(
        &spec,
        &Observation::default(),
        &status(vec![("a", a.clone())]),
    );
    assert_eq!(line(&d, "a"), (None, "backoff", "failed"));
    assert_eq!(d.wake_at, a.next_eligible_at);

    a.next_eligible_at = Some(NOW);
    let d = run(
        &spec,
        &Observation::default(),
        &status(vec![("a", a.clone())]),
    );
    assert_eq!(
        d.actions,
        [Action::Retry {
            key: key("a"),
            attempt: 2,
            reason: Reason::FailedBefore { failures: 1 }
        }]
    );

    // `retry_max` (3 by default) counts retries after the first attempt, as
    // gator does: three failures still retry, the fourth escalates.
    a.failures = 3;
    a.attempt = 3;
    let d = run(
        &spec,
        &Observation::default(),
        &status(vec![("a", a.clone())]),
    );
    assert_eq!(
        d.actions,
        [Action::Retry {
            key: key("a"),
            attempt: 4,
            reason: Reason::FailedBefore { failures: 3 }
        }]
    );
    a.failures = 4;
    a.attempt = 4;
    let d = run(&spec, &Observation::default(), &status(vec![("a", a)]));
    assert_eq!(
        d.actions,
        [Action::Escalate {
            key: key("a"),
            reason: Reason::AttemptsExhausted { failures: 4 }
        }]
    );
}

#[test]
fn escalated_tasks_wait_for_a_human_and_restart_when_edited() {
    let spec = spec();
    let mut a = st(&spec, "a", Phase::Escalated, 3);
    let d = run(
        &spec,
        &Observation::default(),
        &status(vec![("a", a.clone())]),
    );
    assert_eq!(line(&d, "a"), (None, "escalated", "escalated"));
    // `converge retry` bumps `reset`, which changes the generation.
    a.generation = "0000000000000000".into();
    let d = run(&spec, &Observation::default(), &status(vec![("a", a)]));
    assert_eq!(
        d.actions,
        [Action::Retry {
            key: key("a"),
            attempt: 4,
            reason: Reason::SpecChanged
        }]
    );
}

#[test]
fn dependents_of_an_escalated_task_are_blocked() {
    let spec = spec();
    let d = run(
        &spec,
        &Observation::default(),
        &status(vec![("a", st(&spec, "a", Phase::Escalated, 3))]),
    );
    assert_eq!(line(&d, "b"), (None, "dependency-blocked", "blocked"));
    assert_eq!(
        reason_text(&d, "b"),
        "dependency `a` escalated or is blocked"
    );
}

#[test]
fn merged_is_read_from_git() {
    let spec = spec();
    let mut obs = merged(&["a"]);
    let d = run(&spec, &obs, &Status::default());
    assert_eq!(line(&d, "a"), (None, "merged", "merged"));
    obs.tasks.get_mut(&key("a")).expect("a").worktree = true;
    // Its branch and worktree stay until status records the merge (the tick
    // records it): a crash between merging and recording must not lose the
    // only proof that the work merged.
    assert_eq!(
        line(&run(&spec, &obs, &Status::default()), "a"),
        (None, "merged", "merged")
    );
    let recorded = TaskStatus {
        merged_as: Some(id(SHA)),
        ..st(&spec, "a", Phase::Merged, 1)
    };
    assert_eq!(
        line(&run(&spec, &obs, &status(vec![("a", recorded)])), "a"),
        (Some("cleanup"), "cleanup-after-merge", "merged")
    );
    // Status says merged and git shows no merge of converge's: the claim is
    // not believed (a status file edited by hand, a base branch rewritten),
    // and the task starts again.
    let d = run(
        &spec,
        &Observation::default(),
        &status(vec![("a", st(&spec, "a", Phase::Merged, 1))]),
    );
    assert_eq!(line(&d, "a"), (Some("retry"), "status-unbacked", "pending"));
}

#[test]
fn removed_tasks_are_cancelled_and_cleaned_up_but_invalid_plans_are_left_alone() {
    let spec = spec();
    let deadline = RunState::Running {
        deadline: Timestamp::from_unix(NOW.unix() + 60),
    };
    let mut obs = with_run(merged(&["a", "b", "c", "d"]), "gone", 1, deadline.clone());
    obs.tasks.insert(
        TaskKey::new("p", "leftover"),
        TaskObs {
            worktree: true,
            ..TaskObs::default()
        },
    );
    obs.tasks.insert(
        TaskKey::new("broken", "x"),
        TaskObs {
            run: Some(RunObs {
                attempt: 1,
                generation: None,
                state: deadline,
                rejected_events: 0,
            }),
            ..TaskObs::default()
        },
    );
    let spec_with_broken = Spec {
        invalid_plans: vec!["broken".into()],
        ..spec
    };
    let d = run(&spec_with_broken, &obs, &Status::default());
    assert_eq!(
        d.actions,
        [
            Action::Cancel {
                key: key("gone"),
                attempt: 1,
                reason: Reason::RemovedFromPlan
            },
            Action::Cleanup {
                key: key("leftover")
            },
        ]
    );
}

#[test]
fn actions_come_in_priority_order_and_respect_actions_per_tick() {
    let spec = spec();
    // a timed out (reap) and a queue item waits (promote).
    let obs = with_run(
        Observation::default(),
        "a",
        1,
        RunState::Running { deadline: NOW },
    );
    let status = status(vec![("a", st(&spec, "a", Phase::Running, 1))]);
    let spec = Spec {
        queue: spec_with(
            DIAMOND,
            &[(
                "planning/queue/fix.md",
                "---\nscope: narrow\ngate: auto\nallow_unchecked: true\n---\nFix it.\n",
            )],
        )
        .queue,
        ..spec
    };
    let one = Limits {
        actions_per_tick: 1,
        ..WIDE
    };
    let d = decide(&spec, &obs, &status, NOW, &one);
    assert_eq!(
        d.actions,
        [Action::Reap {
            key: key("a"),
            attempt: 1,
            reason: Reason::Timeout
        }]
    );
    assert_eq!(d.queue, [("fix".to_owned(), None, Reason::ActionsPerTick)]);
    let d = decide(&spec, &obs, &status, NOW, &WIDE);
    assert_eq!(
        d.actions.iter().map(Action::kind).collect::<Vec<_>>(),
        [ActionKind::Reap, ActionKind::Promote]
    );
    // Already promoted items are not promoted again.
    let mut promoted = obs;
    promoted.promoted.insert("fix".into());
    assert!(
        decide(&spec, &promoted, &status, NOW, &WIDE)
            .queue
            .is_empty()
    );
}

#[test]
fn agent_limits_defer_dispatches_with_a_reason() {
    let wide_plan = r#"
[plan]
name = "Wide"
[[tasks]]
name = "x"
description = "X"
scope = "narrow"
gate = "auto"
allow_unchecked = true
[[tasks]]
name = "y"
description = "Y"
scope = "narrow"
gate = "auto"
allow_unchecked = true
"#;
    let spec = spec_with(wide_plan, &[]);
    let two = Limits {
        max_agents: 1,
        ..WIDE
    };
    let d = decide(
        &spec,
        &Observation::default(),
        &Status::default(),
        NOW,
        &two,
    );
    assert_eq!(
        d.actions,
        [Action::Dispatch {
            key: key("x"),
            attempt: 1
        }]
    );
    assert_eq!(line(&d, "y"), (None, "max-agents", "pending"));

    let recent = AttemptRecord {
        number: 1,
        generation: String::new(),
        started_at: Timestamp::from_unix(NOW.unix() - 600),
        ended_at: None,
        outcome: None,
        tokens_in: 0,
        tokens_out: 0,
        cost_usd: 0.0,
        harness: None,
        model: None,
        cooldown_until: None,
    };
    let elsewhere = TaskStatus {
        attempts: vec![
            recent.clone(),
            AttemptRecord {
                started_at: Timestamp::from_unix(NOW.unix() - 7200),
                ..recent
            },
        ],
        ..TaskStatus::default()
    };
    let mut s = Status::default();
    s.plans.insert(
        "other".into(),
        PlanStatus {
            tasks: BTreeMap::from([("t".to_owned(), elsewhere)]),
            ..PlanStatus::default()
        },
    );
    let hourly = Limits {
        dispatches_per_hour: 2,
        ..WIDE
    };
    let d = decide(&spec, &Observation::default(), &s, NOW, &hourly);
    assert_eq!(
        d.actions,
        [Action::Dispatch {
            key: key("x"),
            attempt: 1
        }]
    );
    assert_eq!(line(&d, "y"), (None, "dispatch-rate-limited", "pending"));
    // It says until when: the attempt started ten minutes ago is an hour old
    // in fifty minutes, and then `y` can start; a watcher wakes then.
    let next = Timestamp::from_unix(NOW.unix() - 600 + 3600);
    let y = d.report.iter().find(|r| r.key == key("y")).expect("y");
    assert_eq!(
        y.reason,
        Reason::DispatchRateLimited {
            last_hour: 2,
            limit: 2,
            next_at: next
        }
    );
    assert!(
        y.reason.to_string().contains(&format!(
            "dispatches_per_hour 2/h reached (2 started in the last hour), next dispatch at {next}"
        )),
        "{}",
        y.reason
    );
    assert_eq!(d.wake_at, Some(next));
}

#[test]
fn every_reason_code_is_distinct() {
    let reasons = [
        Reason::Timeout,
        Reason::AgentVanished,
        Reason::AgentFinished,
        Reason::RemovedFromPlan,
        Reason::SpecChanged,
        Reason::GatePassed,
        Reason::Approved,
        Reason::Rejected,
        Reason::FailedBefore { failures: 1 },
        Reason::AttemptsExhausted { failures: 1 },
        Reason::Ready,
        Reason::Queued,
        Reason::CleanupAfterMerge,
        Reason::Running { deadline: NOW },
        Reason::PlanDraft,
        Reason::PlanPaused,
        Reason::WaitingOnDependency {
            tasks: vec!["x".into()],
        },
        Reason::DependencyBlocked { task: "x".into() },
        Reason::Backoff { until: NOW },
        Reason::ActionFailed {
            message: "x".into(),
            until: NOW,
        },
        Reason::AwaitingApproval,
        Reason::ApprovalStale {
            approved: SHA.into(),
            head: id(OTHER),
        },
        Reason::Escalated,
        Reason::Merged,
        Reason::StatusUnbacked { why: "x".into() },
        Reason::MaxAgents { running: 1 },
        Reason::DispatchRateLimited {
            last_hour: 1,
            limit: 1,
            next_at: NOW,
        },
        Reason::ActionsPerTick,
    ];
    let codes: std::collections::BTreeSet<&str> = reasons.iter().map(Reason::code).collect();
    assert_eq!(codes.len(), reasons.len());
    assert!(reasons.iter().all(|r| !r.to_string().is_empty()));
}

/// A small deterministic PRNG for the property test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn limits_are_never_exceeded_and_decisions_are_deterministic() {
    let tasks: String = (0..12)
        .map(|i| {
            let deps = if i > 2 { format!("depends_on = [\"t{}\"]\n", i / 3) } else { String::new() };
            format!("[[tasks]]\nname = \"t{i}\"\ndescription = \"T\"\nscope = \"narrow\"\ngate = \"auto\"\nallow_unchecked = true\n{deps}\n")
        })
        .collect();
    let spec = spec_with(&format!("[plan]\nname = \"Random\"\n\n{tasks}"), &[]);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..2000 {
        let limits = Limits {
            actions_per_tick: 1 + rng.below(4) as u32,
            max_agents: rng.below(5) as u32,
            dispatches_per_hour: rng.below(6) as u32,
        };
        let mut obs = Observation::default();
        let mut st = Status::default();
        let plan = st.plans.entry("p".into()).or_default();
        for i in 0..12 {
            let name = format!("t{i}");
            let phase = Phase::ALL[rng.below(Phase::ALL.len() as u64) as usize];
            let attempt = rng.below(3) as u32;
            let mut t = TaskStatus {
                phase,
                attempt,
                failures: rng.below(4) as u32,
                generation: if rng.below(5) == 0 {
                    "stale".into()
                } else {
                    generation(&spec, &name)
                },
                head: Some(id(SHA)),
                ..TaskStatus::default()
            };
            if rng.below(3) == 0 {
                t.attempts.push(AttemptRecord {
                    number: 1,
                    generation: String::new(),
                    started_at: Timestamp::from_unix(NOW.unix() - rng.below(7200) as i64),
                    ended_at: None,
                    outcome: None,
                    tokens_in: 0,
                    tokens_out: 0,
                    cost_usd: 0.0,
                    harness: None,
                    model: None,
                    cooldown_until: None,
                });
            }
            plan.tasks.insert(name.clone(), t);
            let state = match rng.below(5) {
                0 => None,
                1 => Some(RunState::Running {
                    deadline: Timestamp::from_unix(NOW.unix() + rng.below(120) as i64 - 60),
                }),
                2 => Some(RunState::Exited {
                    done: true,
                    exit_code: Some(0),
                }),
                3 => Some(RunState::Vanished),
                _ => None,
            };
            let ob = TaskObs {
                merged: rng.below(4) == 0,
                worktree: rng.below(2) == 0,
                branch_head: Some(id(SHA)),
                merged_as: None,
                unbacked: None,
                change: None,
                run: state.map(|state| RunObs {
                    attempt,
                    generation: None,
                    state,
                    rejected_events: 0,
                }),
            };
            obs.tasks.insert(key(&name), ob);
        }
        let running = obs.running() as u32;
        let last_hour = u32::try_from(starts_since(&st, NOW.minus(HOUR)).len()).expect("few");
        let d = decide(&spec, &obs, &st, NOW, &limits);
        assert!(d.actions.len() <= limits.actions_per_tick as usize);
        let starts = d.actions.iter().filter(|a| a.starts_agent()).count() as u32;
        assert!(
            starts == 0 || running + starts <= limits.max_agents,
            "{starts} starts with {running} running, limit {}",
            limits.max_agents
        );
        assert!(starts == 0 || last_hour + starts <= limits.dispatches_per_hour);
        let mut keys: Vec<_> = d.actions.iter().filter_map(Action::key).collect();
        let total = keys.len();
        keys.dedup();
        assert_eq!(
            keys.len(),
            total,
            "two actions for one task: {:?}",
            d.actions
        );
        let kinds: Vec<_> = d.actions.iter().map(Action::kind).collect();
        assert!(
            kinds.windows(2).all(|w| w[0] <= w[1]),
            "not in priority order: {kinds:?}"
        );
        assert_eq!(decide(&spec, &obs, &st, NOW, &limits), d);
    }
}

#[test]
fn a_task_escalated_before_its_first_attempt_restarts_when_edited() {
    let spec = spec();
    // Escalated at attempt 0 (its harness could not start), for this generation.
    let a = st(&spec, "a", Phase::Escalated, 0);
    let d = run(
        &spec,
        &Observation::default(),
        &status(vec![("a", a.clone())]),
    );
    assert_eq!(line(&d, "a"), (None, "escalated", "escalated"));
    // An edit (or `converge retry`) changes the generation: it starts again.
    let edited = TaskStatus {
        generation: "0000000000000000".into(),
        ..a
    };
    let d = run(&spec, &Observation::default(), &status(vec![("a", edited)]));
    assert_eq!(
        d.actions,
        [Action::Retry {
            key: key("a"),
            attempt: 1,
            reason: Reason::SpecChanged
        }]
    );
}

#[test]
fn queue_tasks_wait_for_the_plan_tasks_they_depend_on() {
    let files = PlanningFiles::from_texts([
        ("planning/goal.md", "g"),
        ("planning/converge.toml", CONFIG),
        ("planning/plans/p.toml", DIAMOND),
        (
            "planning/queue/done/fix.md",
            "---\nscope: narrow\ngate: auto\nallow_unchecked: true\ndepends_on: [p/a]\n---\nFix it.\n",
        ),
    ]);
    let spec = crate::spec::compile(&files).spec.expect("valid");
    let fix = TaskKey::new("queue", "fix");
    let d = run(&spec, &Observation::default(), &Status::default());
    let report = d.report.iter().find(|r| r.key == fix).expect("queue task");
    assert_eq!(
        report.reason,
        Reason::WaitingOnDependency {
            tasks: vec!["p/a".into()]
        }
    );
    let d = run(&spec, &merged(&["a"]), &Status::default());
    assert!(d.actions.contains(&Action::Dispatch {
        key: fix,
        attempt: 1
    }));
}

#[test]
fn a_merged_branch_is_kept_until_status_records_the_merge() {
    // Found by crash injection: a crash right after a merge lost its status;
    // cleanup then deleted the branch, the last proof of the merge, and the
    // task looked un-merged ("merge-lost") forever.
    let spec = spec();
    let obs = merged_with_branch("a");
    let unrecorded = st(&spec, "a", Phase::Passed, 1);
    let d = run(&spec, &obs, &status(vec![("a", unrecorded)]));
    assert!(
        !d.actions.contains(&Action::Cleanup { key: key("a") }),
        "{:?}",
        d.actions
    );
    assert_eq!(line(&d, "a"), (None, "merged", "merged"));
}

/// An observation by reconciler `me`, as when reconcilers share a remote.
fn as_me(mut obs: Observation) -> Observation {
    obs.reconciler = Some("me".to_owned());
    obs
}

fn claimed(mut st: TaskStatus, by: &str, attempt: u32, until: Timestamp) -> TaskStatus {
    st.claim = Some(Claim {
        by: by.to_owned(),
        attempt,
        until,
    });
    st
}

#[test]
fn another_reconcilers_running_attempt_is_left_alone_until_its_claim_lapses() {
    let spec = spec();
    let later = Timestamp::from_unix(NOW.unix() + 60);
    let a = claimed(st(&spec, "a", Phase::Running, 1), "them", 1, later);
    let status = status(vec![("a", a)]);
    // Without a local run record, a single-repository reconciler reaps ...
    let d = run(&spec, &Observation::default(), &status);
    assert_eq!(line(&d, "a"), (Some("reap"), "agent-vanished", "running"));
    // ... but the run is the other reconciler's: wait for it.
    let d = run(&spec, &as_me(Observation::default()), &status);
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert_eq!(line(&d, "a"), (None, "claimed-elsewhere", "running"));
    assert_eq!(d.wake_at, Some(later));
    assert!(reason_text(&d, "a").starts_with("reconciler `them` owns the attempt"));
    // Its own claim is no reason to wait.
    let mine = claimed(st(&spec, "a", Phase::Running, 1), "me", 1, later);
    let d = run(&spec, &as_me(Observation::default()), &status_of_a(mine));
    assert_eq!(line(&d, "a"), (Some("reap"), "agent-vanished", "running"));
    // Past the claim's deadline, the owner is presumed gone.
    let lapsed = claimed(st(&spec, "a", Phase::Running, 1), "them", 1, NOW);
    let d = run(&spec, &as_me(Observation::default()), &status_of_a(lapsed));
    assert_eq!(
        d.actions,
        [Action::Reap {
            key: key("a"),
            attempt: 1,
            reason: Reason::ClaimExpired { by: "them".into() }
        }]
    );
}

fn status_of_a(a: TaskStatus) -> Status {
    status(vec![("a", a)])
}

#[test]
fn a_claimed_retry_is_not_started_twice_and_lapses_at_its_deadline() {
    let spec = spec();
    let mut failed = st(&spec, "a", Phase::Failed, 1);
    failed.failures = 1;
    let later = Timestamp::from_unix(NOW.unix() + 60);
    let d = run(
        &spec,
        &as_me(Observation::default()),
        &status_of_a(claimed(failed.clone(), "them", 2, later)),
    );
    assert_eq!(line(&d, "a"), (None, "claimed-elsewhere", "failed"));
    let d = run(
        &spec,
        &as_me(Observation::default()),
        &status_of_a(claimed(failed.clone(), "them", 2, NOW)),
    );
    assert_eq!(
        line(&d, "a"),
        (Some("retry"), "retry-after-failure", "failed")
    );
    // A claim on the attempt that already failed is over: anyone may retry.
    let d = run(
        &spec,
        &as_me(Observation::default()),
        &status_of_a(claimed(failed, "them", 1, later)),
    );
    assert_eq!(
        line(&d, "a"),
        (Some("retry"), "retry-after-failure", "failed")
    );
}

#[test]
fn a_passed_attempt_stays_with_its_owner_until_it_is_edited() {
    let spec = spec();
    // Its commits exist only on the owner's machine: even a lapsed claim holds.
    let passed = claimed(st(&spec, "a", Phase::Passed, 1), "them", 1, NOW);
    let d = run(
        &spec,
        &as_me(Observation::default()),
        &status_of_a(passed.clone()),
    );
    assert_eq!(line(&d, "a"), (None, "claimed-elsewhere", "passed"));
    let mut edited = passed;
    edited.generation = "0000000000000000".into();
    let d = run(&spec, &as_me(Observation::default()), &status_of_a(edited));
    assert_eq!(line(&d, "a"), (Some("retry"), "spec-changed", "passed"));
}

#[test]
fn other_reconcilers_claims_count_against_max_agents() {
    let spec = spec_with(
        r#"
[plan]
name = "Wide"
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
[[tasks]]
name = "c"
description = "C"
scope = "narrow"
gate = "auto"
allow_unchecked = true
"#,
        &[],
    );
    let later = Timestamp::from_unix(NOW.unix() + 60);
    let status = status(vec![
        (
            "a",
            claimed(st(&spec, "a", Phase::Running, 1), "them", 1, later),
        ),
        // Claimed, not started yet: it will be running soon.
        (
            "b",
            claimed(st(&spec, "b", Phase::Pending, 0), "them", 1, later),
        ),
    ]);
    let two = Limits {
        actions_per_tick: 10,
        max_agents: 2,
        dispatches_per_hour: 100,
    };
    let d = decide(&spec, &as_me(Observation::default()), &status, NOW, &two);
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert_eq!(line(&d, "c"), (None, "max-agents", "pending"));
    let three = Limits {
        max_agents: 3,
        ..two
    };
    let d = decide(&spec, &as_me(Observation::default()), &status, NOW, &three);
    assert_eq!(
        d.actions,
        [Action::Dispatch {
            key: key("c"),
            attempt: 1
        }]
    );
}

#[test]
fn finished_worktrees_are_cleaned_up_before_new_ones_are_dispatched() {
    // With a steady stream of work, cleanup last starved: 424 merged worktrees
    // piled up in the 1,000-task benchmark and every tick slowed down.
    let spec = spec();
    let mut obs = merged_with_branch("a");
    obs.tasks.get_mut(&key("a")).expect("a").worktree = true;
    let mut a_status = st(&spec, "a", Phase::Merged, 1);
    a_status.merged_as = Some(id(OTHER));
    let one = Limits {
        actions_per_tick: 1,
        max_agents: 10,
        dispatches_per_hour: 100,
    };
    let d = decide(&spec, &obs, &status(vec![("a", a_status)]), NOW, &one);
    assert_eq!(d.actions, [Action::Cleanup { key: key("a") }]);
    assert_eq!(line(&d, "b"), (None, "actions-per-tick", "pending"));
}

#[test]
fn a_required_sandbox_that_cannot_be_enforced_holds_every_dispatch_back() {
    let unavailable = |mut obs: Observation| {
        obs.sandbox = Some(Availability::Unavailable {
            reason: "no Landlock".into(),
        });
        obs
    };
    let required = spec_with(
        DIAMOND,
        &[(
            "planning/converge.toml",
            "[invariants.test]\nkind = \"test_suite\"\ncommand = \"true\"\n[sandbox]\nenabled = true\nrequired = true\n",
        )],
    );
    let d = run(
        &required,
        &unavailable(Observation::default()),
        &Status::default(),
    );
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert_eq!(line(&d, "a"), (None, "sandbox-unavailable", "pending"));
    assert!(reason_text(&d, "a").ends_with("cannot be enforced here: no Landlock"));
    // Where it works, or when it is only enabled, dispatch goes ahead.
    let available = Observation {
        sandbox: Some(Availability::Available { abi: "V5".into() }),
        ..Observation::default()
    };
    assert_eq!(
        run(&required, &available, &Status::default()).actions.len(),
        1
    );
    let enabled = spec_with(
        DIAMOND,
        &[(
            "planning/converge.toml",
            "[invariants.test]\nkind = \"test_suite\"\ncommand = \"true\"\n[sandbox]\nenabled = true\n",
        )],
    );
    let d = run(
        &enabled,
        &unavailable(Observation::default()),
        &Status::default(),
    );
    assert_eq!(line(&d, "a"), (Some("dispatch"), "ready", "pending"));
}

#[test]
fn a_spent_daily_budget_holds_dispatch_until_the_next_utc_day() {
    let config = |budget: &str| {
        spec_with(
            DIAMOND,
            &[(
                "planning/converge.toml",
                format!("[invariants.test]\nkind = \"test_suite\"\ncommand = \"true\"\n[budget]\n{budget}\n").leak(),
            )],
        )
    };
    // Attempts started today (UTC) and yesterday: only today's count.
    let day = NOW.unix() - NOW.unix().rem_euclid(86_400);
    let record = |started: i64, tokens: u64, usd: f64| AttemptRecord {
        number: 1,
        generation: "g".into(),
        started_at: Timestamp::from_unix(started),
        ended_at: None,
        outcome: Some(AttemptOutcome::Failed(FailureCode::AgentFailed).into()),
        tokens_in: tokens,
        tokens_out: 0,
        cost_usd: usd,
        harness: None,
        model: None,
        cooldown_until: None,
    };
    let mut spent = st(&spec(), "a", Phase::Escalated, 1);
    spent.attempts = vec![record(day - 10, 5_000, 9.0), record(day + 10, 600, 1.5)];
    let status = Status {
        plans: BTreeMap::from([(
            "other".to_owned(),
            PlanStatus {
                tasks: BTreeMap::from([("x".to_owned(), spent)]),
                ..PlanStatus::default()
            },
        )]),
    };
    let tokens = config("tokens_per_day = 600");
    let d = run(&tokens, &Observation::default(), &status);
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert_eq!(line(&d, "a"), (None, "budget-spent", "pending"));
    assert!(
        reason_text(&d, "a").contains("600 of 600 tokens today"),
        "{}",
        reason_text(&d, "a")
    );
    assert_eq!(d.wake_at, Some(Timestamp::from_unix(day + 86_400)));
    let usd = config("usd_per_day = 1.5");
    assert_eq!(
        line(&run(&usd, &Observation::default(), &status), "a").1,
        "budget-spent"
    );
    // Yesterday's 9 USD and 5,000 tokens do not count against today.
    let roomy = config("tokens_per_day = 601\nusd_per_day = 2");
    assert_eq!(
        run(&roomy, &Observation::default(), &status).actions.len(),
        1
    );
    // The autonomy loop's planner attempts count too, on their day only.
    let planners = |d: i64| Observation {
        planner_spend: crate::observe::PlannerSpend {
            day: d / 86_400,
            micro_usd: 1_500_000,
            tokens: 1,
        },
        ..Observation::default()
    };
    assert_eq!(
        line(&run(&roomy, &planners(day), &status), "a").1,
        "budget-spent"
    );
    assert_eq!(
        run(&roomy, &planners(day - 86_400), &status).actions.len(),
        1
    );
}

#[test]
fn a_rate_limited_harness_cools_down_and_the_limited_attempt_is_not_counted() {
    let spec = spec();
    let harness = spec.plans["p"].task("a").expect("a").harness.clone();
    let until = Timestamp::from_unix(NOW.unix() + 600);
    let limited = |number: u32| AttemptRecord {
        number,
        generation: generation(&spec, "a"),
        started_at: NOW,
        ended_at: Some(NOW),
        outcome: Some(AttemptOutcome::Failed(FailureCode::RateLimited).into()),
        tokens_in: 0,
        tokens_out: 0,
        cost_usd: 0.0,
        harness: Some(harness.clone()),
        model: None,
        cooldown_until: Some(until),
    };
    // Another plan's attempt on the same harness hit the limit: `a` waits.
    let mut other = st(&spec, "a", Phase::Failed, 1);
    other.attempts = vec![limited(1)];
    let elsewhere = Status {
        plans: BTreeMap::from([(
            "other".to_owned(),
            PlanStatus {
                tasks: BTreeMap::from([("x".to_owned(), other)]),
                ..PlanStatus::default()
            },
        )]),
    };
    let d = run(&spec, &Observation::default(), &elsewhere);
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert_eq!(line(&d, "a"), (None, "harness-cooling", "pending"));
    assert!(
        reason_text(&d, "a").contains(&harness),
        "{}",
        reason_text(&d, "a")
    );
    assert_eq!(d.wake_at, Some(until));
    // Once the cooldown is over, it starts.
    let later = Timestamp::from_unix(until.unix() + 1);
    let d = decide(&spec, &Observation::default(), &elsewhere, later, &WIDE);
    assert_eq!(line(&d, "a"), (Some("dispatch"), "ready", "pending"));

    // `a`'s own attempt was limited, with every other attempt used up: it is
    // tried again after the cooldown, not escalated.
    let mut own = st(&spec, "a", Phase::Failed, 2);
    own.failures = spec.plans["p"].task("a").expect("a").retry_max - 1;
    own.next_eligible_at = Some(until);
    own.attempts = vec![limited(2)];
    let status = status(vec![("a", own)]);
    let d = run(&spec, &Observation::default(), &status);
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    let d = decide(&spec, &Observation::default(), &status, later, &WIDE);
    assert_eq!(line(&d, "a"), (Some("retry"), "rate-limit-over", "failed"));
    assert_eq!(
        actions_for(&d, "a"),
        [Action::Retry {
            key: key("a"),
            attempt: 3,
            reason: Reason::RateLimitOver { harness },
        }]
    );
}

/// A task one of whose actions failed, as the tick records it.
fn action_failed(mut st: TaskStatus, failures: u32, until: Timestamp) -> TaskStatus {
    st.action_failures = failures;
    st.next_eligible_at = Some(until);
    st.conditions.push(crate::status::Condition {
        kind: ACTION_FAILED.to_owned(),
        status: true,
        reason: "action-failed".to_owned(),
        message: "`merge p/a` failed: disk full".to_owned(),
        since: NOW,
    });
    st
}

#[test]
fn a_failed_action_waits_out_its_backoff_and_does_not_starve_the_others() {
    let spec = spec_with(
        "[plan]\nname = \"P\"\n[[tasks]]\nname = \"a\"\ndescription = \"A\"\nscope = \"narrow\"\ngate = \"auto\"\nallow_unchecked = true\n[[tasks]]\nname = \"b\"\ndescription = \"B\"\nscope = \"narrow\"\ngate = \"auto\"\nallow_unchecked = true\n",
        &[],
    );
    let later = NOW.plus(Duration::from_secs(60));
    // a passed and its merge failed; b passed too.
    let s = status(vec![
        (
            "a",
            action_failed(st(&spec, "a", Phase::Passed, 1), 1, later),
        ),
        ("b", st(&spec, "b", Phase::Passed, 1)),
    ]);
    let one = Limits {
        actions_per_tick: 1,
        ..WIDE
    };
    let d = decide(&spec, &Observation::default(), &s, NOW, &one);
    assert_eq!(line(&d, "a"), (None, "action-failed", "passed"));
    let why = d.report.iter().find(|r| r.key == key("a")).expect("a");
    assert!(why.reason.to_string().contains("disk full"), "{d:?}");
    // With one action per tick, b's merge is the one taken (a's would come
    // first by name), and the decision wakes when a's backoff ends.
    assert_eq!(
        d.actions,
        [Action::Merge {
            key: key("b"),
            head: id(SHA)
        }]
    );
    assert_eq!(d.wake_at, Some(later));
    // Once the backoff is over, the merge is tried again.
    let d = decide(&spec, &Observation::default(), &s, later, &one);
    assert_eq!(line(&d, "a"), (Some("merge"), "gate-passed", "passed"));
    // Escalated by failures in a row: a human decides, even for a merged
    // task whose cleanup kept failing; an edit starts over.
    let mut escalated = action_failed(st(&spec, "a", Phase::Escalated, 1), 3, later);
    escalated.next_eligible_at = None;
    let s = status(vec![("a", escalated.clone())]);
    let d = run(&spec, &merged_with_branch("a"), &s);
    assert_eq!(line(&d, "a"), (None, "escalated", "escalated"));
    escalated.generation = "edited".into();
    let s = status(vec![("a", escalated)]);
    let d = run(&spec, &Observation::default(), &s);
    assert_eq!(line(&d, "a"), (Some("retry"), "spec-changed", "escalated"));
}

#[test]
fn a_removed_task_whose_cleanup_keeps_failing_takes_no_slot() {
    let spec = spec();
    let later = NOW.plus(Duration::from_secs(60));
    let mut obs = Observation::default();
    obs.tasks.insert(
        key("gone"),
        TaskObs {
            worktree: true,
            branch_head: Some(id(SHA)),
            ..TaskObs::default()
        },
    );
    let d = run(&spec, &obs, &Status::default());
    assert_eq!(
        line(&d, "gone"),
        (Some("cleanup"), "removed-from-plan", "cancelled")
    );
    let held = status(vec![(
        "gone",
        action_failed(TaskStatus::default(), 1, later),
    )]);
    let d = run(&spec, &obs, &held);
    assert_eq!(line(&d, "gone"), (None, "action-failed", "cancelled"));
    assert!(!d.actions.iter().any(|a| a.kind() == ActionKind::Cleanup));
    assert_eq!(d.wake_at, Some(later));
    let mut escalated = action_failed(TaskStatus::default(), 3, later);
    escalated.phase = Phase::Escalated;
    escalated.next_eligible_at = None;
    let d = run(&spec, &obs, &status(vec![("gone", escalated)]));
    assert_eq!(line(&d, "gone"), (None, "escalated", "escalated"));
}

#[test]
fn a_waiting_task_names_every_dependency_not_merged() {
    let spec = spec();
    let d = run(&spec, &merged(&["a"]), &Status::default());
    let report = d.report.iter().find(|r| r.key == key("d")).expect("d");
    assert_eq!(
        report.reason,
        Reason::WaitingOnDependency {
            tasks: vec!["b".into(), "c".into()]
        }
    );
    assert_eq!(
        report.reason.to_string(),
        "waiting for `b` and `c` to merge"
    );
    let d = run(&spec, &merged(&["a", "b"]), &Status::default());
    let report = d.report.iter().find(|r| r.key == key("d")).expect("d");
    assert_eq!(report.reason.to_string(), "waiting for `c` to merge");
}
