//! Status where GitHub users look: the dashboard issue that mirrors STATUS.md,
//! and the label and comment on a pull request converge goes hands-off on.
//! Each test attacks one promise: one dashboard issue, ever (a crash or a
//! fresh clone finds it again by its marker), edited only when STATUS.md
//! changes, never a person's issue taken over, a misbehaving GitHub never
//! failing a tick, a hands-off pull request told exactly once.

use super::forge::{CHAIN, at, merged_prs, setup, status_md, tick, tick_until};
use super::model::Issue;
use super::{FakeGitHub, Fault, Logged};
use crate::support::Sandbox;

const MARKER: &str = "<!-- converge:dashboard -->";
const LABEL: &str = "converge:dashboard";
const HANDS_OFF: &str = "converge:hands-off";

/// The issues whose body carries converge's dashboard marker.
fn dashboards(fake: &FakeGitHub) -> Vec<Issue> {
    fake.with_state(|st| {
        st.issues
            .values()
            .filter(|i| i.body.as_deref().is_some_and(|b| b.contains(MARKER)))
            .cloned()
            .collect()
    })
}

fn the_dashboard(fake: &FakeGitHub) -> Issue {
    let all = dashboards(fake);
    assert_eq!(all.len(), 1, "one dashboard issue: {all:?}");
    all[0].clone()
}

/// Writes to issues since `mark`: opening one, or editing one.
fn issue_writes(fake: &FakeGitHub, mark: usize) -> Vec<Logged> {
    fake.requests_since(mark)
        .into_iter()
        .filter(|r| {
            (r.method == "POST" && r.path.ends_with("/issues"))
                || (r.method == "PATCH" && r.path.contains("/issues/"))
        })
        .collect()
}

/// The issue's body shows STATUS.md as the status branch on GitHub holds it.
fn assert_mirrors(fake: &FakeGitHub, issue: &Issue) {
    let md = status_md(fake);
    let body = issue.body.clone().unwrap_or_default();
    assert!(
        body.starts_with(MARKER) && body.contains(md.trim()),
        "the dashboard does not mirror STATUS.md:\n--- body\n{body}\n--- STATUS.md\n{md}"
    );
}

fn forget(sb: &Sandbox, note: &str) {
    let path = sb.path().join(".git/converge/forge").join(note);
    std::fs::remove_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn person_issue(fake: &FakeGitHub, title: &str, labels: &[&str], body: &str) -> u64 {
    fake.with_state(|st| {
        let number = st.number();
        let now = st.now();
        st.issues.insert(
            number,
            Issue {
                number,
                title: title.to_owned(),
                body: Some(body.to_owned()),
                open: true,
                labels: labels.iter().map(|l| (*l).to_owned()).collect(),
                user: "ann".into(),
                created_at: now.clone(),
                updated_at: now,
                closed_at: None,
            },
        );
        number
    })
}

#[test]
fn the_dashboard_issue_opens_once_and_is_edited_only_when_status_md_changes() {
    let fake = FakeGitHub::start();
    let sb = setup(&fake, CHAIN, "");
    let run = tick(&sb, &fake, None);
    assert_eq!(run.code, 0, "{}", run.transcript());
    let issue = the_dashboard(&fake);
    assert_eq!(issue.title, "converge dashboard");
    assert!(issue.labels.contains(&LABEL.to_owned()), "{issue:?}");
    assert!(issue.open);
    assert_mirrors(&fake, &issue);
    assert!(
        run.stdout.contains("opened the dashboard issue"),
        "{}",
        run.transcript()
    );

    let mut edits = 0;
    for _ in 0..120 {
        let before = status_md(&fake);
        let mark = fake.mark();
        let run = tick(&sb, &fake, None);
        assert_eq!(run.code, 0, "{}", run.transcript());
        let writes = issue_writes(&fake, mark);
        if status_md(&fake) == before {
            assert_eq!(writes, [], "STATUS.md did not change");
        } else {
            assert_eq!(writes.len(), 1, "{writes:?}");
            assert_eq!(writes[0].method, "PATCH", "{writes:?}");
            assert!(
                writes[0]
                    .path
                    .ends_with(&format!("/issues/{}", issue.number))
            );
            edits += 1;
        }
        assert_mirrors(&fake, &the_dashboard(&fake));
        if merged_prs(&fake) == 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(merged_prs(&fake), 2, "not converged:\n{}", status_md(&fake));
    assert!(edits >= 2, "{edits} edits");
    // Settled: the dashboard costs no request at all.
    tick(&sb, &fake, None);
    let mark = fake.mark();
    let run = tick(&sb, &fake, None);
    assert_eq!(run.code, 0, "{}", run.transcript());
    let sent = fake.requests_since(mark);
    assert!(sent.iter().all(|r| !r.path.contains("/issues")), "{sent:?}");
    let md = the_dashboard(&fake).body.unwrap_or_default();
    assert!(md.contains("merged"), "{md}");
}

#[test]
fn a_crash_before_the_dashboard_was_noted_or_a_fresh_clone_opens_no_second_one() {
    let fake = FakeGitHub::start();
    let sb = setup(&fake, CHAIN, "");
    let run = tick(&sb, &fake, None);
    assert_eq!(run.code, 0, "{}", run.transcript());
    let issue = the_dashboard(&fake);
    let first = status_md(&fake);
    // The issue opened, the note of it lost (a crash in between): it is
    // found by its marker, and unchanged, it is not even edited.
    forget(&sb, "dashboard.json");
    let mark = fake.mark();
    let run = tick(&sb, &fake, None);
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert_eq!(the_dashboard(&fake).number, issue.number);
    if status_md(&fake) == first {
        assert_eq!(issue_writes(&fake, mark), []);
    }
    // Lost again while status changes: the same issue is edited.
    forget(&sb, "dashboard.json");
    let before = status_md(&fake);
    let mut changed = false;
    for _ in 0..60 {
        let run = tick(&sb, &fake, None);
        assert_eq!(run.code, 0, "{}", run.transcript());
        if status_md(&fake) != before {
            changed = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(changed, "status never changed");
    let now = the_dashboard(&fake);
    assert_eq!(now.number, issue.number);
    assert_mirrors(&fake, &now);

    // A runner's fresh clone has no notes at all: still the one issue.
    let fresh = Sandbox::new();
    fresh.git(&["clone", "-q", &fake.remote_path().to_string_lossy(), "."]);
    fresh.git(&["config", "user.name", "Test Committer"]);
    fresh.git(&["config", "user.email", "committer@example.com"]);
    let run = tick(&fresh, &fake, None);
    assert_eq!(run.code, 0, "{}", run.transcript());
    let again = the_dashboard(&fake);
    assert_eq!(again.number, issue.number);
    assert_mirrors(&fake, &again);
}

#[test]
fn a_persons_issue_with_the_dashboards_title_or_label_is_never_taken_over() {
    let fake = FakeGitHub::start();
    let labelled = person_issue(
        &fake,
        "converge dashboard",
        &[LABEL],
        "My own notes on converge.",
    );
    let titled = person_issue(&fake, "converge dashboard", &[], "Ideas.");
    let sb = setup(&fake, CHAIN, "");
    for _ in 0..3 {
        let run = tick(&sb, &fake, None);
        assert_eq!(run.code, 0, "{}", run.transcript());
        // Found by lookup each time, not by the note.
        let _ = std::fs::remove_file(sb.path().join(".git/converge/forge/dashboard.json"));
    }
    let mine = the_dashboard(&fake);
    assert!(mine.number != labelled && mine.number != titled);
    assert_eq!(mine.user, "converge-bot");
    assert_mirrors(&fake, &mine);
    let theirs = fake.with_state(|st| st.issues[&labelled].clone());
    assert_eq!(theirs.body.as_deref(), Some("My own notes on converge."));
    let other = fake.with_state(|st| st.issues[&titled].clone());
    assert_eq!(other.body.as_deref(), Some("Ideas."));
    let touched: Vec<Logged> = fake
        .requests()
        .into_iter()
        .filter(|r| {
            r.method != "GET"
                && (r.path.ends_with(&format!("/issues/{labelled}"))
                    || r.path.ends_with(&format!("/issues/{titled}")))
        })
        .collect();
    assert_eq!(touched, []);
}

#[test]
fn a_cooling_or_failing_github_fails_no_tick_and_the_dashboard_catches_up() {
    let fake = FakeGitHub::start();
    let sb = setup(&fake, CHAIN, "");
    // Opening the issue meets a 502: the tick goes on, GitHub cools down.
    fake.inject(Some("POST"), "/issues", 1, Fault::BadGateway);
    let run = tick(&sb, &fake, None);
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert_eq!(dashboards(&fake).len(), 0);
    let log = fake.requests();
    assert!(
        log.iter()
            .any(|r| r.method == "POST" && r.path.ends_with("/issues") && r.status == 502),
        "{log:?}"
    );
    // Cooling: nothing is sent, nothing fails.
    let mark = fake.mark();
    let run = tick(&sb, &fake, None);
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert_eq!(fake.requests_since(mark), []);
    // After the cooldown the issue opens.
    let run = tick(&sb, &fake, Some(&at(2)));
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert_mirrors(&fake, &the_dashboard(&fake));

    // Editing it meets a secondary rate limit: the tick goes on, and the
    // edit is made once the limit is over.
    fake.inject(
        Some("PATCH"),
        "/issues",
        1,
        Fault::SecondaryRateLimit {
            retry_after: Some(120),
        },
    );
    let before = status_md(&fake);
    let mut minute = 3;
    while status_md(&fake) == before {
        let run = tick(&sb, &fake, Some(&at(minute)));
        assert_eq!(run.code, 0, "{}", run.transcript());
        minute += 1;
        assert!(minute < 60, "status never changed");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let limited = fake
        .requests()
        .into_iter()
        .any(|r| r.method == "PATCH" && r.path.contains("/issues/") && r.status == 403);
    assert!(limited, "the edit met the rate limit");
    let stale = the_dashboard(&fake);
    assert!(
        !stale
            .body
            .unwrap_or_default()
            .contains(status_md(&fake).trim()),
        "the edit that met the limit changed nothing"
    );
    let run = tick(&sb, &fake, Some(&at(minute + 5)));
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert_mirrors(&fake, &the_dashboard(&fake));
}

#[test]
fn the_dashboard_can_be_turned_off_or_renamed() {
    let fake = FakeGitHub::start();
    let sb = setup(&fake, CHAIN, "dashboard = false\n");
    let run = tick(&sb, &fake, None);
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert_eq!(fake.with_state(|st| st.issues.len()), 0);
    let log = fake.requests();
    assert!(log.iter().all(|r| !r.path.contains("/issues")), "{log:?}");

    let fake = FakeGitHub::start();
    let sb = setup(&fake, CHAIN, "dashboard_title = \"Agents at work\"\n");
    let run = tick(&sb, &fake, None);
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert_eq!(the_dashboard(&fake).title, "Agents at work");
}

#[test]
fn a_hands_off_pull_request_is_labelled_and_told_why_exactly_once() {
    let fake = FakeGitHub::start();
    fake.require_checks("main", &["build"]);
    let sb = setup(&fake, CHAIN, "");
    tick_until(&sb, &fake, None, 60, |f| !f.prs().is_empty());
    let pr = fake.prs()[0].clone();
    assert!(!pr.labels.contains(&HANDS_OFF.to_owned()));
    fake.push_as_person(&pr.head, "mine.txt", "a person's work\n");
    let told = |fake: &FakeGitHub| -> Vec<String> {
        fake.comments(pr.number)
            .into_iter()
            .filter(|c| c.contains("<!-- converge:hands-off -->"))
            .collect()
    };
    for now in [at(2), at(4), at(6), at(8)] {
        let run = tick(&sb, &fake, Some(&now));
        assert_eq!(run.code, 0, "{}", run.transcript());
    }
    let comments = told(&fake);
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert!(
        comments[0].contains("someone else pushed")
            && comments[0].contains(&format!(
                "converge retry {}",
                pr.head.trim_start_matches("converge/")
            ))
            && comments[0].contains("merge this pull request yourself"),
        "{}",
        comments[0]
    );
    let labels = fake.pr(pr.number).expect("pr").labels;
    assert!(labels.contains(&HANDS_OFF.to_owned()), "{labels:?}");
    assert!(status_md(&fake).contains("someone else pushed"));
    // Told: later ticks ask nothing more about it.
    let mark = fake.mark();
    let run = tick(&sb, &fake, Some(&at(10)));
    assert_eq!(run.code, 0, "{}", run.transcript());
    let sent = fake.requests_since(mark);
    assert!(
        sent.iter()
            .all(|r| !r.path.contains(&format!("/issues/{}/", pr.number))),
        "{sent:?}"
    );
    // A runner without the note sees the label and says nothing again.
    forget(&sb, "hands_off.json");
    let run = tick(&sb, &fake, Some(&at(12)));
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert_eq!(told(&fake).len(), 1);
    assert_eq!(fake.total_merges(), 0);
}
