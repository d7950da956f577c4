//! Commit dates: every commit converge writes reads the clock when it is
//! written (issue 11: "every commit of one `--until-idle` run carries its start
//! time: a merge is dated before its own parent"), while a date fixed by the
//! environment still applies (as every other test relies on).

use std::process::Command;

use crate::support::{BIN, Sandbox, isolate};

const CONFIG: &str = r#"[reconcile]
default_harness = "sim"
max_agents = 2
"#;

/// A chain of three tasks, each of whose agents takes a second: the run spans
/// several seconds, and each agent commits after converge's previous merge.
const CHAIN: &str = r#"[plan]
name = "Chain"
state = "active"

[[tasks]]
name = "a"
description = "Write a."
scope = "narrow"
gate = "auto"
allow_unchecked = true
[tasks.sim]
sleep = "1s"
files = [{ path = "a.txt", content = "a\n" }]

[[tasks]]
name = "b"
description = "Write b."
scope = "narrow"
gate = "auto"
allow_unchecked = true
depends_on = ["a"]
[tasks.sim]
sleep = "1s"
files = [{ path = "b.txt", content = "b\n" }]

[[tasks]]
name = "c"
description = "Write c."
scope = "narrow"
gate = "auto"
allow_unchecked = true
depends_on = ["b"]
[tasks.sim]
sleep = "1s"
files = [{ path = "c.txt", content = "c\n" }]
"#;

/// Commit id, committer time and parents of every commit reachable from `rev`.
fn commits(sb: &Sandbox, rev: &str) -> Vec<(String, i64, Vec<String>)> {
    sb.git(&["log", "--format=%H %ct %P", rev])
        .lines()
        .map(|line| {
            let mut words = line.split_whitespace();
            let id = words.next().expect("id").to_owned();
            let time = words.next().expect("time").parse().expect("seconds");
            (id, time, words.map(str::to_owned).collect())
        })
        .collect()
}

#[test]
fn every_commit_of_one_run_is_dated_when_written_never_before_its_parents() {
    let sb = Sandbox::repo();
    sb.write("README.md", "project\n");
    sb.write("planning/goal.md", "Converge.\n");
    sb.write("planning/converge.toml", CONFIG);
    sb.write("planning/plans/chain.toml", CHAIN);
    let start = sb.commit_all("plan");

    // One process for the whole run, dated by the real clock.
    let home = tempfile::tempdir().expect("home");
    let mut command = Command::new(BIN);
    isolate(&mut command, home.path());
    let output = command
        .env_remove("GIT_COMMITTER_DATE")
        .env_remove("GIT_AUTHOR_DATE")
        .args(["reconcile", "--wait", "--max-ticks", "200"])
        .current_dir(sb.path())
        .output()
        .expect("converge runs");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(sb.git(&["show", "main:c.txt"]).contains('c'));

    let all = commits(&sb, "main");
    let time_of = |id: &str| all.iter().find(|(c, ..)| c == id).expect("known").1;
    let written: Vec<_> = all.iter().take_while(|(id, ..)| *id != start).collect();
    let merges = written.iter().filter(|(.., parents)| parents.len() == 2);
    assert_eq!(merges.count(), 3, "{written:#?}");
    for (id, time, parents) in &written {
        for parent in parents {
            assert!(
                *time >= time_of(parent),
                "{id} ({time}) is dated before its parent {parent} ({})",
                time_of(parent)
            );
        }
    }
    // The run took seconds (three agents of a second each, one after the
    // other): its last commit is dated later than its first.
    let newest = written.first().expect("commits").1;
    let oldest = written.last().expect("commits").1;
    assert!(
        newest >= oldest + 2,
        "commit times do not advance: {oldest}..{newest}"
    );
}

#[test]
fn a_date_fixed_by_the_environment_dates_every_commit() {
    let sb = Sandbox::repo();
    sb.write("README.md", "project\n");
    sb.write("planning/goal.md", "Converge.\n");
    sb.write("planning/converge.toml", CONFIG);
    sb.write(
        "planning/plans/chain.toml",
        CHAIN.replace("sleep = \"1s\"\n", ""),
    );
    let start = sb.commit_all("plan");
    sb.converge(&["reconcile", "--wait", "--max-ticks", "200"])
        .success();
    let fixed = sb.git(&["log", "-1", "--format=%ct", &start]);
    // converge's own commits (status and merges: main's first parents); the
    // agents' commits are theirs, dated by their clock.
    let dates = sb.git(&[
        "log",
        "--first-parent",
        "--format=%ct %at",
        &format!("{start}..main"),
    ]);
    assert!(!dates.is_empty());
    for line in dates.lines() {
        assert_eq!(line, format!("{} {}", fixed.trim(), fixed.trim()));
    }
}

#[test]
fn a_commit_on_a_parent_from_a_clock_running_ahead_is_not_dated_before_it() {
    if std::env::var_os("GIT_COMMITTER_DATE").is_some()
        || std::env::var_os("GIT_AUTHOR_DATE").is_some()
    {
        eprintln!("skipped: the test process itself fixes commit dates");
        return;
    }
    let sb = Sandbox::repo();
    sb.write("a.txt", "a\n");
    // `commit_all` dates it 2026-01-01; this one is from a clock far ahead.
    sb.commit_all("base");
    sb.write("b.txt", "b\n");
    sb.git(&["add", "b.txt"]);
    let mut command = Command::new("git");
    isolate(&mut command, sb.path());
    let status = command
        .env("GIT_COMMITTER_DATE", "2099-01-01T00:00:00+00:00")
        .args(["commit", "-q", "-m", "ahead"])
        .current_dir(sb.path())
        .status()
        .expect("git runs");
    assert!(status.success());
    let ahead: gix::ObjectId = sb.git(&["rev-parse", "HEAD"]).trim().parse().expect("id");
    let tree: gix::ObjectId = sb
        .git(&["rev-parse", "HEAD^{tree}"])
        .trim()
        .parse()
        .expect("id");

    let repo = converge::git::Repo::discover(sb.path()).expect("repo");
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let on_ahead = repo
        .write_commit(tree, &[ahead], "on ahead", &converge::git::Signer::Person)
        .expect("commit");
    let first = repo
        .write_commit(tree, &[], "root", &converge::git::Signer::Person)
        .expect("commit");
    let time = |id: gix::ObjectId| -> i64 {
        sb.git(&["log", "-1", "--format=%ct", &id.to_string()])
            .trim()
            .parse()
            .expect("seconds")
    };
    assert_eq!(time(on_ahead), time(ahead), "dated at its parent");
    assert!(time(first) >= before, "a root commit is dated by the clock");
    assert!(time(first) < time(ahead));
}
