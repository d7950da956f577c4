//! The fake speaks GitHub, continued: merges with `sha` really merge, squash
//! or rebase in the bare repository (and refuse with 409/405 when GitHub
//! would), conditional requests are answered 304, branches with slashes are
//! deleted, and injected faults reach octocrab as GitHub's would.

use octocrab::Octocrab;
use octocrab::params::pulls::MergeMethod;
use octocrab::params::repos::Reference;
use octocrab::service::middleware::cache::mem::InMemoryCache;
use octocrab::service::middleware::retry::RetryConfig;

use super::fake::FakeGitHub;
use super::model::Fault;
use super::speaks::{client, github_error, push_branch, runtime};

/// Opens PR `n` for `branch` with octocrab and returns the head sha.
async fn open(gh: &Octocrab, fake: &FakeGitHub, branch: &str) -> String {
    gh.pulls("acme", "widgets")
        .create(branch, branch, "main")
        .send()
        .await
        .expect("create");
    fake.branch_sha(branch).expect("branch")
}

#[test]
fn merge_squash_and_rebase_really_happen_in_the_bare_repo() {
    let fake = FakeGitHub::start();
    let files: &[(&str, &str)] = &[("a.txt", "one\n"), ("b.txt", "two\n")];
    push_branch(&fake, "main", "converge/p/merge", files);
    push_branch(
        &fake,
        "main",
        "converge/p/squash",
        &[("c.txt", "three\n"), ("d.txt", "four\n")],
    );
    push_branch(
        &fake,
        "main",
        "converge/p/rebase",
        &[("e.txt", "five\n"), ("f.txt", "six\n")],
    );
    runtime().block_on(async {
        let gh = client(&fake);
        let pulls = gh.pulls("acme", "widgets");

        let head = open(&gh, &fake, "converge/p/merge").await;
        let before = fake.branch_sha("main").expect("main");
        let merged = pulls
            .merge(1)
            .sha(head.clone())
            .method(MergeMethod::Merge)
            .send()
            .await
            .expect("merge");
        assert!(merged.merged);
        let sha = merged.sha.expect("merge sha");
        assert_eq!(fake.branch_sha("main").as_ref(), Some(&sha));
        let parents = fake.with_state(|st| st.git.parents(&sha));
        assert_eq!(
            parents,
            [before, head.clone()],
            "a merge commit has the base and the head as parents"
        );
        let pr = pulls.get(1).await.expect("get");
        assert_eq!(
            (pr.merged, pr.merge_commit_sha.as_ref()),
            (Some(true), Some(&sha))
        );
        assert!(pr.merged_at.is_some() && pr.closed_at.is_some());
        assert_eq!(
            github_error(&pulls.merge(1).sha(head).send().await.expect_err("twice")).0,
            405
        );
        assert_eq!(fake.merges(1), 1);

        let head = open(&gh, &fake, "converge/p/squash").await;
        let before = fake.branch_sha("main").expect("main");
        let squashed = pulls
            .merge(2)
            .sha(head.clone())
            .method(MergeMethod::Squash)
            .send()
            .await
            .expect("squash");
        let sha = squashed.sha.expect("squash sha");
        let (parents, tree, message) = fake.with_state(|st| {
            (
                st.git.parents(&sha),
                st.git.tree_of(&sha),
                st.git.git(&["log", "-1", "--format=%s", &sha]),
            )
        });
        assert_eq!(
            parents,
            std::slice::from_ref(&before),
            "a squash has one parent"
        );
        assert_eq!(message.trim(), "converge/p/squash (#2)");
        assert!(
            !fake.with_state(|st| st.git.is_ancestor(&head, &sha)),
            "the head is not an ancestor after a squash"
        );
        let merged_tree = fake.with_state(|st| st.git.show_file(&sha, "d.txt"));
        assert_eq!(merged_tree.as_deref(), Some("four\n"));
        assert_ne!(tree, fake.with_state(|st| st.git.tree_of(&before)));

        let head = open(&gh, &fake, "converge/p/rebase").await;
        let before = fake.branch_sha("main").expect("main");
        let rebased = pulls
            .merge(3)
            .sha(head.clone())
            .method(MergeMethod::Rebase)
            .send()
            .await
            .expect("rebase");
        let sha = rebased.sha.expect("rebase sha");
        assert_eq!(fake.branch_sha("main").as_ref(), Some(&sha));
        let log = fake.git(&["log", "--format=%s", &format!("{before}..{sha}")]);
        assert_eq!(
            log, "converge/p/rebase: change 1\nconverge/p/rebase: change 0\n",
            "each commit replayed"
        );
        assert_ne!(sha, head, "replayed commits are new commits");
        assert_eq!(
            pulls.get(3).await.expect("get").merge_commit_sha.as_ref(),
            Some(&sha)
        );
        assert_eq!(fake.total_merges(), 3);
    });
}

#[test]
fn merge_refuses_a_moved_head_blocked_checks_stale_approvals_and_conflicts() {
    let fake = FakeGitHub::start();
    push_branch(&fake, "main", "converge/p/a", &[("a.txt", "a\n")]);
    push_branch(&fake, "main", "converge/p/b", &[("shared.txt", "from b\n")]);
    push_branch(&fake, "main", "converge/p/c", &[("shared.txt", "from c\n")]);
    runtime().block_on(async {
        let gh = client(&fake);
        let pulls = gh.pulls("acme", "widgets");
        let gated = open(&gh, &fake, "converge/p/a").await;
        let main = fake.branch_sha("main");

        let moved = fake.push_as_person("converge/p/a", "PERSON.md", "mine\n");
        let error = pulls
            .merge(1)
            .sha(gated.clone())
            .send()
            .await
            .expect_err("head moved");
        assert_eq!(
            github_error(&error),
            (
                409,
                "Head branch was modified. Review and try the merge again.".into()
            )
        );
        assert_eq!(fake.branch_sha("main"), main, "nothing merged");
        assert_eq!(
            pulls.get(1).await.expect("get").head.sha,
            moved,
            "the head is read live"
        );

        fake.move_head_before_merge(1);
        let error = pulls
            .merge(1)
            .sha(moved.clone())
            .send()
            .await
            .expect_err("moved between checks and merge");
        assert_eq!(github_error(&error).0, 409);
        let head = fake.branch_sha("converge/p/a").expect("head");

        fake.require_checks("main", &["build"]);
        let error = pulls
            .merge(1)
            .sha(head.clone())
            .send()
            .await
            .expect_err("no check reported");
        assert_eq!(
            github_error(&error),
            (405, "Required status check \"build\" is expected.".into())
        );
        fake.add_check_run(&head, "build", "completed", Some("success"));
        fake.require_reviews("main", 1, true);
        fake.approve(1, "alice", &gated);
        let error = pulls
            .merge(1)
            .sha(head.clone())
            .send()
            .await
            .expect_err("approval of an older head");
        assert_eq!(
            github_error(&error),
            (
                405,
                "At least 1 approving review is required by reviewers with write access.".into()
            )
        );
        fake.approve(1, "mallory-outside", &head);
        fake.with_state(|st| {
            st.reviews.last_mut().expect("review").association = "CONTRIBUTOR".into();
        });
        assert_eq!(
            github_error(
                &pulls
                    .merge(1)
                    .sha(head.clone())
                    .send()
                    .await
                    .expect_err("no writer")
            )
            .0,
            405
        );
        fake.approve(1, "alice", &head);
        pulls
            .merge(1)
            .sha(head)
            .send()
            .await
            .expect("merges once checks and reviews pass");
        assert_eq!(fake.merges(1), 1);

        fake.protect("main", Default::default());
        let b = open(&gh, &fake, "converge/p/b").await;
        let c = open(&gh, &fake, "converge/p/c").await;
        pulls.merge(2).sha(b).send().await.expect("b merges");
        let pr = pulls.get(3).await.expect("get");
        assert_eq!(
            (pr.mergeable, pr.mergeable_state),
            (
                Some(false),
                Some(octocrab::models::pulls::MergeableState::Dirty)
            )
        );
        let error = pulls.merge(3).sha(c).send().await.expect_err("conflicts");
        assert_eq!(
            github_error(&error),
            (405, "Pull Request is not mergeable".into())
        );
        assert_eq!(fake.merges(3), 0);
    });
}

#[test]
fn branches_with_slashes_are_deleted() {
    let fake = FakeGitHub::start();
    push_branch(&fake, "main", "converge/plan/task", &[("a.txt", "a\n")]);
    runtime().block_on(async {
        let gh = client(&fake);
        let branch = Reference::Branch("converge/plan/task".into());
        gh.repos("acme", "widgets")
            .delete_ref(&branch)
            .await
            .expect("delete");
        assert_eq!(fake.branch_sha("converge/plan/task"), None);
        let again = gh
            .repos("acme", "widgets")
            .delete_ref(&branch)
            .await
            .expect_err("gone");
        assert_eq!(
            github_error(&again),
            (422, "Reference does not exist".into())
        );
        let last = fake.requests().pop().expect("logged");
        assert_eq!(
            (last.method.as_str(), last.path.as_str()),
            (
                "DELETE",
                "/repos/acme/widgets/git/refs/heads/converge/plan/task"
            )
        );
    });
}

#[test]
fn an_unchanged_get_is_answered_304_and_costs_nothing() {
    let fake = FakeGitHub::start();
    push_branch(&fake, "main", "converge/p/a", &[("a.txt", "a\n")]);
    runtime().block_on(async {
        let gh = Octocrab::builder()
            .base_uri(fake.api_url())
            .expect("uri")
            .personal_token(fake.token())
            .cache(InMemoryCache::new())
            .build()
            .expect("client");
        open(&gh, &fake, "converge/p/a").await;
        let first = gh.pulls("acme", "widgets").get(1).await.expect("first");
        let remaining = fake.rate_remaining();
        let mark = fake.mark();
        let second = gh
            .pulls("acme", "widgets")
            .get(1)
            .await
            .expect("second, from the cache");
        assert_eq!(first.head.sha, second.head.sha);
        let log = fake.requests_since(mark);
        assert_eq!(log.iter().map(|r| r.status).collect::<Vec<_>>(), [304]);
        assert_eq!(
            fake.rate_remaining(),
            remaining,
            "a 304 does not count against the limit"
        );

        gh.issues("acme", "widgets")
            .add_labels(1, &["converge".to_owned()])
            .await
            .expect("label");
        let third = gh.pulls("acme", "widgets").get(1).await.expect("third");
        assert_eq!(third.labels.map(|l| l.len()), Some(1));
        assert_eq!(
            fake.requests().last().map(|r| r.status),
            Some(200),
            "a change answers 200 again"
        );
    });
}

#[test]
fn faults_reach_octocrab_as_githubs_would() {
    let fake = FakeGitHub::start();
    runtime().block_on(async {
        let gh = client(&fake);
        fake.inject(Some("GET"), "/pulls", 1, Fault::BadGateway);
        let listed = gh
            .pulls("acme", "widgets")
            .list()
            .send()
            .await
            .expect("octocrab retries one 502");
        assert!(listed.items.is_empty());
        let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
        assert_eq!(statuses, [502, 200]);

        let mark = fake.mark();
        fake.inject(None, "/pulls", 4, Fault::BadGateway);
        let error = gh
            .pulls("acme", "widgets")
            .list()
            .send()
            .await
            .expect_err("four 502s");
        let (status, message) = github_error(&error);
        assert_eq!(
            (status, message.as_str()),
            (502, "<h1>Server Error</h1>"),
            "octocrab keeps the page as the message"
        );
        assert_eq!(
            fake.requests_since(mark).len(),
            4,
            "one try and three retries"
        );

        // octocrab's default retry (Simple(3)) resends a 429 at once, ignoring
        // retry-after, and does not retry a 403 secondary limit: the forge
        // must classify and cool down itself.
        let mark = fake.mark();
        fake.inject(
            None,
            "/pulls",
            1,
            Fault::TooManyRequests { retry_after: 60 },
        );
        gh.pulls("acme", "widgets")
            .list()
            .send()
            .await
            .expect("retried at once");
        fake.inject(
            None,
            "/pulls",
            1,
            Fault::SecondaryRateLimit {
                retry_after: Some(60),
            },
        );
        gh.pulls("acme", "widgets")
            .list()
            .send()
            .await
            .expect_err("not retried");
        let statuses: Vec<u16> = fake.requests_since(mark).iter().map(|r| r.status).collect();
        assert_eq!(statuses, [429, 200, 403]);

        let plain = Octocrab::builder()
            .base_uri(fake.api_url())
            .expect("uri")
            .personal_token(fake.token())
            .add_retry_config(RetryConfig::None)
            .build()
            .expect("client");
        fake.inject(
            None,
            "/repos/acme/widgets/pulls",
            1,
            Fault::SecondaryRateLimit {
                retry_after: Some(30),
            },
        );
        let error = plain
            .pulls("acme", "widgets")
            .list()
            .send()
            .await
            .expect_err("secondary limit");
        let octocrab::Error::GitHub { source, .. } = &error else {
            panic!("{error:?}")
        };
        assert_eq!(source.status_code.as_u16(), 403);
        assert!(
            source.message.contains("secondary rate limit"),
            "{}",
            source.message
        );
        let retry_after = source
            .headers
            .as_ref()
            .and_then(|h| h.get("retry-after"))
            .map(|v| v.to_str().ok());
        assert_eq!(retry_after, Some(Some("30")));

        fake.inject(
            None,
            "/pulls",
            1,
            Fault::SecondaryRateLimit { retry_after: None },
        );
        let error = plain
            .pulls("acme", "widgets")
            .list()
            .send()
            .await
            .expect_err("secondary, no retry-after");
        let octocrab::Error::GitHub { source, .. } = &error else {
            panic!("{error:?}")
        };
        assert!(
            source
                .headers
                .as_ref()
                .is_some_and(|h| h.get("retry-after").is_none())
        );

        fake.inject(None, "/pulls", 1, Fault::TooManyRequests { retry_after: 7 });
        let error = plain
            .pulls("acme", "widgets")
            .list()
            .send()
            .await
            .expect_err("429");
        assert_eq!(github_error(&error).0, 429);

        fake.set_rate_limit(5000, 0, 1_900_000_000);
        let error = plain
            .pulls("acme", "widgets")
            .list()
            .send()
            .await
            .expect_err("exhausted");
        let octocrab::Error::GitHub { source, .. } = &error else {
            panic!("{error:?}")
        };
        assert_eq!(
            (source.status_code.as_u16(), source.rate_limit_reset),
            (403, Some(1_900_000_000))
        );
        let remaining = source
            .headers
            .as_ref()
            .and_then(|h| h.get("x-ratelimit-remaining"))
            .map(|v| v.to_str().ok());
        assert_eq!(remaining, Some(Some("0")));
        fake.set_rate_limit(5000, 5000, 1_900_000_000);

        fake.set_token("another-token");
        let error = plain
            .pulls("acme", "widgets")
            .list()
            .send()
            .await
            .expect_err("wrong token");
        assert_eq!(github_error(&error), (401, "Bad credentials".into()));
    });
}
