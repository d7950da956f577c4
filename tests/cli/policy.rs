//! The error policy: one bad task never holds back the others. An action that
//! fails is recorded on its own task (backoff, then escalation); a tree git
//! refuses to check out fails its gate; a paused plan merges nothing; exit
//! codes a CI job can trust.

use std::time::Duration;

use crate::support::Sandbox;

const CONFIG: &str = r#"[reconcile]
default_harness = "sim"
max_agents = 4
actions_per_tick = 10
backoff = { base = "2s", factor = 1, max = "2s" }

[harness.poison]
kind = "command"
command = "sh"
args = ["-c", '''
set -e
blob=$(printf 'x\n' | git hash-object -w --stdin)
sub=$(printf '100644 blob %s\tconfig\n' "$blob" | git mktree)
tree=$( (git ls-tree HEAD; printf '100644 blob %s\t..\n040000 tree %s\t.git\n100644 blob %s\tok.txt\n' "$blob" "$sub" "$blob") | git mktree)
commit=$(git commit-tree "$tree" -p HEAD -m "work that git cannot check out")
git update-ref HEAD "$commit"
converge done
''']
"#;

fn task(name: &str, extra: &str) -> String {
    format!(
        "\n[[tasks]]\nname = \"{name}\"\ndescription = \"Task {name}.\"\nscope = \"narrow\"\ngate = \"auto\"\nallow_unchecked = true\n{extra}\n[tasks.sim]\nfiles = [{{ path = \"{name}.txt\", content = \"{name}\\n\" }}]\n"
    )
}

fn plan(tasks: &[String]) -> String {
    format!(
        "[plan]\nname = \"Plan\"\nstate = \"active\"\n{}",
        tasks.concat()
    )
}

fn setup(id: &str, plan: &str) -> Sandbox {
    let sb = Sandbox::repo();
    sb.write("README.md", "project\n");
    sb.write("planning/goal.md", "Converge.\n");
    sb.write("planning/converge.toml", CONFIG);
    sb.write(&format!("planning/plans/{id}.toml"), plan);
    sb.commit_all("plan");
    sb
}

fn status(sb: &Sandbox, plan: &str) -> toml::Table {
    let text = sb.git(&["show", &format!("main:planning/status/{plan}.toml")]);
    text.parse().expect("status toml")
}

fn field(sb: &Sandbox, plan: &str, task: &str, key: &str) -> toml::Value {
    status(sb, plan)["tasks"][task]
        .get(key)
        .cloned()
        .unwrap_or(toml::Value::Boolean(false))
}

fn phase(sb: &Sandbox, plan: &str, task: &str) -> String {
    field(sb, plan, task, "phase")
        .as_str()
        .expect("phase")
        .to_owned()
}

fn settle(sb: &Sandbox) -> crate::support::Run {
    sb.converge(&["reconcile", "--wait", "--max-ticks", "200"])
}

fn branches(sb: &Sandbox) -> String {
    sb.git(&["for-each-ref", "--format=%(refname)", "refs/heads/"])
}

/// The checkouts: the main one and linked worktrees, and the agents' private
/// repositories under `.converge/worktrees/<plan>/<task>`.
fn worktrees(sb: &Sandbox) -> usize {
    let linked = sb
        .git(&["worktree", "list", "--porcelain"])
        .lines()
        .filter(|l| l.starts_with("worktree "))
        .count();
    let root = sb.path().join(".converge/worktrees");
    let private = std::fs::read_dir(&root)
        .into_iter()
        .flatten()
        .flat_map(|plan| std::fs::read_dir(plan.expect("entry").path()).expect("plan dir"))
        .filter(|task| task.as_ref().expect("entry").path().join(".git").is_dir())
        .count();
    linked + private
}

/// The explain row of a task: its columns.
fn explain_row(run: &crate::support::Run, task: &str) -> String {
    run.stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(task))
        .unwrap_or_else(|| panic!("no row for {task}:\n{}", run.transcript()))
        .to_owned()
}

#[test]
fn a_tree_git_cannot_check_out_fails_its_gate_and_the_other_tasks_merge() {
    // `a-poison` sorts first, so on the old code its merge was the first
    // action of every tick, and failed every tick.
    let sb = setup(
        "pills",
        &plan(&[
            task("a-poison", "harness = \"poison\"\nretry_max = 1"),
            task("b", ""),
            task("c", ""),
        ]),
    );
    let run = settle(&sb);
    run.success();
    assert_eq!(phase(&sb, "pills", "b"), "merged", "{}", run.transcript());
    assert_eq!(phase(&sb, "pills", "c"), "merged", "{}", run.transcript());
    assert_eq!(sb.read("b.txt"), "b\n");
    assert_eq!(sb.read("c.txt"), "c\n");
    // Merged work is cleaned up; the poisoned task keeps its branch for a human.
    let heads = branches(&sb);
    assert!(!heads.contains("converge/pills/b"), "{heads}");
    assert!(!heads.contains("converge/pills/c"), "{heads}");
    assert_eq!(worktrees(&sb), 2, "main and the escalated task's");
    // The poisoned task failed its gate with the reason, and escalated.
    // Its retry replaced the worktree git could not read the status of.
    assert_eq!(phase(&sb, "pills", "a-poison"), "escalated");
    assert_eq!(
        field(&sb, "pills", "a-poison", "attempt").as_integer(),
        Some(2)
    );
    let failure = field(&sb, "pills", "a-poison", "last_failure");
    assert_eq!(failure["reason"].as_str(), Some("unsafe-path"), "{failure}");
    let message = failure["message"].as_str().expect("message");
    assert!(
        message.contains("`..`") && message.contains("`.git`"),
        "{message}"
    );
    assert!(!message.contains("ok.txt"), "{message}");
    // Nothing of it reached the base branch.
    let files = sb.git(&["ls-tree", "-r", "-t", "--name-only", "main"]);
    assert!(
        !files.contains("ok.txt") && !files.lines().any(|l| l == ".." || l == ".git"),
        "{files}"
    );
    // `converge gate` says so, and exits 1 for the failed gate.
    let gate = sb.converge(&["gate", "pills/a-poison"]);
    assert_eq!(gate.code, 1, "{}", gate.transcript());
    assert!(
        gate.stdout.contains("[unsafe-path]"),
        "{}",
        gate.transcript()
    );
    let passed = sb.converge(&["gate", "pills/b"]);
    assert_eq!(passed.code, 0, "{}", passed.transcript());
}

#[test]
fn a_persistently_failing_dispatch_escalates_and_the_other_tasks_progress() {
    let sb = setup(
        "blocked",
        &plan(&[
            task("a-stuck", "retry_max = 2"),
            task("b", ""),
            task("c", ""),
        ]),
    );
    // A backoff long enough that the second look below falls inside it.
    sb.write(
        "planning/converge.toml",
        CONFIG.replace(
            "backoff = { base = \"2s\", factor = 1, max = \"2s\" }",
            "backoff = { base = \"5s\", factor = 1, max = \"5s\" }",
        ),
    );
    sb.commit_all("a longer backoff");
    // A file where the task's worktree must go: every dispatch of it fails.
    std::fs::create_dir_all(sb.path().join(".git/info")).expect("info");
    std::fs::write(sb.path().join(".git/info/exclude"), "/.converge/\n").expect("exclude");
    sb.write(".converge/worktrees/blocked/a-stuck", "in the way\n");
    let first = sb.converge(&["reconcile", "--once"]);
    first.success();
    assert!(
        first.stdout.contains("dispatch blocked/b") && first.stdout.contains("dispatch blocked/c"),
        "{}",
        first.transcript()
    );
    assert!(
        first.stdout.contains("dispatch blocked/a-stuck failed"),
        "{}",
        first.transcript()
    );
    // Backing off: `--explain` names the failure.
    let explain = sb.converge(&["reconcile", "--dry-run", "--explain"]);
    let row = explain_row(&explain, "blocked/a-stuck");
    assert!(row.contains("action-failed"), "{}", explain.transcript());
    let md = sb.git(&["show", "main:planning/STATUS.md"]);
    assert!(md.contains("(`action-failed`)"), "{md}");
    // The others converge; the stuck task escalates after its second failure.
    let run = settle(&sb);
    run.success();
    assert_eq!(phase(&sb, "blocked", "b"), "merged", "{}", run.transcript());
    assert_eq!(phase(&sb, "blocked", "c"), "merged", "{}", run.transcript());
    assert_eq!(phase(&sb, "blocked", "a-stuck"), "escalated");
    let failure = field(&sb, "blocked", "a-stuck", "last_failure");
    assert_eq!(
        failure["reason"].as_str(),
        Some("action-failed"),
        "{failure}"
    );
    let message = failure["message"].as_str().expect("message");
    assert!(
        message.contains("dispatch") && message.contains("a-stuck"),
        "{message}"
    );
    assert_eq!(
        field(&sb, "blocked", "a-stuck", "attempt").as_integer(),
        Some(0)
    );
    let md = sb.git(&["show", "main:planning/STATUS.md"]);
    assert!(md.contains("(action-failed)"), "{md}");
    let explain = sb.converge(&["reconcile", "--once", "--explain"]);
    let row = explain_row(&explain, "blocked/a-stuck");
    assert!(
        row.contains("escalated") && row.contains("needs a human"),
        "{}",
        explain.transcript()
    );
    // After the fix, `converge retry` starts it.
    std::fs::remove_file(sb.path().join(".converge/worktrees/blocked/a-stuck")).expect("rm");
    sb.converge(&["retry", "blocked/a-stuck"]).success();
    settle(&sb).success();
    assert_eq!(phase(&sb, "blocked", "a-stuck"), "merged");
}

#[test]
fn a_rejection_is_counted_once_however_often_its_retry_fails() {
    let sb = setup(
        "review",
        &plan(&[task("t", "retry_max = 3").replace("gate = \"auto\"", "gate = \"human_review\"")]),
    );
    settle(&sb).success();
    assert_eq!(phase(&sb, "review", "t"), "awaiting_approval");
    sb.converge(&["reject", "review/t", "--reason", "say why"])
        .success();
    // The retry cannot check out its worktree: a file is in the way.
    let worktree = sb.path().join(".converge/worktrees/review/t");
    std::fs::remove_dir_all(&worktree).expect("remove the worktree");
    std::fs::write(&worktree, "in the way\n").expect("block");
    for _ in 0..2 {
        sb.converge(&["reconcile", "--once"]);
        std::thread::sleep(Duration::from_millis(2100));
    }
    assert_eq!(
        field(&sb, "review", "t", "failures").as_integer(),
        Some(0),
        "no attempt started, so the rejection is not counted yet"
    );
    assert_eq!(phase(&sb, "review", "t"), "awaiting_approval");
    std::fs::remove_file(&worktree).expect("unblock");
    let run = sb.converge(&["reconcile", "--once"]);
    assert!(
        run.stdout.contains("retry review/t (attempt 2"),
        "{}",
        run.transcript()
    );
    assert_eq!(field(&sb, "review", "t", "failures").as_integer(), Some(1));
    let failure = field(&sb, "review", "t", "last_failure");
    assert_eq!(failure["reason"].as_str(), Some("rejected"), "{failure}");
    let conditions = field(&sb, "review", "t", "conditions");
    assert!(
        !conditions.to_string().contains("action-failed"),
        "the attempt started: {conditions}"
    );
}

#[test]
fn a_paused_plan_gates_its_attempts_but_merges_nothing_until_resumed() {
    let sb = setup("p", &plan(&[task("t", "")]));
    sb.converge(&["reconcile", "--once"]).success();
    sb.converge(&["pause", "p"]).success();
    // The agent finishes; its gate runs, its merge waits.
    std::thread::sleep(Duration::from_millis(500));
    let run = sb.converge(&["reconcile", "--wait", "--max-ticks", "50"]);
    run.success();
    assert_eq!(phase(&sb, "p", "t"), "passed", "{}", run.transcript());
    assert!(!sb.path().join("t.txt").exists());
    let explain = sb.converge(&["reconcile", "--once", "--explain"]);
    let row = explain_row(&explain, "p/t");
    assert!(
        row.contains("passed") && row.contains("plan-paused"),
        "{}",
        explain.transcript()
    );
    sb.converge(&["resume", "p"]).success();
    settle(&sb).success();
    assert_eq!(phase(&sb, "p", "t"), "merged");
    assert_eq!(sb.read("t.txt"), "t\n");
}

#[test]
fn fail_on_exits_1_with_the_tasks_a_ci_job_must_see() {
    let sb = setup(
        "ci",
        &plan(&[
            task("broken", "retry_max = 1")
                .replace("[tasks.sim]\n", "[tasks.sim]\nfail_attempts = 9\n"),
            task("reviewed", "").replace("gate = \"auto\"", "gate = \"human_review\""),
            task("fine", ""),
        ]),
    );
    settle(&sb).success();
    let run = sb.converge(&[
        "reconcile",
        "--once",
        "--fail-on",
        "escalated",
        "--fail-on",
        "awaiting-approval",
    ]);
    let same = sb.converge(&[
        "reconcile",
        "--once",
        "--fail-on",
        "escalated,awaiting-approval",
    ]);
    assert_eq!(run.transcript(), same.transcript());
    insta::assert_snapshot!("fail_on_both", run.transcript());
    let escalated = sb.converge(&["reconcile", "--once", "--fail-on", "escalated"]);
    assert_eq!(escalated.code, 1, "{}", escalated.transcript());
    assert!(!escalated.stderr.contains("ci/reviewed"));
    let json = sb.converge(&["reconcile", "--once", "--json", "--fail-on", "escalated"]);
    assert_eq!(json.code, 1, "{}", json.transcript());
    let value: serde_json::Value = serde_json::from_str(json.stdout.trim()).expect("json");
    assert_eq!(
        value["fail_on"],
        serde_json::json!([{"task": "ci/broken", "state": "escalated", "phase": "escalated", "reason": "escalated"}])
    );
    // Without --fail-on (or with nothing matching), the same state exits 0.
    sb.converge(&["reconcile", "--once"]).success();
    sb.converge(&["approve", "ci/reviewed"]).success();
    settle(&sb).success();
    sb.converge(&["reconcile", "--once", "--fail-on", "awaiting-approval"])
        .success();
    let bad = sb.converge(&["reconcile", "--once", "--fail-on", "failed"]);
    assert_eq!(bad.code, 2, "{}", bad.transcript());
}
