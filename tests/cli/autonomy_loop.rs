//! Issue #17: the autonomy loop run for real (the binary, git, the sim
//! planner and sim agents) on an accelerated clock: `CONVERGE_NOW` moves
//! ten minutes between `reconcile --until-idle` runs, so twelve hours pass in
//! 72 runs. The sim planner is scripted to misbehave (`[autonomy.sim]`):
//! a duplicate, an invalid item, a rate limit, a dev task that always fails.
//! And a hostile planner (a `command` harness) that tries to get a secret
//! and planning/ edits through its output.

use std::time::Duration;

use converge::time::Timestamp;
use serde_json::Value;

use crate::support::{Sandbox, converge_at};

const GOAL: &str =
    "# Goal\n\n- Login\n- Logout\n- Export CSV\n- Search\n- Profile page\n- Dark mode\n";

fn looped(autonomy: &str) -> Sandbox {
    let sb = Sandbox::repo();
    sb.write("README.md", "app\n");
    sb.write("planning/goal.md", GOAL);
    sb.write(
        "planning/capabilities.md",
        "# Capabilities\n\n- (nothing yet)\n",
    );
    sb.write(
        "planning/converge.toml",
        format!(
            r#"[reconcile]
default_harness = "sim"
task_timeout = "12h"
backoff = {{ base = "1m", factor = 2, max = "10m" }}

[budget]
usd_per_day = 1.0

[invariants.features]
kind = "lint"
command = "sh"
args = ["-c", "for f in features/*.md; do test -s \"$f\" || exit 1; done"]
timeout = "30s"

[autonomy]
enabled = true
{autonomy}"#
        ),
    );
    sb.commit_all("a goal for the loop");
    sb
}

/// The first instant of the run: now (an attempt's deadline is kept by the
/// wall clock, so the simulated clock must not start in the past).
fn start() -> Timestamp {
    Timestamp::from_unix(Timestamp::now().unix() / 60 * 60 + 60)
}

fn autonomy_json(sb: &Sandbox, now: Timestamp) -> Value {
    let now = now.to_string();
    let out = converge_at(
        sb.path(),
        sb.home(),
        &["autonomy", "status", "--json"],
        &[("CONVERGE_NOW", now.as_str())],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    serde_json::from_slice(&out.stdout).expect("json")
}

/// Lets running agents finish between steps of the simulated clock.
fn settle() {
    std::thread::sleep(Duration::from_millis(150));
}

#[test]
fn a_scripted_twelve_hours_meet_the_goal_within_caps_and_escalate_what_needs_a_person() {
    let sb = looped(
        r#"max_items_per_day = 9
max_runs_per_day = 30
review_every = 3
budget_share = 0.5

[autonomy.sim]
usd_per_run = 0.02
duplicate_runs = [3]
invalid_runs = [6]
rate_limited_runs = [8]
fail_first = ["Search"]
"#,
    );
    let t0 = start();
    let mut now = t0;
    let mut log = String::new();
    let mut escalation_seen = false;
    let mut met_at = None;
    for step in 0..72u64 {
        now = t0.plus(Duration::from_secs(step * 600));
        log.push_str(&tick(&sb, now));
        settle();
        let md = sb.git(&["show", "main:planning/STATUS.md"]);
        // While an item is escalated, STATUS.md says which command acts on it.
        if let Some(section) = md.split("## Escalated").nth(1) {
            let entry = section
                .lines()
                .find(|l| l.contains("**queue/search-"))
                .unwrap_or_else(|| panic!("the escalated search item is listed:\n{md}"));
            assert!(entry.contains("`converge gate queue/search-"), "{entry}");
            escalation_seen = true;
        }
        let v = autonomy_json(&sb, now);
        // The caps hold at every step.
        let day = &v["day"];
        assert!(day["runs"].as_u64() <= day["max_runs"].as_u64(), "{v}");
        assert!(day["items"].as_u64() <= day["max_items"].as_u64(), "{v}");
        assert!(day["usd"].as_f64() <= day["usd_limit"].as_f64(), "{v}");
        // A loop that pauses itself says so in STATUS.md with the command.
        if v["state"] == "paused" {
            assert!(md.contains("`converge autonomy resume`"), "{md}");
        }
        if v["state"] == "goal-met" && met_at.is_none() {
            met_at = Some((step, v["totals"]["runs"].as_u64()));
        }
    }
    let v = autonomy_json(&sb, now);
    eprintln!(
        "12 simulated hours: {} planner runs, {} items, {} merged, {} duplicates, {} invalid, ${} (met at step {:?})",
        v["totals"]["runs"],
        v["totals"]["items"],
        v["totals"]["merges"],
        v["totals"]["duplicates"],
        v["totals"]["refused"],
        v["totals"]["usd"],
        met_at
    );
    assert_eq!(v["state"], "goal-met", "{v}\n{log}");
    assert!(escalation_seen, "the failing item escalated:\n{log}");
    // Every bullet point is a capability now, in capabilities.md on main.
    let capabilities = sb.git(&["show", "main:planning/capabilities.md"]);
    for goal in GOAL.lines().filter_map(|l| l.strip_prefix("- ")) {
        assert!(
            capabilities.contains(&format!("- {goal}")),
            "{goal}:\n{capabilities}"
        );
    }
    // The duplicate and the invalid item were refused and counted, never filed.
    assert_eq!(v["totals"]["duplicates"], 1, "{v}");
    assert_eq!(v["totals"]["refused"], 1, "{v}");
    assert!(log.contains("refused as a duplicate"), "{log}");
    assert!(log.contains("refused as an invalid queue item"), "{log}");
    assert!(log.contains("was rate-limited until"), "{log}");
    // Six goals, and Search twice (its first item always failed): 7 items.
    let items: Vec<&str> = v["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["state"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(items.iter().filter(|s| **s == "merged").count(), 6, "{v}");
    assert_eq!(
        items.iter().filter(|s| **s == "escalated").count(),
        1,
        "{v}"
    );
    assert_eq!(items.len(), 7, "{v}");
    // After the goal was met, no planner ran again.
    let (_, runs_at_met) = met_at.expect("the goal was met");
    assert_eq!(v["totals"]["runs"].as_u64(), runs_at_met, "{v}");
    // The simulated cost: every planner run but the rate-limited one cost $0.02.
    let runs = v["totals"]["runs"].as_f64().expect("runs");
    let usd = v["totals"]["usd"].as_f64().expect("usd");
    assert!((usd - (runs - 1.0) * 0.02).abs() < 1e-6, "{v}");
    // What the loop filed is converge's, on main; every item once.
    let enqueues = sb
        .git(&["log", "--format=%an %s", "main"])
        .lines()
        .filter(|l| l.contains("converge: enqueue"))
        .count();
    assert_eq!(enqueues, 7);
    // No planner branch or worktree is left.
    assert_eq!(sb.git(&["branch", "--list", "converge/_autonomy/*"]), "");
}

#[test]
fn repeated_escalations_pause_the_loop_and_block_the_gap_until_a_person_acts() {
    let sb = looped(
        r#"max_consecutive_escalations = 2

[autonomy.sim]
failing = ["Login"]
"#,
    );
    let t0 = start();
    let mut now = t0;
    for step in 0..30u64 {
        now = t0.plus(Duration::from_secs(step * 600));
        tick(&sb, now);
        settle();
        if autonomy_json(&sb, now)["state"] == "paused" {
            break;
        }
    }
    let v = autonomy_json(&sb, now);
    assert_eq!(v["state"], "paused", "{v}");
    assert_eq!(v["next"]["code"], "autonomy-paused", "{v}");
    let gap = v["blocked"][0]["id"]
        .as_str()
        .expect("a blocked gap")
        .to_owned();
    // Tick on a while paused: nothing new starts.
    let runs = v["totals"]["runs"].clone();
    for step in 1..4u64 {
        tick(&sb, now.plus(Duration::from_secs(step * 600)));
    }
    assert_eq!(autonomy_json(&sb, now)["totals"]["runs"], runs);
    let md = sb.git(&["show", "main:planning/STATUS.md"]);
    let attention = md
        .split("## Attention")
        .nth(1)
        .expect("an Attention section");
    assert!(
        attention.contains("the autonomy loop is paused (autonomy-escalations)"),
        "{md}"
    );
    assert!(attention.contains("`converge autonomy resume`"), "{md}");
    assert!(
        attention.contains(&format!("`converge autonomy unblock {gap}`")),
        "{md}"
    );
    assert!(md.contains("## Autonomy"), "{md}");
    // A person unblocks the gap and resumes: the loop goes on (and with
    // Login still failing, proposes the next goal first: Login stays out
    // of capabilities.md, but it is no longer refused).
    sb.converge(&["autonomy", "unblock", &gap]).success();
    sb.converge(&["autonomy", "resume"]).success();
    let later = now.plus(Duration::from_secs(3600));
    let out = tick(&sb, later);
    assert!(out.contains("autonomy: gap-analysis"), "{out}");
    let again = sb.converge(&["autonomy", "resume"]);
    assert_ne!(again.code, 0);
    assert!(again.stderr.contains("running already"), "{}", again.stderr);
}

#[test]
fn a_pause_a_checkout_blocks_says_which_file_is_in_the_way() {
    // Status lives on main here, which is checked out: a person's uncommitted
    // edit of the loop's record is in the way of the pause's commit.
    let sb = looped("");
    tick(&sb, start());
    let record = "planning/status/autonomy/loop.toml";
    let text = std::fs::read_to_string(sb.path().join(record)).expect("the loop's record");
    sb.write(record, format!("{text}# a note of mine\n"));
    let out = sb.converge(&["autonomy", "pause"]);
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.stderr.contains("nothing was recorded"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("uncommitted changes"), "{}", out.stderr);
    assert!(out.stderr.contains("loop.toml"), "{}", out.stderr);
    assert!(out.stderr.contains("commit or stash"), "{}", out.stderr);
    assert!(!out.stderr.contains("moved"), "{}", out.stderr);
    // The person's edit is untouched.
    assert!(
        std::fs::read_to_string(sb.path().join(record))
            .expect("read")
            .ends_with("# a note of mine\n")
    );
}

#[test]
fn a_hostile_planner_gets_neither_a_secret_nor_a_planning_edit_through() {
    // The planner links its "item" to converge's secret, edits goal.md in
    // its worktree and commits it.
    let sb = with_planner(
        "mkdir -p .converge-planner\n\
         ln -s \"$1/.git/converge/secret\" .converge-planner/item.md\n\
         echo '- Take over' >> planning/goal.md\n\
         git add -A >/dev/null 2>&1; git commit -qm 'planner edits the goal' >/dev/null 2>&1\n\
         converge done\n",
    );
    let goal_before = sb.git(&["show", "main:planning/goal.md"]);
    let t0 = start();
    for step in 0..3u64 {
        tick(&sb, t0.plus(Duration::from_secs(step * 600)));
        settle();
    }
    let v = autonomy_json(&sb, t0);
    let history = v["history"].to_string();
    assert!(history.contains("output was refused"), "{v}");
    assert!(history.contains("plain file"), "{v}");
    assert_eq!(v["totals"]["items"], 0, "{v}");
    assert_eq!(sb.git(&["show", "main:planning/goal.md"]), goal_before);
    // The secret is in no commit of any branch, nor in the run directory.
    let secret_blob = sb.git(&["hash-object", ".git/converge/secret"]);
    let objects = sb.git(&["rev-list", "--all", "--objects"]);
    assert!(!objects.contains(secret_blob.trim()), "the secret leaked");
    let out = sb.path().join(".git/converge/runs/_autonomy/gap-1/1/out");
    assert!(!out.join("item.md").exists());
    // The refused attempts' branches and worktrees are gone (the third
    // tick started the next one); nothing of them was merged.
    assert_eq!(
        sb.git(&["branch", "--list", "converge/_autonomy/gap-1"]),
        ""
    );
    assert!(
        !sb.path()
            .join(".converge/worktrees/_autonomy/gap-1")
            .exists()
    );
    assert!(
        !sb.git(&["log", "--format=%s", "main"])
            .contains("planner edits the goal")
    );
}

#[test]
fn the_autonomy_demo_goes_from_goal_to_capabilities_in_seconds() {
    let sb = Sandbox::new();
    let dir = sb.path().join("demo");
    let started = std::time::Instant::now();
    let run = sb.converge(&["demo", "--autonomy", "--dir", dir.to_str().expect("utf-8")]);
    run.success();
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    let out = &run.stdout;
    // The whole chain, in order.
    let order = [
        "autonomy: gap-analysis 1 started",
        "filed queue/greeting-configuration-1",
        "promote queue item greeting-configuration-1",
        "merge queue/greeting-configuration-1",
        "capability-update 2 after queue/greeting-configuration-1 started",
        "capabilities.md updated after queue/greeting-configuration-1",
        "gap-analysis 3 started",
        "the goal is met",
    ];
    let mut at = 0;
    for step in order {
        let found = out[at..]
            .find(step)
            .unwrap_or_else(|| panic!("`{step}` after byte {at}:\n{out}"));
        at += found + step.len();
    }
    assert!(out.contains("history of the loop:"), "{out}");
    assert!(out.contains("  - Usage documentation"), "{out}");
    // The promotions went onto main (the demo's status has its own branch).
    let main_log = sb.git(&[
        "-C",
        dir.to_str().expect("utf-8"),
        "log",
        "--format=%s",
        "main",
    ]);
    assert_eq!(
        main_log.matches("converge: promote queue/").count(),
        4,
        "{main_log}"
    );
    assert_eq!(
        main_log.matches("converge: merge queue/").count(),
        4,
        "{main_log}"
    );
}

/// A repository whose planner is `script` (a `command` harness, run in its
/// worktree with the repository's path as its argument).
fn with_planner(script: &str) -> Sandbox {
    let sb = Sandbox::repo();
    sb.write("README.md", "app\n");
    sb.write("planning/goal.md", GOAL);
    sb.write("planning/capabilities.md", "- (nothing yet)\n");
    sb.write("planner.sh", script);
    let repo = sb.path().display().to_string();
    sb.write(
        "planning/converge.toml",
        format!(
            r#"[reconcile]
default_harness = "sim"

[invariants.features]
kind = "lint"
command = "true"

[harness.hostile]
kind = "command"
command = "sh"
args = ["{repo}/planner.sh", "{repo}"]

[autonomy]
enabled = true
harness = "hostile"
"#
        ),
    );
    sb.commit_all("a hostile planner");
    sb
}

/// One `reconcile --until-idle` at `now`, killed (and failed) if it does not
/// end within 60 seconds.
fn tick(sb: &Sandbox, now: Timestamp) -> String {
    let mut command = std::process::Command::new(crate::support::BIN);
    crate::support::isolate(&mut command, sb.home());
    let mut child = command
        .args(["reconcile", "--until-idle"])
        .env("CONVERGE_NOW", now.to_string())
        .current_dir(sb.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("converge runs");
    let started = std::time::Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the tick hung");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    text
}

#[test]
fn a_planner_that_leaves_a_named_pipe_does_not_hang_the_reconciler() {
    let sb = with_planner(
        "mkdir -p .converge-planner && mkfifo .converge-planner/item.md\nconverge done\n",
    );
    let t0 = start();
    for step in 0..3u64 {
        tick(&sb, t0.plus(Duration::from_secs(step * 600)));
        settle();
    }
    let v = autonomy_json(&sb, t0);
    assert!(
        v["history"]
            .to_string()
            .contains("item.md is not a plain file"),
        "{v}"
    );
    assert_eq!(v["totals"]["items"], 0, "{v}");
}

#[test]
fn a_planners_item_that_would_merge_its_own_bytes_unchecked_is_refused() {
    // A valid queue item, but one that chooses the sim agent and its script
    // (exact bytes into build.rs) and opts out of every check.
    let sb = with_planner(
        "mkdir -p .converge-planner\n\
         printf -- '---\\nscope: narrow\\ngate: auto\\nallow_unchecked: true\\nharness: sim\\nsim: {files: [{path: build.rs, content: \"fn main() {}\"}]}\\n---\\n\\n# Speed up builds\\n\\nA build script.\\n' > .converge-planner/item.md\n\
         converge done\n",
    );
    let t0 = start();
    for step in 0..3u64 {
        tick(&sb, t0.plus(Duration::from_secs(step * 600)));
        settle();
    }
    let v = autonomy_json(&sb, t0);
    let history = v["history"].to_string();
    assert!(history.contains("refused as an invalid queue item"), "{v}");
    assert!(history.contains("allow_unchecked"), "{v}");
    assert_eq!(v["totals"]["items"], 0, "{v}");
    let tree = sb.git(&["ls-tree", "-r", "--name-only", "main"]);
    assert!(
        !tree.contains("build.rs") && !tree.contains("planning/queue/speed"),
        "{tree}"
    );
}

#[test]
fn a_lost_loop_record_starts_over_without_replaying_old_planner_attempts() {
    let sb = looped("review_every = 0\n");
    let t0 = start();
    let mut now = t0;
    let mut step = 0u64;
    // Until two items merged.
    while autonomy_json(&sb, now)["totals"]["merges"].as_u64() < Some(2) {
        assert!(step < 30, "two items merge within 30 steps");
        now = t0.plus(Duration::from_secs(step * 600));
        tick(&sb, now);
        settle();
        step += 1;
    }
    let runs_before = autonomy_json(&sb, now)["totals"]["runs"]
        .as_u64()
        .expect("runs");
    // A person deletes the record (or it stops parsing).
    sb.git(&["rm", "-q", "planning/status/autonomy/loop.toml"]);
    sb.git(&["commit", "-q", "-m", "drop the loop's record"]);
    for more in 1..8u64 {
        tick(&sb, now.plus(Duration::from_secs(more * 600)));
        settle();
    }
    let v = autonomy_json(&sb, now);
    // New attempts are numbered above the old ones; no old one was read
    // back again, so no item was filed twice.
    let history = v["history"].to_string();
    assert!(!history.contains("gap-analysis 1:"), "{v}");
    let first_new = v["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|l| l.as_str())
        .find_map(|l| l.split("gap-analysis ").nth(1))
        .and_then(|rest| rest.split([' ', ':']).next())
        .and_then(|n| n.parse::<u64>().ok())
        .expect("a new gap analysis");
    assert!(first_new > runs_before, "{first_new} > {runs_before}: {v}");
    let enqueued: Vec<String> = sb
        .git(&["log", "--format=%s", "main"])
        .lines()
        .filter(|l| l.starts_with("converge: enqueue"))
        .map(str::to_owned)
        .collect();
    let mut unique = enqueued.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), enqueued.len(), "{enqueued:?}");
}

/// With `--features crash-points`: converge aborts after starting a planner
/// and before recording it, and after committing what a planner proposed and
/// before recording it, over and over; the loop still meets its goal, files
/// every item exactly once, and leaves no planner unread or running.
#[cfg(feature = "crash-points")]
#[test]
fn crashes_at_the_loops_points_repeat_no_filing_and_lose_no_attempt() {
    let sb = Sandbox::repo();
    sb.write("README.md", "app\n");
    sb.write(
        "planning/goal.md",
        "# Goal\n\n- Login\n- Logout\n- Search\n",
    );
    sb.write("planning/capabilities.md", "- (nothing yet)\n");
    sb.write(
        "planning/converge.toml",
        r#"[reconcile]
default_harness = "sim"
task_timeout = "12h"

[invariants.features]
kind = "lint"
command = "true"

[autonomy]
enabled = true
review_every = 2
"#,
    );
    sb.commit_all("a goal");
    let t0 = start();
    let mut crashed = 0;
    for step in 0..60u64 {
        let now = t0.plus(Duration::from_secs(step * 600)).to_string();
        let armed = match step % 3 {
            0 => converge::crash::AUTONOMY_POINTS[0],
            1 => converge::crash::AUTONOMY_POINTS[1],
            _ => "",
        };
        let out = converge_at(
            sb.path(),
            sb.home(),
            &["reconcile", "--until-idle"],
            &[
                ("CONVERGE_NOW", now.as_str()),
                (converge::crash::ENV, armed),
            ],
        );
        if !out.status.success() {
            assert!(!armed.is_empty(), "{out:?}");
            crashed += 1;
        }
        settle();
        if autonomy_json(&sb, t0)["state"] == "goal-met" {
            break;
        }
    }
    let v = autonomy_json(&sb, t0);
    assert_eq!(v["state"], "goal-met", "{v}");
    assert!(crashed >= 4, "the points were hit: {crashed}");
    // An attempt started but never recorded was taken over.
    let record = sb.git(&["show", "main:planning/status/autonomy/loop.toml"]);
    assert!(
        record.contains("was started but not recorded (a crash)"),
        "{record}"
    );
    // Every item once on main, each merged.
    let enqueued: Vec<String> = sb
        .git(&["log", "--format=%s", "main"])
        .lines()
        .filter(|l| l.starts_with("converge: enqueue"))
        .map(str::to_owned)
        .collect();
    assert_eq!(enqueued.len(), 3, "{enqueued:?}");
    assert_eq!(v["totals"]["merges"], 3, "{v}");
    // Every planner attempt on disk was read back; none runs, none is left
    // checked out.
    let runs = sb.path().join(".git/converge/runs/_autonomy");
    for entry in std::fs::read_dir(&runs).expect("planner runs") {
        let run = entry.expect("entry").path().join("1");
        assert!(
            run.join("harvested").exists(),
            "{} was not read back",
            run.display()
        );
    }
    assert_eq!(sb.git(&["branch", "--list", "converge/_autonomy/*"]), "");
}
