//! The commit message of a tick and the STATUS.md-only rule.

use super::*;
use crate::decide::Reason;
use crate::model::TaskKey;

fn spec_commit() -> ObjectId {
    ObjectId::from_hex(b"1111111111111111111111111111111111111111").expect("hex")
}

fn applied(line: &str) -> Applied {
    Applied {
        line: line.to_owned(),
        files: Vec::new(),
        deferred: None,
        failed: None,
        outcomes: Vec::new(),
    }
}

fn deferred(line: &str) -> Applied {
    Applied {
        deferred: Some("not now".to_owned()),
        ..applied(line)
    }
}

fn failed(line: &str) -> Applied {
    Applied {
        failed: Some("it broke".to_owned()),
        ..applied(line)
    }
}

fn dispatch(task: &str, attempt: u32) -> Action {
    Action::Dispatch {
        key: TaskKey::new("p", task),
        attempt,
    }
}

#[test]
fn one_action_names_itself_in_the_subject() {
    let cases = [
        (
            dispatch("a", 1),
            ("dispatch", Some("p"), Some("a"), Some(1)),
        ),
        (
            Action::Reap {
                key: TaskKey::new("p", "b"),
                attempt: 3,
                reason: Reason::Timeout,
            },
            ("reap", Some("p"), Some("b"), Some(3)),
        ),
        (
            Action::Merge {
                key: TaskKey::new("p", "c"),
                head: "abcabcabcabcabcabcabcabcabcabcabcabcabca"
                    .parse()
                    .expect("hex"),
            },
            ("merge", Some("p"), Some("c"), None),
        ),
        (
            Action::Promote {
                item: "fix-it".to_owned(),
            },
            ("promote", Some("queue"), Some("fix-it"), None),
        ),
    ];
    for (action, (kind, plan, task, attempt)) in cases {
        let message = message_of(
            std::slice::from_ref(&action),
            &[applied("did it")],
            spec_commit(),
        );
        assert_eq!(
            (
                message.action.as_str(),
                message.plan.as_deref(),
                message.task.as_deref(),
                message.attempt
            ),
            (kind, plan, task, attempt),
            "{action:?}"
        );
        assert_eq!(message.summary, None);
        assert_eq!(message.body, vec!["did it".to_owned()]);
        assert_eq!(message.spec, spec_commit().to_string());
    }
}

#[test]
fn several_actions_are_summarized_and_only_done_ones_count() {
    let actions = [
        dispatch("a", 1),
        dispatch("b", 1),
        dispatch("c", 2),
        Action::Promote {
            item: "next".to_owned(),
        },
    ];
    let message = message_of(
        &actions,
        &[
            applied("dispatch p/a"),
            deferred("dispatch p/b"),
            failed("dispatch p/c"),
            applied("promote next"),
        ],
        spec_commit(),
    );
    assert_eq!(message.action, "tick");
    assert_eq!(
        (message.plan, message.task, message.attempt),
        (None, None, None)
    );
    assert_eq!(
        message.summary.as_deref(),
        Some("dispatch p/a, promote queue/next")
    );
    // The body tells everything, deferred and failed actions too.
    assert_eq!(
        message.body,
        [
            "dispatch p/a",
            "dispatch p/b",
            "dispatch p/c",
            "promote next"
        ]
    );

    // One done among failures: it is the subject.
    let message = message_of(
        &actions[..2],
        &[failed("x"), applied("dispatch p/b")],
        spec_commit(),
    );
    assert_eq!(
        (message.action.as_str(), message.task.as_deref()),
        ("dispatch", Some("b"))
    );
    assert_eq!(message.summary, None);

    // Nothing done: a status refresh.
    let message = message_of(&actions[..1], &[deferred("x")], spec_commit());
    assert_eq!(message.action, "status");
    assert_eq!(
        (message.plan, message.task, message.attempt),
        (None, None, None)
    );
    let message = message_of(&[], &[], spec_commit());
    assert_eq!(message.action, "status");
    assert!(message.body.is_empty());
}

#[test]
fn status_md_alone_is_not_a_change() {
    let change = |path: &str| Change {
        path: path.to_owned(),
        content: Some(b"x".to_vec()),
    };
    let plan = format!("{STATUS_DIR}/p.toml");
    let cases = [
        (vec![], true),
        (vec![change(STATUS_MD)], true),
        (vec![change(STATUS_MD), change(&plan)], false),
        (vec![change(&plan)], false),
        (vec![change("planning/queue/x.toml")], false),
    ];
    for (changes, alone) in cases {
        assert_eq!(dashboard_only(&changes), alone, "{changes:?}");
    }
}

#[test]
fn the_dry_run_diff_marks_created_and_deleted_files() {
    let created = unified_diff("planning/status/p.toml", None, Some(b"a\n"));
    assert!(
        created.starts_with("--- /dev/null\n+++ b/planning/status/p.toml\n"),
        "{created}"
    );
    assert!(created.contains("+a\n"), "{created}");
    let deleted = unified_diff("planning/status/p.toml", Some(b"a\n"), None);
    assert!(
        deleted.starts_with("--- a/planning/status/p.toml\n+++ /dev/null\n"),
        "{deleted}"
    );
    assert!(deleted.contains("-a\n"), "{deleted}");
    let changed = unified_diff("x", Some(b"a\nb\n"), Some(b"a\nc\n"));
    assert!(changed.contains("-b\n+c\n"), "{changed}");
}

#[test]
fn a_status_commit_that_records_a_merge_says_merged() {
    let merge = Action::Merge {
        key: TaskKey::new("p", "a"),
        head: "1111111111111111111111111111111111111111"
            .parse()
            .expect("hex"),
    };
    let one = message_of(
        std::slice::from_ref(&merge),
        &[applied("merge p/a")],
        spec_commit(),
    );
    assert!(
        one.render().starts_with("converge: merged p/a\n"),
        "{}",
        one.render()
    );
    assert!(one.render().contains("\nConverge-Action: merge\n"));
    let two = message_of(
        &[merge, dispatch("b", 1)],
        &[applied("merge p/a"), applied("dispatch p/b")],
        spec_commit(),
    );
    assert_eq!(two.summary.as_deref(), Some("merged p/a, dispatch p/b"));
}
