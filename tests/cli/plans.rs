//! `plan validate|show|graph`, the examples, the template and `--help`.

use crate::support::{Sandbox, repo_path};

#[test]
fn top_level_help() {
    let run = Sandbox::new().converge(&["--help"]);
    run.success();
    insta::assert_snapshot!(run.stdout);
}

#[test]
fn every_command_has_help_with_an_example() {
    for args in [
        vec!["init"],
        vec!["plan", "validate"],
        vec!["plan", "show"],
        vec!["plan", "graph"],
        vec!["plan", "import"],
        vec!["invariant", "list"],
        vec!["invariant", "test"],
        vec!["invariant", "add"],
        vec!["completions"],
    ] {
        let mut with_help = args.clone();
        with_help.push("--help");
        let run = Sandbox::new().converge(&with_help);
        run.success();
        assert!(
            run.stdout.contains("Examples:\n  converge "),
            "{args:?} has no example:\n{}",
            run.stdout
        );
    }
}

#[test]
fn template_and_examples_validate_clean() {
    for dir in [
        "planning-template",
        "examples/auth",
        "examples/mixed-dag",
        "examples/human-gates",
    ] {
        let sandbox = Sandbox::new();
        let path = repo_path(dir);
        let run = sandbox.converge(&["plan", "validate", path.to_str().expect("utf-8 path")]);
        assert_eq!(run.code, 0, "{dir}:\n{}", run.transcript());
        assert!(
            run.stdout.starts_with("ok: ") && run.stdout.contains("no problems"),
            "{dir}:\n{}",
            run.transcript()
        );
    }
}

#[test]
fn examples_have_the_promised_shapes() {
    let count = |dir: &str, needle: &str| {
        std::fs::read_dir(repo_path(dir))
            .expect("plans dir")
            .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("read"))
            .map(|t| t.matches(needle).count())
            .sum::<usize>()
    };
    assert_eq!(count("examples/mixed-dag/planning/plans", "[[tasks]]"), 20);
    assert!(count("examples/human-gates/planning/plans", "gate = \"human_") >= 2);
    assert!(count("examples/human-gates/planning/plans", "harness = ") >= 2);
    assert!(count("examples/human-gates/planning/plans", "model = ") >= 1);
}

fn auth_repo() -> Sandbox {
    let sandbox = Sandbox::repo();
    sandbox.copy_tree(&repo_path("examples/auth/planning"), "planning");
    sandbox.commit_all("add the auth plan");
    sandbox
}

#[test]
fn plan_show_renders_a_table() {
    let run = auth_repo().converge(&["plan", "show", "auth"]);
    run.success();
    insta::with_settings!({filters => vec![(r"\([0-9a-f]{7}\)", "(SHA)")]}, {
        insta::assert_snapshot!(run.stdout);
    });
}

#[test]
fn plan_graph_dot_and_mermaid() {
    let sandbox = auth_repo();
    let dot = sandbox.converge(&["plan", "graph", "auth"]);
    dot.success();
    insta::assert_snapshot!("graph_dot", dot.stdout);
    let mermaid = sandbox.converge(&["plan", "graph", "auth", "--format", "mermaid"]);
    mermaid.success();
    insta::assert_snapshot!("graph_mermaid", mermaid.stdout);
}

#[test]
fn unknown_plan_suggests_the_closest() {
    let run = auth_repo().converge(&["plan", "show", "auht"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("there is no plan `auht`")
            && run.stderr.contains("hint: did you mean `auth`?"),
        "{}",
        run.transcript()
    );
}

#[test]
fn show_reads_the_base_branch_not_uncommitted_edits() {
    let sandbox = auth_repo();
    let plan = sandbox.read("planning/plans/auth.toml");
    sandbox.write(
        "planning/plans/auth.toml",
        plan.replace("name = \"wire-up\"", "name = \"wire-everything\""),
    );
    let committed = sandbox.converge(&["plan", "show", "auth"]);
    assert!(committed.stdout.contains("wire-up") && !committed.stdout.contains("wire-everything"));
    let worktree = sandbox.converge(&["plan", "show", "auth", "--worktree"]);
    assert!(
        worktree.stdout.contains("wire-everything"),
        "{}",
        worktree.transcript()
    );
}

#[test]
fn uncommitted_planning_is_explained() {
    let sandbox = Sandbox::repo();
    sandbox.write("README.md", "x\n");
    sandbox.commit_all("initial");
    sandbox.copy_tree(&repo_path("examples/auth/planning"), "planning");
    let run = sandbox.converge(&["plan", "show"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("there is no planning/ directory in planning/ at main")
            && run.stderr.contains("not committed"),
        "{}",
        run.transcript()
    );
}

#[test]
fn validate_a_single_file_reports_only_that_file() {
    let sandbox = auth_repo();
    sandbox.write("planning/plans/other.toml", "[plan]\nname = \"Other\"\n");
    let good = sandbox.converge(&["plan", "validate", "planning/plans/auth.toml"]);
    assert_eq!(good.code, 0, "{}", good.transcript());
    let bad = sandbox.converge(&["plan", "validate", "planning/plans/other.toml"]);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stdout
            .contains("planning/plans/other.toml:1:2: error[empty-plan]"),
        "{}",
        bad.transcript()
    );
    assert!(
        bad.stdout
            .ends_with("invalid: planning/plans/other.toml: 1 error\n"),
        "{}",
        bad.transcript()
    );
}

#[test]
fn validate_a_plan_outside_planning_uses_the_repository_config() {
    let sandbox = auth_repo();
    sandbox.write(
        "drafts/new.toml",
        "[plan]\nname = \"New\"\n[[tasks]]\nname = \"a\"\ndescription = \"A\"\nscope = \"narrow\"\ngate = \"auto\"\ninvariants = [\"build\", \"lnt\"]\n",
    );
    let run = sandbox.converge_in("drafts", &["plan", "validate", "new.toml"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stdout
            .contains("new.toml:8:24: error[unknown-invariant]: unknown invariant `lnt`"),
        "{}",
        run.transcript()
    );
    assert!(
        run.stdout.contains("did you mean `lint`?"),
        "{}",
        run.transcript()
    );
}

#[test]
fn validate_a_revision() {
    let sandbox = auth_repo();
    let first = sandbox.git(&["rev-parse", "HEAD"]).trim().to_owned();
    sandbox.write("planning/plans/auth.toml", "[plan]\n");
    sandbox.commit_all("break the plan");
    assert_eq!(
        sandbox
            .converge(&["plan", "validate", "--rev", "HEAD"])
            .code,
        2
    );
    let old = sandbox.converge(&["plan", "validate", "--rev", &first]);
    assert_eq!(old.code, 0, "{}", old.transcript());
    let bad_rev = sandbox.converge(&["plan", "validate", "--rev", "no-such-branch"]);
    assert_eq!(bad_rev.code, 2);
    assert!(
        bad_rev
            .stderr
            .contains("`no-such-branch` does not name a commit"),
        "{}",
        bad_rev.transcript()
    );
}

#[test]
fn completions_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        let run = Sandbox::new().converge(&["completions", shell]);
        run.success();
        assert!(run.stdout.contains("validate"), "{shell}");
    }
}

#[test]
fn a_queue_item_on_the_sim_agent_is_warned_about_where_it_says_so() {
    let sandbox = Sandbox::repo();
    sandbox.write("planning/goal.md", "Goal.\n");
    sandbox.write(
        "planning/converge.toml",
        "[reconcile]\ndefault_harness = \"sim\"\n",
    );
    sandbox.write(
        "planning/queue/implicit.md",
        "---\nscope: narrow\ngate: auto\nallow_unchecked: true\n---\n\nFix the thing.\n",
    );
    sandbox.write(
        "planning/queue/explicit.md",
        "---\nscope: narrow\ngate: auto\nharness: sim\nallow_unchecked: true\n---\n\nFix it too.\n",
    );
    sandbox.write(
        "planning/queue/agent.md",
        "---\nscope: narrow\ngate: auto\nallow_unchecked: true\nharness: claude-code\n---\n\nA real agent.\n",
    );
    let run = sandbox.converge(&["plan", "validate"]);
    run.success();
    let text = &run.stdout;
    assert!(
        text.contains("planning/queue/implicit.md:1:1: warning[sim-without-script]")
            && text.contains("`[reconcile] default_harness` is `sim`"),
        "{}",
        run.transcript()
    );
    assert!(
        text.contains("planning/queue/explicit.md:4:")
            && text.contains("warning[sim-without-script]"),
        "{}",
        run.transcript()
    );
    assert!(
        !text.contains("planning/queue/agent.md"),
        "{}",
        run.transcript()
    );
}

#[test]
fn an_auto_task_no_invariant_checks_never_runs_unless_it_opts_out() {
    let sandbox = Sandbox::repo();
    sandbox.write("planning/goal.md", "Goal.\n");
    sandbox.write(
        "planning/converge.toml",
        "[reconcile]\ndefault_harness = \"sim\"\n\n[invariants.lint]\nkind = \"lint\"\ncommand = \"true\"\nadvisory = true\n",
    );
    let plan = "[plan]\nname = \"P\"\n\n[[tasks]]\nname = \"t\"\ndescription = \"Do it.\"\nscope = \"narrow\"\ngate = \"auto\"\ninvariants = [\"lint\"]\n[tasks.sim]\nfiles = [{ path = \"x.txt\", content = \"x\\n\" }]\n";
    sandbox.write("planning/plans/p.toml", plan);
    sandbox.commit_all("an auto task only an advisory check looks at");
    let run = sandbox.converge(&["plan", "validate"]);
    assert_eq!(run.code, 2, "{}", run.transcript());
    assert!(
        run.stdout.contains("planning/plans/p.toml:8:8: error[unchecked-task]: task `t` has `gate = \"auto\"` but no invariant checks it"),
        "{}",
        run.transcript()
    );
    assert!(
        run.stdout.contains("allow_unchecked = true"),
        "{}",
        run.transcript()
    );
    // The reconciler sets the plan aside: nothing is dispatched.
    let tick = sandbox.converge(&["reconcile", "--once"]);
    assert!(
        sandbox
            .git(&["branch", "--list", "converge/*"])
            .trim()
            .is_empty(),
        "{}",
        tick.transcript()
    );
    // Saying so on purpose lets it run.
    sandbox.write(
        "planning/plans/p.toml",
        plan.replace(
            "gate = \"auto\"\n",
            "gate = \"auto\"\nallow_unchecked = true\n",
        ),
    );
    sandbox.commit_all("merge it unchecked on purpose");
    sandbox.converge(&["plan", "validate"]).success();
    sandbox.converge(&["reconcile", "--once"]).success();
    assert!(
        sandbox
            .git(&["branch", "--list", "converge/*"])
            .contains("converge/p/t"),
        "dispatched once allowed"
    );
}
