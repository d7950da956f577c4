//! End to end: the real binary reconciles temporary repositories with `sim`
//! agents until their plans converge.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::Sandbox;

const CONFIG: &str = r#"[reconcile]
default_harness = "sim"
max_agents = 4
backoff = { base = "1s", factor = 2, max = "2s" }

[invariants.deps-present]
kind = "custom"
command = "sh"
args = ["-c", "test -f a.txt && test -f b.txt && test -f c.txt"]

[invariants.never]
kind = "test_suite"
command = "sh"
args = ["-c", "echo 'assertion failed: 1 == 2'; exit 1"]
"#;

const DIAMOND: &str = r#"[plan]
name = "Diamond"
state = "active"

[[tasks]]
name = "a"
description = "Write a."
scope = "narrow"
gate = "auto"
allow_unchecked = true
[tasks.sim]
files = [{ path = "a.txt", content = "a\n" }]

[[tasks]]
name = "b"
description = "Write b."
scope = "narrow"
gate = "auto"
allow_unchecked = true
depends_on = ["a"]
[tasks.sim]
files = [{ path = "b.txt", content = "b\n" }]

[[tasks]]
name = "c"
description = "Write c."
scope = "narrow"
gate = "auto"
allow_unchecked = true
depends_on = ["a"]
[tasks.sim]
files = [{ path = "c.txt", content = "c\n" }]
commit = false

[[tasks]]
name = "d"
description = "Join: needs every file of its dependencies."
scope = "narrow"
gate = "auto"
depends_on = ["b", "c"]
invariants = ["deps-present"]
[tasks.sim]
files = [{ path = "d.txt", content = "d\n" }]
"#;

fn setup(plans: &[(&str, &str)]) -> Sandbox {
    let sb = Sandbox::repo();
    sb.write("README.md", "project\n");
    sb.write("planning/goal.md", "Converge.\n");
    sb.write("planning/converge.toml", CONFIG);
    for (id, text) in plans {
        sb.write(&format!("planning/plans/{id}.toml"), text);
    }
    sb.commit_all("plan");
    sb
}

/// One plan of one task with this sim table and these extra task keys.
fn single(extra: &str, sim: &str) -> String {
    format!(
        "[plan]\nname = \"One\"\nstate = \"active\"\n\n[[tasks]]\nname = \"t\"\ndescription = \"Do it.\"\nscope = \"narrow\"\ngate = \"auto\"\nallow_unchecked = true\n{extra}\n[tasks.sim]\n{sim}\n"
    )
}

fn tick(sb: &Sandbox) -> crate::support::Run {
    sb.converge(&["reconcile", "--once"])
}

fn settle(sb: &Sandbox) -> crate::support::Run {
    let run = sb.converge(&["reconcile", "--wait", "--max-ticks", "200"]);
    run.success();
    run
}

fn status(sb: &Sandbox, plan: &str) -> toml::Table {
    let text = sb.git(&["show", &format!("main:planning/status/{plan}.toml")]);
    text.parse().expect("status toml")
}

fn task<'a>(status: &'a toml::Table, name: &str) -> &'a toml::Table {
    status["tasks"][name].as_table().expect("task table")
}

fn phase(sb: &Sandbox, plan: &str, name: &str) -> String {
    task(&status(sb, plan), name)["phase"]
        .as_str()
        .expect("phase")
        .to_owned()
}

fn subjects(sb: &Sandbox) -> Vec<String> {
    sb.git(&["log", "--first-parent", "--format=%s", "main"])
        .lines()
        .map(str::to_owned)
        .collect()
}

fn run_dir(sb: &Sandbox, plan: &str, task: &str, attempt: u32) -> PathBuf {
    sb.path()
        .join(".git/converge/runs")
        .join(plan)
        .join(task)
        .join(attempt.to_string())
}

/// The supervisor and agent pids of a run.
fn pids(sb: &Sandbox, plan: &str, task: &str, attempt: u32) -> (i32, Option<i32>) {
    let lease: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir(sb, plan, task, attempt).join("lease.json"))
            .expect("lease"),
    )
    .expect("lease json");
    let pid = |k: &str| lease[k].as_i64().and_then(|p| i32::try_from(p).ok());
    (pid("pid").expect("pid"), pid("agent_pid"))
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

fn kill_group(pid: i32) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .status();
}

/// Waits for the agent of a run to have started.
fn wait_for_agent(sb: &Sandbox, plan: &str, task: &str, attempt: u32) -> (i32, i32) {
    for _ in 0..200 {
        if let (pid, Some(agent)) = pids(sb, plan, task, attempt) {
            return (pid, agent);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("the agent of {plan}/{task} attempt {attempt} never started");
}

fn refs(sb: &Sandbox) -> String {
    sb.git(&["for-each-ref", "--format=%(refname) %(objectname)"])
}

fn worktrees(sb: &Sandbox) -> usize {
    sb.git(&["worktree", "list", "--porcelain"])
        .lines()
        .filter(|l| l.starts_with("worktree "))
        .count()
}

#[test]
fn a_diamond_converges_and_dependents_see_their_dependencies_work() {
    let sb = setup(&[("diamond", DIAMOND)]);
    // One agent at a time, so that the order of status commits is fixed.
    sb.write(
        "planning/converge.toml",
        CONFIG.replace("max_agents = 4", "max_agents = 1"),
    );
    sb.commit_all("one agent at a time");
    let run = settle(&sb);
    for name in ["a", "b", "c", "d"] {
        assert_eq!(
            phase(&sb, "diamond", name),
            "merged",
            "{}",
            run.transcript()
        );
    }
    // d's gate ran `deps-present` in its own worktree: it passed, so the files
    // merged from a, b and c were there when d was dispatched.
    let d = status(&sb, "diamond");
    let evidence = task(&d, "d")["gate"]["deps-present"]
        .as_table()
        .expect("evidence");
    assert_eq!(evidence["passed"].as_bool(), Some(true));
    for file in ["a.txt", "b.txt", "c.txt", "d.txt"] {
        assert!(sb.path().join(file).exists(), "{file} is in the checkout");
    }
    // The checkout of main was brought along and is clean.
    assert_eq!(sb.git(&["status", "--porcelain"]), "");
    // Every task merged exactly once, and nothing is left behind.
    let subjects = subjects(&sb);
    for name in ["a", "b", "c", "d"] {
        let merges = subjects
            .iter()
            .filter(|s| s.starts_with(&format!("converge: merge diamond/{name} (attempt")))
            .count();
        assert_eq!(merges, 1, "{name}: {subjects:#?}");
    }
    assert_eq!(worktrees(&sb), 1, "only the main checkout remains");
    assert!(!refs(&sb).contains("refs/heads/converge/"), "{}", refs(&sb));
    // c left its work uncommitted; converge committed it.
    let log = sb.git(&["log", "--format=%s", "main"]);
    assert!(
        log.contains("converge: leftovers of diamond/c (attempt 1)"),
        "{log}"
    );
    // The commit sequence, first parent only (the status and merge commits).
    let mut seen: Vec<String> = subjects
        .iter()
        .rev()
        .filter(|s| s.starts_with("converge: "))
        .cloned()
        .collect();
    seen.dedup();
    insta::assert_snapshot!(seen.join("\n"));
    // Settled: another tick has nothing to do and writes nothing.
    let before = sb.git(&["rev-parse", "main"]);
    tick(&sb).success();
    assert_eq!(sb.git(&["rev-parse", "main"]), before);
    let status_md = sb.read("planning/STATUS.md");
    assert!(status_md.contains("4 merged"), "{status_md}");
}

#[test]
fn reconcile_once_twice_never_duplicates_work() {
    let sb = setup(&[("diamond", DIAMOND)]);
    let mut commits = Vec::new();
    for step in 0..200 {
        let first = tick(&sb);
        assert!(first.code == 0 || first.code == 3, "{}", first.transcript());
        let after_first = sb.git(&["rev-parse", "main"]);
        let second = tick(&sb);
        assert!(
            second.code == 0 || second.code == 3,
            "{}",
            second.transcript()
        );
        // Never two branches, worktrees or live runs for one task.
        assert!(worktrees(&sb) <= 1 + 4);
        let runs_root = sb.path().join(".git/converge/runs/diamond");
        for name in ["a", "b", "c", "d"] {
            let attempts = std::fs::read_dir(runs_root.join(name)).map_or(0, |d| d.count());
            assert!(attempts <= 1, "step {step}: {name} has {attempts} attempts");
        }
        commits.push(after_first);
        let done = ["a", "b", "c", "d"].iter().all(|n| {
            sb.git(&["show", "main:planning/status/diamond.toml"])
                .contains(&format!("[tasks.{n}]"))
                && phase(&sb, "diamond", n) == "merged"
        });
        if done && first.stdout.contains("nothing to do") && second.stdout.contains("nothing to do")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    for name in ["a", "b", "c", "d"] {
        assert_eq!(phase(&sb, "diamond", name), "merged");
        let dispatches = subjects(&sb)
            .iter()
            .filter(|s| s.contains(&format!("dispatch diamond/{name}")))
            .count();
        assert_eq!(dispatches, 1, "{name} was dispatched once");
    }
}

#[test]
fn failing_invariants_retry_with_backoff_then_escalate() {
    // `retry_max` counts retries after the first attempt (gator's meaning):
    // one retry, two attempts.
    let plan = single(
        "invariants = [\"never\"]\nretry_max = 1",
        "files = [{ path = \"x.txt\", content = \"x\\n\" }]",
    );
    let sb = setup(&[("one", &plan)]);
    settle(&sb);
    let st = status(&sb, "one");
    let t = task(&st, "t");
    assert_eq!(t["phase"].as_str(), Some("escalated"));
    assert_eq!(t["failures"].as_integer(), Some(2));
    assert_eq!(
        t["last_failure"]["reason"].as_str(),
        Some("invariant-failed")
    );
    let attempts = t["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2);
    let at = |v: &toml::Value, k: &str| {
        converge::time::Timestamp::parse_rfc3339(v[k].as_str().expect("time"))
            .expect("rfc3339")
            .unix()
    };
    // The second attempt waited out the backoff after the first failed.
    assert!(at(&attempts[1], "started_at") > at(&attempts[0], "ended_at"));
    // The failure reached the second attempt's prompt.
    let prompt =
        std::fs::read_to_string(run_dir(&sb, "one", "t", 2).join("prompt.md")).expect("prompt");
    assert!(prompt.contains("assertion failed: 1 == 2"), "{prompt}");
    let md = sb.read("planning/STATUS.md");
    assert!(
        md.contains("## Escalated") && md.contains("converge retry one/t"),
        "{md}"
    );
    // `converge retry` bumps reset and the task starts over.
    sb.converge(&["retry", "one/t"]).success();
    assert!(sb.read("planning/plans/one.toml").contains("reset = 1"));
    let run = tick(&sb);
    assert!(
        run.stdout.contains("retry one/t (attempt 3"),
        "{}",
        run.transcript()
    );
}

#[test]
fn human_review_waits_for_an_approval_of_the_current_head() {
    let plan = single(
        "gate = \"human_review\"",
        "files = [{ path = \"x.txt\", content = \"x\\n\" }]",
    )
    .replacen("gate = \"auto\"\nallow_unchecked = true\n", "", 1);
    let sb = setup(&[("one", &plan)]);
    settle(&sb);
    assert_eq!(phase(&sb, "one", "t"), "awaiting_approval");
    let explain = sb.converge(&["reconcile", "--once", "--explain"]);
    assert!(
        explain.stdout.contains("awaiting-approval"),
        "{}",
        explain.transcript()
    );
    // An approval of another commit (here: the base) is stale and ignored.
    let base = sb.git(&["rev-parse", "main"]).trim().to_owned();
    sb.converge(&["approve", "one/t", "--commit", &base])
        .success();
    let explain = sb.converge(&["reconcile", "--once", "--explain"]);
    assert!(
        explain.stdout.contains("approval-stale"),
        "{}",
        explain.transcript()
    );
    assert_eq!(phase(&sb, "one", "t"), "awaiting_approval");
    // Approving the reviewed head merges it.
    sb.converge(&["approve", "one/t"]).success();
    settle(&sb);
    assert_eq!(phase(&sb, "one", "t"), "merged");
    assert_eq!(sb.read("x.txt"), "x\n");
}

#[test]
fn a_rejection_reason_reaches_the_next_attempt() {
    let plan = single(
        "gate = \"human_approve\"",
        "files = [{ path = \"x.txt\", content = \"x\\n\" }]",
    )
    .replacen("gate = \"auto\"\nallow_unchecked = true\n", "", 1);
    let sb = setup(&[("one", &plan)]);
    settle(&sb);
    let no_reason = sb.converge(&["reject", "one/t"]);
    assert_eq!(no_reason.code, 2, "{}", no_reason.transcript());
    sb.converge(&["reject", "one/t", "--reason", "x.txt must say why"])
        .success();
    let run = tick(&sb);
    assert!(
        run.stdout.contains("retry one/t (attempt 2"),
        "{}",
        run.transcript()
    );
    let prompt =
        std::fs::read_to_string(run_dir(&sb, "one", "t", 2).join("prompt.md")).expect("prompt");
    assert!(prompt.contains("x.txt must say why"), "{prompt}");
}

#[test]
fn a_killed_agent_is_reaped_and_retried() {
    let plan = single(
        "",
        "sleep = \"60s\"\nfiles = [{ path = \"x.txt\", content = \"x\\n\" }]",
    );
    let sb = setup(&[("one", &plan)]);
    tick(&sb).success();
    let (supervisor, agent) = wait_for_agent(&sb, "one", "t", 1);
    // The supervisor first: killed after the agent, it could still record
    // the agent's exit by signal (a failed gate, not a vanished agent).
    kill_group(supervisor);
    kill_group(agent);
    for _ in 0..100 {
        if !alive(supervisor) && !alive(agent) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let run = tick(&sb);
    assert!(
        run.stdout.contains("reap one/t (attempt 1)"),
        "{}",
        run.transcript()
    );
    let st = status(&sb, "one");
    assert_eq!(
        task(&st, "t")["last_failure"]["reason"].as_str(),
        Some("agent-vanished")
    );
    // After the backoff, attempt 2 starts.
    std::thread::sleep(Duration::from_millis(1100));
    let run = tick(&sb);
    assert!(
        run.stdout.contains("retry one/t (attempt 2"),
        "{}",
        run.transcript()
    );
    let (s2, a2) = wait_for_agent(&sb, "one", "t", 2);
    kill_group(a2);
    kill_group(s2);
}

#[test]
fn a_task_removed_while_running_is_cancelled_and_cleaned_up() {
    let plan = single(
        "",
        "sleep = \"60s\"\nfiles = [{ path = \"x.txt\", content = \"x\\n\" }]",
    );
    let other =
        single("", "files = [{ path = \"y.txt\", content = \"y\\n\" }]").replace("One", "Other");
    let sb = setup(&[("one", &plan), ("other", &other)]);
    tick(&sb).success();
    let (supervisor, agent) = wait_for_agent(&sb, "one", "t", 1);
    std::fs::remove_file(sb.path().join("planning/plans/one.toml")).expect("rm");
    sb.commit_all("drop plan one");
    let mut out = String::new();
    for _ in 0..10 {
        let run = tick(&sb);
        out.push_str(&run.stdout);
        if out.contains("cleanup one/t") {
            break;
        }
    }
    assert!(
        out.contains("cancel one/t (attempt 1): the task is no longer in its plan"),
        "{out}"
    );
    assert!(out.contains("cleanup one/t"), "{out}");
    std::thread::sleep(Duration::from_millis(100));
    assert!(!alive(agent) && !alive(supervisor), "the agent was killed");
    assert!(!refs(&sb).contains("refs/heads/converge/one/t"));
    assert!(!sb.path().join(".converge/worktrees/one/t").exists());
    assert!(!sb.path().join("planning/status/one.toml").exists());
}

#[test]
fn editing_a_running_task_restarts_it() {
    let plan = single(
        "",
        "sleep = \"60s\"\nfiles = [{ path = \"x.txt\", content = \"x\\n\" }]",
    );
    let sb = setup(&[("one", &plan)]);
    tick(&sb).success();
    let (supervisor, agent) = wait_for_agent(&sb, "one", "t", 1);
    sb.write(
        "planning/plans/one.toml",
        plan.replace("Do it.", "Do it better."),
    );
    sb.commit_all("edit the task");
    let run = tick(&sb);
    assert!(
        run.stdout
            .contains("cancel one/t (attempt 1): the task's spec changed"),
        "{}",
        run.transcript()
    );
    std::thread::sleep(Duration::from_millis(100));
    assert!(!alive(agent) && !alive(supervisor));
    let run = tick(&sb);
    assert!(
        run.stdout.contains("retry one/t (attempt 2"),
        "{}",
        run.transcript()
    );
    let prompt =
        std::fs::read_to_string(run_dir(&sb, "one", "t", 2).join("prompt.md")).expect("prompt");
    assert!(prompt.contains("Do it better."));
    let (s2, a2) = wait_for_agent(&sb, "one", "t", 2);
    kill_group(a2);
    kill_group(s2);
}

#[test]
fn conflicting_siblings_converge_after_a_retry_on_the_new_base() {
    let plan = r#"[plan]
name = "Siblings"
state = "active"

[[tasks]]
name = "x"
description = "Say x."
scope = "narrow"
gate = "auto"
allow_unchecked = true
[tasks.sim]
files = [{ path = "shared.txt", content = "from x\n" }]

[[tasks]]
name = "y"
description = "Say y."
scope = "narrow"
gate = "auto"
allow_unchecked = true
[tasks.sim]
files = [{ path = "shared.txt", content = "from y\n" }]
"#;
    let sb = setup(&[("sib", plan)]);
    // Both start in the first tick, from the same base, so that they conflict.
    sb.write(
        "planning/converge.toml",
        CONFIG.replacen("[reconcile]\n", "[reconcile]\nactions_per_tick = 2\n", 1),
    );
    sb.write("shared.txt", "base\n");
    sb.commit_all("shared file");
    settle(&sb);
    assert_eq!(phase(&sb, "sib", "x"), "merged");
    assert_eq!(phase(&sb, "sib", "y"), "merged");
    // Whichever merged second conflicted once, and was retried on the new base.
    let st = status(&sb, "sib");
    let retried: Vec<&str> = ["x", "y"]
        .into_iter()
        .filter(|n| task(&st, n)["attempt"].as_integer() == Some(2))
        .collect();
    assert_eq!(retried.len(), 1, "{st:?}");
    let second = task(&st, retried[0]);
    assert_eq!(
        second["last_failure"]["reason"].as_str(),
        Some("merge-conflict")
    );
    assert!(
        second["last_failure"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("shared.txt"),
        "{second:?}"
    );
    assert_eq!(sb.read("shared.txt"), format!("from {}\n", retried[0]));
}

/// Dispatches a task whose agent writes a file outside its `paths`, damages
/// converge's records of the attempt's fork with `damage` (given the
/// sandbox and the attempt's run directory), lets the gate judge it, and
/// checks that it was refused as forbidden-paths with nothing on main;
/// returns the refusal's message.
fn gate_after_damaged_fork(damage: impl FnOnce(&Sandbox, &Path)) -> String {
    let plan = single(
        "paths = [\"src/**\"]\nretry_max = 0",
        "files = [{ path = \"src/ok.rs\", content = \"\" }, { path = \"notes.txt\", content = \"n\" }]",
    );
    let sb = setup(&[("one", &plan)]);
    tick(&sb).success();
    assert!(
        sb.path().join(".git/converge/forks/one/t").exists(),
        "dispatch notes the fork"
    );
    damage(&sb, &sb.path().join(".git/converge/runs/one/t/1"));
    settle(&sb);
    let st = status(&sb, "one");
    let t = task(&st, "t");
    assert_eq!(
        t["last_failure"]["reason"].as_str(),
        Some("forbidden-paths"),
        "{st}"
    );
    assert!(
        !sb.git(&["ls-tree", "-r", "--name-only", "main"])
            .lines()
            .any(|p| p == "notes.txt"),
        "the attempt's files reached main"
    );
    t["last_failure"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn a_damaged_fork_note_does_not_let_changes_past_the_gate() {
    // The note of the attempt's fork is damaged after dispatch: the gate
    // reads the lease's fork instead, as observe does, and still checks
    // the attempt's paths rather than checking nothing.
    let message = gate_after_damaged_fork(|sb, _| {
        std::fs::write(
            sb.path().join(".git/converge/forks/one/t"),
            "not-a-commit\n",
        )
        .expect("damage the note");
    });
    assert!(message.contains("notes.txt"), "{message}");
}

#[test]
fn an_attempt_whose_fork_is_unknown_passes_no_change_unchecked() {
    // Both of converge's records of the attempt's fork are damaged after the
    // agent finished: nothing tells the attempt's changes apart, so the gate
    // refuses rather than checking nothing.
    let message = gate_after_damaged_fork(|sb, run| {
        for _ in 0..200 {
            if run.join("exit.json").exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        assert!(run.join("exit.json").exists(), "the agent finished");
        std::fs::write(
            sb.path().join(".git/converge/forks/one/t"),
            "not-a-commit\n",
        )
        .expect("damage the note");
        let lease = std::fs::read_to_string(run.join("lease.json")).expect("lease");
        let json: serde_json::Value = serde_json::from_str(&lease).expect("json");
        let fork = json["fork"].as_str().expect("a fork").to_owned();
        std::fs::write(run.join("lease.json"), lease.replace(&fork, "not-a-commit"))
            .expect("damage the lease");
    });
    assert!(message.contains("fork is unknown"), "{message}");
}

#[test]
fn dry_run_changes_nothing() {
    let sb = setup(&[("diamond", DIAMOND)]);
    // Get some history first: a merged task and a dispatched one.
    for _ in 0..4 {
        tick(&sb);
        std::thread::sleep(Duration::from_millis(50));
    }
    let files = sb.tree();
    let refs_before = refs(&sb);
    let runs_before = crate::support::tree_of(&sb.path().join(".git/converge/runs"));
    let run = sb.converge(&["reconcile", "--dry-run", "--explain"]);
    run.success();
    assert!(
        run.stdout.contains("dry run: nothing was changed"),
        "{}",
        run.transcript()
    );
    assert!(run.stdout.contains("would do:"));
    assert_eq!(sb.tree(), files);
    assert_eq!(refs(&sb), refs_before);
    assert_eq!(
        crate::support::tree_of(&sb.path().join(".git/converge/runs")),
        runs_before
    );
}

#[test]
fn the_gate_refuses_changes_to_planning_and_outside_paths() {
    let plan = single(
        "paths = [\"src/**\"]\nretry_max = 1",
        "files = [{ path = \"src/ok.rs\", content = \"\" }, { path = \"planning/goal.md\", content = \"pwned\" }, { path = \"notes.txt\", content = \"n\" }]",
    );
    let sb = setup(&[("one", &plan)]);
    settle(&sb);
    let st = status(&sb, "one");
    let t = task(&st, "t");
    assert_eq!(t["phase"].as_str(), Some("escalated"));
    let message = t["last_failure"]["message"].as_str().expect("message");
    assert_eq!(
        t["last_failure"]["reason"].as_str(),
        Some("forbidden-paths")
    );
    assert!(
        message.contains("planning/goal.md (protected)"),
        "{message}"
    );
    assert!(message.contains("notes.txt (outside `paths`)"), "{message}");
    assert_eq!(sb.read("planning/goal.md"), "Converge.\n");
}

#[test]
fn an_invalid_plan_is_set_aside_while_valid_plans_proceed() {
    let good = single("", "files = [{ path = \"x.txt\", content = \"x\\n\" }]");
    let bad = "[plan]\nname = \"Bad\"\n[[tasks]]\nname = \"t\"\nscope = \"narrow\"\ngate = \"auto\"\nallow_unchecked = true\n";
    let sb = setup(&[("good", &good), ("bad", bad)]);
    let run = settle(&sb);
    assert!(
        run.stdout.contains("plan `bad` does not validate"),
        "{}",
        run.transcript()
    );
    assert_eq!(phase(&sb, "good", "t"), "merged");
    let bad_status = status(&sb, "bad");
    let errors = bad_status["errors"].as_array().expect("errors");
    assert!(
        errors[0]
            .as_str()
            .unwrap_or("")
            .contains("planning/plans/bad.toml:"),
        "{errors:?}"
    );
    assert!(sb.read("planning/STATUS.md").contains("## Invalid plans"));
}

#[test]
fn a_dirty_path_in_the_base_checkout_is_never_touched() {
    // git's two-way rule: an edit converge's writes would not touch is left
    // alone and holds nothing back; a file in the way of a merge holds that
    // merge (and only it), untouched, and is named.
    let plan = single("", "files = [{ path = \"x.txt\", content = \"x\\n\" }]");
    let sb = setup(&[("one", &plan)]);
    sb.write("README.md", "my unsaved edit\n");
    sb.write("x.txt", "mine\n");
    let mut said = String::new();
    // Six ticks, and more (up to 10 s) while the agent is still at work: the
    // ticks do not wait for it.
    let started = std::time::Instant::now();
    for n in 0.. {
        let run = tick(&sb);
        assert!(matches!(run.code, 0 | 3), "{}", run.transcript());
        said.push_str(&run.stdout);
        if n >= 5
            && (said.contains("x.txt (untracked file in the way)")
                || started.elapsed() > Duration::from_secs(10))
        {
            break;
        }
        if n >= 5 {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert!(said.contains("x.txt (untracked file in the way)"), "{said}");
    assert_eq!(sb.read("README.md"), "my unsaved edit\n");
    assert_eq!(sb.read("x.txt"), "mine\n");
    assert_eq!(phase(&sb, "one", "t"), "passed", "status is still recorded");
    assert!(
        sb.git(&["ls-tree", "main", "x.txt"]).is_empty(),
        "merged over the file"
    );
    std::fs::remove_file(sb.path().join("x.txt")).expect("rm");
    settle(&sb);
    assert_eq!(phase(&sb, "one", "t"), "merged");
    assert_eq!(sb.read("README.md"), "my unsaved edit\n");
}

#[test]
fn a_second_reconciler_is_refused_while_one_holds_the_lock() {
    let sb = setup(&[("diamond", DIAMOND)]);
    let common = sb.path().join(".git");
    let _held = converge::runtime::Lock::acquire(&common, Duration::ZERO).expect("lock");
    let run = tick(&sb);
    assert_eq!(run.code, 3, "{}", run.transcript());
    assert!(
        run.stderr.contains("another converge reconciler"),
        "{}",
        run.transcript()
    );
}

#[test]
fn agent_commands_refuse_to_run_without_an_attempt_and_people_commands_inside_one() {
    let sb = setup(&[("diamond", DIAMOND)]);
    let run = sb.converge(&["done"]);
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(
        run.stderr.contains("CONVERGE_AGENT_TOKEN"),
        "{}",
        run.transcript()
    );
    let mut command = std::process::Command::new(crate::support::BIN);
    let output = command
        .args(["reconcile", "--once"])
        .current_dir(sb.path())
        .env("CONVERGE_AGENT_TOKEN", "cvg1.diamond.a.1.00")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("offers only"));
}

#[test]
fn queue_items_are_promoted_into_the_queue_plan_and_run() {
    let sb = setup(&[(
        "diamond",
        &DIAMOND.replace("state = \"active\"", "state = \"draft\""),
    )]);
    sb.write(
        "planning/queue/fix-typo.md",
        "---\nscope: narrow\ngate: auto\nallow_unchecked: true\nharness: sim\n---\nFix the typo in README.md.\n",
    );
    sb.commit_all("queue an item");
    let run = settle(&sb);
    assert!(
        run.stdout.contains("promote queue item fix-typo"),
        "{}",
        run.transcript()
    );
    assert!(sb.path().join("planning/queue/done/fix-typo.md").exists());
    assert!(!sb.path().join("planning/queue/fix-typo.md").exists());
    // The item became task queue/fix-typo. A sim without a script changes
    // nothing, which its gate refuses.
    let st = status(&sb, "queue");
    assert_eq!(
        task(&st, "fix-typo")["last_failure"]["reason"].as_str(),
        Some("no-changes")
    );
}

#[test]
fn the_demo_converges_with_a_retry_and_an_approval() {
    let sb = Sandbox::new();
    let dir = sb.path().join("demo");
    let run = sb.converge(&["demo", "--dir", dir.to_str().expect("utf-8")]);
    run.success();
    assert!(
        run.stdout.contains("7 of 7 tasks merged"),
        "{}",
        run.transcript()
    );
    assert!(
        run.stdout.contains("retry greeter/tests (attempt 2"),
        "{}",
        run.transcript()
    );
    assert!(
        run.stdout.contains("approved greeter/docs"),
        "{}",
        run.transcript()
    );
    assert!(
        run.stdout
            .contains("git log --oneline --first-parent main:")
    );
    // Its merge invariant ran on merge results, and the repository is clean.
    let readme = std::fs::read_to_string(dir.join("README.md")).expect("readme");
    assert!(readme.contains("## Usage"), "{readme}");
    let again = sb.converge(&["demo", "--dir", dir.to_str().expect("utf-8")]);
    assert_eq!(
        again.code,
        2,
        "a non-empty --dir is refused: {}",
        again.transcript()
    );
}

/// A bare repository next to the sandbox's, with `main` pushed, as `origin`.
fn with_remote(sb: &Sandbox) -> PathBuf {
    let bare = sb.path().join("remote.git");
    sb.git(&[
        "init",
        "-q",
        "--bare",
        "-b",
        "main",
        bare.to_str().expect("utf-8"),
    ]);
    sb.git(&["remote", "add", "origin", bare.to_str().expect("utf-8")]);
    sb.write(
        "planning/converge.toml",
        CONFIG.replacen("[reconcile]\n", "[reconcile]\nremote = \"origin\"\n", 1),
    );
    sb.commit_all("push to origin");
    sb.git(&["push", "-q", "origin", "main"]);
    bare
}

fn remote_git(bare: &Path, sb: &Sandbox, args: &[&str]) -> String {
    let mut all = vec!["--git-dir", bare.to_str().expect("utf-8")];
    all.extend_from_slice(args);
    sb.git(&all)
}

#[test]
fn with_a_remote_merges_and_status_are_pushed_with_a_lease() {
    let plan = single("", "files = [{ path = \"x.txt\", content = \"x\\n\" }]");
    let sb = setup(&[("one", &plan)]);
    // A .gitignore keeps the bare remote out of the sandbox's own status.
    sb.write(".gitignore", "remote.git/\n");
    sb.commit_all("ignore the remote");
    let bare = with_remote(&sb);
    let run = settle(&sb);
    assert!(
        run.stdout.contains("pushed main to origin"),
        "{}",
        run.transcript()
    );
    assert_eq!(phase(&sb, "one", "t"), "merged");
    assert_eq!(
        remote_git(&bare, &sb, &["rev-parse", "main"]),
        sb.git(&["rev-parse", "main"]),
        "the remote has every status and merge commit"
    );
}

#[test]
fn a_push_that_loses_a_race_is_taken_back_and_recomputed() {
    let plan = single("", "files = [{ path = \"x.txt\", content = \"x\\n\" }]");
    let sb = setup(&[("one", &plan)]);
    sb.write(".gitignore", "remote.git/\n");
    sb.commit_all("ignore the remote");
    let bare = with_remote(&sb);
    // Someone else's commit on top of main waits on a side branch; a hook moves
    // the remote's main to it during converge's first push, as if another
    // reconciler had pushed between converge's fetch and its push.
    let base = sb.git(&["rev-parse", "main"]).trim().to_owned();
    sb.write("other.txt", "someone else\n");
    sb.git(&["add", "other.txt"]);
    let tree = sb.git(&["write-tree"]).trim().to_owned();
    sb.git(&["reset", "-q", "other.txt"]);
    std::fs::remove_file(sb.path().join("other.txt")).expect("rm");
    let theirs = sb
        .git(&["commit-tree", &tree, "-p", &base, "-m", "someone else"])
        .trim()
        .to_owned();
    sb.git(&["push", "-q", "origin", &format!("{theirs}:refs/heads/side")]);
    let hook = bare.join("hooks/pre-receive");
    std::fs::write(
        &hook,
        format!(
            // (Ref updates are refused inside the hook's quarantine, so it
            // writes the loose ref itself.)
            "#!/bin/sh\nif [ -f \"$GIT_DIR/race\" ]; then rm \"$GIT_DIR/race\"; echo {theirs} > \"$GIT_DIR/refs/heads/main\"; fi\nexit 0\n"
        ),
    )
    .expect("hook");
    std::process::Command::new("chmod")
        .args(["+x", hook.to_str().expect("utf-8")])
        .status()
        .expect("chmod");
    std::fs::write(bare.join("race"), "").expect("race");

    let run = tick(&sb);
    assert_eq!(run.code, 3, "{}", run.transcript());
    assert!(
        run.stdout.contains("another reconciler pushed first"),
        "{}",
        run.transcript()
    );
    // The local branch was taken back to what was fetched.
    assert_eq!(sb.git(&["rev-parse", "main"]).trim(), base);
    // The next ticks fast-forward to the remote and converge on top of it.
    let run = settle(&sb);
    assert!(
        run.stdout.contains("fast-forwarded main from origin"),
        "{}",
        run.transcript()
    );
    assert_eq!(phase(&sb, "one", "t"), "merged");
    assert_eq!(sb.read("other.txt"), "someone else\n");
    assert_eq!(
        remote_git(&bare, &sb, &["rev-parse", "main"]),
        sb.git(&["rev-parse", "main"])
    );
}

#[test]
fn a_command_agent_uses_the_agent_commands_and_its_work_merges() {
    let config = format!(
        "{CONFIG}{}",
        sh_harness(
            "script",
            "converge task | head -1 > task.txt && converge progress 'wrote task.txt' && converge check && converge done"
        )
    );
    let plan = single_on("script", "");
    let sb = setup(&[("one", &plan)]);
    sb.write("planning/converge.toml", config);
    sb.commit_all("a command agent");
    settle(&sb);
    assert_eq!(phase(&sb, "one", "t"), "merged");
    assert_eq!(sb.read("task.txt"), "# Task `t` of plan `one` (One)\n");
    let log = sb.converge(&["log", "one/t"]);
    log.success();
    assert!(
        log.stdout.contains("progress: wrote task.txt"),
        "{}",
        log.transcript()
    );
    assert!(
        log.stdout.contains("event") && log.stdout.contains("done"),
        "{}",
        log.transcript()
    );
}

#[test]
fn forged_and_misdirected_agent_events_are_refused_ignored_and_reported() {
    // The agent forges a `done` (a made-up token, written straight into the
    // events file), tries `converge done` with another task's token (refused
    // with a message), then works and reports done properly.
    let script = r#"echo '{"type":"done","token":"cvg1.one.t.1.0000000000000000000000000000000000000000000000000000000000000000"}' >> "$CONVERGE_RUN_DIR/events.jsonl"; CONVERGE_AGENT_TOKEN=cvg1.one.other.1.0000000000000000000000000000000000000000000000000000000000000000 converge done 2> refused.txt; echo work > work.txt && converge done"#;
    let config = format!("{CONFIG}{}", sh_harness("script", script));
    let plan = single_on("script", "paths = [\"work.txt\", \"refused.txt\"]");
    let sb = setup(&[("one", &plan)]);
    sb.write("planning/converge.toml", config);
    sb.commit_all("a misbehaving agent");
    settle(&sb);
    assert_eq!(phase(&sb, "one", "t"), "merged");
    assert!(
        sb.read("refused.txt").contains(
            "this token is for one/other attempt 1, but the run directory is for one/t attempt 1"
        ),
        "{}",
        sb.read("refused.txt")
    );
    let status = sb.read("planning/status/one.toml");
    assert!(
        status.contains("type = \"EventsRejected\"")
            && status.contains("1 event(s) of attempt 1 carried a token that does not verify"),
        "{status}"
    );
    let dashboard = sb.read("planning/STATUS.md");
    assert!(
        dashboard.contains("## Attention") && dashboard.contains("**one/t** — 1 event(s)"),
        "{dashboard}"
    );
}

#[test]
fn secrets_tokens_and_sensitive_values_are_redacted_from_every_log() {
    const KEY: &str = "sk-test-6f1d2c3b4a59";
    const SECRET: &str = "converge-secret-from-the-environment";
    // The agent prints its token and an allowed API key and reports progress
    // with the key; its invariant prints the key and converge's secret.
    let script = r#"echo "token=$CONVERGE_AGENT_TOKEN key=$SERVICE_API_KEY"; converge progress "calling the API with $SERVICE_API_KEY"; echo work >> work.txt; converge done"#;
    let config = format!(
        "{CONFIG}{}\n[invariants.leaky]\nkind = \"custom\"\ncommand = \"sh\"\nargs = [\"-c\", \"echo key=$SERVICE_API_KEY secret=$CONVERGE_SECRET\"]\n\n[sandbox]\nenv_allow = [\"PATH\", \"HOME\", \"SERVICE_API_KEY\"]\n",
        sh_harness("script", script)
    );
    let plan = single_on("script", "invariants = [\"leaky\"]\npaths = [\"work.txt\"]");
    let sb = setup(&[("one", &plan)]);
    sb.write("planning/converge.toml", config);
    sb.commit_all("a leaky agent");
    let home = tempfile::tempdir().expect("home");
    let out = crate::support::converge_at(
        sb.path(),
        home.path(),
        &["reconcile", "--wait", "--max-ticks", "200"],
        &[("SERVICE_API_KEY", KEY), ("CONVERGE_SECRET", SECRET)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(phase(&sb, "one", "t"), "merged");
    // Everything converge wrote: run records, gate logs, status, STATUS.md, history.
    let mut written = crate::support::tree_of(&sb.path().join(".git/converge/runs"));
    for file in ["planning/status/one.toml", "planning/STATUS.md"] {
        written.insert(file.to_owned(), sb.read(file).into_bytes());
    }
    written.insert(
        "git log".to_owned(),
        sb.git(&["log", "-p", "--all"]).into_bytes(),
    );
    let mut redacted = 0;
    for (path, bytes) in &written {
        let text = String::from_utf8_lossy(bytes);
        for leak in [KEY, SECRET, "cvg1.one.t."] {
            // events.jsonl carries tokens by design: that is how events are verified.
            if leak == "cvg1.one.t." && path.ends_with("events.jsonl") {
                continue;
            }
            assert!(!text.contains(leak), "{path} contains {leak}:\n{text}");
        }
        redacted += text.matches("[redacted]").count();
    }
    // agent.log (token, key), the progress event, the gate log (key), the
    // evidence's output tail in status (key). converge's secret never reaches
    // an invariant's environment (docs/agent-protocol.md, "What invariants
    // can and cannot touch"), so there is nothing of it to mask.
    assert!(redacted >= 5, "{redacted} masks in {:?}", written.keys());
    let gate_log = String::from_utf8_lossy(&written["one/t/1/gate/leaky.log"]).into_owned();
    assert_eq!(gate_log, "key=[redacted] secret=\n");
}

#[test]
fn a_sandboxed_agent_cannot_read_the_secret_or_write_outside_its_worktree() {
    // Task x holds its worktree open for a while; task y probes the sandbox,
    // then does its job: a commit of its own and `converge done`.
    let slow = "sleep 3; echo x > x.txt; converge done";
    // The agent's worktree is a repository of its own: the main repository's
    // git directory is found from the run directory inside it.
    let probe = r#"common=${CONVERGE_RUN_DIR%/converge/runs/*}
main=$(dirname "$common")
r() { if eval "$2" >/dev/null 2>&1; then echo "$1: allowed"; else echo "$1: denied"; fi; }
{
r "read the secret" "cat $common/converge/secret"
r "read another run" "cat $common/converge/runs/one/x/1/prompt.md"
r "write the main worktree" "touch $main/escape.txt"
r "write another worktree" "touch $main/.converge/worktrees/one/x/escape.txt"
r "write its TMPDIR" "touch \$TMPDIR/ok"
r "read the main worktree" "cat $main/README.md"
} > probe.txt
git add probe.txt && git commit -q -m probe && converge done"#;
    let config = format!(
        "{CONFIG}{}{}\n[sandbox]\nenabled = true\nrequired = true\n",
        sh_harness("slow", slow),
        sh_harness("probe", probe)
    );
    let plan = "[plan]\nname = \"One\"\nstate = \"active\"\n\n[[tasks]]\nname = \"x\"\ndescription = \"Slow.\"\nscope = \"narrow\"\ngate = \"auto\"\nallow_unchecked = true\nharness = \"slow\"\n\n[[tasks]]\nname = \"y\"\ndescription = \"Probe.\"\nscope = \"narrow\"\ngate = \"auto\"\nallow_unchecked = true\nharness = \"probe\"\n";
    let sb = setup(&[("one", plan)]);
    sb.write("planning/converge.toml", config);
    sb.commit_all("sandboxed agents");
    let available = sb.converge(&["reconcile", "--dry-run", "--explain"]);
    if available.stdout.contains("sandbox-unavailable") {
        // A kernel without Landlock: `required` holds every dispatch back.
        assert!(
            available
                .stdout
                .contains("the sandbox cannot be enforced here"),
            "{}",
            available.transcript()
        );
        eprintln!("Landlock is not available here; only the refusal was tested");
        return;
    }
    settle(&sb);
    assert_eq!(phase(&sb, "one", "x"), "merged");
    assert_eq!(phase(&sb, "one", "y"), "merged");
    assert_eq!(
        sb.read("probe.txt"),
        "read the secret: denied\nread another run: denied\nwrite the main worktree: denied\nwrite another worktree: denied\nwrite its TMPDIR: allowed\nread the main worktree: allowed\n"
    );
    assert!(!sb.path().join("escape.txt").exists());
}

#[test]
fn a_spent_token_budget_stops_dispatch_and_report_shows_the_spending() {
    let plan = "[plan]\nname = \"One\"\nstate = \"active\"\ntoken_budget = 100\n\n[[tasks]]\nname = \"a\"\ndescription = \"A.\"\nscope = \"narrow\"\ngate = \"auto\"\nallow_unchecked = true\n[tasks.sim]\nfiles = [{ path = \"a.txt\", content = \"a\\n\" }]\n\n[[tasks]]\nname = \"b\"\ndescription = \"B.\"\nscope = \"narrow\"\ngate = \"auto\"\nallow_unchecked = true\n[tasks.sim]\nfiles = [{ path = \"b.txt\", content = \"b\\n\" }]\n";
    let sb = setup(&[("one", plan)]);
    // An earlier attempt of `a` (by a real agent CLI) used 150 tokens.
    sb.write(
        "planning/status/one.toml",
        "[tasks.a]\nphase = \"escalated\"\nattempt = 1\nfailures = 1\ngeneration = \"0000000000000000\"\n\n[[tasks.a.attempts]]\nnumber = 1\ngeneration = \"0000000000000000\"\nstarted_at = \"2026-01-01T00:00:00Z\"\nended_at = \"2026-01-01T00:01:40Z\"\noutcome = \"failed\"\ntokens_in = 120\ntokens_out = 30\ncost_usd = 0.5\nharness = \"claude-code\"\n",
    );
    sb.commit_all("spent");
    let explain = sb.converge(&["reconcile", "--dry-run", "--explain"]);
    explain.success();
    assert!(
        explain.stdout.contains("would do:\n  nothing")
            && explain.stdout.contains("budget-spent")
            && explain.stdout.contains("150 of 100 tokens"),
        "{}",
        explain.transcript()
    );
    tick(&sb).success();
    assert!(
        !sb.path().join(".git/converge/runs/one/b").exists(),
        "nothing dispatched"
    );
    assert!(
        sb.read("planning/STATUS.md")
            .contains("the plan's `token_budget` is spent (150 of 100 tokens)"),
        "{}",
        sb.read("planning/STATUS.md")
    );
    let report = sb.converge(&["report"]);
    report.success();
    for expected in [
        "one/a",
        "claude-code",
        "100s",
        "0.5000",
        "claude-code: 1 attempt(s), 150 tokens, $0.5000",
        "total: 1 attempt(s), 150 tokens, $0.5000",
        "budget: plan `one` token_budget: 150 of 100 tokens",
    ] {
        assert!(
            report.stdout.contains(expected),
            "{expected}: {}",
            report.transcript()
        );
    }
    let json = sb.converge(&["report", "one", "--json"]);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(value["total"]["tokens"], 150);
    assert_eq!(value["attempts"][0]["seconds"], 100);
    let unknown = sb.converge(&["report", "onr"]);
    assert_eq!(unknown.code, 2, "{}", unknown.transcript());
    assert!(
        unknown.stderr.contains("did you mean"),
        "{}",
        unknown.transcript()
    );
    // Raising the budget lets the work go on.
    sb.write(
        "planning/plans/one.toml",
        plan.replace("token_budget = 100", "token_budget = 1000"),
    );
    sb.commit_all("raise the budget");
    settle(&sb);
    assert_eq!(phase(&sb, "one", "b"), "merged");
}

#[test]
fn an_agent_that_floods_its_output_keeps_the_tail_and_its_work_merges() {
    // 20 MB of output, then the work and `done`: the log keeps at most 8 MiB,
    // ending with what the agent said last.
    let script = "head -c 20000000 /dev/zero | tr '\\0' x | fold -w 1000; echo the-last-line; echo work > work.txt; converge done";
    let config = format!("{CONFIG}{}", sh_harness("noisy", script));
    let plan = single_on("noisy", "");
    let sb = setup(&[("one", &plan)]);
    sb.write("planning/converge.toml", config);
    sb.commit_all("a noisy agent");
    settle(&sb);
    assert_eq!(phase(&sb, "one", "t"), "merged");
    let log = std::fs::read(sb.path().join(".git/converge/runs/one/t/1/agent.log")).expect("log");
    assert!(log.len() <= 8 * 1024 * 1024, "{} bytes kept", log.len());
    assert!(
        log.len() > 1024 * 1024,
        "the tail is kept: {} bytes",
        log.len()
    );
    let text = String::from_utf8_lossy(&log);
    assert!(text.starts_with("[converge: "), "{}", &text[..100]);
    assert!(
        text.contains("the-last-line"),
        "the end of the output survives"
    );
    let tail = sb.converge(&["log", "one/t"]);
    tail.success();
}

/// A `[harness.<name>]` table that runs `script` with `sh -c` (no sim table).
fn sh_harness(name: &str, script: &str) -> String {
    format!(
        "\n[harness.{name}]\nkind = \"command\"\ncommand = \"sh\"\nargs = [\"-c\", '''{script}''']\n"
    )
}

/// One plan of one task on harness `harness`, with these extra task keys.
fn single_on(harness: &str, extra: &str) -> String {
    single(&format!("harness = \"{harness}\"\n{extra}"), "").replace("\n[tasks.sim]\n", "\n")
}

#[test]
fn people_commands_show_and_steer_the_plans() {
    let sb = setup(&[("diamond", DIAMOND)]);
    let explain = sb.converge(&["reconcile", "--dry-run", "--explain"]);
    explain.success();
    insta::assert_snapshot!("dry_run_explain", explain.stdout);
    sb.converge(&["pause", "diamond"]).success();
    assert!(
        sb.read("planning/plans/diamond.toml")
            .contains("state = \"paused\"")
    );
    let run = tick(&sb);
    run.success();
    let status = sb.converge(&["status"]);
    assert!(
        status.stdout.contains("its plan is paused"),
        "{}",
        status.transcript()
    );
    let json = sb.converge(&["status", "diamond", "--json"]);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(value["tasks"][0]["reason"], "plan-paused");
    sb.converge(&["resume", "diamond"]).success();
    assert!(
        sb.read("planning/plans/diamond.toml")
            .contains("state = \"active\"")
    );
    settle(&sb);
    let gate = sb.converge(&["gate", "diamond/d"]);
    assert!(
        gate.stdout.contains("passed: deps-present"),
        "{}",
        gate.transcript()
    );
    let history = sb.converge(&["history", "diamond", "--limit", "100"]);
    for action in ["pause", "resume", "dispatch", "gate", "merge"] {
        assert!(
            history
                .stdout
                .lines()
                .any(|l| l.split_whitespace().nth(2) == Some(action)),
            "{action}: {}",
            history.stdout
        );
    }
    let unknown = sb.converge(&["gate", "diamond/e"]);
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains("there is no task `diamond/e`"),
        "{}",
        unknown.transcript()
    );
}

#[test]
fn a_harness_that_cannot_start_escalates_and_retry_resumes_after_the_fix() {
    let plan = single(
        "harness = \"codex\"",
        "files = [{ path = \"x.txt\", content = \"x\\n\" }]",
    );
    let sb = setup(&[("one", &plan)]);
    let run = tick(&sb);
    run.success();
    assert!(
        run.stdout.contains("escalate one/t"),
        "{}",
        run.transcript()
    );
    let st = status(&sb, "one");
    assert_eq!(task(&st, "t")["phase"].as_str(), Some("escalated"));
    assert_eq!(
        task(&st, "t")["last_failure"]["reason"].as_str(),
        Some("harness-unavailable")
    );
    let message = task(&st, "t")["last_failure"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("the `codex` CLI of harness `codex` is not installed here"),
        "{message}"
    );
    // Nothing more happens on its own.
    let before = sb.git(&["rev-parse", "main"]);
    tick(&sb).success();
    assert_eq!(sb.git(&["rev-parse", "main"]), before);
    // Fix the plan; the edit restarts it.
    sb.write(
        "planning/plans/one.toml",
        plan.replace("harness = \"codex\"", "harness = \"sim\""),
    );
    sb.commit_all("use the sim harness");
    settle(&sb);
    assert_eq!(phase(&sb, "one", "t"), "merged");
}

#[test]
fn doctor_finds_orphans_stray_processes_and_an_open_secret_and_fixes_them() {
    let plan = single(
        "",
        "sleep = \"60s\"\nfiles = [{ path = \"x.txt\", content = \"x\\n\" }]",
    );
    let sb = setup(&[("one", &plan)]);
    let clean = sb.converge(&["doctor"]);
    assert_eq!(clean.code, 0, "{}", clean.transcript());
    tick(&sb).success();
    let (supervisor, agent) = wait_for_agent(&sb, "one", "t", 1);
    // The plan is dropped behind converge's back, and a directory appears
    // where worktrees live.
    std::fs::remove_file(sb.path().join("planning/plans/one.toml")).expect("rm");
    sb.commit_all("drop the plan");
    std::fs::create_dir_all(sb.path().join(".converge/worktrees/ghost/task")).expect("mkdir");
    // One where worktrees lived before they moved out of `.git`, too.
    std::fs::create_dir_all(sb.path().join(".git/converge/worktrees/ghost/old")).expect("mkdir");
    let found = sb.converge(&["doctor"]);
    assert_eq!(found.code, 1, "{}", found.transcript());
    for needle in [
        "attempt 1 of one/t still runs",
        "is not a worktree git knows",
    ] {
        assert!(
            found.stdout.contains(needle),
            "{needle}: {}",
            found.transcript()
        );
    }
    // An open secret stops ticks (with a hint) and the other checks.
    let secret = sb.path().join(".git/converge/secret");
    std::process::Command::new("chmod")
        .args(["644", secret.to_str().expect("utf-8")])
        .status()
        .expect("chmod");
    let refused = tick(&sb);
    assert_eq!(refused.code, 1, "{}", refused.transcript());
    assert!(
        refused.stderr.contains("converge doctor --fix"),
        "{}",
        refused.transcript()
    );
    let found = sb.converge(&["doctor"]);
    assert_eq!(found.code, 1, "{}", found.transcript());
    assert!(
        found.stdout.contains("others may read it"),
        "{}",
        found.transcript()
    );
    // Work the agent had not committed yet must survive the clean-up.
    std::fs::write(
        sb.path().join(".converge/worktrees/one/t/notes.txt"),
        "draft\n",
    )
    .expect("write");
    let fixed = sb.converge(&["doctor", "--fix"]);
    assert_eq!(fixed.code, 0, "{}", fixed.transcript());
    assert!(
        fixed.stdout.contains("fixed: made"),
        "{}",
        fixed.transcript()
    );
    assert!(
        fixed.stdout.contains("fixed: killed the processes"),
        "{}",
        fixed.transcript()
    );
    assert!(
        fixed
            .stdout
            .contains("fixed: removed the worktree and branch of one/t"),
        "{}",
        fixed.transcript()
    );
    std::thread::sleep(Duration::from_millis(100));
    assert!(!alive(agent) && !alive(supervisor));
    // The work of the removed task is kept.
    assert!(
        refs(&sb).contains("refs/converge/attempts/one/t/1"),
        "{}",
        refs(&sb)
    );
    assert_eq!(
        sb.git(&["show", "refs/converge/attempts/one/t/1:notes.txt"]),
        "draft\n"
    );
    assert!(!refs(&sb).contains("refs/heads/converge/"));
    let again = sb.converge(&["doctor", "--json"]);
    assert_eq!(again.code, 0, "{}", again.transcript());
    let findings: serde_json::Value = serde_json::from_str(&again.stdout).expect("json");
    assert!(
        findings
            .as_array()
            .expect("array")
            .iter()
            .all(|f| f["level"] != "problem")
    );
}

#[test]
fn git_locks_left_by_a_killed_agent_do_not_stop_its_gate() {
    // Found by crash injection: an agent killed mid-commit left index.lock and
    // the branch's lock behind, and every later gate of the task failed.
    let plan = single(
        "",
        "commit = false\nfiles = [{ path = \"x.txt\", content = \"x\\n\" }]",
    );
    let sb = setup(&[("one", &plan)]);
    tick(&sb).success();
    let exit = run_dir(&sb, "one", "t", 1).join("exit.json");
    for _ in 0..200 {
        if exit.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let worktree = sb.path().join(".converge/worktrees/one/t");
    let git_dir = sb.git(&[
        "-C",
        worktree.to_str().expect("utf-8"),
        "rev-parse",
        "--absolute-git-dir",
    ]);
    std::fs::write(PathBuf::from(git_dir.trim()).join("index.lock"), "").expect("index lock");
    std::fs::write(sb.path().join(".git/refs/heads/converge/one/t.lock"), "").expect("ref lock");
    let run = tick(&sb);
    run.success();
    assert!(
        run.stdout
            .contains("gate one/t (attempt 1) (committed leftovers): passed"),
        "{}",
        run.transcript()
    );
    settle(&sb);
    assert_eq!(phase(&sb, "one", "t"), "merged");
}

#[test]
fn a_branch_that_diverged_from_the_remote_is_reported_and_left_alone() {
    let plan = single("", "files = [{ path = \"x.txt\", content = \"x\\n\" }]");
    let sb = setup(&[("one", &plan)]);
    sb.write(".gitignore", "remote.git/\n");
    sb.commit_all("ignore the remote");
    let bare = with_remote(&sb);
    let base = sb.git(&["rev-parse", "main"]).trim().to_owned();
    // The remote gets one commit, main here another.
    let tree = sb.git(&["rev-parse", "main^{tree}"]).trim().to_owned();
    let theirs = sb
        .git(&["commit-tree", &tree, "-p", &base, "-m", "theirs"])
        .trim()
        .to_owned();
    sb.git(&[
        "push",
        "-q",
        "--force",
        "origin",
        &format!("{theirs}:refs/heads/main"),
    ]);
    sb.write("local.txt", "ours\n");
    let ours = sb.commit_all("ours");
    let run = tick(&sb);
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(run.stderr.contains("have diverged"), "{}", run.transcript());
    assert!(
        run.stderr.contains("never force-pushes"),
        "{}",
        run.transcript()
    );
    assert_eq!(sb.git(&["rev-parse", "main"]).trim(), ours);
    assert_eq!(
        remote_git(&bare, &sb, &["rev-parse", "main"]).trim(),
        theirs
    );
}

#[test]
fn task_worktrees_live_in_the_checkout_hidden_from_git_and_old_ones_in_git_dir_are_retired() {
    let sb = setup(&[(
        "one",
        &single("", "files = [{ path = \"t.txt\", content = \"t\\n\" }]"),
    )]);
    // A worktree where converge kept them before they moved out of `.git`,
    // with work nobody committed.
    sb.git(&[
        "worktree",
        "add",
        "-q",
        "-b",
        "converge/one/t",
        ".git/converge/worktrees/one/t",
    ]);
    std::fs::write(
        sb.path().join(".git/converge/worktrees/one/t/legacy.txt"),
        "kept\n",
    )
    .expect("write");
    tick(&sb).success();
    let worktree = sb.path().join(".converge/worktrees/one/t");
    // A repository of its own (see the hostile-agent tests).
    assert!(
        worktree.join(".git").is_dir(),
        "no worktree at {worktree:?}"
    );
    assert!(!sb.path().join(".git/converge/worktrees/one/t").exists());
    let exclude = sb.read(".git/info/exclude");
    assert_eq!(exclude.matches("/.converge/").count(), 1, "{exclude}");
    assert_eq!(sb.git(&["status", "--porcelain", "--ignored=no"]), "");
    // The old worktree's work went onto the branch before the branch was
    // reset for attempt 1, and is kept.
    let kept = sb.git(&["show", "refs/converge/attempts/one/t/0:legacy.txt"]);
    assert_eq!(kept, "kept\n");
    settle(&sb);
    assert_eq!(phase(&sb, "one", "t"), "merged");
    assert!(
        !worktree.exists(),
        "the merged task's worktree is cleaned up"
    );
    let listed = sb.git(&["worktree", "list", "--porcelain"]);
    assert!(!listed.contains("converge/one/t"), "{listed}");
    // Excluding is idempotent.
    assert_eq!(
        sb.read(".git/info/exclude").matches("/.converge/").count(),
        1
    );
}

#[test]
fn doctor_says_when_an_agent_cli_that_tasks_need_is_not_installed() {
    let config = format!(
        "{CONFIG}\n[harness.missing]\nkind = \"claude-code\"\ncommand = \"no-such-agent-cli-xyz\"\n\n[harness.present]\nkind = \"codex\"\ncommand = \"/bin/true\"\n"
    );
    let plan = "[plan]\nname = \"One\"\nstate = \"active\"\n\n[[tasks]]\nname = \"a\"\ndescription = \"A.\"\nscope = \"narrow\"\ngate = \"auto\"\nallow_unchecked = true\nharness = \"missing\"\n\n[[tasks]]\nname = \"b\"\ndescription = \"B.\"\nscope = \"narrow\"\ngate = \"auto\"\nallow_unchecked = true\nharness = \"present\"\n";
    let sb = setup(&[("one", plan)]);
    sb.write("planning/converge.toml", config);
    sb.commit_all("agent CLIs");
    let doctor = sb.converge(&["doctor"]);
    assert_eq!(doctor.code, 1, "{}", doctor.transcript());
    assert!(
        doctor
            .stdout
            .contains("`no-such-agent-cli-xyz` (harness `missing`) is not installed here")
            && doctor.stdout.contains("one/a"),
        "{}",
        doctor.transcript()
    );
    assert!(
        !doctor.stdout.contains("`/bin/true` (harness `present`)"),
        "{}",
        doctor.transcript()
    );
}

#[test]
fn a_machine_without_a_git_identity_still_reconciles_as_converge() {
    // A fresh CI runner: no user.name anywhere, no GIT_COMMITTER_* either.
    // converge's commits carry its own identity; the reflog entries of the
    // refs it moves must not stop the tick.
    let sb = setup(&[(
        "one",
        &single("", "files = [{ path = \"x.txt\", content = \"x\\n\" }]"),
    )]);
    sb.git(&["config", "--unset", "user.name"]);
    sb.git(&["config", "--unset", "user.email"]);
    let run = |args: &[&str]| {
        let mut command = std::process::Command::new(crate::support::BIN);
        crate::support::isolate(&mut command, sb.home());
        for var in [
            "GIT_AUTHOR_NAME",
            "GIT_AUTHOR_EMAIL",
            "GIT_COMMITTER_NAME",
            "GIT_COMMITTER_EMAIL",
        ] {
            command.env_remove(var);
        }
        command
            .args(args)
            .current_dir(sb.path())
            .output()
            .expect("converge runs")
    };
    let out = run(&["reconcile", "--wait", "--max-ticks", "50"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(phase(&sb, "one", "t"), "merged");
    let committers = sb.git(&["log", "--format=%cn <%ce>", "-3", "main"]);
    assert!(
        committers
            .lines()
            .all(|l| l == "converge <converge@localhost>"),
        "{committers}"
    );
    let reflog = sb.git(&["reflog", "show", "--format=%gn", "-1", "main"]);
    assert_eq!(reflog.trim(), "converge", "{reflog}");
}
