//! The error policy: one bad task never holds back the others. An action that
//! fails is recorded on its own task (backoff, then escalation); a tree git
//! refuses to check out fails its gate; a paused plan merges nothing; exit
//! codes a CI job can trust.

use crate::support::Sandbox;

const CONFIG: &str = r#"[reconcile]
default_harness = "sim"
max_agents = 4
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
        "\n[[tasks]]\nname = \"{name}\"\ndescription = \"Task {name}.\"\nscope = \"narrow\"\ngate = \"auto\"\n{extra}\n[tasks.sim]\nfiles = [{{ path = \"{name}.txt\", content = \"{name}\\n\" }}]\n"
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

fn worktrees(sb: &Sandbox) -> usize {
    sb.git(&["worktree", "list", "--porcelain"])
        .lines()
        .filter(|l| l.starts_with("worktree "))
        .count()
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
    assert_eq!(phase(&sb, "pills", "a-poison"), "escalated");
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
    let gate = sb.converge(&["gate", "pills/a-poison"]);
    assert!(
        gate.stdout.contains("[unsafe-path]"),
        "{}",
        gate.transcript()
    );
}
