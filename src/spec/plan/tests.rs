use super::*;
use crate::spec::config::default_config;
use crate::spec::diag::Diagnostic;

fn compile_text(text: &str) -> (Option<Plan>, Vec<Diagnostic>) {
    let file = SourceFile {
        path: "planning/plans/p.toml".into(),
        text: text.into(),
    };
    let mut config = default_config();
    config.invariants.insert(
        "test".into(),
        crate::spec::model::Invariant {
            name: "test".into(),
            kind: crate::spec::model::InvariantKind::TestSuite,
            command: "true".into(),
            args: vec![],
            timeout: std::time::Duration::from_secs(1),
            expected_exit_code: 0,
            advisory: false,
        },
    );
    // Work that merges is checked by `[merge]`; the tests of
    // `unchecked-task` below take it away.
    config.merge.invariants = vec!["test".into()];
    let mut diags = Vec::new();
    let plan = compile(&file, "p", &config, &mut diags);
    (plan, diags)
}

fn compile_unmerged(text: &str, advisory: bool) -> Vec<Diagnostic> {
    let file = SourceFile {
        path: "planning/plans/p.toml".into(),
        text: text.into(),
    };
    let mut config = default_config();
    config.invariants.insert(
        "lint".into(),
        crate::spec::model::Invariant {
            name: "lint".into(),
            kind: crate::spec::model::InvariantKind::Lint,
            command: "true".into(),
            args: vec![],
            timeout: std::time::Duration::from_secs(1),
            expected_exit_code: 0,
            advisory,
        },
    );
    let mut diags = Vec::new();
    compile(&file, "p", &config, &mut diags);
    diags
}

#[test]
fn an_auto_task_nothing_checks_is_refused_unless_it_says_so() {
    let plan = |extra: &str| {
        format!(
            "[plan]\nname = \"P\"\n[[tasks]]\nname = \"a\"\ndescription = \"A\"\nscope = \"narrow\"\ngate = \"auto\"\n{extra}"
        )
    };
    // Nothing checks it: refused at its `gate`, with every way out.
    let diags = compile_unmerged(&plan(""), false);
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert_eq!(diags[0].code, Code::UncheckedTask);
    assert_eq!(
        diags[0].location.as_ref().map(|l| (l.line, l.column)),
        Some((7, 8))
    );
    let hint = diags[0].hint.as_deref().unwrap_or_default();
    for way in [
        "invariants = [\"lint\"]",
        "[merge] invariants",
        "human_review",
        "allow_unchecked = true",
    ] {
        assert!(hint.contains(way), "{hint}");
    }
    // Its own blocking invariant, or opting out, is enough.
    assert!(compile_unmerged(&plan("invariants = [\"lint\"]\n"), false).is_empty());
    assert!(compile_unmerged(&plan("allow_unchecked = true\n"), false).is_empty());
    // An advisory invariant never fails a gate, so it does not count.
    let diags = compile_unmerged(&plan("invariants = [\"lint\"]\n"), true);
    assert_eq!(diags.len(), 1, "{diags:?}");
    // A misspelt invariant is one error, not also "unchecked".
    let diags = compile_unmerged(&plan("invariants = [\"lnit\"]\n"), false);
    let codes: Vec<Code> = diags.iter().map(|d| d.code).collect();
    assert_eq!(codes, [Code::UnknownInvariant], "{diags:?}");
    // A person's gate is a check.
    let reviewed = plan("").replace("gate = \"auto\"", "gate = \"human_review\"");
    assert!(compile_unmerged(&reviewed, false).is_empty());
    // `allow_unchecked` must be a boolean.
    let diags = compile_unmerged(&plan("allow_unchecked = \"yes\"\n"), false);
    assert!(diags.iter().any(|d| d.code == Code::WrongType), "{diags:?}");
}

#[test]
fn one_bad_task_name_is_one_error_and_hides_nothing() {
    let text = r#"
[plan]
name = "P"

[[tasks]]
name = "Write Docs"
description = "A"
scope = "narrow"
gate = "auto"
depends_on = ["setpu"]

[[tasks]]
name = "setup"
description = "B"
scope = "narrow"
gate = "auto"

[[tasks]]
name = "publish"
description = "C"
scope = "narrow"
gate = "auto"
depends_on = ["Write Docs"]
"#;
    let (plan, mut diags) = compile_text(text);
    assert!(plan.is_none());
    crate::spec::diag::sort(&mut diags);
    let summary: Vec<String> = diags
        .iter()
        .map(|d| format!("{}:{}", d.location.as_ref().map_or(0, |l| l.line), d.code))
        .collect();
    // The invalid name, once; the misspelt dependency of the same task;
    // nothing about `publish`, whose dependency is the badly named task.
    assert_eq!(
        summary,
        ["6:invalid-name", "10:unknown-dependency"],
        "{diags:?}"
    );
    assert_eq!(diags[1].hint.as_deref(), Some("did you mean `setup`?"));
}

const DIAMOND: &str = r#"
[plan]
name = "Diamond"

[[tasks]]
name = "a"
description = "A"
scope = "narrow"
gate = "auto"
invariants = ["test"]

[[tasks]]
name = "b"
description = "B"
scope = "medium"
gate = "auto"
depends_on = ["a"]

[[tasks]]
name = "c"
description = "C"
scope = "broad"
gate = "human_review"
depends_on = ["a"]

[[tasks]]
name = "d"
description = "D"
scope = "narrow"
gate = "auto"
depends_on = ["b", "c"]
"#;

#[test]
fn compiles_a_diamond_with_defaults() {
    let (plan, diags) = compile_text(DIAMOND);
    assert!(diags.is_empty(), "{diags:?}");
    let plan = plan.expect("valid");
    assert_eq!(plan.tasks.len(), 4);
    assert_eq!(plan.base_branch, "main");
    assert_eq!(plan.state, PlanState::Active);
    let d = plan.task("d").expect("d");
    assert_eq!(d.depends_on, ["b", "c"]);
    assert_eq!(d.retry_max, DEFAULT_RETRY_MAX);
    assert_eq!(d.harness, "claude-code");
    assert_eq!(d.line, 27);
}

#[test]
fn generation_ignores_formatting_but_not_content() {
    let (a, _) = compile_text(DIAMOND);
    let reordered = DIAMOND.replace(
        "name = \"a\"\ndescription = \"A\"\nscope = \"narrow\"",
        "scope   =   \"narrow\"   # a comment\nname = \"a\"\ndescription = '''A'''",
    );
    assert_ne!(reordered, DIAMOND);
    let (b, _) = compile_text(&reordered);
    let gen_of = |p: &Option<Plan>, t: &str| {
        p.as_ref()
            .expect("valid")
            .task(t)
            .expect("task")
            .generation
            .clone()
    };
    assert_eq!(gen_of(&a, "a"), gen_of(&b, "a"));
    let (c, _) = compile_text(&DIAMOND.replace("description = \"A\"", "description = \"A2\""));
    assert_ne!(gen_of(&a, "a"), gen_of(&c, "a"));
    let (d, _) = compile_text(
        &DIAMOND.replace("depends_on = [\"b\", \"c\"]", "depends_on = [\"c\", \"b\"]"),
    );
    assert_eq!(gen_of(&a, "d"), gen_of(&d, "d"));
}

#[test]
fn reports_cycles_as_paths() {
    let text = DIAMOND.replace("name = \"a\"\n", "name = \"a\"\ndepends_on = [\"d\"]\n");
    let (plan, diags) = compile_text(&text);
    assert!(plan.is_none());
    let cycle: Vec<_> = diags
        .iter()
        .filter(|d| d.code == Code::DependencyCycle)
        .collect();
    assert_eq!(cycle.len(), 1, "{diags:?}");
    assert_eq!(cycle[0].message, "dependency cycle: a -> d -> b -> a");
}

#[test]
fn reports_every_task_problem_at_once() {
    let text = r#"
[plan]
name = "Broken"
[[tasks]]
name = "a"
description = "A"
scope = "narow"
gate = "auto"
depnds_on = []
[[tasks]]
name = "a"
description = "dup"
scope = "narrow"
gate = "auto"
[[tasks]]
name = "b"
description = "B"
scope = "narrow"
gate = "auto"
depends_on = ["b", "zz", "a"]
invariants = ["tets"]
"#;
    let (plan, mut diags) = compile_text(text);
    assert!(plan.is_none());
    crate::spec::diag::sort(&mut diags);
    let summary: Vec<String> = diags
        .iter()
        .map(|d| format!("{}:{}", d.location.as_ref().map_or(0, |l| l.line), d.code))
        .collect();
    assert_eq!(
        summary,
        [
            "7:invalid-value",
            "9:unknown-key",
            "11:duplicate-task",
            "20:self-dependency",
            "20:unknown-dependency",
            "21:unknown-invariant",
        ]
    );
    let unknown_key = diags
        .iter()
        .find(|d| d.code == Code::UnknownKey)
        .expect("present");
    assert_eq!(
        unknown_key.hint.as_deref(),
        Some("did you mean `depends_on`?")
    );
}

#[test]
fn gator_write_backs_and_harness_names_are_warnings() {
    let text = r#"[plan]
id = "6f1c2a3e-8b7d-4c1e-9f20-3a5b7c9d1e2f"
name = "Exported"
default_harness = "codex-cli"
container_image = "gator-agent:latest"

[[tasks]]
name = "rust_types"
description = "A"
scope = "narrow"
gate = "auto"
status = "passed"
harness = "open-code"
"#;
    let (plan, diags) = compile_text(text);
    let plan = plan.expect("warnings only");
    assert_eq!(plan.default_harness.as_deref(), Some("codex"));
    assert_eq!(plan.tasks[0].harness, "opencode");
    let found: Vec<(usize, &str)> = diags
        .iter()
        .map(|d| (d.location.as_ref().map_or(0, |l| l.line), d.code.as_str()))
        .collect();
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    assert_eq!(
        found,
        [
            (4, "gator-compat"),
            (5, "gator-compat"),
            (2, "gator-compat"),
            (13, "gator-compat"),
            (12, "gator-compat"),
        ]
    );
    let status = &diags[4];
    assert!(status.message.contains("planning/status/"), "{status:?}");
    assert!(
        diags[1]
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("[sandbox]"))
    );
}

#[test]
fn container_isolation_is_refused_with_what_converge_offers() {
    let text = DIAMOND.replace(
        "name = \"Diamond\"",
        "name = \"Diamond\"\nisolation = \"container\"",
    );
    let (plan, diags) = compile_text(&text);
    assert!(plan.is_none());
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert_eq!(diags[0].code, Code::InvalidValue);
    let hint = diags[0].hint.as_deref().unwrap_or_default();
    assert!(
        hint.contains("Landlock") && hint.contains("isolation = \"sandbox\""),
        "{hint}"
    );
}
