//! The real Claude Code CLI inside a converge task, against a scripted local
//! fake of the Anthropic Messages API: it writes a file through its Write
//! tool, runs `converge done` through its Bash tool, and the task passes its
//! gate and merges.
//!
//! The CLI comes from `CONVERGE_CLAUDE_BIN` (CI installs the pinned npm
//! package `@anthropic-ai/claude-code` and sets it). Without it the test says
//! so and passes locally; under CI (`CI` set) a missing CLI fails the test.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

use crate::support::Sandbox;

/// One streamed reply of the Messages API (server-sent events).
fn sse(content: &Value, stop_reason: &str) -> String {
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
    events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap_or("")))
        .collect()
}

/// Serves the scripted replies, one per step of the conversation, then "Done.".
/// Returns the base URL and the count of requests served.
fn fake_messages_api(script: Vec<(Value, &'static str)>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let served = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&served);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            counter.fetch_add(1, Ordering::SeqCst);
            // The step of the conversation: how many tool results came back.
            // Requests without tools (the CLI's own side calls) get a plain reply.
            let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
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
            let reply = sse(&content, stop);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    (url, served)
}

#[test]
fn claude_code_writes_a_file_runs_done_and_its_work_merges() {
    let Some(claude) = std::env::var("CONVERGE_CLAUDE_BIN")
        .ok()
        .filter(|p| !p.is_empty())
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install Claude Code and set CONVERGE_CLAUDE_BIN (see .ci/run)"
        );
        eprintln!(
            "skipped: set CONVERGE_CLAUDE_BIN to a `claude` binary (npm @anthropic-ai/claude-code) to run this test"
        );
        return;
    };
    let sb = Sandbox::repo();
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
    sb.write("README.md", "project\n");
    sb.write("planning/goal.md", "Say hello.\n");
    sb.write(
        "planning/converge.toml",
        format!(
            "[reconcile]\ndefault_harness = \"claude\"\n\n[harness.claude]\nkind = \"claude-code\"\ncommand = \"{claude}\"\nmodels = {{ narrow = \"claude-sonnet-4-5\" }}\n\n[invariants.hello]\nkind = \"custom\"\ncommand = \"test\"\nargs = [\"-f\", \"hello.txt\"]\n\n[sandbox]\nenabled = true\nenv_allow = [\"PATH\", \"HOME\"]\n"
        ),
    );
    sb.write(
        "planning/plans/one.toml",
        "[plan]\nname = \"One\"\nstate = \"active\"\n\n[[tasks]]\nname = \"t\"\ndescription = \"Write hello.txt, then run `converge done`.\"\nscope = \"narrow\"\ngate = \"auto\"\ninvariants = [\"hello\"]\ntimeout = \"2m\"\n",
    );
    sb.commit_all("a claude task");
    let home = tempfile::tempdir().expect("home");
    let out = crate::support::converge_at(
        sb.path(),
        home.path(),
        &["reconcile", "--wait", "--max-ticks", "200"],
        &[
            ("ANTHROPIC_BASE_URL", &url),
            ("ANTHROPIC_API_KEY", "sk-ant-fake-test-key"),
        ],
    );
    let log = std::fs::read_to_string(sb.path().join(".git/converge/runs/one/t/1/agent.log"))
        .unwrap_or_default();
    assert!(
        out.status.success(),
        "{}{}\nagent.log:\n{log}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let status = sb.read("planning/status/one.toml");
    assert!(
        status.contains("phase = \"merged\""),
        "{status}\nagent.log:\n{log}"
    );
    assert_eq!(sb.read("hello.txt"), "written by claude\n");
    assert!(served.load(Ordering::SeqCst) >= 4, "four turns at least");
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
