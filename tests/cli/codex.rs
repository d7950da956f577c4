//! The real Codex CLI inside a converge task, against a scripted local fake
//! of the OpenAI Responses API (a custom model provider in its
//! `config.toml`): it writes a file through its `exec_command` tool inside
//! its own sandbox, runs `converge done`, and the task passes its gate and
//! merges. Ignored by a plain `cargo test`: set `CONVERGE_CODEX_BIN` (npm
//! `@openai/codex` 0.169.0) and pass `-- --ignored`.

use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use crate::fake_api::{Answer, assert_merged, cli_bin, cli_repo, serve, settle, sse};

/// One streamed Responses API reply holding `item`, with usage.
fn response(item: &Value) -> String {
    sse(&[
        json!({"type": "response.created", "response": {"id": "resp_fake"}}),
        json!({"type": "response.output_item.added", "output_index": 0, "item": item}),
        json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
        json!({"type": "response.completed", "response": {"id": "resp_fake", "usage": {
            "input_tokens": 100, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 10, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 110
        }}}),
    ])
}

fn shell(id: &str, cmd: &str) -> Value {
    json!({
        "type": "function_call", "id": format!("fc_{id}"), "call_id": id,
        "name": "exec_command", "arguments": json!({"cmd": cmd}).to_string()
    })
}

#[test]
#[ignore = "runs the real agent CLI: set CONVERGE_CODEX_BIN and pass `-- --ignored` (see the README)"]
fn codex_writes_a_file_runs_done_and_its_work_merges() {
    codex_task(true);
}

/// Without converge's sandbox, Codex's own (bubblewrap) confines commands,
/// with the run directory writable for `converge done`.
#[test]
#[ignore = "runs the real agent CLI: set CONVERGE_CODEX_BIN and pass `-- --ignored` (see the README)"]
fn codex_in_its_own_sandbox_writes_runs_done_and_merges() {
    codex_task(false);
}

fn codex_task(converge_sandbox: bool) {
    let codex = cli_bin("CONVERGE_CODEX_BIN", "@openai/codex");
    // The step is the number of tool outputs the request carries.
    let (url, served) = serve(|request| {
        let step = request["input"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|i| i["type"] == "function_call_output")
            .count();
        let item = match step {
            0 => shell("call_write", "echo 'written by codex' > hello.txt"),
            1 => shell("call_done", "converge done"),
            _ => json!({
                "type": "message", "id": "msg_done", "role": "assistant",
                "content": [{"type": "output_text", "text": "Done.", "annotations": []}]
            }),
        };
        Answer::events(response(&item))
    });
    let sb = cli_repo(
        "codex",
        &codex,
        "fake-model",
        &format!(
            "[prices]\n\"fake-model\" = {{ input = 2.0, output = 10.0 }}\n\n[sandbox]\nenabled = {converge_sandbox}\nenv_allow = [\"PATH\", \"HOME\", \"FAKE_API_KEY\"]\n"
        ),
        "",
    );
    // The user's Codex configuration: a provider for the fake.
    let codex_home = tempfile::tempdir().expect("codex home");
    std::fs::write(
        codex_home.path().join("config.toml"),
        format!(
            "model_provider = \"fake\"\n[model_providers.fake]\nname = \"fake\"\nbase_url = \"{url}/v1\"\nenv_key = \"FAKE_API_KEY\"\nwire_api = \"responses\"\nrequest_max_retries = 0\nstream_max_retries = 0\n"
        ),
    )
    .expect("config");
    let (status, log) = settle(
        &sb,
        &[
            ("CODEX_HOME", codex_home.path().to_str().expect("utf-8")),
            ("FAKE_API_KEY", "sk-fake-codex-test-key"),
        ],
    );
    assert_merged(&sb, &status, &log, "written by codex\n");
    let task = &status["tasks"]["t"];
    assert!(served.load(Ordering::SeqCst) >= 3, "three turns at least");
    // Codex reports tokens but no cost: priced from [prices].
    let record = &task["attempts"][0];
    let tokens_in = record["tokens_in"].as_integer().expect("tokens_in");
    let tokens_out = record["tokens_out"].as_integer().expect("tokens_out");
    assert!(tokens_in >= 300 && tokens_out >= 30, "{record}");
    #[allow(clippy::cast_precision_loss)]
    let expected = (tokens_in as f64 * 2.0 + tokens_out as f64 * 10.0) / 1e6;
    let cost = record["cost_usd"].as_float().expect("cost");
    assert!(
        (cost - expected).abs() < 1e-9,
        "{cost} vs {expected}: {record}"
    );
    assert!(!log.contains("sk-fake-codex-test-key"), "{log}");
}
