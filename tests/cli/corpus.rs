//! The bad-input corpus: every file under tests/fixtures/invalid/ is placed into
//! an otherwise valid planning/ tree and must be refused with exit code 2, the
//! diagnostic codes its `expect:` line names (located in that file), a stable
//! rendering (snapshot), and no change on disk.

use crate::support::Sandbox;

const CONFIG: &str = r#"[invariants.build]
kind = "typecheck"
command = "true"

[invariants.test]
kind = "test_suite"
command = "true"

[merge]
invariants = ["build"]
"#;

const BASE_PLAN: &str = r#"[plan]
name = "Base plan"

[[tasks]]
name = "setup"
description = "Set up."
scope = "narrow"
gate = "auto"
allow_unchecked = true
"#;

const TEMPLATE: &str =
    "---\nscope: narrow\ngate: auto\nallow_unchecked: true\n---\nWeekly review.\n";

/// Where a fixture goes inside planning/, by its file name.
fn placement(file_name: &str) -> String {
    if file_name.starts_with("config-") {
        "planning/converge.toml".into()
    } else if file_name.starts_with("approval-") {
        "planning/approvals/base/setup.toml".into()
    } else if let Some(rest) = file_name.strip_prefix("queue-") {
        format!("planning/queue/{rest}")
    } else {
        format!("planning/plans/{file_name}")
    }
}

/// The codes a fixture declares in `# expect: a b` or `<!-- expect: a b -->`.
fn expected_codes(content: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(content);
    let line = text
        .lines()
        .find(|l| l.contains("expect:"))
        .expect("fixture declares `expect:`");
    let codes = line
        .split("expect:")
        .nth(1)
        .expect("codes")
        .replace("-->", "");
    codes.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn every_invalid_input_is_diagnosed() {
    let mut count = 0;
    insta::glob!("../fixtures/invalid", "*", |path| {
        if path.is_dir() {
            return;
        }
        count += 1;
        let file_name = path
            .file_name()
            .expect("file")
            .to_string_lossy()
            .into_owned();
        let content = std::fs::read(path).expect("fixture");
        let sandbox = Sandbox::new();
        sandbox.write("planning/goal.md", "Goal.\n");
        sandbox.write("planning/converge.toml", CONFIG);
        sandbox.write("planning/plans/base.toml", BASE_PLAN);
        sandbox.write("planning/queue/templates/weekly.md", TEMPLATE);
        let placed = placement(&file_name);
        sandbox.write(&placed, &content);
        let before = sandbox.tree();

        let run = sandbox.converge(&["plan", "validate"]);

        assert_eq!(
            run.code,
            2,
            "{file_name} must be refused with exit 2:\n{}",
            run.transcript()
        );
        for code in expected_codes(&content) {
            let needle = format!("error[{code}]");
            let located = run
                .stdout
                .lines()
                .any(|l| l.starts_with(&placed) && l.contains(&needle));
            assert!(
                located,
                "{file_name}: no `{needle}` in {placed}:\n{}",
                run.transcript()
            );
        }
        assert_eq!(
            sandbox.tree(),
            before,
            "{file_name}: validation changed files"
        );
        insta::assert_snapshot!(format!("{placed}\n{}", run.transcript()));
    });
    assert!(
        count >= 40,
        "the corpus has {count} files; at least 40 are required"
    );
}

#[test]
fn a_two_mebibyte_plan_is_refused_without_parsing() {
    let sandbox = Sandbox::new();
    sandbox.write("planning/goal.md", "Goal.\n");
    let mut big = String::from("[plan]\nname = \"Big\"\n");
    while big.len() < 2 * 1024 * 1024 {
        big.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    sandbox.write("planning/plans/big.toml", &big);
    let run = sandbox.converge(&["plan", "validate"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stdout
            .contains("planning/plans/big.toml: error[file-too-large]: the file is 2097"),
        "{}",
        run.transcript()
    );
}

#[test]
fn json_output_lists_every_diagnostic_with_position() {
    let sandbox = Sandbox::new();
    sandbox.write("planning/goal.md", "Goal.\n");
    sandbox.write(
        "planning/plans/p.toml",
        "[plan]\nname = \"P\"\n[[tasks]]\nname = \"a\"\ndescription = \"A\"\nscope = \"x\"\ngate = \"y\"\n",
    );
    let run = sandbox.converge(&["plan", "validate", "--format", "json"]);
    assert_eq!(run.code, 2);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(report["valid"], false);
    assert_eq!(report["errors"], 2);
    let lines: Vec<_> = report["diagnostics"]
        .as_array()
        .expect("array")
        .iter()
        .map(|d| d["line"].clone())
        .collect();
    assert_eq!(lines, [serde_json::json!(6), serde_json::json!(7)]);
}

#[test]
fn warnings_are_reported_without_failing_validation() {
    let sandbox = Sandbox::new();
    sandbox.write("planning/converge.toml", CONFIG);
    sandbox.write(
        "planning/plans/base.toml",
        BASE_PLAN.replace(
            "gate = \"auto\"\n",
            "gate = \"auto\"\ninvariants = [\"build\", \"build\"]\n",
        ),
    );
    sandbox.write("planning/plans/notes.txt", "not a plan\n");
    sandbox.write(
        "planning/approvals/base/gone.toml",
        format!("decision = \"approve\"\ncommit = \"{}\"\n", "c".repeat(40)),
    );
    let run = sandbox.converge(&["plan", "validate"]);
    assert_eq!(run.code, 0, "{}", run.transcript());
    for expected in [
        "planning/goal.md: warning[missing-goal]",
        "planning/plans/base.toml:9:24: warning[duplicate-dependency]: invariant `build` is listed twice in task `setup`",
        "planning/plans/notes.txt: warning[ignored-file]",
        "planning/approvals/base/gone.toml: warning[unknown-approval-target]",
    ] {
        assert!(
            run.stdout.contains(expected),
            "missing `{expected}`:\n{}",
            run.transcript()
        );
    }
    assert!(
        run.stdout.ends_with("— 4 warnings\n"),
        "{}",
        run.transcript()
    );
}

#[test]
fn reconcile_refuses_a_setting_that_is_not_supported_and_says_what_to_remove() {
    let sandbox = Sandbox::repo();
    sandbox.write("planning/goal.md", "Goal.\n");
    sandbox.write(
        "planning/converge.toml",
        "[reconcile]\ndefault_harness = \"sim\"\nremote = \"origin\"\n\n[autonomy]\nenabled = true\n",
    );
    sandbox.write(
        "planning/plans/base.toml",
        BASE_PLAN.replace("[plan]\n", "[plan]\nstate = \"active\"\n"),
    );
    let head = sandbox.commit_all("plan");
    let origin = tempfile::tempdir().expect("origin");
    let origin_path = origin.path().display().to_string();
    sandbox.git(&["init", "-q", "--bare", &origin_path]);
    sandbox.git(&["remote", "add", "origin", &origin_path]);
    sandbox.git(&["push", "-q", "origin", "main"]);
    let run = sandbox.converge(&["reconcile", "--once"]);
    assert_eq!(run.code, 2, "{}", run.transcript());
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(
        out.contains("planning/converge.toml:6:11: error[not-supported]: the autonomy loop runs on one machine's branches")
            && out.contains("hint: run the loop where `[reconcile] remote` is unset"),
        "{}",
        run.transcript()
    );
    // Nothing ran: no status commit, no task branch.
    assert_eq!(sandbox.git(&["rev-parse", "main"]).trim(), head);
    assert_eq!(sandbox.git(&["branch", "--list", "converge/*"]), "");
}
