//! Reading the JSON event streams of the agent CLIs: Claude Code
//! (`--output-format stream-json`), Codex (`exec --json`) and OpenCode
//! (`run --format json`), into progress, token usage, cost and how the run
//! ended. Pure: the text in, a summary out.
//!
//! The stream is read from the agent's log, where stderr is interleaved with
//! it: lines that are not JSON objects are counted and skipped, never fatal.
//! Event shapes follow recorded output of the real CLIs
//! (`tests/fixtures/agent-cli/`).

use std::time::Duration;

use serde_json::Value;

use crate::spec::HarnessKind;
use crate::time::Timestamp;

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
    /// When a rate limit or usage window says it ends: Claude Code's
    /// `rate_limit_event`, a `retry-after` header OpenCode passes on, or the
    /// message's "try again in 20s", "try again at 8:29 AM", "resets 8:29am
    /// (UTC)" (clock times are read as UTC: converge runs the CLIs with
    /// `TZ=UTC`).
    pub retry_at: Option<Timestamp>,
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

/// Summarizes `output` as the stream of a `kind` harness, read at `now` (the
/// time relative reset times count from). Harnesses without a stream
/// (`command`, `sim`) give an empty summary.
pub fn summarize(kind: HarnessKind, now: Timestamp, output: &str) -> Summary {
    let mut summary = Summary::default();
    // Claude Code announces a rejected usage window before its error result.
    let mut window: Option<Timestamp> = None;
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
            HarnessKind::ClaudeCode => claude(&event, &mut summary, &mut turn_tokens, &mut window),
            HarnessKind::Codex => codex(&event, &mut summary),
            HarnessKind::Opencode => opencode(&event, &mut summary, now),
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
    if let Some(error) = summary.error.as_mut()
        && error.kind == ErrorKind::RateLimit
        && error.retry_at.is_none()
    {
        error.retry_at = window.or_else(|| retry_time(&error.message, now));
    }
    summary
}

/// The end of a rate limit a message states: "try again in 20s" (or "in 2
/// hours 5 minutes"), else a UTC clock time, "try again at 8:29 AM" or
/// "resets 8:29am (UTC)", the next such time after `now`.
pub fn retry_time(message: &str, now: Timestamp) -> Option<Timestamp> {
    let lower = message.to_ascii_lowercase();
    if let Some(at) = lower.find("try again in ") {
        let seconds = relative_seconds(&lower[at + "try again in ".len()..])?;
        return Some(now.plus(Duration::from_secs(seconds)));
    }
    let rest = ["try again at ", "resets at ", "resets "]
        .iter()
        .find_map(|p| lower.find(p).map(|at| &lower[at + p.len()..]))?;
    // A clock time in a named zone other than UTC cannot be placed here.
    if let Some(zone) = rest.split('(').nth(1)
        && !zone.starts_with("utc")
    {
        return None;
    }
    let (hour, minute) = clock(rest)?;
    let day = now.unix().div_euclid(86_400) * 86_400;
    let mut at = day + i64::from(hour) * 3600 + i64::from(minute) * 60;
    if at <= now.unix() {
        at += 86_400;
    }
    Some(Timestamp::from_unix(at))
}

/// "20s", "1m30s", "2 hours 5 minutes", "4 days 2 hours": the total seconds.
fn relative_seconds(text: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut seen = false;
    let mut rest = text.trim_start();
    loop {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        if digits == 0 {
            break;
        }
        let Ok(number) = rest[..digits].parse::<f64>() else {
            break;
        };
        let after = rest[digits..].trim_start();
        let unit_len = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let unit = &after[..unit_len];
        let scale = match unit {
            "ms" | "millisecond" | "milliseconds" => 0.001,
            "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
            "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86_400.0,
            _ => break,
        };
        // Whole seconds, rounded up: waiting a little longer is harmless.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let seconds = (number * scale).ceil().max(0.0) as u64;
        total = total.saturating_add(seconds);
        seen = true;
        rest = after[unit_len..].trim_start_matches([' ', ',']);
        rest = rest.strip_prefix("and ").unwrap_or(rest);
    }
    seen.then_some(total)
}

/// "8:29 am", "8:29am", "8am", "20:29": hour and minute of a 24-hour day.
fn clock(text: &str) -> Option<(u32, u32)> {
    let text = text.trim_start();
    let end = text
        .find(|c: char| !c.is_ascii_digit() && c != ':')
        .unwrap_or(text.len());
    let (time, after) = text.split_at(end);
    let (hour, minute) = match time.split_once(':') {
        Some((h, m)) => (h.parse::<u32>().ok()?, m.get(..2)?.parse::<u32>().ok()?),
        None => (time.parse::<u32>().ok()?, 0),
    };
    let after = after.trim_start();
    let hour = if after.starts_with("pm") || after.starts_with("p.m.") {
        (hour % 12) + 12
    } else if after.starts_with("am") || after.starts_with("a.m.") {
        hour % 12
    } else {
        hour
    };
    (hour < 24 && minute < 60).then_some((hour, minute))
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
        retry_at: None,
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
fn claude(
    event: &Value,
    s: &mut Summary,
    turns: &mut (u64, u64),
    window: &mut Option<Timestamp>,
) -> bool {
    match event.get("type").and_then(Value::as_str) {
        Some("system") => true,
        // Sent with each response of a subscription login; `rejected` means
        // the usage window is spent until `resetsAt`.
        Some("rate_limit_event") => {
            let info = &event["rate_limit_info"];
            if info.get("status").and_then(Value::as_str) == Some("rejected") {
                *window = info
                    .get("resetsAt")
                    .and_then(Value::as_i64)
                    .map(Timestamp::from_unix);
            }
            true
        }
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
            // Errors before a completed turn were retried away.
            s.error = None;
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
fn opencode(event: &Value, s: &mut Summary, now: Timestamp) -> bool {
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
            // A call a permission rule refused ends in an error saying so.
            let refused = part.pointer("/state/status").and_then(Value::as_str) == Some("error")
                && part
                    .pointer("/state/error")
                    .and_then(Value::as_str)
                    .is_some_and(|e| e.contains("specified a rule which prevents"));
            if refused {
                s.denied_tools.push(name.to_owned());
            }
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
            let mut error = reported(status, message, "the run failed");
            if event.pointer("/error/name").and_then(Value::as_str) == Some("ContextOverflowError")
            {
                error.kind = ErrorKind::ContextOverflow;
            }
            // The provider's `retry-after` (seconds), which the CLI passes on.
            error.retry_at = event
                .pointer("/error/data/responseHeaders/retry-after")
                .and_then(Value::as_str)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|secs| now.plus(Duration::from_secs(secs)));
            s.error = Some(error);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-23T07:30:00Z: the fixtures' usage windows end at 08:29:03.
    const NOW: Timestamp = Timestamp::from_unix(1_795_419_000);

    fn fixture(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/agent-cli")
            .join(name);
        std::fs::read_to_string(&path).expect("fixture")
    }

    #[test]
    fn claude_code_success() {
        let s = summarize(
            HarnessKind::ClaudeCode,
            NOW,
            &fixture("claude-stream.jsonl"),
        );
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
            NOW,
            &fixture("claude-tool-denied.jsonl"),
        );
        assert_eq!(denied.denied_tools, ["Write"]);
        assert_eq!(denied.progress, ["tool: Write", "FAKE-MODEL-REPLY: done."]);
        assert_eq!((denied.tokens_in, denied.tokens_out), (2234, 27));
        let allowed = summarize(
            HarnessKind::ClaudeCode,
            NOW,
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
            let s = summarize(HarnessKind::ClaudeCode, NOW, &result(status, text));
            assert_eq!(s.error.as_ref().map(|e| e.kind), Some(kind), "{text}");
        }
    }

    #[test]
    fn a_crashed_claude_run_still_counts_its_turns() {
        let stream = fixture("claude-tool-denied.jsonl");
        let cut: Vec<&str> = stream.lines().take(4).collect();
        let s = summarize(HarnessKind::ClaudeCode, NOW, &cut.join("\n"));
        assert!(!s.finished);
        assert_eq!((s.tokens_in, s.tokens_out), (2234, 2));
    }

    #[test]
    fn recorded_failures_of_the_real_clis_are_classified_with_their_reset_times() {
        use ErrorKind::{Api, Authentication, ContextOverflow, RateLimit};
        let at = |unix: i64| Some(Timestamp::from_unix(unix));
        for (kind, name, expected, retry_at) in [
            (
                HarnessKind::ClaudeCode,
                "claude-rate-limit",
                RateLimit,
                None,
            ),
            // The usage window's `rate_limit_event` carries the reset time.
            (
                HarnessKind::ClaudeCode,
                "claude-usage-window",
                RateLimit,
                at(1_795_422_543),
            ),
            (HarnessKind::ClaudeCode, "claude-api-error", Api, None),
            (HarnessKind::ClaudeCode, "claude-overloaded", Api, None),
            (HarnessKind::ClaudeCode, "claude-auth", Authentication, None),
            (
                HarnessKind::ClaudeCode,
                "claude-context",
                ContextOverflow,
                None,
            ),
            (HarnessKind::Codex, "codex-rate-limit", RateLimit, None),
            // "try again at 8:29 AM": the next 08:29 UTC after NOW.
            (
                HarnessKind::Codex,
                "codex-usage-window",
                RateLimit,
                at(1_795_422_540),
            ),
            (HarnessKind::Codex, "codex-api-error", Api, None),
            (HarnessKind::Codex, "codex-auth", Authentication, None),
            (HarnessKind::Codex, "codex-context", ContextOverflow, None),
            // OpenCode passes the provider's `retry-after: 1` on.
            (
                HarnessKind::Opencode,
                "opencode-rate-limit",
                RateLimit,
                at(1_795_419_001),
            ),
            (HarnessKind::Opencode, "opencode-api-error", Api, None),
            (HarnessKind::Opencode, "opencode-auth", Authentication, None),
            (
                HarnessKind::Opencode,
                "opencode-context",
                ContextOverflow,
                None,
            ),
        ] {
            let s = summarize(kind, NOW, &fixture(&format!("{name}.jsonl")));
            let error = s
                .error
                .clone()
                .unwrap_or_else(|| panic!("{name}: no error in {s:?}"));
            assert_eq!(error.kind, expected, "{name}: {}", error.message);
            assert_eq!(error.retry_at, retry_at, "{name}: {}", error.message);
            assert!(!error.message.is_empty());
            assert_eq!(s.other_lines, 0, "{name}: every line is an event");
        }
    }

    #[test]
    fn reset_times_are_read_from_what_the_message_says() {
        let in_secs = |n: u64| Some(NOW.plus(Duration::from_secs(n)));
        for (message, expected) in [
            ("Please try again in 20s.", in_secs(20)),
            ("Please try again in 1.5s.", in_secs(2)),
            ("try again in 1m30s", in_secs(90)),
            ("try again in 2 hours 5 minutes.", in_secs(2 * 3600 + 300)),
            (
                "try again in 4 days, 2 hours and 3 minutes",
                in_secs(4 * 86_400 + 7200 + 180),
            ),
            // NOW is 07:30 UTC.
            (
                "You've hit your session limit · resets 8:29am (UTC)",
                in_secs(59 * 60),
            ),
            ("try again at 7:00 AM.", in_secs(23 * 3600 + 30 * 60)),
            ("resets 9pm", in_secs(13 * 3600 + 30 * 60)),
            ("resets 8am (America/New_York)", None),
            ("Please try again later.", None),
            ("try again in a moment", None),
        ] {
            assert_eq!(retry_time(message, NOW), expected, "{message}");
        }
    }

    #[test]
    fn codex_success_ignores_warning_items() {
        let s = summarize(HarnessKind::Codex, NOW, &fixture("codex-stream.jsonl"));
        assert_eq!((s.events, s.other_lines), (5, 0));
        assert!(s.finished && s.error.is_none(), "{s:?}");
        assert_eq!((s.tokens_in, s.tokens_out), (1234, 7));
        assert_eq!(s.cost_usd, None);
        assert_eq!(s.progress, ["FAKE-MODEL-REPLY: done."]);
        let failed = summarize(
            HarnessKind::Codex,
            NOW,
            r#"{"type":"turn.failed","error":{"message":"stream error: 429 Too Many Requests; rate limit reached"}}"#,
        );
        assert_eq!(failed.error.map(|e| e.kind), Some(ErrorKind::RateLimit));
    }

    #[test]
    fn opencode_reports_calls_its_permission_rules_refused() {
        // As OpenCode 1.18.33 printed it under converge's rules (trimmed ids).
        let line = r#"{"type":"tool_use","timestamp":1795420376330,"sessionID":"ses_1","part":{"type":"tool","tool":"bash","callID":"call_done","state":{"status":"error","input":{"command":"ls / > listing.txt","description":"Forbidden"},"error":"The user has specified a rule which prevents you from using this specific tool call."}}}"#;
        let s = summarize(HarnessKind::Opencode, NOW, line);
        assert_eq!(s.denied_tools, ["bash"]);
        // A tool that failed for another reason is not a refusal.
        let failed = line.replace(
            "The user has specified a rule which prevents you from using this specific tool call.",
            "exit status 1",
        );
        assert!(
            summarize(HarnessKind::Opencode, NOW, &failed)
                .denied_tools
                .is_empty()
        );
    }

    #[test]
    fn opencode_success() {
        let s = summarize(
            HarnessKind::Opencode,
            NOW,
            &fixture("opencode-stream.jsonl"),
        );
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
        let s = summarize(HarnessKind::ClaudeCode, NOW, &stream);
        assert_eq!((s.events, s.other_lines), (3, 4));
        assert!(s.finished);
        // Not a stream harness: nothing is read.
        assert_eq!(
            summarize(HarnessKind::Command, NOW, &stream),
            Summary {
                other_lines: 7,
                ..Summary::default()
            }
        );
        let long = format!(
            "{{\"type\":\"text\",\"part\":{{\"text\":\"{}\"}}}}",
            "x".repeat(500)
        );
        let s = summarize(HarnessKind::Opencode, NOW, &long);
        assert_eq!(s.progress[0].chars().count(), PROGRESS_CHARS + 1);
    }
}
