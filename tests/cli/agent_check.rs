//! `converge check` leaves nothing behind (issue 11: "files an invariant
//! writes when the agent runs `converge check` (a test report) are swept into
//! the attempt as leftovers: outside `paths` they failed the gate; without
//! `paths` they would be merged").

use crate::support::Sandbox;

/// The invariant writes a report into the directory it runs in (the
/// worktree's root, for the agent's check as for the gate), appends to a
/// tracked file and deletes another, and passes when the agent's work is there.
const CONFIG: &str = r#"[reconcile]
default_harness = "sim"
max_agents = 2

[invariants.tests]
kind = "test_suite"
command = "sh"
args = ["-c", "mkdir -p reports && echo '<testsuite/>' > reports/junit.xml && echo 'checked' >> README.md && rm -f LICENSE && test -s work.txt"]

[harness.leaves]
kind = "command"
command = "sh"
args = ["-c", '''echo scoped > work.txt && mkdir -p deep/er && cd deep/er && converge check && converge done''']

[harness.commits]
kind = "command"
command = "sh"
args = ["-c", '''echo open > work.txt && converge check && git add -A && git commit -qm work && converge done''']
"#;

/// `scoped` may change only work.txt, runs its check from a subdirectory (the
/// invariants still run at the worktree's root, as at the gate) and leaves its
/// work for converge to commit; `open` has no `paths` and commits everything
/// itself (`git add -A`).
const PLAN: &str = r#"[plan]
name = "Checks"
state = "active"

[[tasks]]
name = "scoped"
description = "Write work.txt and check it."
scope = "narrow"
gate = "auto"
allow_unchecked = true
harness = "leaves"
paths = ["work.txt"]
invariants = ["tests"]
retry_max = 0

[[tasks]]
name = "open"
description = "Write work.txt, check it, commit everything."
scope = "narrow"
gate = "auto"
allow_unchecked = true
harness = "commits"
depends_on = ["scoped"]
invariants = ["tests"]
retry_max = 0
"#;

#[test]
fn what_an_agents_check_writes_is_taken_back_and_never_merged() {
    let sb = Sandbox::repo();
    sb.write("README.md", "project\n");
    sb.write("LICENSE", "MIT\n");
    sb.write("planning/goal.md", "Converge.\n");
    sb.write("planning/converge.toml", CONFIG);
    sb.write("planning/plans/checks.toml", PLAN);
    let start = sb.commit_all("plan");
    let run = sb.converge(&["reconcile", "--wait", "--max-ticks", "200"]);
    run.success();

    let status: toml::Table = sb
        .git(&["show", "main:planning/status/checks.toml"])
        .parse()
        .expect("status");
    for task in ["scoped", "open"] {
        let t = status["tasks"][task].as_table().expect("task");
        assert_eq!(
            t["phase"].as_str(),
            Some("merged"),
            "{task}: {t:#?}\n{}",
            run.transcript()
        );
    }
    // Only the agents' own change merged: no report, README and LICENSE as
    // they were.
    let files = sb.git(&["ls-tree", "-r", "--name-only", "main"]);
    assert!(!files.contains("reports/"), "{files}");
    assert!(files.contains("LICENSE"), "{files}");
    assert_eq!(sb.git(&["show", "main:README.md"]), "project\n");
    assert_eq!(sb.git(&["show", "main:work.txt"]), "open\n");
    let changed = sb.git(&["log", "--format=", "--name-only", &format!("{start}..main")]);
    let mut changed: Vec<&str> = changed
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with("planning/"))
        .collect();
    changed.sort();
    changed.dedup();
    assert_eq!(changed, ["work.txt"]);

    // The agent is told, and what the check wrote is kept for it to read in
    // its run directory.
    let run_dir = sb.path().join(".git/converge/runs/checks/scoped/1");
    let log = std::fs::read_to_string(run_dir.join("agent.log")).expect("agent.log");
    assert!(
        log.contains("passed: tests")
            && log.contains("took back what the invariants changed, so that it is not part of the attempt: LICENSE, README.md, reports/junit.xml"),
        "{log}"
    );
    let kept = run_dir.join("check/reports/junit.xml");
    assert_eq!(
        std::fs::read_to_string(&kept).expect("the report is kept"),
        "<testsuite/>\n"
    );
}

#[test]
fn taking_back_restores_the_agents_own_state_exactly_and_keeps_ignored_files() {
    use converge::agent::Redactor;
    use converge::check::Snapshot;
    use std::os::unix::fs::PermissionsExt;

    let sb = Sandbox::repo();
    sb.write(".gitignore", "cache/\n");
    sb.write("edited.txt", "base\n");
    sb.write("tracked.txt", "tracked\n");
    sb.write("run.sh", "#!/bin/sh\n");
    let exec = |p: &str, mode: u32| {
        std::fs::set_permissions(sb.path().join(p), std::fs::Permissions::from_mode(mode))
            .expect("chmod");
    };
    exec("run.sh", 0o755);
    std::os::unix::fs::symlink("tracked.txt", sb.path().join("link")).expect("symlink");
    sb.commit_all("base");
    // The agent's own uncommitted work, before it runs `converge check`.
    sb.write("edited.txt", "the agent's edit\n");
    sb.write("new.txt", "the agent's new file\n");
    std::fs::remove_file(sb.path().join("tracked.txt")).expect("rm");
    let before = sb.git(&["status", "--porcelain"]);

    let repo = converge::git::Repo::discover(sb.path()).expect("repo");
    let snapshot = Snapshot::capture(&repo).expect("capture");
    // What invariants might do.
    sb.write("edited.txt", "rewritten by a formatter\n");
    sb.write("new.txt", "overwritten\n");
    sb.write("tracked.txt", "recreated\n");
    sb.write("reports/junit.xml", "<testsuite/>\n");
    sb.write("reports/env.txt", "KEY=sk-live-0123456789\n");
    std::fs::write(sb.path().join("reports/core"), b"\xff\xfe binary").expect("write");
    sb.write("cache/build.o", "cache\n");
    exec("run.sh", 0o644);
    std::fs::remove_file(sb.path().join("link")).expect("rm link");
    std::os::unix::fs::symlink("/etc/passwd", sb.path().join("link")).expect("symlink");

    let keep = tempfile::tempdir().expect("keep");
    let taken = snapshot
        .take_back(
            &repo,
            keep.path(),
            &Redactor::new(["sk-live-0123456789".to_owned()]),
        )
        .expect("take back");
    let paths: Vec<&str> = taken.iter().map(|t| t.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "edited.txt",
            "link",
            "new.txt",
            "reports/core",
            "reports/env.txt",
            "reports/junit.xml",
            "run.sh",
            "tracked.txt"
        ]
    );
    assert_eq!(sb.git(&["status", "--porcelain"]), before);
    assert_eq!(sb.read("edited.txt"), "the agent's edit\n");
    assert_eq!(sb.read("new.txt"), "the agent's new file\n");
    assert!(!sb.path().join("tracked.txt").exists());
    assert!(!sb.path().join("reports/junit.xml").exists());
    assert_eq!(
        std::fs::read_link(sb.path().join("link")).expect("link"),
        std::path::Path::new("tracked.txt")
    );
    let mode = std::fs::metadata(sb.path().join("run.sh"))
        .expect("run.sh")
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "{mode:o}");
    // Ignored files stay (caches), and never count as the attempt's.
    assert_eq!(sb.read("cache/build.o"), "cache\n");
    // The versions the invariants left are kept, masked; a binary file is not.
    assert_eq!(
        std::fs::read_to_string(keep.path().join("reports/env.txt")).expect("kept"),
        "KEY=[redacted]\n"
    );
    assert!(!keep.path().join("reports/core").exists());
    assert!(
        taken
            .iter()
            .all(|t| t.kept.is_some() == (t.path != "reports/core" && t.path != "link"))
    );
    assert_eq!(
        std::fs::read_to_string(keep.path().join("reports/junit.xml")).expect("kept"),
        "<testsuite/>\n"
    );
    assert_eq!(
        std::fs::read_to_string(keep.path().join("edited.txt")).expect("kept"),
        "rewritten by a formatter\n"
    );
    // Nothing changed since: nothing to take back.
    let again = Snapshot::capture(&repo).expect("capture");
    assert_eq!(
        again
            .take_back(&repo, keep.path(), &Redactor::default())
            .expect("take back"),
        []
    );
}
