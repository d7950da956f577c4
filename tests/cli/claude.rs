//! The real Claude Code CLI inside a converge task, against a scripted local
//! fake of the Anthropic Messages API: it writes a file through its Write
//! tool, runs `converge done` through its Bash tool, and the task passes its
//! gate and merges. As the autonomy loop's planner, it writes a queue item
//! that converge files on the base branch.
//!
//! The CLI comes from `CONVERGE_CLAUDE_BIN` (CI installs the pinned npm
//! package `@anthropic-ai/claude-code` and sets it). The tests are ignored by
//! a plain `cargo test` (reported as not run); `-- --ignored` runs them, and a
//! missing CLI then fails them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

use crate::fake_api::{Answer, agent_log, assert_merged, cli_bin, cli_repo, serve, settle, sse};
use crate::support::Sandbox;

/// One streamed reply of the Messages API (server-sent events).
fn reply(content: &Value, stop_reason: &str) -> String {
    let mut events = vec![json!({
        "type": "message_start",
        "message": {
            "id": "msg_fake", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-5", "content": [], "stop_reason": null,
            "stop_sequence": null,
            "usage": {"input_tokens": 100, "output_tokens": 1}
        }
    })];
    match content["type"].as_str() {
        Some("tool_use") => {
            let mut start = content.clone();
            let input = start["input"].take();
            start["input"] = json!({});
            events.push(json!({"type": "content_block_start", "index": 0, "content_block": start}));
            events.push(json!({
                "type": "content_block_delta", "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": input.to_string()}
            }));
        }
        _ => {
            events.push(json!({
                "type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}
            }));
            events.push(json!({
                "type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": content["text"]}
            }));
        }
    }
    events.push(json!({"type": "content_block_stop", "index": 0}));
    events.push(json!({
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": null},
        "usage": {"output_tokens": 10}
    }));
    events.push(json!({"type": "message_stop"}));
    sse(&events)
}

/// Serves the scripted replies, one per step of the conversation (how many
/// tool results came back), then "Done."; requests without tools (the CLI's
/// own side calls) get a plain reply.
fn fake_messages_api(script: Vec<(Value, &'static str)>) -> (String, Arc<AtomicUsize>) {
    serve(move |request| {
        let step = request["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|m| m["content"].as_array().into_iter().flatten())
            .filter(|block| block["type"] == "tool_result")
            .count();
        let (content, stop) = if request.get("tools").is_none() {
            (json!({"type": "text", "text": "ok"}), "end_turn")
        } else {
            script
                .get(step)
                .cloned()
                .unwrap_or((json!({"type": "text", "text": "Done."}), "end_turn"))
        };
        Answer::events(reply(&content, stop))
    })
}

/// The `claude` binary to test.
fn claude_bin() -> String {
    cli_bin("CONVERGE_CLAUDE_BIN", "@anthropic-ai/claude-code")
}

/// The task on Claude Code, sandboxed, with these variables allowed.
fn claude_repo(claude: &str, env_allow: &str) -> Sandbox {
    cli_repo(
        "claude-code",
        claude,
        "claude-sonnet-4-5",
        &format!("[sandbox]\nenabled = true\nenv_allow = [{env_allow}]\n"),
        "",
    )
}

#[test]
#[ignore = "runs the real agent CLI: set CONVERGE_CLAUDE_BIN and pass `-- --ignored` (see the README)"]
fn claude_code_writes_a_file_runs_done_and_its_work_merges() {
    let claude = claude_bin();
    let sb = claude_repo(&claude, "\"PATH\", \"HOME\"");
    let worktree = sb.path().join(".converge/worktrees/one/t");
    let (url, served) = fake_messages_api(vec![
        (
            json!({
                "type": "tool_use", "id": "toolu_write", "name": "Write",
                "input": {
                    "file_path": worktree.join("hello.txt").to_string_lossy(),
                    "content": "written by claude\n"
                }
            }),
            "tool_use",
        ),
        (
            json!({
                "type": "tool_use", "id": "toolu_progress", "name": "Bash",
                "input": {"command": "converge progress \"hello.txt written\"", "description": "Report progress"}
            }),
            "tool_use",
        ),
        (
            json!({
                "type": "tool_use", "id": "toolu_done", "name": "Bash",
                "input": {"command": "converge done", "description": "Finish the attempt"}
            }),
            "tool_use",
        ),
        (json!({"type": "text", "text": "Done."}), "end_turn"),
    ]);
    let (status, log) = settle(
        &sb,
        &[
            ("ANTHROPIC_BASE_URL", &url),
            ("ANTHROPIC_API_KEY", "sk-ant-fake-test-key"),
        ],
    );
    assert_merged(&sb, &status, &log, "written by claude\n");
    let task = &status["tasks"]["t"];
    assert!(served.load(Ordering::SeqCst) >= 4, "four turns at least");
    // Tokens and cost come from the CLI's stream: the fake reports 100 input
    // tokens per turn, and Claude Code prices them itself.
    let record = &task["attempts"][0];
    assert!(record["tokens_in"].as_integer() >= Some(400), "{record}");
    assert!(record["tokens_out"].as_integer() > Some(0), "{record}");
    assert!(record["cost_usd"].as_float() > Some(0.0), "{record}");
    assert_eq!(
        record["model"].as_str(),
        Some("claude-sonnet-4-5"),
        "{record}"
    );
    let events = std::fs::read_to_string(sb.path().join(".git/converge/runs/one/t/1/events.jsonl"))
        .unwrap_or_default();
    assert!(
        events.contains("hello.txt written"),
        "the progress event: {events}\nagent.log:\n{log}"
    );
    assert!(
        log.contains("\"permission_denials\":[]"),
        "no tool was denied: {log}"
    );
    // The API key reached the CLI but never the log.
    assert!(!log.contains("sk-ant-fake-test-key"), "{log}");
}

#[test]
#[ignore = "runs the real agent CLI: set CONVERGE_CLAUDE_BIN and pass `-- --ignored` (see the README)"]
fn a_spent_usage_window_cools_claude_down_until_its_reset_without_using_up_the_attempt() {
    let claude = claude_bin();
    // A subscription login (`claude setup-token`) whose five-hour window is
    // spent: the API answers 429 with the window's reset time.
    let sb = claude_repo(&claude, "\"PATH\", \"HOME\", \"CLAUDE_CODE_MAX_RETRIES\"");
    let reset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 3 * 3600;
    let (url, served) = serve(move |_| Answer {
        status: "429 Too Many Requests",
        headers: format!(
            "anthropic-ratelimit-unified-status: rejected\r\nanthropic-ratelimit-unified-reset: {reset}\r\nanthropic-ratelimit-unified-representative-claim: five_hour\r\n"
        ),
        content_type: "application/json",
        body: r#"{"type":"error","error":{"type":"rate_limit_error","message":"rate limited"}}"#
            .into(),
    });
    let home = tempfile::tempdir().expect("home");
    let env = [
        ("ANTHROPIC_BASE_URL", url.as_str()),
        ("CLAUDE_CODE_OAUTH_TOKEN", "sk-ant-oat01-fake-test-token"),
        ("CLAUDE_CODE_MAX_RETRIES", "0"),
    ];
    // Tick until the attempt is judged (the agent runs detached).
    let mut out =
        crate::support::converge_at(sb.path(), home.path(), &["reconcile", "--once"], &env);
    for _ in 0..120 {
        let text = sb.read("planning/status/one.toml");
        if text.contains("outcome = ") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
        out = crate::support::converge_at(sb.path(), home.path(), &["reconcile", "--once"], &env);
    }
    let log = agent_log(&sb, 1);
    let transcript = format!(
        "{}{}\nagent.log:\n{log}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(served.load(Ordering::SeqCst) >= 1, "{transcript}");
    let status: toml::Table = sb.read("planning/status/one.toml").parse().expect("status");
    let task = &status["tasks"]["t"];
    assert_eq!(
        task["phase"].as_str(),
        Some("failed"),
        "{status}\n{transcript}"
    );
    assert_eq!(
        task["failures"].as_integer(),
        Some(0),
        "not counted: {status}"
    );
    assert_eq!(
        task["last_failure"]["reason"].as_str(),
        Some("rate-limited")
    );
    let record = &task["attempts"][0];
    assert_eq!(record["outcome"].as_str(), Some("rate-limited"), "{record}");
    let until = record["cooldown_until"].as_str().expect("cooldown_until");
    let expected = converge::time::Timestamp::from_unix(i64::try_from(reset).expect("i64"));
    assert_eq!(until, expected.to_string(), "the window's own reset time");
    // Nothing else starts on the harness; the reason is in --explain and STATUS.md.
    let explain = crate::support::converge_at(
        sb.path(),
        home.path(),
        &["reconcile", "--dry-run", "--explain"],
        &env,
    );
    let explained = String::from_utf8_lossy(&explain.stdout);
    assert!(
        explained.contains("backoff") || explained.contains("harness-cooling"),
        "{explained}"
    );
    assert!(!explained.contains("retry one/t"), "{explained}");
    let status_md = sb.read("planning/STATUS.md");
    assert!(
        status_md.contains("harness `claude-code` cools down until")
            && status_md.contains("does not count against `retry_max`"),
        "{status_md}"
    );
    // The OAuth token reached the CLI but never the log.
    assert!(!log.contains("sk-ant-oat01-fake-test-token"), "{log}");
}

/// The queue item the scripted planner proposes.
const GREETING_ITEM: &str = "---\nscope: narrow\ngate: auto\ninvariants: [hello]\n---\n\n# Add a greeting\n\nWrite hello.txt with a greeting, then run `converge done`.\n";

#[test]
#[ignore = "runs the real agent CLI: set CONVERGE_CLAUDE_BIN and pass `-- --ignored` (see the README)"]
fn claude_code_as_the_autonomy_planner_files_one_queue_item_on_the_base_branch() {
    let claude = claude_bin();
    // The loop's planner on Claude Code, one planner run a day (so that no
    // capability update follows), and no plan: the loop is all the work.
    let sb = cli_repo(
        "claude-code",
        &claude,
        "claude-sonnet-4-5",
        "[sandbox]\nenabled = true\nenv_allow = [\"PATH\", \"HOME\"]\n\n[budget]\nusd_per_day = 5.0\n\n[autonomy]\nenabled = true\nharness = \"claude-code\"\nmodel = \"claude-sonnet-4-5\"\nmax_runs_per_day = 1\n",
        "",
    );
    sb.git(&["rm", "-q", "planning/plans/one.toml"]);
    sb.commit_all("only the loop's work");
    // The planner's conversation writes its item and runs `converge done`;
    // the filed item's task (any other conversation) writes hello.txt.
    let planner = [
        json!({
            "type": "tool_use", "id": "toolu_item", "name": "Write",
            "input": {"file_path": ".converge-planner/item.md", "content": GREETING_ITEM}
        }),
        json!({
            "type": "tool_use", "id": "toolu_done", "name": "Bash",
            "input": {"command": "converge done", "description": "Finish the planner attempt"}
        }),
    ];
    let task = [
        json!({
            "type": "tool_use", "id": "toolu_write", "name": "Write",
            "input": {"file_path": "hello.txt", "content": "hello from the queue\n"}
        }),
        json!({
            "type": "tool_use", "id": "toolu_done", "name": "Bash",
            "input": {"command": "converge done", "description": "Finish the attempt"}
        }),
    ];
    let planner_turns = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&planner_turns);
    let (url, _) = serve(move |request| {
        let messages = &request["messages"];
        let step = messages
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|m| m["content"].as_array().into_iter().flatten())
            .filter(|block| block["type"] == "tool_result")
            .count();
        let is_planner = messages
            .to_string()
            .contains("You are the planner of converge's autonomy loop");
        let script = if is_planner { &planner } else { &task };
        let (content, stop) = if request.get("tools").is_none() {
            (json!({"type": "text", "text": "ok"}), "end_turn")
        } else {
            if is_planner {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            script.get(step).map_or_else(
                || (json!({"type": "text", "text": "Done."}), "end_turn"),
                |c| (c.clone(), "tool_use"),
            )
        };
        Answer::events(reply(&content, stop))
    });
    let home = tempfile::tempdir().expect("home");
    let env = [
        ("ANTHROPIC_BASE_URL", url.as_str()),
        ("ANTHROPIC_API_KEY", "sk-ant-fake-test-key"),
    ];
    let out = crate::support::converge_at(
        sb.path(),
        home.path(),
        &["reconcile", "--wait", "--max-ticks", "300"],
        &env,
    );
    let run = sb.path().join(".git/converge/runs/_autonomy/gap-1/1");
    let planner_log = std::fs::read_to_string(run.join("agent.log")).unwrap_or_default();
    let transcript = format!(
        "{}{}\nplanner agent.log:\n{planner_log}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{transcript}");
    assert!(
        planner_turns.load(Ordering::SeqCst) >= 3,
        "three planner turns at least: {transcript}"
    );
    // The planner was told the goal.
    let prompt = std::fs::read_to_string(run.join("prompt.md")).expect("the planner's prompt");
    assert!(
        prompt.contains("## The goal (planning/goal.md)\n\nSay hello."),
        "{prompt}"
    );
    // The item is converge's own commit on main, exactly as the planner wrote it.
    let enqueued = sb.git(&[
        "log",
        "--format=%H",
        "--grep=Converge-Action: enqueue",
        "main",
    ]);
    let enqueued: Vec<&str> = enqueued.lines().collect();
    assert_eq!(enqueued.len(), 1, "one enqueue commit: {transcript}");
    let filed = sb.git(&[
        "show",
        &format!("{}:planning/queue/add-a-greeting-1.md", enqueued[0]),
    ]);
    assert_eq!(filed, GREETING_ITEM);
    // The loop's record lists it, with the planner's cost from Claude
    // Code's `result` line.
    let record: toml::Table = sb
        .git(&["show", "main:planning/status/autonomy/loop.toml"])
        .parse()
        .expect("the loop's record");
    let items = record["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{record}");
    assert_eq!(
        items[0]["name"].as_str(),
        Some("add-a-greeting-1"),
        "{record}"
    );
    assert_eq!(
        items[0]["title"].as_str(),
        Some("Add a greeting"),
        "{record}"
    );
    let result: Value = planner_log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["type"] == "result")
        .unwrap_or_else(|| panic!("a result line: {planner_log}"));
    let cost = result["total_cost_usd"].as_f64().expect("total_cost_usd");
    assert!(cost > 0.0, "{result}");
    let usd_total = record["usd_total"].as_float().expect("usd_total");
    assert!((usd_total - cost).abs() < 1e-9, "{record}\n{result}");
    let status = sb.converge(&["autonomy", "status"]);
    status.success();
    assert!(
        status.stdout.contains("filed queue/add-a-greeting-1"),
        "{}",
        status.stdout
    );
    // The item then ran as a task of the queue and merged; the planner's
    // worktree and branch are gone.
    let queue: toml::Table = sb
        .git(&["show", "main:planning/status/queue.toml"])
        .parse()
        .expect("queue status");
    assert_eq!(
        queue["tasks"]["add-a-greeting-1"]["phase"].as_str(),
        Some("merged"),
        "{queue}\n{transcript}"
    );
    assert_eq!(sb.read("hello.txt"), "hello from the queue\n");
    assert_eq!(sb.git(&["branch", "--list", "converge/_autonomy/*"]), "");
    assert!(
        !sb.path()
            .join(".converge/worktrees/_autonomy/gap-1")
            .exists()
    );
    // The API key reached the CLI but never the log.
    assert!(
        !planner_log.contains("sk-ant-fake-test-key"),
        "{planner_log}"
    );
}
