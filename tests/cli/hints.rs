//! Hints that are right and records that tell the truth (issue 14, items 8-10):
//! what a new user was told, checked against what converge then does.

use crate::support::Sandbox;

const CONFIG: &str = r#"[reconcile]
default_harness = "sim"
max_agents = 4
backoff = { base = "1s", factor = 2, max = "2s" }

[invariants.never]
kind = "test_suite"
command = "sh"
args = ["-c", "echo 'assertion failed: 1 == 2'; exit 1"]
"#;

const COUNTING: &str = r#"[plan]
name = "Counting"
state = "active"

[[tasks]]
name = "news"
description = "Write the news."
scope = "narrow"
gate = "auto"
allow_unchecked = true
[tasks.sim]
files = [{ path = "news.txt", content = "news\n" }]

[[tasks]]
name = "review"
description = "Reviewed work."
scope = "narrow"
gate = "human_review"
[tasks.sim]
files = [{ path = "review.txt", content = "review\n" }]
"#;

fn setup(config: &str, plans: &[(&str, &str)]) -> Sandbox {
    let sb = Sandbox::repo();
    sb.write("README.md", "project\n");
    sb.write("planning/goal.md", "Converge.\n");
    sb.write("planning/converge.toml", config);
    for (id, text) in plans {
        sb.write(&format!("planning/plans/{id}.toml"), text);
    }
    sb.commit_all("plan");
    sb
}

fn settle(sb: &Sandbox) {
    sb.converge(&["reconcile", "--wait", "--max-ticks", "200"])
        .success();
}

#[test]
fn task_names_and_decisions_are_answered_truthfully() {
    let sb = setup(CONFIG, &[("counting", COUNTING)]);
    settle(&sb);

    // A merged task: `retry` says so instead of bumping `reset`.
    let retry = sb.converge(&["retry", "counting/news"]);
    assert_eq!(retry.code, 2, "{}", retry.transcript());
    assert!(
        retry.stderr.contains("counting/news is merged"),
        "{}",
        retry.transcript()
    );
    assert!(!sb.read("planning/plans/counting.toml").contains("reset"));

    // A bare task name one plan has: the suggestion is that task.
    let gate = sb.converge(&["gate", "news"]);
    assert_eq!(gate.code, 2, "{}", gate.transcript());
    assert!(
        gate.stderr.contains("did you mean `counting/news`?"),
        "{}",
        gate.transcript()
    );

    // A task that does not exist: `log` says so, with a suggestion.
    let log = sb.converge(&["log", "counting/nwes"]);
    assert_eq!(log.code, 2, "{}", log.transcript());
    assert!(
        log.stderr.contains("there is no task `counting/nwes`")
            && log.stderr.contains("did you mean `news`?"),
        "{}",
        log.transcript()
    );
    let log = sb.converge(&["log", "plan/nope"]);
    assert!(
        log.stderr.contains("there is no task `plan/nope`"),
        "{}",
        log.transcript()
    );

    // `reject` speaks English.
    let reject = sb.converge(&["reject", "counting/review", "--reason", "too short"]);
    reject.success();
    assert!(
        reject.stdout.contains("rejected counting/review at "),
        "{}",
        reject.transcript()
    );
    let approve = sb.converge(&["approve", "counting/review"]);
    approve.success();
    assert!(
        approve.stdout.contains("approved counting/review at "),
        "{}",
        approve.transcript()
    );
}

#[test]
fn a_throttled_tick_says_what_it_waits_for_and_until_when() {
    let config = CONFIG.replace("max_agents = 4", "max_agents = 4\ndispatches_per_hour = 1");
    let sb = setup(&config, &[("counting", COUNTING)]);
    let mut seen = None;
    for _ in 0..100 {
        let run = sb.converge(&["reconcile", "--once"]);
        run.success();
        assert!(
            !run.stdout.contains("nothing to do"),
            "a throttled tick is not idle:\n{}",
            run.transcript()
        );
        if run.stdout.contains("waiting: ") {
            seen = Some(run);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let run = seen.expect("a tick waits for the rate limit");
    assert!(
        run.stdout.contains(
            "waiting: dispatches_per_hour 1/h reached (1 started in the last hour), next dispatch at "
        ),
        "{}",
        run.transcript()
    );
    // Once the dispatched agent is done (its deadline is an earlier wake
    // time while it runs; a loaded machine runs it slowly), the tick wakes
    // for the rate limit.
    let mut wake = String::new();
    for _ in 0..200 {
        let json = sb.converge(&["reconcile", "--once", "--json"]);
        json.success();
        let value: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
        // A tick that gates and merges the finished attempt acts; the
        // next one waits again.
        wake = value["wake_at"].as_str().unwrap_or_default().to_owned();
        if !wake.is_empty() && run.stdout.contains(&wake) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let wake = wake.as_str();
    assert!(
        !wake.is_empty() && run.stdout.contains(wake),
        "{wake}\n{}",
        run.transcript()
    );
    let md = sb.git(&["show", "main:planning/STATUS.md"]);
    let ready = md.split("## Ready").nth(1).expect("a Ready section");
    assert!(ready.contains(&format!("next dispatch at {wake}")), "{md}");
}

#[test]
fn the_dashboard_never_blames_one_ticks_actions_per_tick() {
    // One action per tick: the ready task waits for the next tick, a finished
    // agent's work for its gate. Neither is "actions_per_tick is used up".
    let config = CONFIG.replace("max_agents = 4", "max_agents = 4\nactions_per_tick = 1");
    let plan = COUNTING.replace(
        "gate = \"human_review\"",
        "gate = \"auto\"\nallow_unchecked = true",
    );
    let sb = setup(&config, &[("counting", &plan)]);
    for _ in 0..100 {
        let run = sb.converge(&["reconcile", "--once"]);
        run.success();
        let md = sb.git(&["show", "main:planning/STATUS.md"]);
        assert!(!md.contains("actions_per_tick"), "{md}");
        let status = sb.converge(&["status"]);
        assert!(
            !status.stdout.contains("actions_per_tick"),
            "{}",
            status.transcript()
        );
        if md.contains("2 merged") {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the plan did not converge");
}

#[test]
fn errors_of_json_commands_are_json() {
    let sb = Sandbox::new();
    for args in [
        &["plan", "validate", "--format", "json", "no/such/dir"][..],
        &["status", "--json"][..],
        &["reconcile", "--once", "--json"][..],
    ] {
        let run = sb.converge(args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.transcript());
        assert!(run.stderr.is_empty(), "{args:?}: {}", run.transcript());
        let value: serde_json::Value = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", run.transcript()));
        assert_eq!(value["error"]["exit_code"], 2, "{}", run.stdout);
        assert!(value["error"]["message"].is_string(), "{}", run.stdout);
        assert!(value["error"]["hint"].is_string(), "{}", run.stdout);
    }
}

#[test]
fn report_durations_are_the_agents_run_not_the_wait_for_the_gate() {
    let plan = COUNTING
        .split("\n[[tasks]]\nname = \"review\"")
        .next()
        .expect("news")
        .to_owned();
    let sb = setup(CONFIG, &[("counting", &plan)]);
    sb.converge(&["reconcile", "--once"]).success();
    let exit = sb
        .path()
        .join(".git/converge/runs/counting/news/1/exit.json");
    for _ in 0..200 {
        if exit.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(exit.exists(), "the sim agent exits");
    // The gate comes three seconds after the agent exited.
    std::thread::sleep(std::time::Duration::from_secs(3));
    settle(&sb);
    let report = sb.converge(&["report", "--json"]);
    report.success();
    let value: serde_json::Value = serde_json::from_str(&report.stdout).expect("json");
    let attempt = &value["attempts"][0];
    assert_eq!(attempt["task"], "counting/news", "{value}");
    let seconds = attempt["seconds"].as_i64().expect("ended");
    assert!(
        seconds <= 1,
        "{seconds}s: the agent ran for less than a second\n{value}"
    );
}

#[test]
fn log_follow_shows_progress_events_as_they_come() {
    let config = format!(
        "{CONFIG}\n[harness.slow]\nkind = \"command\"\ncommand = \"sh\"\nargs = [\"-c\", '''sleep 1; converge progress 'half way'; sleep 1; converge progress 'almost there'; sleep 1; echo hi > hi.txt; git add hi.txt; git commit -qm hi; converge done''']\n"
    );
    let plan = "[plan]\nname = \"One\"\nstate = \"active\"\n\n[[tasks]]\nname = \"t\"\ndescription = \"Do it.\"\nscope = \"narrow\"\ngate = \"auto\"\nallow_unchecked = true\nharness = \"slow\"\n";
    let sb = setup(&config, &[("one", plan)]);
    let tick = sb.converge(&["reconcile", "--once"]);
    tick.success();
    assert!(
        tick.stdout.contains("dispatch one/t"),
        "{}",
        tick.transcript()
    );
    let log = sb.converge(&["log", "one/t", "--follow"]);
    log.success();
    let half = log.stdout.find("progress: half way");
    let almost = log.stdout.find("progress: almost there");
    assert!(
        half.is_some() && almost.is_some() && half < almost,
        "{}",
        log.transcript()
    );
    assert!(log.stdout.contains("--- exit.json"), "{}", log.transcript());
}

#[test]
fn merge_invariants_leave_evidence_that_gate_shows() {
    let config = format!(
        "{CONFIG}\n[invariants.on_merge]\nkind = \"custom\"\ncommand = \"sh\"\nargs = [\"-c\", \"echo merged tree checked; test -f news.txt\"]\n\n[merge]\ninvariants = [\"on_merge\"]\n"
    );
    let plan = COUNTING
        .split("\n[[tasks]]\nname = \"review\"")
        .next()
        .expect("news")
        .to_owned();
    let sb = setup(&config, &[("counting", &plan)]);
    settle(&sb);
    let status = sb.git(&["show", "main:planning/status/counting.toml"]);
    assert!(status.contains("merge:on_merge"), "{status}");
    let gate = sb.converge(&["gate", "counting/news"]);
    gate.success();
    assert!(
        gate.stdout
            .contains("passed: on_merge ([merge], on the merge result)")
            && gate.stdout.contains("  | merged tree checked"),
        "{}",
        gate.transcript()
    );
}

#[test]
fn a_failed_invariant_points_to_converge_gate() {
    let plan = COUNTING
        .split("\n[[tasks]]\nname = \"review\"")
        .next()
        .expect("news")
        .replace(
            "gate = \"auto\"",
            "gate = \"auto\"\ninvariants = [\"never\"]\nretry_max = 0",
        );
    let sb = setup(CONFIG, &[("counting", &plan)]);
    let mut said = String::new();
    for _ in 0..100 {
        let run = sb.converge(&["reconcile", "--once"]);
        run.success();
        said.push_str(&run.stdout);
        if said.contains("gate counting/news (attempt 1): failed") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        said.contains("; `converge gate counting/news` shows its output"),
        "{said}"
    );
    let gate = sb.converge(&["gate", "counting/news"]);
    assert_eq!(gate.code, 1, "{}", gate.transcript());
    assert!(
        gate.stdout.contains("  | assertion failed: 1 == 2"),
        "{}",
        gate.transcript()
    );
}

#[test]
fn plan_show_and_explain_list_every_missing_dependency() {
    let plan = COUNTING.replace(
        "name = \"review\"\n",
        "name = \"review\"\ndepends_on = [\"nwes\", \"setup\"]\n",
    );
    let sb = setup(CONFIG, &[("counting", &plan)]);
    let show = sb.converge(&["plan", "show"]);
    assert!(
        !show.stdout.contains("no plans yet"),
        "{}",
        show.transcript()
    );
    let explain = sb.converge(&["reconcile", "--dry-run", "--explain"]);
    for run in [&show, &explain] {
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(
            all.contains("depends on `nwes`, which is not a task of this plan")
                && all.contains("depends on `setup`, which is not a task of this plan"),
            "{}",
            run.transcript()
        );
    }
}
