//! Reading the JSON event streams of the agent CLIs: Claude Code
//! (`--output-format stream-json`), Codex (`exec --json`) and OpenCode
//! (`run --format json`), into progress, token usage, cost and how the run
//! ended. Pure: the text in, a summary out.
//!
//! The stream is read from the agent's log, where stderr is interleaved with
//! it: lines that are not JSON objects are counted and skipped, never fatal.
//! Event shapes follow recorded output of the real CLIs
//! (`tests/fixtures/agent-cli/`).

use serde_json::Value;

use crate::spec::HarnessKind;

/// Progress texts longer than this are cut (with `…`).
const PROGRESS_CHARS: usize = 200;

/// What one run's stream said.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Summary {
    /// Events recognized.
    pub events: usize,
    /// Lines that were not JSON events (stderr, a torn last line).
    pub other_lines: usize,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// The cost the CLI reported, if it reports one.
    pub cost_usd: Option<f64>,
    /// What the agent said and did, in order, shortened.
    pub progress: Vec<String>,
    /// Tools the CLI refused the agent.
    pub denied_tools: Vec<String>,
    /// The run reached the CLI's own end-of-run event.
    pub finished: bool,
    /// The CLI reported a failure.
    pub error: Option<StreamError>,
}

/// A failure the CLI reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamError {
    pub kind: ErrorKind,
    pub message: String,
}

/// How a failure is classified: the reconciler treats them differently (a
/// rate limit waits without consuming an attempt, authentication escalates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    RateLimit,
    Authentication,
    ContextOverflow,
    /// Any other error the model API or the CLI reported.
    Api,
}

impl ErrorKind {
    /// The failure reason code recorded in status.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::RateLimit => "rate-limited",
            ErrorKind::Authentication => "authentication",
            ErrorKind::ContextOverflow => "context-overflow",
            ErrorKind::Api => "api-error",
        }
    }
}

/// Summarizes `output` as the stream of a `kind` harness. Harnesses without a
/// stream (`command`, `sim`) give an empty summary.
pub fn summarize(kind: HarnessKind, output: &str) -> Summary {
    let mut summary = Summary::default();
    // Token counts of the CLI's final report win over the sum of the per-turn
    // counts, which a crashed run still has.
    let mut turn_tokens = (0u64, 0u64);
    for line in output.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some(event) = serde_json::from_str::<Value>(line)
            .ok()
            .filter(Value::is_object)
        else {
            summary.other_lines += 1;
            continue;
        };
        let recognized = match kind {
            HarnessKind::ClaudeCode => claude(&event, &mut summary, &mut turn_tokens),
            HarnessKind::Codex => codex(&event, &mut summary),
            HarnessKind::Opencode => opencode(&event, &mut summary),
            HarnessKind::Command | HarnessKind::Sim => false,
        };
        if recognized {
            summary.events += 1;
        } else {
            summary.other_lines += 1;
        }
    }
    if kind == HarnessKind::ClaudeCode && !summary.finished {
        (summary.tokens_in, summary.tokens_out) = turn_tokens;
    }
    summary
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn u64_at(v: &Value, path: &[&str]) -> u64 {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

fn short(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(PROGRESS_CHARS) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

/// The failure a CLI reported: its message (shortened, or `fallback` when it
/// gave none), classified by its HTTP status, else by what the message says.
fn reported(status: Option<u64>, message: Option<&str>, fallback: &str) -> StreamError {
    let message = message.map_or_else(|| fallback.to_owned(), short);
    StreamError {
        kind: classify(status, &message),
        message,
    }
}

/// Classifies an error by its HTTP status, else by what its message says.
fn classify(status: Option<u64>, message: &str) -> ErrorKind {
    let lower = message.to_ascii_lowercase();
    match status {
        Some(429) => return ErrorKind::RateLimit,
        Some(401 | 403) => return ErrorKind::Authentication,
        Some(413) => return ErrorKind::ContextOverflow,
        _ => {}
    }
    if [
        "rate limit",
        "rate_limit",
        "usage limit",
        "too many requests",
    ]
    .iter()
    .any(|p| lower.contains(p))
    {
        ErrorKind::RateLimit
    } else if [
        "authentication",
        "invalid api key",
        "invalid x-api-key",
        "unauthorized",
    ]
    .iter()
    .any(|p| lower.contains(p))
    {
        ErrorKind::Authentication
    } else if [
        "prompt is too long",
        "context window",
        "context length",
        "context_length_exceeded",
    ]
    .iter()
    .any(|p| lower.contains(p))
    {
        ErrorKind::ContextOverflow
    } else {
        ErrorKind::Api
    }
}

/// Claude Code: `system/init`, `assistant` and `user` messages, a final
/// `result` with usage, cost, `is_error` and `permission_denials`.
fn claude(event: &Value, s: &mut Summary, turns: &mut (u64, u64)) -> bool {
    match event.get("type").and_then(Value::as_str) {
        Some("system") => true,
        Some("assistant") => {
            let message = &event["message"];
            turns.0 += u64_at(message, &["usage", "input_tokens"]);
            turns.1 += u64_at(message, &["usage", "output_tokens"]);
            for block in message["content"].as_array().into_iter().flatten() {
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if let Some(text) = block.get("text").and_then(Value::as_str) {
                            s.progress.push(short(text));
                        }
                    }
                    Some("tool_use") => {
                        let name = block.get("name").and_then(Value::as_str).unwrap_or("?");
                        s.progress.push(format!("tool: {name}"));
                    }
                    _ => {}
                }
            }
            true
        }
        Some("user") => true,
        Some("result") => {
            s.finished = true;
            let usage = &event["usage"];
            s.tokens_in = u64_at(usage, &["input_tokens"])
                + u64_at(usage, &["cache_creation_input_tokens"])
                + u64_at(usage, &["cache_read_input_tokens"]);
            s.tokens_out = u64_at(usage, &["output_tokens"]);
            s.cost_usd = event.get("total_cost_usd").and_then(Value::as_f64);
            for denial in event["permission_denials"].as_array().into_iter().flatten() {
                if let Some(tool) = denial.get("tool_name").and_then(Value::as_str) {
                    s.denied_tools.push(tool.to_owned());
                }
            }
            if event.get("is_error").and_then(Value::as_bool) == Some(true) {
                let status = event.get("api_error_status").and_then(Value::as_u64);
                s.error = Some(reported(
                    status,
                    str_at(event, &["result"]),
                    "the run ended with an error",
                ));
            }
            true
        }
        _ => false,
    }
}

/// Codex: `thread.started`, `turn.started`, `item.*` (agent messages, commands,
/// file changes, errors), `turn.completed` with usage (no cost), `turn.failed`.
fn codex(event: &Value, s: &mut Summary) -> bool {
    match event.get("type").and_then(Value::as_str) {
        Some("thread.started" | "turn.started" | "item.started" | "item.updated") => true,
        Some("item.completed") => {
            let item = &event["item"];
            match item.get("type").and_then(Value::as_str) {
                Some("agent_message") => {
                    if let Some(text) = item.get("text").and_then(Value::as_str) {
                        s.progress.push(short(text));
                    }
                }
                Some("command_execution") => {
                    let command = item.get("command").and_then(Value::as_str).unwrap_or("?");
                    s.progress.push(format!("ran: {}", short(command)));
                }
                Some("file_change") => s.progress.push("changed files".to_owned()),
                // `error` items are warnings (a model's metadata is missing,
                // ...): the turn goes on; `turn.failed` is the failure.
                _ => {}
            }
            true
        }
        Some("turn.completed") => {
            s.finished = true;
            s.tokens_in += u64_at(event, &["usage", "input_tokens"]);
            s.tokens_out += u64_at(event, &["usage", "output_tokens"]);
            true
        }
        Some("turn.failed" | "error") => {
            let message =
                str_at(event, &["error", "message"]).or_else(|| str_at(event, &["message"]));
            s.error = Some(reported(None, message, "the turn failed"));
            true
        }
        _ => false,
    }
}

/// OpenCode: `step_start`, `text` and tool parts, `step_finish` with tokens and
/// cost (0 unless the model has prices configured), `error`.
fn opencode(event: &Value, s: &mut Summary) -> bool {
    let part = &event["part"];
    match event.get("type").and_then(Value::as_str) {
        Some("step_start") => true,
        Some("text") => {
            if let Some(text) = part.get("text").and_then(Value::as_str) {
                s.progress.push(short(text));
            }
            true
        }
        Some("tool" | "tool_use") => {
            let name = part.get("tool").and_then(Value::as_str).unwrap_or("?");
            s.progress.push(format!("tool: {name}"));
            true
        }
        Some("step_finish") => {
            s.finished = true;
            s.tokens_in += u64_at(part, &["tokens", "input"])
                + u64_at(part, &["tokens", "cache", "read"])
                + u64_at(part, &["tokens", "cache", "write"]);
            s.tokens_out +=
                u64_at(part, &["tokens", "output"]) + u64_at(part, &["tokens", "reasoning"]);
            if let Some(cost) = part.get("cost").and_then(Value::as_f64) {
                *s.cost_usd.get_or_insert(0.0) += cost;
            }
            true
        }
        Some("error") => {
            let message = str_at(event, &["error", "data", "message"])
                .or_else(|| str_at(event, &["error", "message"]));
            let status = event
                .pointer("/error/data/statusCode")
                .and_then(Value::as_u64);
            s.error = Some(reported(status, message, "the run failed"));
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/agent-cli")
            .join(name);
        std::fs::read_to_string(&path).expect("fixture")
    }

    #[test]
    fn claude_code_success() {
        let s = summarize(HarnessKind::ClaudeCode, &fixture("claude-stream.jsonl"));
        assert_eq!((s.events, s.other_lines), (3, 0));
        assert!(s.finished && s.error.is_none());
        assert_eq!((s.tokens_in, s.tokens_out), (1234, 7));
        let cost = s.cost_usd.expect("claude reports its cost");
        assert!((cost - 0.003_807).abs() < 1e-12, "{cost}");
        assert_eq!(s.progress, ["FAKE-MODEL-REPLY: done."]);
        assert!(s.denied_tools.is_empty());
    }

    #[test]
    fn claude_code_tool_denied_and_allowed() {
        let denied = summarize(
            HarnessKind::ClaudeCode,
            &fixture("claude-tool-denied.jsonl"),
        );
        assert_eq!(denied.denied_tools, ["Write"]);
        assert_eq!(denied.progress, ["tool: Write", "FAKE-MODEL-REPLY: done."]);
        assert_eq!((denied.tokens_in, denied.tokens_out), (2234, 27));
        let allowed = summarize(
            HarnessKind::ClaudeCode,
            &fixture("claude-tool-allowed.jsonl"),
        );
        assert!(allowed.denied_tools.is_empty() && allowed.error.is_none());
    }

    #[test]
    fn claude_code_errors_are_classified() {
        let result = |status: &str, text: &str| {
            format!(
                r#"{{"type":"result","subtype":"success","is_error":true,"api_error_status":{status},"result":"{text}","usage":{{"input_tokens":5,"output_tokens":0}}}}"#
            )
        };
        for (status, text, kind) in [
            ("429", "API Error: 429", ErrorKind::RateLimit),
            ("401", "Invalid API key", ErrorKind::Authentication),
            ("null", "Prompt is too long", ErrorKind::ContextOverflow),
            ("500", "API Error: 500 overloaded", ErrorKind::Api),
        ] {
            let s = summarize(HarnessKind::ClaudeCode, &result(status, text));
            assert_eq!(s.error.as_ref().map(|e| e.kind), Some(kind), "{text}");
        }
    }

    #[test]
    fn a_crashed_claude_run_still_counts_its_turns() {
        let stream = fixture("claude-tool-denied.jsonl");
        let cut: Vec<&str> = stream.lines().take(4).collect();
        let s = summarize(HarnessKind::ClaudeCode, &cut.join("\n"));
        assert!(!s.finished);
        assert_eq!((s.tokens_in, s.tokens_out), (2234, 2));
    }

    #[test]
    fn codex_success_ignores_warning_items() {
        let s = summarize(HarnessKind::Codex, &fixture("codex-stream.jsonl"));
        assert_eq!((s.events, s.other_lines), (5, 0));
        assert!(s.finished && s.error.is_none(), "{s:?}");
        assert_eq!((s.tokens_in, s.tokens_out), (1234, 7));
        assert_eq!(s.cost_usd, None);
        assert_eq!(s.progress, ["FAKE-MODEL-REPLY: done."]);
        let failed = summarize(
            HarnessKind::Codex,
            r#"{"type":"turn.failed","error":{"message":"stream error: 429 Too Many Requests; rate limit reached"}}"#,
        );
        assert_eq!(failed.error.map(|e| e.kind), Some(ErrorKind::RateLimit));
    }

    #[test]
    fn opencode_success() {
        let s = summarize(HarnessKind::Opencode, &fixture("opencode-stream.jsonl"));
        assert_eq!((s.events, s.other_lines), (3, 0));
        assert!(s.finished && s.error.is_none());
        assert_eq!((s.tokens_in, s.tokens_out), (1234, 7));
        assert_eq!(s.cost_usd, Some(0.0));
        assert_eq!(s.progress, ["FAKE-MODEL-REPLY: done."]);
    }

    #[test]
    fn noise_and_malformed_lines_are_skipped_never_fatal() {
        let mut stream =
            String::from("warning: something on stderr\n{\"type\":\"result\", trunc\n[1,2]\n\n");
        stream.push_str(&fixture("claude-stream.jsonl"));
        stream.push_str("\n{\"type\":\"unknown_future_event\"}\n");
        let s = summarize(HarnessKind::ClaudeCode, &stream);
        assert_eq!((s.events, s.other_lines), (3, 4));
        assert!(s.finished);
        // Not a stream harness: nothing is read.
        assert_eq!(
            summarize(HarnessKind::Command, &stream),
            Summary {
                other_lines: 7,
                ..Summary::default()
            }
        );
        let long = format!(
            "{{\"type\":\"text\",\"part\":{{\"text\":\"{}\"}}}}",
            "x".repeat(500)
        );
        let s = summarize(HarnessKind::Opencode, &long);
        assert_eq!(s.progress[0].chars().count(), PROGRESS_CHARS + 1);
    }
}
