//! The GitHub forge end to end: converge (the real binary, `sim` agents)
//! against the fake GitHub, whose bare repository is the clone's `origin`.
//! Each test attacks one promise: a SHA converge did not gate never merges,
//! every task merges exactly once, a person's push is never overwritten, a
//! misbehaving GitHub never fails a tick.

use std::path::Path;

use super::{FakeGitHub, Fault, ReviewSpec};
use crate::support::{Run, Sandbox, converge_at};

/// Two tasks, the second depending on the first, both checked by nothing but
/// converge's gate (the repository's rules decide on GitHub).
pub(super) const CHAIN: &str = r#"[plan]
name = "Chain"
state = "active"

[[tasks]]
name = "a"
description = "Write a."
scope = "narrow"
gate = "auto"
allow_unchecked = true
[tasks.sim]
files = [{ path = "a.txt", content = "a\n" }]

[[tasks]]
name = "b"
description = "Write b."
scope = "narrow"
gate = "auto"
allow_unchecked = true
depends_on = ["a"]
[tasks.sim]
files = [{ path = "b.txt", content = "b\n" }]
"#;

const REVIEWED: &str = r#"[plan]
name = "Reviewed"
state = "active"

[[tasks]]
name = "r"
description = "Write r."
scope = "narrow"
gate = "human_review"
retry_max = 2
[tasks.sim]
files = [{ path = "r.txt", content = "r\n" }]
"#;

/// A clone of the fake's repository with `planning/` pushed to its `main`.
pub(super) fn setup(fake: &FakeGitHub, plan: &str, forge_extra: &str) -> Sandbox {
    let sb = Sandbox::new();
    let remote = fake.remote_path();
    sb.git(&["clone", "-q", &remote.to_string_lossy(), "."]);
    sb.git(&["config", "user.name", "Test Committer"]);
    sb.git(&["config", "user.email", "committer@example.com"]);
    sb.write("planning/goal.md", "Goal.\n");
    sb.write(
        "planning/converge.toml",
        format!(
            "[reconcile]\ndefault_harness = \"sim\"\nremote = \"origin\"\nstatus_branch = \"converge/status\"\n\n[forge]\nkind = \"github\"\nrepo = \"{}/{}\"\napi_url = \"{}\"\n{forge_extra}",
            fake.owner(),
            fake.repo(),
            fake.api_url()
        ),
    );
    sb.write("planning/plans/p.toml", plan);
    sb.commit_all("plan");
    sb.git(&["push", "-q", "origin", "main"]);
    sb
}

pub(super) fn tick(sb: &Sandbox, fake: &FakeGitHub, now: Option<&str>) -> Run {
    let token = fake.token();
    let mut env = vec![("CONVERGE_GITHUB_TOKEN", token.as_str())];
    if let Some(now) = now {
        env.push(("CONVERGE_NOW", now));
    }
    run_at(sb.path(), sb.home(), &["reconcile", "--once"], &env)
}

fn run_at(dir: &Path, home: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = converge_at(dir, home, args, env);
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(!run.stderr.contains("panicked"), "{}", run.transcript());
    run
}

/// STATUS.md as the status branch on the remote has it.
pub(super) fn status_md(fake: &FakeGitHub) -> String {
    fake.git(&["show", "converge/status:planning/STATUS.md"])
}

/// Ticks (waiting for the `sim` agents) until `done`, at most `max` times.
pub(super) fn tick_until(
    sb: &Sandbox,
    fake: &FakeGitHub,
    now: Option<&str>,
    max: usize,
    done: impl Fn(&FakeGitHub) -> bool,
) -> Vec<Run> {
    let mut runs = Vec::new();
    for _ in 0..max {
        let run = tick(sb, fake, now);
        assert_eq!(run.code, 0, "{}", run.transcript());
        runs.push(run);
        if done(fake) {
            return runs;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let log: Vec<String> = runs.iter().map(Run::transcript).collect();
    panic!("not done after {max} ticks:\n{}", log.join("\n"));
}

/// The real time plus `minutes`, as `CONVERGE_NOW` takes it: agents run on
/// the real clock, the tick on this one.
pub(super) fn at(minutes: u64) -> String {
    converge::time::Timestamp::now()
        .plus(std::time::Duration::from_secs(minutes * 60))
        .to_string()
}

pub(super) fn merged_prs(fake: &FakeGitHub) -> usize {
    fake.prs().iter().filter(|p| p.merged.is_some()).count()
}

#[test]
fn a_plan_converges_through_pull_requests_each_merged_once_at_the_gated_head() {
    let fake = FakeGitHub::start();
    let sb = setup(&fake, CHAIN, "merge_method = \"squash\"\n");
    tick_until(&sb, &fake, None, 120, |f| merged_prs(f) == 2);
    let prs = fake.prs();
    assert_eq!(prs.len(), 2, "{prs:?}");
    for pr in &prs {
        assert_eq!(fake.merges(pr.number), 1, "{pr:?}");
        // The head that merged is the one converge's gate passed on.
        let gated = fake.statuses(&pr.head_sha);
        assert!(
            gated.iter().any(|s| s.context == "converge/gate"
                && s.state == "success"
                && s.description.as_deref()
                    == Some("attempt 1 passed converge's gate (no invariants)")),
            "{pr:?} {gated:?}"
        );
        assert!(pr.labels.contains(&"converge".to_owned()), "{pr:?}");
        let body = pr.body.clone().unwrap_or_default();
        assert!(body.contains("<!-- converge:task p/"), "{body}");
    }
    // Squash merges keep converge's trailers; the work is on the remote main.
    let log = fake.git(&["log", "--format=%B", "main"]);
    assert!(log.contains("Converge-Change: #"), "{log}");
    let files = fake.git(&["ls-tree", "--name-only", "main"]);
    assert!(
        files.contains("a.txt") && files.contains("b.txt"),
        "{files}"
    );
    // The task branches went with their merges.
    assert_eq!(fake.branch_sha("converge/p/a"), None);

    // Settled: a tick sends at most three requests, and merges nothing again.
    tick(&sb, &fake, None);
    let mark = fake.mark();
    let run = tick(&sb, &fake, None);
    assert_eq!(run.code, 0, "{}", run.transcript());
    let sent = fake.requests_since(mark);
    assert!(sent.len() <= 3, "{sent:?}");
    assert_eq!(fake.total_merges(), 2);
    let md = status_md(&fake);
    assert!(md.contains("merged"), "{md}");
}

/// Status on the base branch itself (the default `status_branch`): each
/// merge on GitHub moves the base under converge's status commits.
#[test]
fn status_on_the_base_branch_survives_merges_on_github() {
    let fake = FakeGitHub::start();
    let sb = setup(&fake, CHAIN, "");
    let config = sb.read("planning/converge.toml");
    sb.write(
        "planning/converge.toml",
        config.replace("status_branch = \"converge/status\"\n", ""),
    );
    sb.commit_all("status on main");
    sb.git(&["push", "-q", "origin", "main"]);
    tick_until(&sb, &fake, None, 120, |f| merged_prs(f) == 2);
    assert_eq!(fake.total_merges(), 2);
    let md = fake.git(&["show", "main:planning/STATUS.md"]);
    assert!(md.contains("2 merged"), "{md}");
}

#[test]
fn a_required_check_that_never_reports_times_out_with_a_diagnosis() {
    let fake = FakeGitHub::start();
    fake.require_checks("main", &["build"]);
    // The token may not read branch protection (no Administration: read,
    // as the example workflow's permissions): the branch's summary names
    // the check all the same.
    fake.inject(
        Some("GET"),
        "/branches/main/protection",
        usize::MAX,
        Fault::Forbidden,
    );
    let sb = setup(&fake, CHAIN, "checks_timeout = \"5m\"\n");
    tick_until(&sb, &fake, None, 60, |f| !f.prs().is_empty());
    // The merge waits and says for what.
    let run = tick(&sb, &fake, None);
    assert_eq!(run.code, 0, "{}", run.transcript());
    let md = status_md(&fake);
    assert!(md.contains("`build` (not reported)"), "{md}");
    assert_eq!(fake.total_merges(), 0);
    // Past the timeout: escalated, with the diagnosis, never merged.
    for now in [at(2), at(7), at(9)] {
        let run = tick(&sb, &fake, Some(&now));
        assert_eq!(run.code, 0, "{}", run.transcript());
    }
    let md = status_md(&fake);
    assert!(
        md.contains("no check `build` reported for")
            && md.contains("does a workflow run on pull_request"),
        "{md}"
    );
    assert_eq!(fake.total_merges(), 0);
}

#[test]
fn a_rulesets_required_check_and_review_count_are_waited_for_and_named() {
    // No classic protection: only a ruleset, which a token reads with
    // Metadata permission alone.
    let fake = FakeGitHub::start();
    fake.ruleset("main", &["lint"], Some(2));
    let sb = setup(&fake, CHAIN, "checks_timeout = \"5m\"\n");
    tick_until(&sb, &fake, None, 60, |f| !f.prs().is_empty());
    let run = tick(&sb, &fake, None);
    assert_eq!(run.code, 0, "{}", run.transcript());
    let md = status_md(&fake);
    assert!(md.contains("`lint` (not reported)"), "{md}");
    // The check reports: what still blocks is the review count.
    let pr = fake.prs()[0].clone();
    fake.add_check_run(&pr.head_sha, "lint", "completed", Some("success"));
    let run = tick(&sb, &fake, Some(&at(2)));
    assert_eq!(run.code, 0, "{}", run.transcript());
    let md = status_md(&fake);
    assert!(
        md.contains("requires 2 approving reviews from writers at the head"),
        "{md}"
    );
    assert_eq!(fake.total_merges(), 0);
}

/// Two independent tasks: after the first merges, the second's pull request
/// is behind its base branch.
const PAIR: &str = r#"[plan]
name = "Pair"
state = "active"

[[tasks]]
name = "a"
description = "Write a."
scope = "narrow"
gate = "auto"
allow_unchecked = true
[tasks.sim]
files = [{ path = "a.txt", content = "a\n" }]

[[tasks]]
name = "b"
description = "Write b."
scope = "narrow"
gate = "auto"
allow_unchecked = true
[tasks.sim]
files = [{ path = "b.txt", content = "b\n" }]
"#;

/// A CI that passes `build` on every open pull request's head.
fn ci_passes(fake: &FakeGitHub) {
    for pr in fake.prs().iter().filter(|p| p.open) {
        if fake.check_runs(&pr.head_sha).is_empty() {
            fake.add_check_run(&pr.head_sha, "build", "completed", Some("success"));
        }
    }
}

/// Strict protection: the second pull request to merge must first be brought
/// up to date; converge does it itself (a merge of the base into the gated
/// head, nothing else), and merges that head, each pull request once.
fn behind_pull_requests_are_updated_and_merged(crash_at: Option<&str>) {
    let fake = FakeGitHub::start();
    fake.protect(
        "main",
        super::Protection {
            contexts: vec!["build".into()],
            strict: true,
            ..super::Protection::default()
        },
    );
    let sb = setup(&fake, PAIR, "checks_timeout = \"3h\"\n");
    let token = fake.token();
    let mut crashed = false;
    for round in 0..120u64 {
        // CI reports once both pull requests are open: the first to merge
        // leaves the other behind.
        if fake.prs().len() == 2 {
            ci_passes(&fake);
        }
        // Half a minute a round: a waiting merge is looked at again every
        // other round, and the rounds between start and gate the other task.
        let now = converge::time::Timestamp::now()
            .plus(std::time::Duration::from_secs(round * 30))
            .to_string();
        let mut env = vec![
            ("CONVERGE_GITHUB_TOKEN", token.as_str()),
            ("CONVERGE_NOW", now.as_str()),
        ];
        if let Some(point) = crash_at.filter(|_| !crashed && fake.total_merges() == 1) {
            env.push((converge::crash::ENV, point));
        }
        let run = run_at(sb.path(), sb.home(), &["reconcile", "--once"], &env);
        if run.stderr.contains("crash point") {
            crashed = true;
        } else {
            assert_eq!(run.code, 0, "round {round}: {}", run.transcript());
        }
        if merged_prs(&fake) == 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(merged_prs(&fake), 2, "{}", status_md(&fake));
    if crash_at.is_some() {
        assert!(crashed, "the crash point was never reached");
    }
    let prs = fake.prs();
    for pr in &prs {
        assert_eq!(fake.merges(pr.number), 1, "{pr:?}");
    }
    // The second merged at converge's update: two parents, the first the
    // head converge's gate passed, the tree that head merged with main.
    let updated = prs
        .iter()
        .find(|p| {
            fake.git(&["rev-list", "--parents", "-n1", &p.head_sha])
                .split_whitespace()
                .count()
                == 3
        })
        .expect("one pull request was updated");
    let parents = fake.git(&["rev-list", "--parents", "-n1", &updated.head_sha]);
    let gated = parents
        .split_whitespace()
        .nth(1)
        .expect("first parent")
        .to_owned();
    let message = fake.git(&["log", "-1", "--format=%B", &updated.head_sha]);
    assert!(
        message.contains("Converge-Action: update-branch"),
        "{message}"
    );
    assert!(
        fake.statuses(&gated)
            .iter()
            .any(|s| s.context == "converge/gate"),
        "the update's first parent is not a head converge gated"
    );
    let files = fake.git(&["ls-tree", "--name-only", "main"]);
    assert!(
        files.contains("a.txt") && files.contains("b.txt"),
        "{files}"
    );
    let md = status_md(&fake);
    assert!(!md.contains("someone else pushed"), "{md}");
}

#[test]
fn a_pull_request_behind_its_base_is_updated_by_converge_and_merged_once() {
    behind_pull_requests_are_updated_and_merged(None);
}

/// Killed between pushing the update and recording it: the next tick knows
/// the update as converge's own (not hands-off) and merges it.
#[cfg(feature = "crash-points")]
#[test]
fn crash_after_pushing_an_update_leaves_it_converges_own() {
    behind_pull_requests_are_updated_and_merged(Some("after-update-push"));
}

/// A task removed from the plan while someone had just pushed to its branch
/// (converge has not seen it yet): its pull request is closed, but the
/// branch, which holds that person's commit, is not deleted.
#[test]
fn closing_a_removed_tasks_pull_request_never_deletes_someone_elses_commits() {
    let fake = FakeGitHub::start();
    fake.require_checks("main", &["build"]);
    let sb = setup(&fake, PAIR, "checks_timeout = \"3h\"\n");
    tick_until(&sb, &fake, None, 60, |f| f.prs().len() == 2);
    let pr = fake
        .prs()
        .into_iter()
        .find(|p| p.head == "converge/p/a")
        .expect("a's pull request");
    let theirs = fake.push_as_person(&pr.head, "mine.txt", "a person's work\n");
    let plan = PAIR.split("[[tasks]]\nname = \"b\"").nth(1).expect("b");
    let header = PAIR.split("[[tasks]]").next().expect("header");
    sb.write(
        "planning/plans/p.toml",
        format!("{header}[[tasks]]\nname = \"b\"{plan}"),
    );
    sb.commit_all("drop a");
    sb.git(&["push", "-q", "origin", "main"]);
    let mut log = String::new();
    // At one instant: `b`'s waiting merge is not looked at again, and the
    // cleanup of `a` gets the tick.
    let now = at(1);
    for _ in 0..3 {
        let run = tick(&sb, &fake, Some(&now));
        assert_eq!(run.code, 0, "{}", run.transcript());
        log.push_str(&run.transcript());
    }
    assert_eq!(
        fake.branch_sha(&pr.head).as_deref(),
        Some(theirs.as_str()),
        "the person's commit went with the branch:\n{log}"
    );
    let closed = fake.pr(pr.number).expect("pr");
    assert!(!closed.open && closed.merged.is_none(), "{closed:?}\n{log}");
    assert_eq!(fake.total_merges(), 0);
}

#[test]
fn a_person_pushing_to_a_task_branch_makes_converge_keep_its_hands_off() {
    let fake = FakeGitHub::start();
    fake.require_checks("main", &["build"]);
    let sb = setup(&fake, CHAIN, "");
    tick_until(&sb, &fake, None, 60, |f| !f.prs().is_empty());
    let pr = fake.prs()[0].clone();
    let theirs = fake.push_as_person(&pr.head, "mine.txt", "a person's work\n");
    // The check reports on the person's head; converge must still not merge
    // what it did not gate, nor push over the person's commit.
    let build = fake.add_check_run(&theirs, "build", "completed", Some("success"));
    let _ = build;
    let mut log = String::new();
    for now in [at(2), at(4)] {
        let run = tick(&sb, &fake, Some(&now));
        assert_eq!(run.code, 0, "{}", run.transcript());
        log.push_str(&run.transcript());
    }
    assert_eq!(fake.total_merges(), 0);
    assert_eq!(fake.branch_sha(&pr.head).as_deref(), Some(theirs.as_str()));
    let md = status_md(&fake);
    assert!(md.contains("someone else pushed"), "{md}\n{log}");
}

/// A person closes converge's pull request (after pushing to it, or not);
/// the task waits. `converge retry` then gets a new attempt into a new pull
/// request, which merges once; the closed one stays closed and unmerged.
fn retried_after_a_closed_pull_request(person_pushes: bool) {
    let fake = FakeGitHub::start();
    fake.require_checks("main", &["build"]);
    let sb = setup(&fake, CHAIN, "checks_timeout = \"3h\"\n");
    tick_until(&sb, &fake, None, 60, |f| !f.prs().is_empty());
    let first = fake.prs()[0].clone();
    if person_pushes {
        fake.push_as_person(&first.head, "mine.txt", "a person's work\n");
        let run = tick(&sb, &fake, Some(&at(1)));
        assert_eq!(run.code, 0, "{}", run.transcript());
        assert!(status_md(&fake).contains("someone else pushed"));
    }
    // The person closes it (and, after pushing, deletes the branch: their
    // commit goes with their own decision, never by converge).
    fake.with_state(|st| {
        if let Some(pr) = st.prs.get_mut(&first.number) {
            pr.open = false;
        }
        if person_pushes {
            st.git.delete_branch(&first.head);
        }
    });
    let (token, now) = (fake.token(), at(2));
    let env = [
        ("CONVERGE_GITHUB_TOKEN", token.as_str()),
        ("CONVERGE_NOW", now.as_str()),
    ];
    let run = run_at(
        sb.path(),
        sb.home(),
        &["reconcile", "--once", "--explain"],
        &env,
    );
    assert_eq!(run.code, 0, "{}", run.transcript());
    let waits = if person_pushes {
        "hands-off"
    } else {
        "change-closed"
    };
    assert!(run.stdout.contains(waits), "{}", run.transcript());
    assert_eq!(fake.prs().len(), 1);
    let retry = run_at(sb.path(), sb.home(), &["retry", "p/a"], &[]);
    assert_eq!(retry.code, 0, "{}", retry.transcript());
    sb.git(&["pull", "-q", "--rebase", "origin", "main"]);
    sb.git(&["push", "-q", "origin", "main"]);
    for minute in 3..60 {
        ci_passes(&fake);
        let run = tick(&sb, &fake, Some(&at(minute)));
        assert_eq!(run.code, 0, "{}", run.transcript());
        if merged_prs(&fake) == 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let prs = fake.prs();
    assert_eq!(merged_prs(&fake), 2, "{prs:?}\n{}", status_md(&fake));
    let old = fake.pr(first.number).expect("the first pull request");
    assert!(!old.open && old.merged.is_none(), "{old:?}");
    assert_eq!(
        prs.len(),
        3,
        "a new pull request for `a`, one for `b`: {prs:?}"
    );
    for pr in prs.iter().filter(|p| p.number != first.number) {
        assert_eq!(fake.merges(pr.number), 1, "{pr:?}");
    }
}

#[test]
fn retry_after_a_person_closed_the_pull_request_opens_a_new_one() {
    retried_after_a_closed_pull_request(false);
}

#[test]
fn retry_after_hands_off_and_a_closed_pull_request_opens_a_new_one() {
    retried_after_a_closed_pull_request(true);
}

#[test]
fn a_head_that_moves_between_the_checks_and_the_merge_is_never_merged() {
    let fake = FakeGitHub::start();
    let sb = setup(&fake, CHAIN, "");
    tick_until(&sb, &fake, None, 60, |f| !f.prs().is_empty());
    let pr = fake.prs()[0].clone();
    let gated = pr.head_sha.clone();
    // GitHub says mergeable; a person pushes just before converge's merge
    // call reaches it, which GitHub answers 409 (the `sha` is not the head).
    fake.move_head_before_merge(pr.number);
    let mut log = String::new();
    for minute in 1..6 {
        let run = tick(&sb, &fake, Some(&at(minute)));
        assert_eq!(run.code, 0, "{}", run.transcript());
        log.push_str(&run.transcript());
    }
    assert_eq!(fake.total_merges(), 0, "{log}");
    let refused = fake
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.path.ends_with("/merge"))
        .map(|r| r.status)
        .collect::<Vec<_>>();
    assert_eq!(refused, [409], "one merge call, refused: {log}");
    let theirs = fake.branch_sha(&pr.head).expect("the branch");
    assert_ne!(theirs, gated, "the person's push did not happen");
    // converge did not push over the person's commit either.
    assert_eq!(fake.pr(pr.number).expect("pr").head_sha, theirs);
    let md = status_md(&fake);
    assert!(md.contains("someone else pushed"), "{md}\n{log}");
}

#[test]
fn changes_requested_reach_the_next_attempt_and_an_approval_at_the_head_merges() {
    let fake = FakeGitHub::start();
    let sb = setup(&fake, REVIEWED, "");
    tick_until(&sb, &fake, None, 60, |f| !f.prs().is_empty());
    let pr = fake.prs()[0].clone();
    // An approval by someone without write access, and one of an older head,
    // do not count.
    fake.add_review(
        pr.number,
        ReviewSpec {
            user: "drive-by".into(),
            state: "APPROVED".into(),
            body: "lgtm".into(),
            commit_id: pr.head_sha.clone(),
            association: "NONE".into(),
        },
    );
    let review = fake.add_review(
        pr.number,
        ReviewSpec {
            user: "ann".into(),
            state: "CHANGES_REQUESTED".into(),
            body: "Please name the file better.".into(),
            commit_id: pr.head_sha.clone(),
            association: "MEMBER".into(),
        },
    );
    fake.add_review_comment(pr.number, review, "r.txt", 1, "say more than r");
    // The rejection starts attempt 2 with the review in its prompt.
    let prompt = sb.path().join(".git/converge/runs/p/r/2/prompt.md");
    for _ in 0..60 {
        tick(&sb, &fake, None);
        if prompt.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let text = std::fs::read_to_string(&prompt).expect("attempt 2's prompt");
    assert!(
        text.contains("Please name the file better.") && text.contains("r.txt:1: say more than r"),
        "{text}"
    );
    assert_eq!(fake.total_merges(), 0);
    // Attempt 2 passes its gate; the same pull request shows its head.
    tick_until(&sb, &fake, None, 60, |f| {
        f.pr(pr.number).is_some_and(|p| p.head_sha != pr.head_sha)
    });
    assert_eq!(fake.prs().len(), 1, "one pull request per task");
    let head = fake.pr(pr.number).expect("pr").head_sha;
    fake.approve(pr.number, "ann", &pr.head_sha);
    for _ in 0..3 {
        tick(&sb, &fake, None);
    }
    assert_eq!(fake.total_merges(), 0, "an approval of an older head");
    fake.approve(pr.number, "ann", &head);
    tick_until(&sb, &fake, None, 20, |f| f.total_merges() == 1);
    assert_eq!(fake.merges(pr.number), 1);
}

#[test]
fn rate_limits_and_outages_cool_the_forge_down_without_failing_a_tick() {
    let fake = FakeGitHub::start();
    let sb = setup(&fake, CHAIN, "");
    fake.inject(
        Some("GET"),
        "/pulls",
        1,
        Fault::SecondaryRateLimit {
            retry_after: Some(120),
        },
    );
    let run = tick(&sb, &fake, None);
    assert_eq!(run.code, 0, "{}", run.transcript());
    // Cooling down: no request at all until the wake time.
    let mark = fake.mark();
    let run = tick(&sb, &fake, Some(&at(1)));
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert_eq!(fake.requests_since(mark), [], "{}", run.transcript());
    let md = status_md(&fake);
    assert!(md.contains("secondary rate limit"), "{md}");
    // Then a 502: another cooldown (at least a minute), no failure.
    fake.inject(Some("GET"), "/pulls", 1, Fault::BadGateway);
    let run = tick(&sb, &fake, Some(&at(3)));
    assert_eq!(run.code, 0, "{}", run.transcript());
    // Afterwards the plan still converges, each task merged once.
    let mut minute = 10;
    let mut runs = 0;
    while merged_prs(&fake) < 2 {
        let run = tick(&sb, &fake, Some(&at(minute)));
        assert_eq!(run.code, 0, "{}", run.transcript());
        minute += 1;
        runs += 1;
        assert!(runs < 45, "not converged:\n{}", status_md(&fake));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for pr in fake.prs() {
        assert_eq!(fake.merges(pr.number), 1);
    }
}

/// The answer that spends the primary limit's last request is the last one
/// sent: nothing more goes out until the limit resets.
#[test]
fn the_last_request_of_the_primary_limit_is_the_last_one_sent() {
    let fake = FakeGitHub::start();
    let sb = setup(&fake, CHAIN, "");
    tick_until(&sb, &fake, None, 60, |f| !f.prs().is_empty());
    let reset = converge::time::Timestamp::now()
        .plus(std::time::Duration::from_secs(3600))
        .unix();
    fake.set_rate_limit(5000, 1, u64::try_from(reset).expect("after 1970"));
    // Something changed, so the listing is answered 200, which spends it.
    fake.with_state(|st| {
        for pr in st.prs.values_mut() {
            pr.title.push_str(" (renamed)");
        }
    });
    let mark = fake.mark();
    let run = tick(&sb, &fake, Some(&at(1)));
    assert_eq!(run.code, 0, "{}", run.transcript());
    let sent = fake.requests_since(mark);
    let refused: Vec<_> = sent.iter().filter(|r| r.status == 403).collect();
    assert!(
        refused.is_empty(),
        "a request went out past the limit: {sent:?}"
    );
    let mark = fake.mark();
    let run = tick(&sb, &fake, Some(&at(2)));
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert_eq!(fake.requests_since(mark), [], "{}", run.transcript());
}

#[test]
fn a_quiet_tick_with_fifty_open_pull_requests_sends_at_most_three_conditional_requests() {
    let fake = FakeGitHub::start();
    let mut plan = String::from("[plan]\nname = \"Many\"\nstate = \"active\"\n");
    for i in 0..50 {
        plan.push_str(&format!(
            "\n[[tasks]]\nname = \"t{i:02}\"\ndescription = \"Write t{i:02}.\"\nscope = \"narrow\"\ngate = \"human_review\"\n[tasks.sim]\nfiles = [{{ path = \"t{i:02}.txt\", content = \"t\\n\" }}]\n"
        ));
    }
    let sb = setup(&fake, &plan, "max_open_prs = 60\nprs_per_hour = 100\n");
    // More actions per tick than the defaults, so that fifty tasks get their
    // pull requests in a few ticks.
    let config = sb.read("planning/converge.toml").replace(
        "[reconcile]\n",
        "[reconcile]\nactions_per_tick = 60\nmax_agents = 60\ndispatches_per_hour = 100\n",
    );
    sb.write("planning/converge.toml", config);
    sb.commit_all("more per tick");
    sb.git(&["push", "-q", "origin", "main"]);
    tick_until(&sb, &fake, None, 80, |f| f.prs().len() == 50);
    // Every task waits for a review; the reviews were read once.
    tick(&sb, &fake, None);
    let mark = fake.mark();
    let run = tick(&sb, &fake, None);
    assert_eq!(run.code, 0, "{}", run.transcript());
    let sent = fake.requests_since(mark);
    assert!(sent.len() <= 3, "{sent:?}");
    assert!(sent.iter().all(|r| r.status == 304), "{sent:?}");
    assert_eq!(fake.total_merges(), 0);
}
