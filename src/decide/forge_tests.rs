//! Table tests for `decide` with the GitHub forge: proposals, reviews, the
//! merge's waiting, hands-off, and the limits on pull requests.

use std::collections::BTreeMap;

use super::*;
use crate::model::CommitId;
use crate::observe::{ChangeObs, ChangeState, Feedback, ForgeObs};
use crate::spec::load::PlanningFiles;
use crate::status::{ChangeRecord, ChangeWait, PlanStatus};

const CONFIG: &str = "[reconcile]\nremote = \"origin\"\n[forge]\nkind = \"github\"\nrepo = \"acme/widgets\"\nmax_open_prs = 2\nprs_per_hour = 1\n";

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
name = "h"
description = "H"
scope = "narrow"
gate = "human_review"
retry_max = 1
[[tasks]]
name = "n"
description = "N"
scope = "narrow"
gate = "auto"
allow_unchecked = true
"#;

const NOW: Timestamp = Timestamp::from_unix(1_800_000_000);
const SHA: &str = "1111111111111111111111111111111111111111";
const OLD: &str = "2222222222222222222222222222222222222222";
const THEIRS: &str = "3333333333333333333333333333333333333333";

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

fn passed(spec: &Spec, task: &str, change: Option<ChangeRecord>) -> TaskStatus {
    TaskStatus {
        phase: Phase::Passed,
        attempt: 1,
        generation: spec.plans["p"].task(task).expect("task").generation.clone(),
        head: Some(id(SHA)),
        change,
        ..TaskStatus::default()
    }
}

fn record(number: u64, pushed: &str) -> ChangeRecord {
    ChangeRecord {
        number,
        pushed: id(pushed),
        opened_at: NOW.minus(std::time::Duration::from_secs(7200)),
        waiting: None,
        hands_off: None,
        updated: None,
    }
}

fn status(entries: Vec<(&str, TaskStatus)>) -> Status {
    Status {
        plans: BTreeMap::from([(
            "p".to_owned(),
            PlanStatus {
                tasks: entries
                    .into_iter()
                    .map(|(t, s)| (t.to_owned(), s))
                    .collect(),
                ..PlanStatus::default()
            },
        )]),
    }
}

fn open(number: u64, head: &str) -> ChangeObs {
    ChangeObs {
        number,
        head: id(head),
        state: ChangeState::Open,
        merged_as: None,
        approved_by: None,
        changes_requested: None,
        update_of: None,
    }
}

fn observed(changes: Vec<(&str, ChangeObs)>) -> Observation {
    let mut obs = Observation {
        forge: ForgeObs::Observed {
            open: u32::try_from(changes.len()).expect("few"),
        },
        ..Observation::default()
    };
    for (task, change) in changes {
        let entry = obs.tasks.entry(key(task)).or_default();
        entry.branch_head = Some(id(SHA));
        entry.change = Some(change);
    }
    obs
}

const WIDE: Limits = Limits {
    actions_per_tick: 100,
    max_agents: 100,
    dispatches_per_hour: 100,
};

fn line(d: &Decision, task: &str) -> (Option<&'static str>, &'static str) {
    let r = d
        .report
        .iter()
        .find(|r| r.key == key(task))
        .expect("reported");
    (r.action.map(ActionKind::as_str), r.reason.code())
}

fn action(d: &Decision, task: &str) -> Option<Action> {
    d.actions
        .iter()
        .find(|a| a.key() == Some(&key(task)))
        .cloned()
}

#[test]
fn passed_work_is_proposed_before_it_is_merged() {
    let spec = spec();
    // No change yet: one is opened.
    let s = status(vec![("a", passed(&spec, "a", None))]);
    let d = decide(&spec, &observed(vec![]), &s, NOW, &WIDE);
    assert_eq!(
        action(&d, "a"),
        Some(Action::Propose {
            key: key("a"),
            head: id(SHA),
            opens: true
        })
    );
    // Its change shows the gated head: merged through the forge.
    let s = status(vec![("a", passed(&spec, "a", Some(record(7, SHA))))]);
    let d = decide(&spec, &observed(vec![("a", open(7, SHA))]), &s, NOW, &WIDE);
    assert_eq!(line(&d, "a"), (Some("merge"), "gate-passed"));
    // Status lost the record of the change at the gated head (a status push
    // that lost a race): proposed again, which finds it, instead of a merge
    // that has no number to merge.
    let s = status(vec![("a", passed(&spec, "a", None))]);
    let d = decide(&spec, &observed(vec![("a", open(7, SHA))]), &s, NOW, &WIDE);
    assert_eq!(
        action(&d, "a"),
        Some(Action::Propose {
            key: key("a"),
            head: id(SHA),
            opens: false
        })
    );
    // A new attempt passed: the open change is updated, not another opened.
    let s = status(vec![("a", passed(&spec, "a", Some(record(7, OLD))))]);
    let d = decide(&spec, &observed(vec![("a", open(7, OLD))]), &s, NOW, &WIDE);
    assert_eq!(
        action(&d, "a"),
        Some(Action::Propose {
            key: key("a"),
            head: id(SHA),
            opens: false
        })
    );
}

#[test]
fn someone_elses_push_or_close_makes_converge_keep_its_hands_off() {
    let spec = spec();
    let s = status(vec![("a", passed(&spec, "a", Some(record(7, SHA))))]);
    let d = decide(
        &spec,
        &observed(vec![("a", open(7, THEIRS))]),
        &s,
        NOW,
        &WIDE,
    );
    assert_eq!(line(&d, "a"), (None, "hands-off"));
    assert!(action(&d, "a").is_none());
    let mut closed = open(7, SHA);
    closed.state = ChangeState::Closed;
    let d = decide(&spec, &observed(vec![("a", closed)]), &s, NOW, &WIDE);
    assert_eq!(line(&d, "a"), (None, "change-closed"));
    // Recorded hands-off stays until a person acts.
    let mut r = record(7, SHA);
    r.hands_off = Some("someone else pushed".into());
    let s = status(vec![("a", passed(&spec, "a", Some(r)))]);
    let d = decide(&spec, &observed(vec![("a", open(7, SHA))]), &s, NOW, &WIDE);
    assert_eq!(line(&d, "a"), (None, "hands-off"));
}

#[test]
fn a_forge_that_cannot_be_asked_holds_back_only_what_needs_it() {
    let spec = spec();
    let until = NOW.plus(std::time::Duration::from_secs(90));
    let obs = Observation {
        forge: ForgeObs::Unavailable {
            why: "rate limited".into(),
            until: Some(until),
        },
        ..Observation::default()
    };
    let s = status(vec![("a", passed(&spec, "a", None))]);
    let d = decide(&spec, &obs, &s, NOW, &WIDE);
    assert_eq!(line(&d, "a"), (None, "forge-cooling"));
    assert_eq!(d.wake_at, Some(until));
    // Others still start.
    assert_eq!(line(&d, "h"), (Some("dispatch"), "ready"));
}

#[test]
fn reviews_at_the_head_are_the_human_gate() {
    let spec = spec();
    let mut h = passed(&spec, "h", Some(record(9, SHA)));
    h.phase = Phase::AwaitingApproval;
    let s = status(vec![("h", h.clone())]);
    let d = decide(&spec, &observed(vec![("h", open(9, SHA))]), &s, NOW, &WIDE);
    assert_eq!(line(&d, "h"), (None, "awaiting-approval"));
    let mut approved = open(9, SHA);
    approved.approved_by = Some("ann".into());
    let d = decide(&spec, &observed(vec![("h", approved)]), &s, NOW, &WIDE);
    assert_eq!(line(&d, "h"), (Some("merge"), "review-approved"));
    let mut asked = open(9, SHA);
    asked.changes_requested = Some(Feedback {
        by: "ann".into(),
        text: "src/lib.rs:3: no".into(),
    });
    let d = decide(&spec, &observed(vec![("h", asked.clone())]), &s, NOW, &WIDE);
    assert_eq!(
        action(&d, "h"),
        Some(Action::Retry {
            key: key("h"),
            attempt: 2,
            reason: Reason::ChangesRequested {
                number: 9,
                by: "ann".into(),
                feedback: "src/lib.rs:3: no".into()
            }
        })
    );
    // The last retry `retry_max` allows is used up: a human decides.
    h.failures = 1;
    let d = decide(
        &spec,
        &observed(vec![("h", asked)]),
        &status(vec![("h", h)]),
        NOW,
        &WIDE,
    );
    assert_eq!(line(&d, "h"), (Some("escalate"), "changes-requested"));
}

#[test]
fn a_waiting_merge_is_looked_at_again_when_its_time_comes() {
    let spec = spec();
    let until = NOW.plus(std::time::Duration::from_secs(60));
    let mut r = record(7, SHA);
    r.waiting = Some(ChangeWait {
        why: "required checks `build` (not reported)".into(),
        since: NOW,
        until,
    });
    let s = status(vec![("a", passed(&spec, "a", Some(r)))]);
    let obs = observed(vec![("a", open(7, SHA))]);
    let d = decide(&spec, &obs, &s, NOW, &WIDE);
    assert_eq!(line(&d, "a"), (None, "awaiting-checks"));
    assert_eq!(d.wake_at, Some(until));
    let d = decide(&spec, &obs, &s, until, &WIDE);
    assert_eq!(line(&d, "a"), (Some("merge"), "gate-passed"));
}

#[test]
fn open_pull_requests_and_their_rate_hold_back_proposals_and_dispatch() {
    let spec = spec();
    // Two open (the limit): nothing opens, no first attempt starts.
    let s = status(vec![
        ("a", passed(&spec, "a", None)),
        ("x", TaskStatus::default()),
    ]);
    let mut obs = observed(vec![]);
    obs.forge = ForgeObs::Observed { open: 2 };
    let d = decide(&spec, &obs, &s, NOW, &WIDE);
    assert_eq!(line(&d, "a"), (None, "change-limit"));
    assert_eq!(line(&d, "n"), (None, "change-limit"));
    // One opened in the last hour (`prs_per_hour = 1`): the next waits.
    let mut recent = record(3, OLD);
    recent.opened_at = NOW.minus(std::time::Duration::from_secs(600));
    let mut other = passed(&spec, "n", Some(recent));
    other.phase = Phase::Running;
    let s = status(vec![("a", passed(&spec, "a", None)), ("n", other)]);
    let mut obs = observed(vec![]);
    obs.forge = ForgeObs::Observed { open: 1 };
    let d = decide(&spec, &obs, &s, NOW, &WIDE);
    assert_eq!(line(&d, "a"), (None, "change-rate-limited"));
    assert_eq!(
        d.wake_at,
        Some(NOW.plus(std::time::Duration::from_secs(3000)))
    );
}

#[test]
fn one_pull_request_merges_a_tick_the_oldest_first() {
    let spec = spec();
    // By name `a` comes first; by age `n` (#4) is the oldest, then `a` (#8).
    let s = status(vec![
        ("a", passed(&spec, "a", Some(record(8, SHA)))),
        ("n", passed(&spec, "n", Some(record(4, SHA)))),
    ]);
    let obs = observed(vec![("a", open(8, SHA)), ("n", open(4, SHA))]);
    let d = decide(&spec, &obs, &s, NOW, &WIDE);
    assert_eq!(line(&d, "n"), (Some("merge"), "gate-passed"));
    assert_eq!(line(&d, "a"), (None, "merge-queued"));
    let merges = d
        .actions
        .iter()
        .filter(|a| a.kind() == ActionKind::Merge)
        .count();
    assert_eq!(merges, 1, "{:?}", d.actions);
    let why = d.report.iter().find(|r| r.key == key("a")).expect("a");
    assert!(why.reason.to_string().contains("#4"), "{}", why.reason);
    // Once #4 merged, #8 goes next.
    let mut merged = passed(&spec, "n", Some(record(4, SHA)));
    merged.phase = Phase::Merged;
    let s = status(vec![
        ("a", passed(&spec, "a", Some(record(8, SHA)))),
        ("n", merged),
    ]);
    let obs = observed(vec![("a", open(8, SHA))]);
    let d = decide(&spec, &obs, &s, NOW, &WIDE);
    assert_eq!(line(&d, "a"), (Some("merge"), "gate-passed"));
}

#[test]
fn converges_update_of_a_change_with_the_base_is_its_own_not_someone_elses() {
    const UPDATE: &str = "4444444444444444444444444444444444444444";
    let spec = spec();
    // Recorded: the change at the update merges (the forge merges the
    // update in place of the gated head).
    let mut r = record(7, SHA);
    r.updated = Some(id(UPDATE));
    let s = status(vec![("a", passed(&spec, "a", Some(r.clone())))]);
    let d = decide(
        &spec,
        &observed(vec![("a", open(7, UPDATE))]),
        &s,
        NOW,
        &WIDE,
    );
    assert_eq!(line(&d, "a"), (Some("merge"), "gate-passed"));
    // Not recorded (converge stopped after pushing it), but the forge
    // recognised it: still converge's.
    let s = status(vec![("a", passed(&spec, "a", Some(record(7, SHA))))]);
    let mut recognised = open(7, UPDATE);
    recognised.update_of = Some(id(SHA));
    let d = decide(&spec, &observed(vec![("a", recognised)]), &s, NOW, &WIDE);
    assert_eq!(line(&d, "a"), (Some("merge"), "gate-passed"));
    // An update of something converge never stood behind is someone else's.
    let mut foreign = open(7, UPDATE);
    foreign.update_of = Some(id(THEIRS));
    let d = decide(&spec, &observed(vec![("a", foreign)]), &s, NOW, &WIDE);
    assert_eq!(line(&d, "a"), (None, "hands-off"));
    // A new attempt passed after an update: the change is updated with the
    // new work, not abandoned as someone else's.
    let s = status(vec![("a", passed(&spec, "a", Some(r)))]);
    let mut newer = passed(&spec, "a", None);
    newer.head = Some(id(OLD));
    newer.change = s.plans["p"].tasks["a"].change.clone();
    let s = status(vec![("a", newer)]);
    let d = decide(
        &spec,
        &observed(vec![("a", open(7, UPDATE))]),
        &s,
        NOW,
        &WIDE,
    );
    assert_eq!(
        action(&d, "a"),
        Some(Action::Propose {
            key: key("a"),
            head: id(OLD),
            opens: false
        })
    );
}

#[test]
fn newer_work_after_a_closed_pull_request_goes_to_a_new_one() {
    let spec = spec();
    let mut closed = open(7, OLD);
    closed.state = ChangeState::Closed;
    // The closed pull request showed this very work: it waits for a person.
    let s = status(vec![("a", passed(&spec, "a", Some(record(7, SHA))))]);
    let mut same = closed.clone();
    same.head = id(SHA);
    let d = decide(&spec, &observed(vec![("a", same)]), &s, NOW, &WIDE);
    assert_eq!(line(&d, "a"), (None, "change-closed"));
    // A retry passed since (the gated head is newer than what it showed):
    // a new pull request opens.
    let s = status(vec![("a", passed(&spec, "a", Some(record(7, OLD))))]);
    let d = decide(
        &spec,
        &observed(vec![("a", closed.clone())]),
        &s,
        NOW,
        &WIDE,
    );
    let opens = Action::Propose {
        key: key("a"),
        head: id(SHA),
        opens: true,
    };
    assert_eq!(action(&d, "a"), Some(opens.clone()));
    // Likewise after hands-off, once the person closed the pull request;
    // while it is open, converge keeps its hands off even newer work.
    let mut r = record(7, OLD);
    r.hands_off = Some("someone else pushed".into());
    let s = status(vec![("a", passed(&spec, "a", Some(r)))]);
    let d = decide(&spec, &observed(vec![("a", closed)]), &s, NOW, &WIDE);
    assert_eq!(action(&d, "a"), Some(opens));
    let d = decide(
        &spec,
        &observed(vec![("a", open(7, THEIRS))]),
        &s,
        NOW,
        &WIDE,
    );
    assert_eq!(line(&d, "a"), (None, "hands-off"));
}

#[test]
fn a_passed_head_on_the_forge_is_anyones_to_carry_on_whoever_claimed_it() {
    let spec = spec();
    let claim = |until: Timestamp| crate::status::Claim {
        by: "gone-runner".into(),
        attempt: 1,
        until,
    };
    let mut obs = observed(vec![("a", open(7, SHA))]);
    obs.reconciler = Some("me".into());
    // The claimant pushed the gated head and recorded its pull request: the
    // work lives on the forge, so another reconciler merges it.
    let mut st = passed(&spec, "a", Some(record(7, SHA)));
    st.claim = Some(claim(NOW.plus(std::time::Duration::from_secs(600))));
    let d = decide(&spec, &obs, &status(vec![("a", st)]), NOW, &WIDE);
    assert_eq!(line(&d, "a"), (Some("merge"), "gate-passed"));
    // Pushed, its pull request open at the head, and the claimant lost
    // before it recorded that: proposed again (which records it).
    let mut st = passed(&spec, "a", None);
    st.claim = Some(claim(NOW.plus(std::time::Duration::from_secs(600))));
    let d = decide(&spec, &obs, &status(vec![("a", st)]), NOW, &WIDE);
    assert_eq!(line(&d, "a"), (Some("propose"), "gate-passed"));
    // Not pushed yet (the head exists only where it was gated): its owner's
    // while the claim holds.
    let mut st = passed(&spec, "a", None);
    st.claim = Some(claim(NOW.plus(std::time::Duration::from_secs(1))));
    let mut obs = observed(vec![]);
    obs.reconciler = Some("me".into());
    let d = decide(&spec, &obs, &status(vec![("a", st.clone())]), NOW, &WIDE);
    assert_eq!(line(&d, "a"), (None, "claimed-elsewhere"));
    // The claim lapsed and GitHub shows nothing of it: the owner is gone
    // with the work, which is reaped and done again.
    st.claim = Some(claim(NOW.minus(std::time::Duration::from_secs(1))));
    let d = decide(&spec, &obs, &status(vec![("a", st.clone())]), NOW, &WIDE);
    assert_eq!(line(&d, "a"), (Some("reap"), "claim-expired"));
    // Unless GitHub could not be asked: then it waits.
    obs.forge = ForgeObs::Unavailable {
        why: "502".into(),
        until: None,
    };
    let d = decide(&spec, &obs, &status(vec![("a", st)]), NOW, &WIDE);
    assert_ne!(line(&d, "a").0, Some("reap"));
}

#[test]
fn another_reconcilers_claim_is_no_reason_for_wait_to_wait() {
    let spec = spec();
    let mut st = TaskStatus {
        phase: Phase::Running,
        attempt: 1,
        generation: spec.plans["p"].task("a").expect("a").generation.clone(),
        ..TaskStatus::default()
    };
    let until = NOW.plus(std::time::Duration::from_secs(600));
    st.claim = Some(crate::status::Claim {
        by: "other".into(),
        attempt: 1,
        until,
    });
    let mut obs = observed(vec![]);
    obs.reconciler = Some("me".into());
    let d = decide(&spec, &obs, &status(vec![("a", st)]), NOW, &WIDE);
    assert_eq!(line(&d, "a"), (None, "claimed-elsewhere"));
    // A watcher wakes when the claim lapses; `reconcile --wait` does not
    // sit it out.
    assert_eq!(d.wake_at, Some(until));
    assert_eq!(d.settle_at, None);
}

#[test]
fn a_merge_only_the_forge_can_confirm_waits_for_it_instead_of_being_redone() {
    let spec = spec();
    // Status: merged through pull request #7 (a squash: no trailers), on a
    // clone without converge's note of it, and GitHub cannot be asked.
    let mut st = passed(&spec, "a", Some(record(7, SHA)));
    st.phase = Phase::Merged;
    st.merged_as = Some(id(OLD));
    let s = status(vec![("a", st)]);
    let mut obs = observed(vec![]);
    obs.forge = ForgeObs::Unavailable {
        why: "github answered 502".into(),
        until: None,
    };
    obs.tasks.entry(key("a")).or_default().unbacked =
        Some("no merge commit of converge's for it".into());
    let d = decide(&spec, &obs, &s, NOW, &WIDE);
    assert_eq!(line(&d, "a"), (None, "forge-cooling"));
    assert!(action(&d, "a").is_none());
    let mut after = s.clone();
    derive::derive(
        &mut after,
        &s,
        &derive::Inputs {
            spec: &spec,
            decision: &d,
            observation: &obs,
            diagnostics: &[],
            spec_commit: "0000000000000000000000000000000000000000",
            now: NOW,
        },
    );
    let a = after.task("p", "a").expect("a");
    assert_eq!((a.phase, a.merged_as), (Phase::Merged, Some(id(OLD))));
    assert!(a.conditions.is_empty(), "{:?}", a.conditions);
    // Once GitHub answers and does not confirm it, status is corrected.
    obs.forge = ForgeObs::Observed { open: 0 };
    let d = decide(&spec, &obs, &s, NOW, &WIDE);
    assert_eq!(line(&d, "a").1, "status-unbacked");
}
