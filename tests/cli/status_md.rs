//! STATUS.md rendering, reviewed as a whole through a snapshot of a scenario
//! that touches every section.

use converge::decide::{Limits, decide};
use converge::observe::{Observation, RunObs, RunState, TaskKey, TaskObs};
use converge::spec::load::PlanningFiles;
use converge::status::{Failure, Phase, PlanStatus, Status, TaskStatus};
use converge::time::Timestamp;
use converge::view::StatusView;
use converge::view::status_md::status_md;

const PLAN: &str = r#"
[plan]
name = "Checkout"

[[tasks]]
name = "cart"
description = "Cart."
scope = "narrow"
gate = "auto"
allow_unchecked = true

[[tasks]]
name = "pricing"
description = "Pricing."
scope = "narrow"
gate = "auto"
allow_unchecked = true

[[tasks]]
name = "payment"
description = "Payment."
scope = "medium"
gate = "human_review"
depends_on = ["cart"]

[[tasks]]
name = "receipts"
description = "Receipts."
scope = "narrow"
gate = "auto"
allow_unchecked = true
depends_on = ["payment"]

[[tasks]]
name = "tax"
description = "Tax."
scope = "narrow"
gate = "auto"
allow_unchecked = true
retry_max = 2

[[tasks]]
name = "invoices"
description = "Invoices."
scope = "narrow"
gate = "auto"
allow_unchecked = true
depends_on = ["tax"]

[[tasks]]
name = "search"
description = "Search."
scope = "narrow"
gate = "auto"
allow_unchecked = true
retry_max = 3

[[tasks]]
name = "docs"
description = "Docs."
scope = "narrow"
gate = "auto"
allow_unchecked = true
"#;

#[test]
fn status_md_has_a_section_for_every_state() {
    let files = PlanningFiles::from_texts([
        ("planning/goal.md", "Goal."),
        ("planning/plans/shop.toml", PLAN),
        ("planning/plans/broken.toml", "[plan]\n"),
        (
            "planning/queue/fix-typo.md",
            "---\nscope: narrow\ngate: auto\nallow_unchecked: true\n---\nFix the typo.\n",
        ),
    ]);
    let spec = converge::spec::compile(&files)
        .spec
        .expect("config is valid");
    let generation = |task: &str| {
        spec.plans["shop"]
            .task(task)
            .expect("task")
            .generation
            .clone()
    };
    let now = Timestamp::from_unix(1_800_000_000);
    let sha: converge::model::CommitId = "0123456789abcdef0123456789abcdef01234567"
        .parse()
        .expect("a commit id");
    let task = |name: &str, phase: Phase, attempt: u32| TaskStatus {
        phase,
        attempt,
        generation: generation(name),
        head: Some(sha),
        ..TaskStatus::default()
    };
    let mut tasks = std::collections::BTreeMap::new();
    tasks.insert(
        "cart".to_owned(),
        TaskStatus {
            merged_as: Some(sha),
            ..task("cart", Phase::Merged, 1)
        },
    );
    tasks.insert(
        "payment".to_owned(),
        task("payment", Phase::AwaitingApproval, 1),
    );
    tasks.insert("pricing".to_owned(), task("pricing", Phase::Running, 1));
    tasks.insert(
        "tax".to_owned(),
        TaskStatus {
            failures: 2,
            last_failure: Some(Failure {
                attempt: 2,
                reason: converge::model::FailureCode::InvariantFailed,
                message: "`test` exited with 101".into(),
                output_tail: None,
            }),
            ..task("tax", Phase::Escalated, 2)
        },
    );
    tasks.insert(
        "search".to_owned(),
        TaskStatus {
            failures: 1,
            next_eligible_at: Some(Timestamp::from_unix(now.unix() + 600)),
            last_failure: Some(Failure {
                attempt: 1,
                reason: converge::model::FailureCode::Timeout,
                message: "the attempt ran past its 30m deadline".into(),
                output_tail: None,
            }),
            ..task("search", Phase::Failed, 1)
        },
    );
    let mut status = Status::default();
    status.plans.insert(
        "shop".into(),
        PlanStatus {
            tasks,
            ..PlanStatus::default()
        },
    );
    status.plans.insert(
        "broken".into(),
        PlanStatus {
            errors: vec!["empty-plan".into()],
            ..PlanStatus::default()
        },
    );
    let mut obs = Observation::default();
    obs.tasks.insert(
        TaskKey::new("shop", "cart"),
        TaskObs {
            merged: true,
            ..TaskObs::default()
        },
    );
    obs.tasks.insert(
        TaskKey::new("shop", "pricing"),
        TaskObs {
            worktree: true,
            branch_head: Some(sha),
            run: Some(RunObs {
                attempt: 1,
                generation: None,
                state: RunState::Running {
                    deadline: Timestamp::from_unix(now.unix() + 900),
                },
                rejected_events: 0,
            }),
            ..TaskObs::default()
        },
    );
    let limits = Limits {
        actions_per_tick: 1,
        max_agents: 4,
        dispatches_per_hour: 20,
    };
    let decision = decide(&spec, &obs, &status, now, &limits);
    let view = StatusView::new("main", "", &spec, &status, &decision);
    let text = status_md(&view, None);
    for section in [
        "Awaiting approval",
        "Escalated",
        "Failed, retrying",
        "Running",
        "Blocked",
        "Ready",
        "Queued",
        "Merged",
        "Invalid plans",
    ] {
        assert!(
            text.contains(&format!("## {section}\n")),
            "no `{section}` section:\n{text}"
        );
    }
    insta::assert_snapshot!(text);
}
