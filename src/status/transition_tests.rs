//! Table tests of the transition: each outcome on each starting status it can
//! meet (a fresh task, one running attempt 2, one that failed twice, one a
//! human escalated at another generation).

use super::*;

/// Commit ids the tests name: the fork, the base an attempt starts from, a
/// judged head, a merge commit.
const FORK: &str = "ffffffffffffffffffffffffffffffffffffffff";
const BASE: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const H: &str = "1111111111111111111111111111111111111111";
const M: &str = "2222222222222222222222222222222222222222";

fn id(hex: &str) -> CommitId {
    hex.parse().expect("a commit id")
}

fn now() -> Timestamp {
    Timestamp::from_unix(10_000)
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_unix(secs)
}

fn backoff() -> Backoff {
    Backoff {
        base: Duration::from_secs(30),
        factor: 2.0,
        max: Duration::from_secs(300),
    }
}

fn failure(reason: &str) -> Failure {
    Failure {
        attempt: 0,
        reason: reason.parse().expect("a failure code"),
        message: format!("{reason} happened"),
        output_tail: None,
    }
}

fn ev() -> Evidence {
    Evidence {
        passed: true,
        exit_code: Some(0),
        advisory: false,
        duration_ms: 5,
        tree: "t".into(),
        output_tail: String::new(),
        log_digest: String::new(),
    }
}

fn record(number: u32) -> AttemptRecord {
    AttemptRecord {
        number,
        generation: "g1".into(),
        started_at: at(1_000),
        ended_at: None,
        outcome: None,
        tokens_in: 0,
        tokens_out: 0,
        cost_usd: 0.0,
        harness: Some("claude".into()),
        model: None,
        cooldown_until: None,
    }
}

/// The starting statuses, by name.
fn starts() -> Vec<(&'static str, TaskStatus)> {
    let running = TaskStatus {
        phase: Phase::Running,
        generation: "g1".into(),
        attempt: 2,
        failures: 1,
        branch: Some("converge/p/t".into()),
        head: Some(id(FORK)),
        attempts: vec![record(1), record(2)],
        ..TaskStatus::default()
    };
    let failed = TaskStatus {
        phase: Phase::Failed,
        failures: 2,
        next_eligible_at: Some(at(9_000)),
        last_failure: Some(failure("no-done")),
        ..running.clone()
    };
    let escalated = TaskStatus {
        phase: Phase::Escalated,
        generation: "g0".into(),
        action_failures: 4,
        ..failed.clone()
    };
    vec![
        ("fresh", TaskStatus::default()),
        ("running", running),
        ("failed", failed),
        ("escalated", escalated),
    ]
}

fn after(start: &TaskStatus, outcome: &Outcome) -> TaskStatus {
    let mut st = start.clone();
    apply(&mut st, outcome, now(), &backoff());
    st
}

fn attempt(st: &TaskStatus, n: u32) -> Option<&AttemptRecord> {
    st.attempts.iter().find(|a| a.number == n)
}

#[test]
fn backoff_grows_by_the_factor_up_to_the_maximum() {
    let b = backoff();
    let delays: Vec<u64> = (1..=6).map(|n| backoff_delay(&b, n).as_secs()).collect();
    assert_eq!(delays, [30, 60, 120, 240, 300, 300]);
    assert_eq!(backoff_delay(&b, 0).as_secs(), 30);
    assert_eq!(backoff_delay(&b, u32::MAX).as_secs(), 300);
}

#[test]
fn a_start_runs_the_attempt_and_counts_a_rejection_once() {
    let start = |edited, spec_changed, rejection: Option<Failure>, unconfined: Option<&str>| {
        Outcome::Started(Start {
            attempt: 3,
            generation: "g2".into(),
            harness: "codex".into(),
            model: Some("m".into()),
            branch: "converge/p/t".into(),
            fork: id(BASE),
            edited,
            spec_changed,
            rejection,
            unconfined: unconfined.map(str::to_owned),
        })
    };
    for (name, st) in starts() {
        let plain = after(&st, &start(false, false, None, None));
        assert_eq!(plain.phase, Phase::Running, "{name}");
        assert_eq!(
            (plain.attempt, plain.generation.as_str()),
            (3, "g2"),
            "{name}"
        );
        assert_eq!(plain.head, Some(id(BASE)), "{name}");
        assert_eq!(plain.next_eligible_at, None, "{name}");
        assert_eq!(
            plain.failures, st.failures,
            "{name}: a retry keeps the count"
        );
        assert_eq!(plain.last_failure, st.last_failure, "{name}");
        let new = attempt(&plain, 3).expect("recorded");
        assert_eq!(
            (new.started_at, new.harness.as_deref(), new.model.as_deref()),
            (now(), Some("codex"), Some("m"))
        );
        // An edit counts afresh; a restart for it forgets the last failure.
        let edited = after(&st, &start(true, false, None, None));
        assert_eq!(edited.failures, 0, "{name}");
        assert_eq!(edited.last_failure, st.last_failure, "{name}");
        let respecced = after(&st, &start(true, true, None, None));
        assert_eq!(respecced.last_failure, None, "{name}");
        // A rejection is one more failure, and the one the prompt names.
        let rejected = after(&st, &start(false, false, Some(failure("rejected")), None));
        assert_eq!(rejected.failures, st.failures + 1, "{name}");
        assert_eq!(rejected.last_failure, Some(failure("rejected")), "{name}");
        // An unconfined attempt says so; the next confined one clears it.
        let loose = after(&st, &start(false, false, None, Some("no landlock")));
        assert_eq!(loose.conditions.len(), 1);
        assert_eq!(
            (loose.conditions[0].kind.as_str(), loose.conditions[0].since),
            (UNCONFINED, now())
        );
        let tight = after(&loose, &start(false, false, None, None));
        assert!(tight.conditions.is_empty(), "{name}");
    }
    // The same attempt started again (adopted) keeps its one record.
    let (_, running) = starts().swap_remove(1);
    let again = after(
        &running,
        &Outcome::Started(Start {
            attempt: 2,
            generation: "g1".into(),
            harness: "claude".into(),
            model: None,
            branch: "converge/p/t".into(),
            fork: id(FORK),
            edited: false,
            spec_changed: false,
            rejection: None,
            unconfined: None,
        }),
    );
    assert_eq!(again.attempts, running.attempts);
}

#[test]
fn a_failure_counts_backs_off_and_closes_the_attempt() {
    let outcome = Outcome::Failed {
        attempt: 2,
        head: Some(id(H)),
        failure: failure("no-done"),
    };
    for (name, st) in starts() {
        let done = after(&st, &outcome);
        assert_eq!(done.phase, Phase::Failed, "{name}");
        assert_eq!(done.failures, st.failures + 1, "{name}");
        assert_eq!(
            done.next_eligible_at,
            Some(now().plus(backoff_delay(&backoff(), st.failures + 1))),
            "{name}"
        );
        assert_eq!(done.attempt, st.attempt.max(2), "{name}");
        assert_eq!(done.head, Some(id(H)), "{name}");
        let last = done.last_failure.clone().expect("failure");
        assert_eq!((last.attempt, last.reason.as_str()), (2, "no-done"));
        if let Some(run) = attempt(&done, 2) {
            assert_eq!(
                (run.ended_at, run.outcome()),
                (
                    Some(now()),
                    Some(AttemptOutcome::Failed(FailureCode::NoDone))
                )
            );
        }
    }
    // No head (a reap): the one recorded stays.
    let (_, running) = starts().swap_remove(1);
    let reaped = after(
        &running,
        &Outcome::Failed {
            attempt: 2,
            head: None,
            failure: failure("timeout"),
        },
    );
    assert_eq!(reaped.head, Some(id(FORK)));
}

#[test]
fn a_run_that_ended_keeps_its_exit_time_and_usage() {
    let (_, running) = starts().swap_remove(1);
    let mut st = running;
    for outcome in [
        Outcome::RunEnded {
            attempt: 2,
            at: at(5_000),
        },
        Outcome::Usage {
            attempt: 2,
            tokens_in: 10,
            tokens_out: 20,
            cost_usd: 0.5,
        },
        Outcome::Failed {
            attempt: 2,
            head: None,
            failure: failure("no-done"),
        },
    ] {
        apply(&mut st, &outcome, now(), &backoff());
    }
    let run = attempt(&st, 2).expect("record");
    assert_eq!(
        run.ended_at,
        Some(at(5_000)),
        "the agent's exit, not the gate's time"
    );
    assert_eq!((run.tokens_in, run.tokens_out, run.cost_usd), (10, 20, 0.5));
    // An attempt without a record changes nothing.
    let fresh = after(
        &TaskStatus::default(),
        &Outcome::RunEnded {
            attempt: 1,
            at: at(5),
        },
    );
    assert_eq!(fresh, TaskStatus::default());
}

#[test]
fn a_gate_records_its_evidence_and_its_verdict() {
    let evidence: BTreeMap<String, Evidence> = [("lint".to_owned(), ev())].into_iter().collect();
    let gated = |verdict| Outcome::Gated {
        attempt: 2,
        head: id(H),
        evidence: evidence.clone(),
        verdict,
    };
    for (name, st) in starts() {
        for (verdict, phase) in [
            (Verdict::Passed, Phase::Passed),
            (Verdict::AwaitingApproval, Phase::AwaitingApproval),
        ] {
            let done = after(&st, &gated(verdict));
            assert_eq!(done.phase, phase, "{name}");
            assert_eq!(done.gate, evidence, "{name}");
            assert_eq!(done.next_eligible_at, None, "{name}");
            assert_eq!(done.failures, st.failures, "{name}");
            assert_eq!(
                attempt(&done, 2).and_then(|r| r.outcome()),
                attempt(&st, 2).map(|_| AttemptOutcome::Passed)
            );
        }
        let done = after(&st, &gated(Verdict::Failed(failure("invariant-failed"))));
        assert_eq!(done.phase, Phase::Failed, "{name}");
        assert_eq!(
            done.gate, evidence,
            "{name}: the evidence of a failed gate stays"
        );
        assert_eq!(done.failures, st.failures + 1, "{name}");
        assert!(done.next_eligible_at.is_some(), "{name}");
    }
}

#[test]
fn a_rate_limit_cools_the_harness_down_without_counting() {
    for (name, st) in starts() {
        let done = after(
            &st,
            &Outcome::RateLimited {
                attempt: 2,
                head: id(H),
                until: at(20_000),
                failure: failure("rate-limited"),
            },
        );
        assert_eq!(done.phase, Phase::Failed, "{name}");
        assert_eq!(done.failures, st.failures, "{name}");
        assert_eq!(done.next_eligible_at, Some(at(20_000)), "{name}");
        assert_eq!(done.last_failure, Some(failure("rate-limited")), "{name}");
        if let Some(run) = attempt(&done, 2) {
            assert_eq!(run.cooldown_until, Some(at(20_000)));
            assert_eq!(
                run.outcome(),
                Some(AttemptOutcome::Failed(FailureCode::RateLimited))
            );
        }
    }
}

#[test]
fn escalations_hand_the_task_to_a_human() {
    for (name, st) in starts() {
        let refused = after(
            &st,
            &Outcome::Refused {
                attempt: 2,
                head: id(H),
                failure: failure("authentication"),
            },
        );
        assert_eq!(refused.phase, Phase::Escalated, "{name}");
        assert_eq!(refused.failures, st.failures + 1, "{name}");
        assert_eq!(
            refused.next_eligible_at, st.next_eligible_at,
            "{name}: as before the transition, refused credentials leave the backoff"
        );

        let unavailable = after(
            &st,
            &Outcome::Unavailable {
                generation: "g9".into(),
                failure: failure("harness-unavailable"),
            },
        );
        assert_eq!(unavailable.phase, Phase::Escalated, "{name}");
        assert_eq!(unavailable.generation, "g9", "{name}");
        assert_eq!(unavailable.failures, st.failures, "{name}: nothing ran");
        assert_eq!(unavailable.attempts, st.attempts, "{name}");

        let decided = after(&st, &Outcome::Escalated { rejection: None });
        assert_eq!(decided.phase, Phase::Escalated, "{name}");
        assert_eq!(decided.next_eligible_at, None, "{name}");
        assert_eq!(decided.failures, st.failures, "{name}");
        let rejected = after(
            &st,
            &Outcome::Escalated {
                rejection: Some(failure("rejected")),
            },
        );
        assert_eq!(rejected.failures, st.failures + 1, "{name}");
        assert_eq!(rejected.last_failure, Some(failure("rejected")), "{name}");
    }
}

#[test]
fn merges_cancels_and_cleanups_end_the_task_as_they_should() {
    let evidence: BTreeMap<String, Evidence> =
        [("merge:e2e".to_owned(), ev())].into_iter().collect();
    for (name, st) in starts() {
        let mut with_gate = st.clone();
        with_gate.gate.insert("lint".into(), ev());
        let checked = after(&with_gate, &Outcome::MergeEvidence(evidence.clone()));
        assert_eq!(checked.gate.len(), 2, "{name}: added next to the gate's");
        assert_eq!(checked.phase, st.phase, "{name}");

        let merged = after(
            &st,
            &Outcome::Merged {
                attempt: 2,
                commit: id(M),
            },
        );
        assert_eq!(merged.phase, Phase::Merged, "{name}");
        assert_eq!(merged.merged_as, Some(id(M)), "{name}");
        assert_eq!(merged.next_eligible_at, None, "{name}");
        assert_eq!(merged.failures, st.failures, "{name}");

        let found = after(&st, &Outcome::FoundMerged { commit: id(H) });
        assert_eq!((found.phase, found.merged_as), (Phase::Merged, Some(id(H))));
        assert_eq!(found.attempts, st.attempts, "{name}");

        let cancelled = after(&st, &Outcome::Cancelled { attempt: 2 });
        assert_eq!(cancelled.phase, Phase::Cancelled, "{name}");
        assert_eq!(cancelled.failures, st.failures, "{name}");
        if let Some(run) = attempt(&cancelled, 2) {
            assert_eq!(run.outcome(), Some(AttemptOutcome::Cancelled));
        }
        assert_eq!(after(&st, &Outcome::Forgotten), st, "{name}");
    }
}

#[test]
fn failed_actions_back_off_then_escalate_and_success_clears_them() {
    let retry = Outcome::ActionFailed(ActionFailure {
        count: 2,
        message: "`gate p/t` failed: disk full (failure 2 of 4 in a row)".into(),
        then: AfterFailure::Retry { until: at(10_060) },
    });
    let escalate = Outcome::ActionFailed(ActionFailure {
        count: 4,
        message: "`gate p/t` failed: disk full (failure 4 of 4 in a row)".into(),
        then: AfterFailure::Escalate {
            generation: Some("g1".into()),
            failure: failure("action-failed"),
        },
    });
    for (name, st) in starts() {
        let backed = after(&st, &retry);
        assert_eq!(backed.action_failures, 2, "{name}");
        assert_eq!(backed.next_eligible_at, Some(at(10_060)), "{name}");
        assert_eq!(backed.phase, st.phase, "{name}");
        assert_eq!(
            backed.failures, st.failures,
            "{name}: not the attempt's failure"
        );
        let condition = &backed.conditions[0];
        assert_eq!(
            (condition.kind.as_str(), condition.reason.as_str()),
            (crate::decide::ACTION_FAILED.as_str(), "action-failed")
        );
        // Again: the one condition, its message updated, its `since` kept.
        let again = {
            let mut s = backed.clone();
            apply(&mut s, &escalate, at(99_999), &backoff());
            s
        };
        assert_eq!(again.conditions.len(), 1, "{name}");
        assert_eq!(again.conditions[0].since, now(), "{name}");
        assert!(again.conditions[0].message.contains("4 of 4"), "{name}");
        assert_eq!(again.phase, Phase::Escalated, "{name}");
        assert_eq!(again.generation, "g1", "{name}");
        assert_eq!(again.next_eligible_at, None, "{name}");
        assert_eq!(again.last_failure, Some(failure("action-failed")), "{name}");

        let cleared = after(&again, &Outcome::ActionSucceeded);
        assert_eq!(cleared.action_failures, 0, "{name}");
        assert!(cleared.conditions.is_empty(), "{name}");
        assert_eq!(
            cleared.phase,
            Phase::Escalated,
            "{name}: success only clears"
        );
    }
    // A task removed from its plan keeps its generation when it escalates.
    let removed = Outcome::ActionFailed(ActionFailure {
        count: 4,
        message: "m".into(),
        then: AfterFailure::Escalate {
            generation: None,
            failure: failure("action-failed"),
        },
    });
    let (_, running) = starts().swap_remove(1);
    assert_eq!(after(&running, &removed).generation, "g1");
}

#[test]
fn outcomes_apply_to_the_task_in_its_plan() {
    let mut status = Status::default();
    let key = ("p", "t");
    // Success on a task status does not have: nothing is created.
    apply_to(
        &mut status,
        key,
        &[Outcome::ActionSucceeded],
        now(),
        &backoff(),
    );
    assert!(status.plans.is_empty());
    apply_to(
        &mut status,
        key,
        &[Outcome::Escalated { rejection: None }],
        now(),
        &backoff(),
    );
    assert_eq!(
        status.task("p", "t").map(|s| s.phase),
        Some(Phase::Escalated)
    );
    apply_to(&mut status, key, &[Outcome::Forgotten], now(), &backoff());
    assert!(status.task("p", "t").is_none());
    assert!(status.plans.contains_key("p"), "the plan's table stays");
    // Forgetting a task of a plan status does not have creates nothing.
    apply_to(
        &mut status,
        ("q", "t"),
        &[Outcome::Forgotten],
        now(),
        &backoff(),
    );
    assert!(!status.plans.contains_key("q"));
}

#[test]
fn a_wait_for_checks_counts_from_its_own_start_not_an_earlier_wait() {
    let mut st = TaskStatus {
        change: Some(crate::status::ChangeRecord {
            number: 7,
            pushed: id("1111111111111111111111111111111111111111"),
            opened_at: at(0),
            waiting: None,
            hands_off: None,
            updated: None,
        }),
        ..TaskStatus::default()
    };
    let wait = |why: &str, until: i64| Outcome::MergeWaiting {
        why: why.into(),
        until: at(until),
    };
    let since = |st: &TaskStatus| {
        st.change
            .as_ref()
            .and_then(|c| c.waiting.as_ref())
            .map(|w| w.since)
    };
    apply(
        &mut st,
        &wait("GitHub says it is blocked: a required review", 60),
        at(0),
        &backoff(),
    );
    apply(
        &mut st,
        &wait("GitHub says it is blocked: a required review", 3600),
        at(1800),
        &backoff(),
    );
    assert_eq!(since(&st), Some(at(0)), "the review wait goes on");
    // Three hours later a check is re-run: its wait starts now.
    apply(
        &mut st,
        &wait("required checks `build` (running) on 1111111", 10_860),
        at(10_800),
        &backoff(),
    );
    assert_eq!(since(&st), Some(at(10_800)));
    apply(
        &mut st,
        &wait("required checks `build` (running) on 1111111", 10_920),
        at(10_860),
        &backoff(),
    );
    assert_eq!(since(&st), Some(at(10_800)), "the checks wait goes on");
}
