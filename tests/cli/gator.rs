//! gator's material as written: its example plans, its invariant commands and
//! presets, its write-backs, and `converge plan import`. The plans are copies from
//! gator's repository (tests/fixtures/gator/README.md says which and under what
//! license).

use crate::support::{Sandbox, repo_path};

/// Every gator plan under tests/fixtures/gator/, by file stem.
const FIXTURES: &[&str] = &[
    "readme-quickstart",
    "minimal",
    "rust-project",
    "gator-serve",
    "plan-init-scaffold",
    "plan-export",
];

fn fixture(stem: &str) -> String {
    repo_path(&format!("tests/fixtures/gator/{stem}.toml"))
        .to_str()
        .expect("utf-8 path")
        .to_owned()
}

/// A repository whose converge.toml declares every invariant the fixtures use,
/// added the way a gator user would: the rust preset, and gator's README commands.
fn repo_with_gator_invariants() -> Sandbox {
    let sandbox = Sandbox::repo();
    sandbox.write("planning/goal.md", "Goal.\n");
    sandbox.write("planning/converge.toml", "# Checks.\n");
    sandbox
        .converge(&["invariant", "add", "--preset", "rust"])
        .success();
    for (name, kind, args) in [
        ("cargo_check", "typecheck", "check,--workspace"),
        ("cargo_test", "test_suite", "test,--workspace"),
        ("cargo_fmt", "lint", "fmt,--all,--,--check"),
        (
            "cargo_clippy",
            "lint",
            "clippy,--workspace,--,--deny,warnings",
        ),
    ] {
        sandbox
            .converge(&[
                "invariant",
                "add",
                name,
                "--kind",
                kind,
                "--command",
                "cargo",
                "--args",
                args,
            ])
            .success();
    }
    sandbox
}

#[test]
fn gator_example_plans_validate_as_written() {
    let sandbox = repo_with_gator_invariants();
    for stem in FIXTURES {
        let text = std::fs::read_to_string(fixture(stem)).expect("fixture");
        let placed = format!("planning/plans/{stem}.toml");
        sandbox.write(&placed, &text);
        let run = sandbox.converge(&["plan", "validate", &placed]);
        assert_eq!(run.code, 0, "{stem}:\n{}", run.transcript());
        assert!(
            !run.stdout.contains("error["),
            "{stem}:\n{}",
            run.transcript()
        );
        insta::assert_snapshot!(format!("validate-{stem}"), run.transcript());
        std::fs::remove_file(sandbox.path().join(&placed)).expect("remove");
    }
}

#[test]
fn plan_import_round_trip() {
    for stem in FIXTURES {
        let sandbox = repo_with_gator_invariants();
        let source = fixture(stem);
        let original = std::fs::read_to_string(&source).expect("fixture");
        let run = sandbox.converge(&["plan", "import", &source]);
        run.success();
        let written_path = format!("planning/plans/{stem}.toml");
        let written = sandbox.read(&written_path);
        assert!(written.contains("state = \"draft\""), "{stem}:\n{written}");
        assert!(
            !written
                .lines()
                .any(|l| l.starts_with("status =") || l.starts_with("id =")),
            "{stem}:\n{written}"
        );
        for comment in original.lines().filter(|l| l.starts_with('#')) {
            assert!(
                written.contains(comment),
                "{stem} lost `{comment}`:\n{written}"
            );
        }
        // What converge reads back has no warnings: the write-backs are gone.
        let validate = sandbox.converge(&["plan", "validate"]);
        assert_eq!(validate.code, 0, "{stem}:\n{}", validate.transcript());
        assert!(
            validate.stdout.contains("no problems"),
            "{stem}:\n{}",
            validate.transcript()
        );
        let show = sandbox.converge(&["plan", "show", stem, "--worktree"]);
        show.success();
        // A second import refuses to overwrite and changes nothing; --force does.
        let again = sandbox.converge(&["plan", "import", &source]);
        assert_eq!(again.code, 2, "{}", again.transcript());
        assert!(again.stderr.contains("--force"), "{}", again.transcript());
        assert_eq!(sandbox.read(&written_path), written);
        sandbox.write(&written_path, "# changed by hand\n");
        sandbox
            .converge(&["plan", "import", &source, "--force"])
            .success();
        assert_eq!(sandbox.read(&written_path), written);
    }
}

#[test]
fn plan_import_reports_what_it_changed_and_what_is_missing() {
    let sandbox = Sandbox::repo();
    sandbox.write("planning/goal.md", "Goal.\n");
    sandbox.write(
        "planning/converge.toml",
        "[invariants.rust_build]\nkind = \"typecheck\"\ncommand = \"cargo\"\n",
    );
    let run = sandbox.converge(&["plan", "import", &fixture("plan-export"), "--id", "auth"]);
    let out = run.transcript().replace(&fixture("plan-export"), "FILE");
    insta::assert_snapshot!(out);
    run.success();
    insta::assert_snapshot!(sandbox.read("planning/plans/auth.toml"));
}

#[test]
fn plan_import_refuses_bad_ids_and_writes_nothing() {
    let sandbox = repo_with_gator_invariants();
    let before = sandbox.tree();
    for (args, message) in [
        (vec!["--id", "Auth"], "uppercase"),
        (vec!["--id", "queue"], "reserved"),
    ] {
        let source = fixture("minimal");
        let mut full: Vec<&str> = vec!["plan", "import", &source];
        full.extend(args);
        let run = sandbox.converge(&full);
        assert_eq!(run.code, 2, "{}", run.transcript());
        assert!(run.stderr.contains(message), "{}", run.transcript());
    }
    assert_eq!(sandbox.tree(), before);
}

#[test]
fn invariant_add_takes_gators_comma_separated_args_and_seconds() {
    let sandbox = Sandbox::repo();
    sandbox.write("planning/goal.md", "Goal.\n");
    sandbox.write("planning/converge.toml", "# Checks.\n");
    // gator's README, as written.
    sandbox
        .converge(&[
            "invariant",
            "add",
            "rust_build",
            "--kind",
            "typecheck",
            "--command",
            "cargo",
            "--args",
            "build,--workspace",
        ])
        .success();
    sandbox
        .converge(&[
            "invariant",
            "add",
            "rust_clippy",
            "--kind",
            "lint",
            "--command",
            "cargo",
            "--args",
            "clippy,--workspace,--,--deny,warnings",
            "--timeout",
            "300",
            "--description",
            "Lint with clippy",
        ])
        .success();
    // Arguments after `--` are taken as they are, commas included.
    sandbox
        .converge(&[
            "invariant",
            "add",
            "features",
            "--kind",
            "test_suite",
            "--command",
            "cargo",
            "--args",
            "test",
            "--",
            "--features=a,b",
            "--",
            "--nocapture",
        ])
        .success();
    insta::assert_snapshot!(sandbox.read("planning/converge.toml"));
    let list = sandbox.converge(&["invariant", "list", "--worktree"]);
    list.success();
    insta::assert_snapshot!(list.stdout);
}

#[test]
fn invariant_add_preset_adds_the_usual_checks_and_keeps_existing_ones() {
    let sandbox = Sandbox::repo();
    sandbox.write("planning/goal.md", "Goal.\n");
    sandbox.write(
        "planning/converge.toml",
        "# Ours.\n[invariants.rust_test]\nkind = \"test_suite\"\ncommand = \"make\"\n",
    );
    let run = sandbox.converge(&["invariant", "add", "--preset", "rust"]);
    run.success();
    insta::assert_snapshot!(run.stdout);
    let text = sandbox.read("planning/converge.toml");
    assert!(text.contains("command = \"make\""), "{text}");
    for name in ["rust_build", "rust_clippy", "rust_fmt_check"] {
        assert!(text.contains(&format!("[invariants.{name}]")), "{text}");
    }
    let forced = sandbox.converge(&["invariant", "add", "--preset", "rust", "--force"]);
    forced.success();
    let text = sandbox.read("planning/converge.toml");
    assert!(
        !text.contains("command = \"make\"") && text.contains("# Ours."),
        "{text}"
    );
    let bad = sandbox.converge(&["invariant", "add", "--preset", "rust", "--kind", "lint"]);
    assert_eq!(bad.code, 2, "{}", bad.transcript());
}

#[test]
fn gator_settings_converge_does_not_use_are_located_warnings() {
    let sandbox = Sandbox::repo();
    sandbox.write("planning/goal.md", "Goal.\n");
    sandbox.write(
        "planning/converge.toml",
        "[invariants.coverage]\ndescription = \"Coverage\"\nkind = \"coverage\"\ncommand = \"cargo\"\nargs = [\"llvm-cov\"]\nthreshold = 80.0\nscope = \"global\"\ntimeout = 300\n\n[reconcile]\ndefault_harness = \"open-code\"\n",
    );
    sandbox.write(
        "planning/plans/p.toml",
        "[plan]\nname = \"P\"\nisolation = \"container\"\ncontainer_image = \"gator-agent:latest\"\n\n[[tasks]]\nname = \"t\"\ndescription = \"T\"\nscope = \"narrow\"\ngate = \"auto\"\ninvariants = [\"coverage\"]\n",
    );
    let run = sandbox.converge(&["plan", "validate"]);
    assert_eq!(run.code, 2, "{}", run.transcript());
    insta::assert_snapshot!(run.transcript());
}

#[test]
fn plan_import_writes_a_plan_with_problems_as_a_draft_and_lists_them() {
    let sandbox = Sandbox::repo();
    sandbox.write(
        "gator/container plan.toml",
        "# From gator.\n[plan]\nname = \"Boxed\"\nbase_branch = \"main\"\nisolation = \"container\"  # docker\ncontainer_image = \"gator-agent:latest\"\n\n[[tasks]]\nname = \"t\"\ndescription = \"T\"\nscope = \"narrow\"\ngate = \"auto\"\nharness = \"codex-cli\"  # was codex\ninvariants = [\"node_test\"]\n",
    );
    let run = sandbox.converge(&["plan", "import", "gator/container plan.toml"]);
    insta::assert_snapshot!(run.transcript());
    run.success();
    let written = sandbox.read("planning/plans/container-plan.toml");
    assert!(
        written.contains("harness = \"codex\"  # was codex") && written.contains("# From gator."),
        "{written}"
    );
}
