//! Issue #17: the autonomy loop, and the context every agent gets
//! (capabilities.md as "what exists today", what its dependencies merged).

use std::path::PathBuf;

use crate::support::Sandbox;

const CONFIG: &str = r#"[reconcile]
default_harness = "sim"
backoff = { base = "1s", factor = 2, max = "2s" }
"#;

const CHAIN: &str = r#"[plan]
name = "Chain"

[[tasks]]
name = "schema"
description = "Write the schema."
scope = "narrow"
gate = "auto"
allow_unchecked = true
[tasks.sim]
files = [{ path = "db/schema.sql", content = "create table users (id int);\ncreate table keys (id int);\n" }]
message = "Add the users and keys tables"

[[tasks]]
name = "api"
description = "Serve the users."
scope = "narrow"
gate = "auto"
allow_unchecked = true
depends_on = ["schema"]
[tasks.sim]
files = [{ path = "api.txt", content = "api\n" }]
"#;

fn run_dir(sb: &Sandbox, plan: &str, task: &str, attempt: u32) -> PathBuf {
    sb.path()
        .join(".git/converge/runs")
        .join(plan)
        .join(task)
        .join(attempt.to_string())
}

fn prompt_of(sb: &Sandbox, plan: &str, task: &str) -> String {
    std::fs::read_to_string(run_dir(sb, plan, task, 1).join("prompt.md")).expect("prompt")
}

#[test]
fn every_prompt_says_what_exists_today_and_what_dependencies_merged() {
    let sb = Sandbox::repo();
    sb.write("README.md", "project\n");
    sb.write("planning/goal.md", "Serve users.\n");
    sb.write(
        "planning/capabilities.md",
        "# Capabilities\n\n- users can sign up\n",
    );
    sb.write("planning/converge.toml", CONFIG);
    sb.write("planning/plans/chain.toml", CHAIN);
    sb.commit_all("plan");
    sb.converge(&["reconcile", "--wait", "--max-ticks", "100"])
        .success();
    let first = prompt_of(&sb, "chain", "schema");
    assert!(first.contains("## What exists today"), "{first}");
    assert!(first.contains("- users can sign up"), "{first}");
    // Nothing merged before the first task.
    assert!(!first.contains("What your dependencies merged"), "{first}");
    let second = prompt_of(&sb, "chain", "api");
    assert!(second.contains("- users can sign up"), "{second}");
    assert!(
        second.contains("## What your dependencies merged"),
        "{second}"
    );
    assert!(
        second.contains("1 file changed, +2 -0")
            && second.contains("- Add the users and keys tables")
            && second.contains("db/schema.sql | +2 -0"),
        "{second}"
    );
}

#[test]
fn a_long_capabilities_file_is_cut_and_the_prompt_says_so() {
    let sb = Sandbox::repo();
    sb.write("README.md", "project\n");
    sb.write("planning/goal.md", "Serve users.\n");
    let long: String = (0..3000).map(|i| format!("- capability {i}\n")).collect();
    sb.write("planning/capabilities.md", &long);
    sb.write("planning/converge.toml", CONFIG);
    sb.write("planning/plans/chain.toml", CHAIN);
    sb.commit_all("plan");
    sb.converge(&["reconcile", "--once"]).success();
    let prompt = prompt_of(&sb, "chain", "schema");
    assert!(prompt.contains("- capability 0\n"), "{prompt}");
    assert!(!prompt.contains("- capability 2999"), "{prompt}");
    assert!(
        prompt.contains(&format!(
            "(truncated: capabilities.md is {} bytes",
            long.trim().len()
        )),
        "{prompt}"
    );
    assert!(prompt.len() < 16 * 1024, "{}", prompt.len());
}

const ITEM: &str = "---\nscope: narrow\ngate: human_review\n---\nFix the login form.\n";

fn enqueue_repo() -> Sandbox {
    let sb = Sandbox::repo();
    sb.write("README.md", "project\n");
    sb.write("planning/goal.md", "Serve users.\n");
    sb.write(
        "planning/converge.toml",
        "[reconcile]\ndefault_harness = \"claude-code\"\n",
    );
    sb.commit_all("plan");
    sb
}

#[test]
fn enqueue_commits_a_valid_item_on_the_base_branch_once() {
    let sb = enqueue_repo();
    sb.write("item.md", ITEM);
    let before = sb.git(&["rev-parse", "main"]);
    let run = sb.converge(&["enqueue", "fix-login", "item.md"]);
    run.success();
    assert!(
        run.stdout.contains("enqueued planning/queue/fix-login.md"),
        "{}",
        run.transcript()
    );
    assert_eq!(sb.git(&["show", "main:planning/queue/fix-login.md"]), ITEM);
    assert_eq!(sb.git(&["rev-parse", "main~1"]), before);
    let message = sb.git(&["log", "-1", "--format=%B", "main"]);
    assert!(message.contains("enqueue"), "{message}");
    // The same name again is refused: a name is the item's identity.
    let again = sb.converge(&["enqueue", "fix-login", "item.md"]);
    assert_eq!(again.code, 2, "{}", again.transcript());
    assert!(
        again.stderr.contains("exists already"),
        "{}",
        again.transcript()
    );
    // Promoted, the name is still taken.
    sb.converge(&["reconcile", "--once"]).success();
    assert_eq!(
        sb.git(&["show", "main:planning/queue/done/fix-login.md"]),
        ITEM
    );
    let promoted = sb.converge(&["enqueue", "fix-login", "item.md"]);
    assert_eq!(promoted.code, 2, "{}", promoted.transcript());
    assert!(
        promoted.stderr.contains("planning/queue/done/fix-login.md"),
        "{}",
        promoted.transcript()
    );
}

#[test]
fn enqueue_refuses_an_invalid_item_with_file_line_and_column() {
    let sb = enqueue_repo();
    sb.write("item.md", "---\nscope: narow\ngate: auto\n---\nFix it.\n");
    let before = sb.git(&["rev-parse", "main"]);
    let run = sb.converge(&["enqueue", "fix-login", "item.md"]);
    assert_eq!(run.code, 2, "{}", run.transcript());
    assert!(
        run.stderr.contains("planning/queue/fix-login.md:2:8"),
        "{}",
        run.transcript()
    );
    assert!(run.stderr.contains("hint"), "{}", run.transcript());
    assert_eq!(sb.git(&["rev-parse", "main"]), before, "nothing committed");
}
