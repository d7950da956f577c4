//! Schedules fire: `[[schedule]]` copies its template into the queue by a
//! commit on the base branch, once per (schedule, fire time), whatever the
//! number of ticks, restarts or reconcilers. The clock is `CONVERGE_NOW`
//! (test-only).

use std::path::Path;

use crate::support::{Sandbox, converge_at};

const TEMPLATE: &str = "---\nscope: narrow\ngate: human_review\n---\n\nReview the week.\n";

/// A repository with one schedule (`extra` lines added to it), no agents.
fn scheduled(cron: &str, extra: &str) -> Sandbox {
    let sb = Sandbox::repo();
    sb.write("README.md", "schedules\n");
    sb.write("planning/goal.md", "Goal.\n");
    sb.write(
        "planning/converge.toml",
        format!(
            "[reconcile]\ndefault_harness = \"sim\"\nmax_agents = 0\n\n[[schedule]]\nname = \"review\"\ncron = \"{cron}\"\nqueue = \"review.md\"\n{extra}"
        ),
    );
    sb.write("planning/queue/templates/review.md", TEMPLATE);
    sb.commit_all("schedule");
    sb
}

fn tick_at(dir: &Path, now: &str) -> std::process::Output {
    let home = tempfile::tempdir().expect("home");
    converge_at(
        dir,
        home.path(),
        &["reconcile", "--once"],
        &[("CONVERGE_NOW", now)],
    )
}

#[track_caller]
fn tick_ok(sb: &Sandbox, now: &str) -> String {
    let out = tick_at(sb.path(), now);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "tick at {now}: {text}");
    text
}

/// The items the schedule enqueued on `branch`, queued or promoted, by name.
fn items(sb: &Sandbox, branch: &str) -> Vec<String> {
    let mut names: Vec<String> = sb
        .git(&["ls-tree", "-r", "--name-only", branch, "planning/queue"])
        .lines()
        .filter(|p| !p.contains("/templates/"))
        .filter_map(|p| p.rsplit('/').next())
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

/// How many enqueue commits `branch` has.
fn enqueue_commits(sb: &Sandbox, branch: &str) -> usize {
    sb.git(&["log", "--format=%B%x00", branch])
        .split('\0')
        .filter(|m| m.contains("Converge-Action: schedule"))
        .count()
}

#[test]
fn a_schedule_fires_once_per_fire_time_across_restarts() {
    let sb = scheduled("0 9 * * *", "");
    // Before the first fire time: nothing.
    tick_ok(&sb, "2026-03-02T08:59:00Z");
    assert_eq!(items(&sb, "main"), Vec::<String>::new());
    // At 09:00 (and on every later tick, each a new process) one item.
    let out = tick_ok(&sb, "2026-03-02T09:00:20Z");
    assert!(out.contains("review-20260302-0900"), "{out}");
    tick_ok(&sb, "2026-03-02T09:00:40Z");
    tick_ok(&sb, "2026-03-02T09:30:00Z");
    assert_eq!(items(&sb, "main"), ["review-20260302-0900.md"]);
    assert_eq!(enqueue_commits(&sb, "main"), 1);
    // The tick that enqueued it promoted it: its fire is remembered from
    // queue/done/ too.
    assert_eq!(
        sb.git(&["ls-tree", "--name-only", "main", "planning/queue/done/"]),
        "planning/queue/done/review-20260302-0900.md\n"
    );
    // The item is the template, byte for byte.
    let path = sb
        .git(&["ls-tree", "-r", "--name-only", "main", "planning/queue"])
        .lines()
        .find(|p| p.ends_with("review-20260302-0900.md"))
        .expect("item")
        .to_owned();
    assert_eq!(sb.git(&["show", &format!("main:{path}")]), TEMPLATE);
    let message = sb.git(&[
        "log",
        "-1",
        "--format=%B",
        "--grep=Converge-Action: schedule",
        "main",
    ]);
    assert!(
        message.starts_with("converge: schedule review")
            && message.contains("Converge-Action: schedule\n")
            && message.contains("Converge-Spec: "),
        "{message}"
    );
    // The next day's fire time is another item.
    tick_ok(&sb, "2026-03-03T09:01:00Z");
    tick_ok(&sb, "2026-03-03T09:02:00Z");
    assert_eq!(
        items(&sb, "main"),
        ["review-20260302-0900.md", "review-20260303-0900.md"]
    );
    assert_eq!(enqueue_commits(&sb, "main"), 2);
}

#[test]
fn a_timezone_offset_moves_the_fire_time() {
    let sb = scheduled("0 9 * * *", "timezone = \"+02:00\"\n");
    tick_ok(&sb, "2026-03-02T09:00:20Z");
    assert_eq!(items(&sb, "main"), Vec::<String>::new());
    tick_ok(&sb, "2026-03-02T07:00:20Z");
    // Named by the fire time in UTC.
    assert_eq!(items(&sb, "main"), ["review-20260302-0700.md"]);
}

#[test]
fn missed_skip_drops_late_fire_times_and_once_catches_up_once() {
    for (missed, expected) in [
        (
            "skip",
            vec!["review-20260302-0900.md", "review-20260302-1400.md"],
        ),
        (
            "once",
            vec![
                "review-20260302-0900.md",
                "review-20260302-1300.md",
                "review-20260302-1400.md",
            ],
        ),
    ] {
        let sb = scheduled(
            "0 * * * *",
            &format!("missed = \"{missed}\"\ngrace = \"10m\"\n"),
        );
        tick_ok(&sb, "2026-03-02T09:00:30Z");
        // Down from 09:01 to 13:30: four fire times missed, the newest 30
        // minutes late.
        tick_ok(&sb, "2026-03-02T13:30:00Z");
        tick_ok(&sb, "2026-03-02T13:31:00Z");
        tick_ok(&sb, "2026-03-02T14:00:05Z");
        assert_eq!(items(&sb, "main"), expected, "missed = {missed}");
    }
}

#[test]
fn a_new_schedule_does_not_catch_up_on_fire_times_before_it() {
    let sb = scheduled("0 9 * * *", "missed = \"once\"\n");
    tick_ok(&sb, "2026-03-02T15:00:00Z");
    assert_eq!(items(&sb, "main"), Vec::<String>::new());
}

#[test]
fn two_clones_racing_enqueue_each_fire_time_once() {
    let sb = Sandbox::new();
    let home = tempfile::tempdir().expect("home");
    let git = |dir: &Path, args: &[&str]| {
        let mut command = std::process::Command::new("git");
        crate::support::isolate(&mut command, home.path());
        let out = command.args(args).current_dir(dir).output().expect("git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    git(
        sb.path(),
        &["init", "-q", "--bare", "-b", "main", "remote.git"],
    );
    let origin = sb.path().join("origin");
    std::fs::create_dir_all(origin.join("planning/queue/templates")).expect("dirs");
    git(&origin, &["init", "-q", "-b", "main"]);
    std::fs::write(origin.join("planning/goal.md"), "Goal.\n").expect("write");
    std::fs::write(
        origin.join("planning/converge.toml"),
        "[reconcile]\nremote = \"origin\"\ndefault_harness = \"sim\"\nmax_agents = 0\n\n[[schedule]]\nname = \"review\"\ncron = \"*/5 * * * *\"\nqueue = \"review.md\"\n",
    )
    .expect("write");
    std::fs::write(origin.join("planning/queue/templates/review.md"), TEMPLATE).expect("write");
    git(&origin, &["add", "-A"]);
    git(&origin, &["commit", "-q", "-m", "schedule"]);
    git(
        &origin,
        &[
            "push",
            "-q",
            sb.path().join("remote.git").to_str().expect("utf-8"),
            "main",
        ],
    );
    let clones: Vec<_> = ["one", "two"]
        .iter()
        .map(|name| {
            git(sb.path(), &["clone", "-q", "remote.git", name]);
            sb.path().join(name)
        })
        .collect();
    // Each fire time, both clones tick at once, three times each.
    for minute in ["00", "05", "10"] {
        let now = format!("2026-03-02T09:{minute}:10Z");
        let threads: Vec<_> = clones
            .iter()
            .cloned()
            .map(|dir| {
                let now = now.clone();
                std::thread::spawn(move || {
                    for _ in 0..3 {
                        let out = tick_at(&dir, &now);
                        let code = out.status.code();
                        // 3: lost a push race, the next tick recomputes.
                        assert!(
                            matches!(code, Some(0 | 3)),
                            "{code:?}: {}{}",
                            String::from_utf8_lossy(&out.stdout),
                            String::from_utf8_lossy(&out.stderr)
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("clone ticks");
        }
    }
    let remote = sb.path().join("remote.git");
    let tree = git(
        &remote,
        &["ls-tree", "-r", "--name-only", "main", "planning/queue"],
    );
    let mut names: Vec<&str> = tree
        .lines()
        .filter(|p| !p.contains("/templates/"))
        .filter_map(|p| p.rsplit('/').next())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "review-20260302-0900.md",
            "review-20260302-0905.md",
            "review-20260302-0910.md"
        ]
    );
    let log = git(&remote, &["log", "--format=%B%x00", "main"]);
    let enqueues = log
        .split('\0')
        .filter(|m| m.contains("Converge-Action: schedule"))
        .count();
    assert_eq!(enqueues, 3, "{log}");
}

#[test]
fn dry_run_explain_shows_the_due_schedule_and_changes_nothing() {
    let sb = scheduled("0 9 * * *", "");
    let head = sb.git(&["rev-parse", "main"]);
    let out = converge_at(
        sb.path(),
        tempfile::tempdir().expect("home").path(),
        &["reconcile", "--dry-run", "--explain"],
        &[("CONVERGE_NOW", "2026-03-02T09:00:20Z")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains(
            "schedule review: due at 2026-03-02T09:00:00Z: would enqueue planning/queue/review-20260302-0900.md from planning/queue/templates/review.md"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("next at 2026-03-03T09:00:00Z"), "{stdout}");
    assert_eq!(sb.git(&["rev-parse", "main"]), head);
}

#[test]
fn a_template_with_errors_is_not_enqueued() {
    let sb = scheduled("0 9 * * *", "");
    sb.write(
        "planning/queue/templates/review.md",
        TEMPLATE.replace("human_review", "auto"),
    );
    sb.commit_all("unchecked template");
    let out = tick_ok(&sb, "2026-03-02T09:00:20Z");
    assert!(
        out.contains("schedule review: due at 2026-03-02T09:00:00Z, not enqueued: planning/queue/templates/review.md has errors"),
        "{out}"
    );
    assert_eq!(items(&sb, "main"), Vec::<String>::new());
    assert_eq!(enqueue_commits(&sb, "main"), 0);
}

#[test]
fn bad_schedules_are_located_with_a_hint() {
    for (extra, cron, queue, expect) in [
        (
            "",
            "0 9 * *",
            "review.md",
            "planning/converge.toml:7:8: error[invalid-cron]",
        ),
        (
            "",
            "0 9 * * *",
            "reveiw.md",
            "planning/converge.toml:8:9: error[invalid-value]",
        ),
        (
            "timezone = \"Mars/Olympus_Mons\"\n",
            "0 9 * * *",
            "review.md",
            "planning/converge.toml:9:12: error[invalid-value]",
        ),
        (
            "timezone = \"+25:00\"\n",
            "0 9 * * *",
            "review.md",
            "planning/converge.toml:9:12: error[invalid-value]",
        ),
        (
            "missed = \"all\"\n",
            "0 9 * * *",
            "review.md",
            "planning/converge.toml:9:10: error[invalid-value]",
        ),
    ] {
        let sb = Sandbox::repo();
        sb.write("planning/goal.md", "Goal.\n");
        sb.write(
            "planning/converge.toml",
            format!(
                "[reconcile]\ndefault_harness = \"sim\"\nmax_agents = 0\n\n[[schedule]]\nname = \"review\"\ncron = \"{cron}\"\nqueue = \"{queue}\"\n{extra}"
            ),
        );
        sb.write("planning/queue/templates/review.md", TEMPLATE);
        sb.commit_all("schedule");
        let run = sb.converge(&["reconcile", "--once"]);
        assert_eq!(run.code, 2, "{}", run.transcript());
        let out = format!("{}{}", run.stdout, run.stderr);
        assert!(
            out.contains(expect) && out.contains("hint:"),
            "{expect}\n{}",
            run.transcript()
        );
    }
}

#[test]
fn two_daemons_and_a_restart_enqueue_a_fire_time_once() {
    use crate::watch::Daemon;
    use std::time::Duration;
    let sb = scheduled("0 9 * * *", "");
    let now = [("CONVERGE_NOW", "2026-03-02T09:00:20Z")];
    let logs = [(); 3].map(|()| tempfile::tempdir().expect("log dir"));
    // Two daemons on one repository: their ticks take turns under the lock.
    let mut first = Daemon::start_with(&sb, logs[0].path(), &now);
    let second = Daemon::start_with(&sb, logs[1].path(), &now);
    assert_eq!(items(&sb, "main"), ["review-20260302-0900.md"]);
    // The first stops and starts again; the second is told to tick again.
    first.signal("TERM");
    assert_eq!(first.wait_exit(Duration::from_secs(10)), 0);
    let _restarted = Daemon::start_with(&sb, logs[2].path(), &now);
    let before = second.ticks().len();
    second.signal("HUP");
    second.wait_for("a tick after SIGHUP", Duration::from_secs(10), |_| {
        second.ticks().len() > before
    });
    assert_eq!(items(&sb, "main"), ["review-20260302-0900.md"]);
    assert_eq!(enqueue_commits(&sb, "main"), 1);
}
