//! Housekeeping (issue 14): converge's own identity on its own commits, the
//! worktree root, and what a reviewer reads on the base branch.

use crate::support::Sandbox;

const PLAN: &str = r#"[plan]
name = "Tidy"
state = "active"

[[tasks]]
name = "a"
description = "Write a."
scope = "narrow"
gate = "auto"
allow_unchecked = true
[tasks.sim]
files = [{ path = "a.txt", content = "a\n" }]
"#;

/// A repository with `config` and one `auto` task, planned and committed.
fn planned(config: &str) -> Sandbox {
    let sb = Sandbox::repo();
    sb.write("README.md", "project\n");
    sb.write("planning/goal.md", "Tidy up.\n");
    sb.write("planning/converge.toml", config);
    sb.write("planning/plans/tidy.toml", PLAN);
    sb.commit_all("plan");
    sb
}

const SIM: &str = "[reconcile]\ndefault_harness = \"sim\"\n";

/// Runs converge with the test environment, minus `remove`, plus `env`.
fn run(sb: &Sandbox, args: &[&str], remove: &[&str], env: &[(&str, &str)]) {
    let home = tempfile::tempdir().expect("home");
    let mut command = std::process::Command::new(crate::support::BIN);
    crate::support::isolate(&mut command, home.path());
    for name in remove {
        command.env_remove(name);
    }
    let output = command
        .args(args)
        .envs(env.iter().copied())
        .current_dir(sb.path())
        .output()
        .expect("converge runs");
    assert!(
        output.status.success(),
        "{args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `author | committer | subject` of each commit converge wrote on main (the
/// agent's own commits are the agent's business).
fn identities(sb: &Sandbox) -> Vec<String> {
    sb.git(&["log", "--format=%an <%ae> | %cn <%ce> | %s", "main"])
        .lines()
        .filter(|l| l.contains("| converge: "))
        .map(str::to_owned)
        .collect()
}

const NO_ENV_IDENTITY: &[&str] = &[
    "GIT_COMMITTER_NAME",
    "GIT_COMMITTER_EMAIL",
    "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL",
];

#[test]
fn converge_commits_as_itself_and_a_decision_as_the_person() {
    // The person is `Test Committer` by user.name/user.email (Sandbox::repo).
    let sb = planned(SIM);
    run(
        &sb,
        &["reconcile", "--wait", "--max-ticks", "50"],
        NO_ENV_IDENTITY,
        &[],
    );
    run(&sb, &["pause", "tidy"], NO_ENV_IDENTITY, &[]);
    let log = identities(&sb);
    let (person, own): (Vec<&String>, Vec<&String>) = log
        .iter()
        .partition(|l| l.ends_with("| converge: pause tidy"));
    assert_eq!(
        person,
        [
            "Test Committer <committer@example.com> | Test Committer <committer@example.com> | converge: pause tidy"
        ],
        "{log:#?}"
    );
    assert!(own.len() >= 2, "a merge and status commits: {log:#?}");
    for line in &own {
        assert!(
            line.starts_with("converge <converge@localhost> | converge <converge@localhost> | "),
            "converge's own commit as someone else: {log:#?}"
        );
    }
    assert!(own.iter().any(|l| l.contains("merge tidy/a")), "{log:#?}");
}

#[test]
fn configured_committer_wins_over_the_environment() {
    let sb = planned(&format!(
        "{SIM}committer = \"Tidy Bot <bot@example.com>\"\n"
    ));
    // The test environment names `Test Committer` in GIT_COMMITTER_NAME.
    run(&sb, &["reconcile", "--wait", "--max-ticks", "50"], &[], &[]);
    run(&sb, &["pause", "tidy"], &[], &[]);
    let log = identities(&sb);
    for line in &log {
        let expected = if line.ends_with("| converge: pause tidy") {
            "Test Committer <committer@example.com> | "
        } else {
            "Tidy Bot <bot@example.com> | Tidy Bot <bot@example.com> | "
        };
        assert!(line.contains(expected), "{line} in {log:#?}");
    }
}

#[test]
fn without_configuration_the_environment_names_converge() {
    let sb = planned(SIM);
    run(
        &sb,
        &["reconcile", "--wait", "--max-ticks", "50"],
        NO_ENV_IDENTITY,
        &[
            ("GIT_COMMITTER_NAME", "CI Runner"),
            ("GIT_COMMITTER_EMAIL", "ci@example.com"),
        ],
    );
    let log = identities(&sb);
    assert!(!log.is_empty());
    for line in &log {
        assert!(
            line.starts_with("CI Runner <ci@example.com> | CI Runner <ci@example.com> | "),
            "{log:#?}"
        );
    }
}

#[test]
fn a_malformed_committer_is_located() {
    let sb = planned(&format!("{SIM}committer = \"Tidy Bot\"\n"));
    let out = sb.converge(&["plan", "validate"]);
    assert_ne!(out.code, 0, "{}", out.transcript());
    let text = out.transcript();
    assert!(
        text.contains("planning/converge.toml:3:")
            && text.contains("`committer` in [reconcile] is not `Name <email>`"),
        "{text}"
    );
}

#[test]
fn worktrees_live_under_the_configured_root_which_git_status_ignores() {
    let sb = planned(&format!("{SIM}worktree_root = \"build/wt\"\n"));
    sb.converge(&["reconcile", "--once"]).success();
    let worktree = sb.path().join("build/wt/tidy/a");
    assert!(
        worktree.join(".git").exists(),
        "no worktree at {}",
        worktree.display()
    );
    assert!(!sb.path().join(".converge").exists());
    let exclude = sb.read(".git/info/exclude");
    assert!(exclude.lines().any(|l| l == "/build/wt/"), "{exclude}");
    // A second dispatch does not list it twice.
    run(&sb, &["reconcile", "--wait", "--max-ticks", "50"], &[], &[]);
    let exclude = sb.read(".git/info/exclude");
    assert_eq!(exclude.matches("/build/wt/").count(), 1, "{exclude}");
    assert_eq!(sb.git(&["status", "--porcelain"]), "");
    assert_eq!(sb.read("a.txt"), "a\n");
}

#[test]
fn a_worktree_root_in_planning_or_the_git_dir_is_refused_where_it_is_written() {
    for (root, why) in [
        ("planning/wt", "inside planning/"),
        ("./.git/wt", "inside .git/"),
        (".", "the checkout itself"),
    ] {
        let sb = planned(&format!("{SIM}worktree_root = \"{root}\"\n"));
        let out = sb.converge(&["plan", "validate"]);
        let text = out.transcript();
        assert_ne!(out.code, 0, "{text}");
        assert!(
            text.contains("planning/converge.toml:3:") && text.contains(why),
            "{root}: {text}"
        );
    }
    // An absolute path is checked against the repository when it is used.
    let sb = Sandbox::repo();
    let inside = sb.path().join(".git/wt");
    let sb = {
        sb.write("README.md", "project\n");
        sb.write("planning/goal.md", "Tidy up.\n");
        sb.write(
            "planning/converge.toml",
            format!("{SIM}worktree_root = \"{}\"\n", inside.display()),
        );
        sb.write("planning/plans/tidy.toml", PLAN);
        sb.commit_all("plan");
        sb
    };
    let out = sb.converge(&["reconcile", "--once"]);
    let text = out.transcript();
    assert_eq!(out.code, 2, "{text}");
    assert!(text.contains("inside the git directory"), "{text}");
    assert!(!inside.exists(), "{text}");
}

#[test]
fn a_worktree_at_the_old_root_is_found_by_branch_after_the_root_moves() {
    let slow = PLAN.replace("[tasks.sim]\n", "[tasks.sim]\nsleep = \"1s\"\n");
    let sb = Sandbox::repo();
    sb.write("README.md", "project\n");
    sb.write("planning/goal.md", "Tidy up.\n");
    sb.write("planning/converge.toml", SIM);
    sb.write("planning/plans/tidy.toml", &slow);
    sb.commit_all("plan");
    sb.converge(&["reconcile", "--once"]).success();
    let old = sb.path().join(".converge/worktrees/tidy/a");
    assert!(old.join(".git").exists());
    sb.write(
        "planning/converge.toml",
        format!("{SIM}worktree_root = \"wt\"\n"),
    );
    sb.commit_all("move the worktree root");
    run(&sb, &["reconcile", "--wait", "--max-ticks", "50"], &[], &[]);
    assert_eq!(sb.read("a.txt"), "a\n");
    assert!(!old.exists(), "the old worktree is retired");
    assert_eq!(
        sb.git(&["worktree", "list", "--porcelain"])
            .matches("worktree ")
            .count(),
        1
    );
}

const RETRIED: &str = r#"[plan]
name = "Retried"
state = "active"

[[tasks]]
name = "a"
description = "Fails twice without work, then writes a."
scope = "narrow"
gate = "auto"
invariants = ["present"]
[tasks.sim]
fail_attempts = 2
files = [{ path = "a.txt", content = "a\n" }]

[[tasks]]
name = "b"
description = "Writes bad work once, then good work."
scope = "narrow"
gate = "auto"
invariants = ["good"]
[tasks.sim]
fail_attempts = 1
files = [{ path = "b.txt", content = "good\n", on_fail = "bad\n" }]
"#;

const RETRY_CONFIG: &str = r#"[reconcile]
default_harness = "sim"
keep_attempts = 1
backoff = { base = "1ms", factor = 1, max = "1ms" }

[invariants.present]
kind = "custom"
command = "true"

[invariants.good]
kind = "custom"
command = "grep"
args = ["-q", "good", "b.txt"]
"#;

fn attempt_refs(sb: &Sandbox) -> String {
    sb.git(&[
        "for-each-ref",
        "--format=%(refname)",
        "refs/converge/attempts/",
    ])
}

fn run_dirs(sb: &Sandbox) -> Vec<String> {
    let root = sb.path().join(".git/converge/runs");
    let mut out = Vec::new();
    for plan in ["retried"] {
        for task in ["a", "b"] {
            let dir = root.join(plan).join(task);
            let mut attempts: Vec<String> = std::fs::read_dir(&dir)
                .map(|d| {
                    d.filter_map(Result::ok)
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            attempts.sort();
            for a in attempts {
                out.push(format!("{plan}/{task}/{a}"));
            }
        }
    }
    out
}

#[test]
fn gc_keeps_the_newest_and_unmerged_attempts_and_removes_the_rest() {
    let sb = Sandbox::repo();
    sb.write("README.md", "project\n");
    sb.write("planning/goal.md", "Retry.\n");
    sb.write("planning/converge.toml", RETRY_CONFIG);
    sb.write("planning/plans/retried.toml", RETRIED);
    sb.commit_all("plan");
    run(
        &sb,
        &["reconcile", "--wait", "--max-ticks", "200"],
        &[],
        &[],
    );
    assert_eq!(sb.read("a.txt"), "a\n");
    assert_eq!(sb.read("b.txt"), "good\n");
    let refs = attempt_refs(&sb);
    let dirs = run_dirs(&sb);
    assert_eq!(
        dirs,
        [
            "retried/a/1",
            "retried/a/2",
            "retried/a/3",
            "retried/b/1",
            "retried/b/2"
        ]
    );
    assert!(
        refs.contains("refs/converge/attempts/retried/b/1"),
        "{refs}"
    );

    let dry = sb.converge(&["gc", "--dry-run"]);
    dry.success();
    insta::assert_snapshot!("gc-dry-run", dry.transcript());
    assert_eq!(run_dirs(&sb), dirs, "--dry-run removes nothing");
    assert_eq!(attempt_refs(&sb), refs);

    let done = sb.converge(&["gc"]);
    done.success();
    insta::assert_snapshot!("gc", done.transcript());
    assert_eq!(run_dirs(&sb), ["retried/a/3", "retried/b/1", "retried/b/2"]);
    let left = attempt_refs(&sb);
    assert!(
        left.contains("refs/converge/attempts/retried/b/1"),
        "unmerged work stays: {left}"
    );
    assert!(!left.contains("retried/a/"), "{left}");
    // The unmerged head still holds its work.
    assert_eq!(
        sb.git(&["show", "refs/converge/attempts/retried/b/1:b.txt"]),
        "bad\n"
    );

    // Nothing more to do; a second run changes nothing.
    let again = sb.converge(&["gc"]);
    again.success();
    assert!(
        again.stdout.contains("removed 0 attempt(s)"),
        "{}",
        again.transcript()
    );
}

#[test]
fn gc_waits_for_the_reconciler_lock() {
    let sb = planned(SIM);
    sb.converge(&["gc", "--dry-run"]).success();
    let lock = sb.path().join(".git/converge/lock");
    let mut holder = std::process::Command::new("flock")
        .arg(&lock)
        .args(["sleep", "120"])
        .spawn()
        .expect("flock");
    // Give flock time to take the lock.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::process::Command::new("flock")
        .args(["-n"])
        .arg(&lock)
        .arg("true")
        .status()
        .expect("flock -n")
        .success()
    {
        assert!(
            std::time::Instant::now() < until,
            "flock never took the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let started = std::time::Instant::now();
    let busy = converge_at_with_wait(&sb);
    holder.kill().expect("kill");
    holder.wait().expect("wait");
    assert_eq!(busy.0, 3, "{}", busy.1);
    assert!(busy.1.contains("another converge reconciler"), "{}", busy.1);
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
}

/// `converge gc` while the lock is held: (exit code, stderr).
fn converge_at_with_wait(sb: &Sandbox) -> (i32, String) {
    let home = tempfile::tempdir().expect("home");
    let out = crate::support::converge_at(sb.path(), home.path(), &["gc"], &[]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
