//! The real OpenCode CLI inside a converge task, against a scripted local
//! fake of an OpenAI-compatible Chat Completions API (a provider in the
//! user's `opencode.json`): it writes a file through its `write` tool, runs
//! `converge done` through `bash`, and the task passes its gate and merges.
//! Opt-in: set `CONVERGE_OPENCODE_BIN` (npm `opencode-ai` 1.18.33).

use serde_json::{Value, json};

use crate::fake_api::{Answer, assert_merged, cli_bin, cli_repo, serve, settle};
use crate::support::Sandbox;

/// A streamed chat completion: `delta` in one chunk, then the finish with usage.
fn completion(delta: &Value, finish: &str) -> String {
    let chunk = |choice: Value, usage: Value| {
        json!({
            "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1,
            "model": "fake-model", "choices": [choice], "usage": usage
        })
    };
    let first = chunk(
        json!({"index": 0, "delta": delta, "finish_reason": null}),
        Value::Null,
    );
    let last = chunk(
        json!({"index": 0, "delta": {}, "finish_reason": finish}),
        json!({"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}),
    );
    format!("data: {first}\n\ndata: {last}\n\ndata: [DONE]\n\n")
}

fn tool(id: &str, name: &str, arguments: &Value) -> Value {
    json!({"role": "assistant", "tool_calls": [{
        "index": 0, "id": id, "type": "function",
        "function": {"name": name, "arguments": arguments.to_string()}
    }]})
}

#[test]
#[ignore = "runs the real agent CLI: set CONVERGE_OPENCODE_BIN and pass `-- --ignored` (see the README)"]
fn opencode_writes_a_file_runs_done_and_its_work_merges() {
    let opencode = cli_bin("CONVERGE_OPENCODE_BIN", "opencode-ai");
    let (sb, status, log) = opencode_task(&opencode, "converge done", "");
    assert_merged(&sb, &status, &log, "written by opencode\n");
    let record = &status["tasks"]["t"]["attempts"][0];
    assert!(record["tokens_in"].as_integer() >= Some(300), "{record}");
    assert!(
        record["cost_usd"].as_float() > Some(0.0),
        "priced: {record}"
    );
}

/// A shell command outside what converge allows is refused by OpenCode's
/// permission rules, and the attempt fails as `tool-denied`.
#[test]
#[ignore = "runs the real agent CLI: set CONVERGE_OPENCODE_BIN and pass `-- --ignored` (see the README)"]
fn opencode_is_refused_commands_converge_does_not_allow() {
    let opencode = cli_bin("CONVERGE_OPENCODE_BIN", "opencode-ai");
    let (sb, status, log) = opencode_task(&opencode, "ls / > listing.txt", "retry_max = 1\n");
    let failure = &status["tasks"]["t"]["last_failure"];
    assert_eq!(
        failure["reason"].as_str(),
        Some("tool-denied"),
        "{status}\nagent.log:\n{log}"
    );
    assert!(
        failure["message"]
            .as_str()
            .unwrap_or_default()
            .contains("bash"),
        "{failure}"
    );
    assert!(
        !sb.path()
            .join(".converge/worktrees/one/t/listing.txt")
            .exists()
    );
}

/// Runs one task on OpenCode until it settles, its agent scripted to write
/// hello.txt, then run `command`; returns the repository, its status and the
/// agent's log.
fn opencode_task(
    opencode: &str,
    command: &'static str,
    task_keys: &str,
) -> (Sandbox, toml::Table, String) {
    let sb = cli_repo(
        "opencode",
        opencode,
        "fake/fake-model",
        "[prices]\n\"fake-model\" = { input = 1.0, output = 5.0 }\n\n[sandbox]\nenabled = true\nenv_allow = [\"PATH\", \"HOME\"]\n",
        task_keys,
    );
    let worktree = sb.path().join(".converge/worktrees/one/t");
    let file = worktree.join("hello.txt").to_string_lossy().into_owned();
    let (url, _served) = serve(move |request| {
        // OpenCode's side calls (a session title) carry no tools.
        if request.get("tools").is_none() {
            return Answer::events(completion(
                &json!({"role": "assistant", "content": "Hello"}),
                "stop",
            ));
        }
        let step = request["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["role"] == "tool")
            .count();
        let (delta, finish) = match step {
            0 => (
                tool(
                    "call_write",
                    "write",
                    &json!({"filePath": file, "content": "written by opencode\n"}),
                ),
                "tool_calls",
            ),
            1 => (
                tool(
                    "call_done",
                    "bash",
                    &json!({"command": command, "description": "Finish the attempt"}),
                ),
                "tool_calls",
            ),
            _ => (json!({"role": "assistant", "content": "Done."}), "stop"),
        };
        Answer::events(completion(&delta, finish))
    });
    // The user's OpenCode configuration: a provider for the fake.
    let config_home = tempfile::tempdir().expect("config home");
    std::fs::create_dir_all(config_home.path().join("opencode")).expect("mkdir");
    std::fs::write(
        config_home.path().join("opencode/opencode.json"),
        json!({
            "provider": {"fake": {
                "npm": "@ai-sdk/openai-compatible", "name": "Fake",
                "options": {"baseURL": format!("{url}/v1"), "apiKey": "sk-fake-opencode-test-key"},
                "models": {"fake-model": {"name": "Fake"}}
            }}
        })
        .to_string(),
    )
    .expect("config");
    let (status, log) = settle(
        &sb,
        &[(
            "XDG_CONFIG_HOME",
            config_home.path().to_str().expect("utf-8"),
        )],
    );
    (sb, status, log)
}
