//! `invariant list|test|add`.

use crate::support::{Sandbox, repo_path};

fn repo_with_config(config: &str) -> Sandbox {
    let sandbox = Sandbox::repo();
    sandbox.write("planning/goal.md", "Goal.\n");
    sandbox.write("planning/converge.toml", config);
    sandbox.commit_all("config");
    sandbox
}

const CONFIG: &str = r#"# Project checks.
[reconcile]
max_agents = 2   # two at a time

[invariants.build]
kind = "typecheck"   # compile only
command = "true"

# Tests come last.
[invariants.test]
kind = "test_suite"
command = "sh"
args = ["-c", "echo running tests; echo all good"]

[merge]
invariants = ["build"]
"#;

#[test]
fn add_keeps_comments_and_places_the_table_after_the_last_invariant() {
    let sandbox = repo_with_config(CONFIG);
    let run = sandbox.converge(&[
        "invariant",
        "add",
        "lint",
        "--kind",
        "lint",
        "--command",
        "cargo",
        "--args",
        "clippy",
        "--args",
        "--",
        "--args",
        "-D",
        "--args",
        "warnings",
        "--timeout",
        "5m",
        "--advisory",
    ]);
    run.success();
    let text = sandbox.read("planning/converge.toml");
    insta::assert_snapshot!(text);
    let list = sandbox.converge(&["invariant", "list", "--worktree"]);
    list.success();
    let row = list
        .stdout
        .lines()
        .find(|l| l.starts_with("lint "))
        .expect("a row for lint");
    let cells: Vec<&str> = row
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        cells,
        [
            "lint",
            "lint (advisory)",
            "cargo clippy -- -D warnings",
            "5m",
            "-"
        ],
        "{}",
        list.transcript()
    );
}

#[test]
fn add_refuses_an_existing_name_and_changes_nothing() {
    let sandbox = repo_with_config(CONFIG);
    let run = sandbox.converge(&[
        "invariant",
        "add",
        "build",
        "--kind",
        "typecheck",
        "--command",
        "make",
    ]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("invariant `build` already exists") && run.stderr.contains("--force"),
        "{}",
        run.transcript()
    );
    assert_eq!(sandbox.read("planning/converge.toml"), CONFIG);
    let forced = sandbox.converge(&[
        "invariant",
        "add",
        "build",
        "--kind",
        "typecheck",
        "--command",
        "make",
        "--force",
    ]);
    forced.success();
    let text = sandbox.read("planning/converge.toml");
    assert!(
        text.contains("command = \"make\"") && text.contains("# Tests come last."),
        "{text}"
    );
    assert!(
        text.find("command = \"make\"") < text.find("[invariants.test]"),
        "the replaced table moved:\n{text}"
    );
}

#[test]
fn add_refuses_bad_names_and_durations() {
    let sandbox = repo_with_config(CONFIG);
    for (args, message) in [
        (
            vec!["Lint", "--kind", "lint", "--command", "x"],
            "contains uppercase letters",
        ),
        (
            vec![
                "lint",
                "--kind",
                "lint",
                "--command",
                "x",
                "--timeout",
                "5 minutes",
            ],
            "is not a duration",
        ),
        (
            vec!["lint", "--kind", "linter", "--command", "x"],
            "invalid value 'linter'",
        ),
    ] {
        let mut full = vec!["invariant", "add"];
        full.extend(args);
        let run = sandbox.converge(&full);
        assert_eq!(run.code, 2, "{}", run.transcript());
        assert!(run.stderr.contains(message), "{}", run.transcript());
    }
    assert_eq!(sandbox.read("planning/converge.toml"), CONFIG);
}

#[test]
fn list_shows_commands_and_users() {
    let sandbox = Sandbox::repo();
    sandbox.copy_tree(&repo_path("examples/auth/planning"), "planning");
    sandbox.commit_all("auth");
    let run = sandbox.converge(&["invariant", "list"]);
    run.success();
    insta::with_settings!({filters => vec![(r"\([0-9a-f]{7}\)", "(SHA)")]}, {
        insta::assert_snapshot!(run.stdout);
    });
}

#[test]
fn test_reports_a_pass_with_output() {
    let sandbox = repo_with_config(CONFIG);
    let run = sandbox.converge(&["invariant", "test", "test"]);
    run.success();
    assert!(
        run.stdout
            .starts_with("invariant `test` passed\n  exit code 0 (expected 0)\n  duration "),
        "{}",
        run.transcript()
    );
    assert!(
        run.stdout
            .ends_with("  output:\n  | running tests\n  | all good\n"),
        "{}",
        run.transcript()
    );
}

#[test]
fn test_reports_failures_and_timeouts_with_exit_1() {
    let config = CONFIG.replace("echo all good", "echo broken; exit 4").replace(
        "[merge]",
        "[invariants.slow]\nkind = \"custom\"\ncommand = \"sleep\"\nargs = [\"30\"]\ntimeout = \"200ms\"\n\n[merge]",
    );
    let sandbox = repo_with_config(&config);
    let failed = sandbox.converge(&["invariant", "test", "test"]);
    assert_eq!(failed.code, 1);
    assert!(
        failed
            .stdout
            .contains("invariant `test` failed\n  exit code 4 (expected 0)"),
        "{}",
        failed.transcript()
    );
    assert!(
        failed.stdout.contains("  | broken"),
        "{}",
        failed.transcript()
    );
    let started = std::time::Instant::now();
    let slow = sandbox.converge(&["invariant", "test", "slow"]);
    assert_eq!(slow.code, 1);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(
        slow.stdout.contains("timed out after 200ms"),
        "{}",
        slow.transcript()
    );
}

#[test]
fn test_of_a_missing_program_says_what_to_install() {
    let config = CONFIG.replace("command = \"true\"", "command = \"no-such-program-xyz\"");
    let sandbox = repo_with_config(&config);
    let run = sandbox.converge(&["invariant", "test", "build"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("cannot start `no-such-program-xyz`")
            && run
                .stderr
                .contains("hint: check that `no-such-program-xyz` is installed"),
        "{}",
        run.transcript()
    );
}

#[test]
fn test_of_an_unknown_invariant_suggests() {
    let sandbox = repo_with_config(CONFIG);
    let run = sandbox.converge(&["invariant", "test", "tset"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("hint: did you mean `test`?"),
        "{}",
        run.transcript()
    );
}

#[test]
fn test_runs_at_the_root_of_the_working_tree_as_the_gate_does() {
    let sandbox = repo_with_config(
        "[invariants.at-root]\nkind = \"custom\"\ncommand = \"sh\"\nargs = [\"-c\", \"test -f planning/converge.toml && pwd\"]\n",
    );
    sandbox.write("src/deep/file.txt", "x\n");
    let run = sandbox.converge_in("src/deep", &["invariant", "test", "at-root"]);
    run.success();
    let root = sandbox.path().canonicalize().expect("root");
    assert!(
        run.stdout.contains(&format!("| {}", root.display())),
        "{}",
        run.transcript()
    );
    assert!(
        run.stderr
            .contains(&format!("in {}", sandbox.path().display()))
            || run.stderr.contains(&format!("in {}", root.display())),
        "{}",
        run.transcript()
    );
}
