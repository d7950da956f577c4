//! The fake speaks GitHub: octocrab itself (the client the forge uses) drives
//! it, and its answers deserialize into octocrab's models. Pull requests,
//! reviews, checks, statuses, protection, issues and labels here; merges,
//! ETags and faults in `speaks_merge.rs`.

use octocrab::Octocrab;
use octocrab::models::pulls::{MergeableState, ReviewState};
use octocrab::models::{AuthorAssociation, StatusState};
use octocrab::params;
use serde_json::Value;

use super::fake::{FakeGitHub, ReviewSpec};
use crate::support::Sandbox;

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// octocrab pointed at the fake with its token (built inside a runtime).
pub fn client(fake: &FakeGitHub) -> Octocrab {
    Octocrab::builder()
        .base_uri(fake.api_url())
        .expect("base uri")
        .personal_token(fake.token())
        .build()
        .expect("octocrab client")
}

/// Pushes `branch` with `files` committed on top of `from` (a branch of the
/// fake's bare repository) with real `git push`; returns the branch's sha.
pub fn push_branch(fake: &FakeGitHub, from: &str, branch: &str, files: &[(&str, &str)]) -> String {
    let work = Sandbox::new();
    work.git(&[
        "clone",
        "-q",
        "--",
        &fake.remote_path().to_string_lossy(),
        ".",
    ]);
    work.git(&["checkout", "-q", "-B", branch, &format!("origin/{from}")]);
    for (i, (path, content)) in files.iter().enumerate() {
        work.write(path, content);
        work.commit_all(&format!("{branch}: change {i}"));
    }
    work.git(&["push", "-q", "origin", &format!("HEAD:refs/heads/{branch}")]);
    fake.branch_sha(branch).expect("pushed")
}

/// The GitHub error status and message of an octocrab error.
pub fn github_error(error: &octocrab::Error) -> (u16, String) {
    match error {
        octocrab::Error::GitHub { source, .. } => {
            (source.status_code.as_u16(), source.message.clone())
        }
        other => panic!("expected a GitHub error, got {other:?}"),
    }
}

#[test]
fn pull_requests_round_trip_through_octocrab_models() {
    let fake = FakeGitHub::start();
    let sha = push_branch(&fake, "main", "converge/plan/task-a", &[("a.txt", "a\n")]);
    runtime().block_on(async {
        let gh = client(&fake);
        let pulls = gh.pulls("acme", "widgets");
        let pr = pulls
            .create("Task a", "converge/plan/task-a", "main")
            .body("Gate passed.\n<!-- converge:plan/task-a -->")
            .send()
            .await
            .expect("create PR");
        assert_eq!(pr.number, 1);
        assert_eq!(pr.head.sha, sha);
        assert_eq!(pr.head.ref_field, "converge/plan/task-a");
        assert_eq!(pr.base.ref_field, "main");
        assert_eq!(
            pr.user.as_ref().map(|u| u.login.as_str()),
            Some("converge-bot")
        );
        assert_eq!(
            pr.html_url.as_ref().map(|u| u.as_str()),
            Some("https://github.com/acme/widgets/pull/1")
        );

        let again = pulls
            .create("Task a", "converge/plan/task-a", "main")
            .send()
            .await
            .expect_err("duplicate");
        let (status, _) = github_error(&again);
        assert_eq!(status, 422);
        let missing = pulls
            .create("x", "no/such/branch", "main")
            .send()
            .await
            .expect_err("missing head");
        assert_eq!(github_error(&missing).0, 422);

        let open = pulls
            .list()
            .state(params::State::Open)
            .base("main")
            .head("acme:converge/plan/task-a")
            .per_page(100u8)
            .send()
            .await
            .expect("list");
        assert_eq!(open.items.len(), 1);
        assert_eq!(
            open.items[0].merged, None,
            "the list leaves the detail fields out, as GitHub does"
        );

        let updated = pulls
            .update(1)
            .title("Task a (attempt 2)")
            .body("new body")
            .send()
            .await
            .expect("update");
        assert_eq!(updated.title.as_deref(), Some("Task a (attempt 2)"));
        let got = pulls.get(1).await.expect("get");
        assert_eq!(got.body.as_deref(), Some("new body"));
        assert_eq!(got.merged, Some(false));
        assert_eq!(got.mergeable, Some(true));
        assert_eq!(got.mergeable_state, Some(MergeableState::Clean));

        pulls
            .update(1)
            .state(params::pulls::State::Closed)
            .send()
            .await
            .expect("close");
        let open = pulls
            .list()
            .state(params::State::Open)
            .send()
            .await
            .expect("list open");
        assert!(open.items.is_empty());
        let all = pulls
            .list()
            .state(params::State::All)
            .send()
            .await
            .expect("list all");
        assert_eq!(all.items.len(), 1);
        assert_eq!(
            github_error(&pulls.get(99).await.expect_err("no PR 99")).0,
            404
        );
    });
}

#[test]
fn pages_follow_the_link_header() {
    let fake = FakeGitHub::start();
    for i in 0..5 {
        let branch = format!("converge/p/t{i}");
        push_branch(&fake, "main", &branch, &[(&format!("{i}.txt"), "x\n")]);
    }
    runtime().block_on(async {
        let gh = client(&fake);
        for i in 0..5 {
            let branch = format!("converge/p/t{i}");
            gh.pulls("acme", "widgets")
                .create(format!("t{i}"), branch, "main")
                .send()
                .await
                .expect("create");
        }
        let first = gh
            .pulls("acme", "widgets")
            .list()
            .direction(params::Direction::Ascending)
            .per_page(2u8)
            .send()
            .await
            .expect("page 1");
        assert_eq!(
            first.items.iter().map(|p| p.number).collect::<Vec<_>>(),
            [1, 2]
        );
        let mut numbers: Vec<u64> = first.items.iter().map(|p| p.number).collect();
        let mut next = first.next.clone();
        while let Some(uri) = next {
            let page = gh
                .get_page::<octocrab::models::pulls::PullRequest>(&Some(uri))
                .await
                .expect("page");
            let page = page.expect("a page");
            numbers.extend(page.items.iter().map(|p| p.number));
            next = page.next;
        }
        assert_eq!(numbers, [1, 2, 3, 4, 5]);
    });
}

#[test]
fn reviews_and_line_comments_deserialize() {
    let fake = FakeGitHub::start();
    let sha = push_branch(&fake, "main", "converge/plan/task-a", &[("a.txt", "a\n")]);
    runtime().block_on(async {
        let gh = client(&fake);
        gh.pulls("acme", "widgets")
            .create("Task a", "converge/plan/task-a", "main")
            .send()
            .await
            .expect("create");
        let review = fake.add_review(
            1,
            ReviewSpec {
                user: "alice".into(),
                state: "CHANGES_REQUESTED".into(),
                body: "Please handle the empty case.".into(),
                commit_id: sha.clone(),
                association: "MEMBER".into(),
            },
        );
        fake.add_review_comment(1, review, "a.txt", 1, "This breaks on empty input.");
        fake.approve(1, "bob", "0000000000000000000000000000000000000001");

        let reviews = gh
            .pulls("acme", "widgets")
            .list_reviews(1)
            .per_page(100u8)
            .send()
            .await
            .expect("reviews");
        assert_eq!(reviews.items.len(), 2);
        let first = &reviews.items[0];
        assert_eq!(first.state, Some(ReviewState::ChangesRequested));
        assert_eq!(first.commit_id.as_deref(), Some(sha.as_str()));
        assert_eq!(first.author_association, Some(AuthorAssociation::Member));
        assert_eq!(first.body.as_deref(), Some("Please handle the empty case."));
        assert_eq!(first.user.as_ref().map(|u| u.login.as_str()), Some("alice"));
        assert_eq!(reviews.items[1].state, Some(ReviewState::Approved));

        let comments = gh
            .pulls("acme", "widgets")
            .list_comments(Some(1))
            .send()
            .await
            .expect("comments");
        assert_eq!(comments.items.len(), 1);
        let comment = &comments.items[0];
        assert_eq!((comment.path.as_str(), comment.line), ("a.txt", Some(1)));
        assert_eq!(comment.pull_request_review_id.map(|id| id.0), Some(review));
        assert_eq!(comment.body, "This breaks on empty input.");
    });
}

#[test]
fn checks_statuses_and_protection_decide_mergeable_state() {
    let fake = FakeGitHub::start();
    let sha = push_branch(&fake, "main", "converge/plan/task-a", &[("a.txt", "a\n")]);
    runtime().block_on(async {
        let gh = client(&fake);
        let pulls = gh.pulls("acme", "widgets");
        pulls
            .create("Task a", "converge/plan/task-a", "main")
            .send()
            .await
            .expect("create");
        let route = "/repos/acme/widgets/branches/main/protection/required_status_checks";
        let unprotected = gh
            .get::<Value, _, ()>(route, None)
            .await
            .expect_err("not protected");
        assert_eq!(
            github_error(&unprotected),
            (404, "Branch not protected".to_owned())
        );

        fake.require_checks("main", &["build"]);
        let required: Value = gh.get(route, None::<&()>).await.expect("required checks");
        assert_eq!(required["contexts"], serde_json::json!(["build"]));
        assert_eq!(required["checks"][0]["context"], "build");
        assert_eq!(
            pulls.get(1).await.expect("get").mergeable_state,
            Some(MergeableState::Blocked)
        );

        let run = fake.add_check_run(&sha, "build", "in_progress", None);
        fake.add_check_run(&sha, "lint", "completed", Some("failure"));
        let runs = gh
            .checks("acme", "widgets")
            .list_check_runs_for_git_ref(params::repos::Commitish(sha.clone()))
            .send()
            .await
            .expect("check runs");
        assert_eq!(runs.total_count, 2);
        assert_eq!(runs.check_runs[0].name, "build");
        assert_eq!(runs.check_runs[0].head_sha, sha);
        assert_eq!(runs.check_runs[0].conclusion, None);
        let raw: Value = gh
            .get(
                format!("/repos/acme/widgets/commits/{sha}/check-runs"),
                None::<&()>,
            )
            .await
            .expect("raw");
        assert_eq!(raw["check_runs"][0]["status"], "in_progress");

        fake.complete_check_run(run, "success");
        let got = pulls.get(1).await.expect("get");
        assert_eq!(
            got.mergeable_state,
            Some(MergeableState::Unstable),
            "a non-required check failed"
        );

        let status = gh
            .repos("acme", "widgets")
            .create_status(sha.clone(), StatusState::Success)
            .context("converge/gate".to_owned())
            .description("gate passed".to_owned())
            .send()
            .await
            .expect("create status");
        assert_eq!(status.context.as_deref(), Some("converge/gate"));
        let branch = params::repos::Reference::Branch("converge/plan/task-a".into());
        let combined = gh
            .repos("acme", "widgets")
            .combined_status_for_ref(&branch)
            .await
            .expect("combined");
        assert_eq!(
            (combined.state, combined.total_count),
            (StatusState::Success, 1)
        );
        assert_eq!(combined.sha, sha);
        assert_eq!(fake.statuses(&sha).len(), 1);
        let bad = gh
            .repos("acme", "widgets")
            .create_status("f".repeat(40), StatusState::Success)
            .send()
            .await;
        assert_eq!(github_error(&bad.expect_err("unknown sha")).0, 422);

        fake.require_reviews("main", 1, true);
        let reviews: Value = gh
            .get(
                "/repos/acme/widgets/branches/main/protection/required_pull_request_reviews",
                None::<&()>,
            )
            .await
            .expect("required reviews");
        assert_eq!(reviews["required_approving_review_count"], 1);
        assert_eq!(
            pulls.get(1).await.expect("get").mergeable_state,
            Some(MergeableState::Blocked)
        );
        fake.approve(1, "alice", &sha);
        assert_eq!(
            pulls.get(1).await.expect("get").mergeable_state,
            Some(MergeableState::Unstable)
        );
    });
}

#[test]
fn issues_labels_comments_and_the_user() {
    let fake = FakeGitHub::start();
    push_branch(&fake, "main", "converge/plan/task-a", &[("a.txt", "a\n")]);
    runtime().block_on(async {
        let gh = client(&fake);
        let me = gh.current().user().await.expect("user");
        assert_eq!(me.login, "converge-bot");

        gh.pulls("acme", "widgets")
            .create("Task a", "converge/plan/task-a", "main")
            .send()
            .await
            .expect("create");
        let issues = gh.issues("acme", "widgets");
        let labels = issues
            .add_labels(1, &["converge".to_owned()])
            .await
            .expect("labels");
        assert_eq!(labels[0].name, "converge");
        let comment = issues
            .create_comment(1, "Closed: the task was removed.")
            .await
            .expect("comment");
        assert_eq!(
            comment.body.as_deref(),
            Some("Closed: the task was removed.")
        );
        assert_eq!(fake.comments(1), ["Closed: the task was removed."]);

        let dashboard = issues
            .create("converge dashboard")
            .body("all idle")
            .labels(vec!["converge-dashboard".to_owned()])
            .send()
            .await
            .expect("open issue");
        assert_eq!(dashboard.number, 2, "issues and PRs share numbers");
        let found = issues
            .list()
            .state(params::State::Open)
            .labels(&["converge-dashboard".to_owned()])
            .creator("converge-bot")
            .per_page(100u8)
            .send()
            .await
            .expect("list issues");
        assert_eq!(
            found.items.iter().map(|i| i.number).collect::<Vec<_>>(),
            [2],
            "PRs are not listed"
        );
        let edited = issues
            .update(2)
            .body("1 task running")
            .send()
            .await
            .expect("edit");
        assert_eq!(edited.body.as_deref(), Some("1 task running"));
        let other = issues
            .list()
            .creator("someone-else")
            .send()
            .await
            .expect("list");
        assert!(other.items.is_empty());
    });
}
