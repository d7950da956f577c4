//! Support for the agent CLI end-to-end tests: a scripted local fake of a
//! model API (one thread accepting HTTP/1.1 requests on 127.0.0.1, each
//! answered by a handler from the request's JSON body, then closed), and the
//! one-task repository they all run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

use crate::support::Sandbox;

/// An answer: status line (`200 OK`), extra header lines (each ending in
/// `\r\n`), content type and body.
pub struct Answer {
    pub status: &'static str,
    pub headers: String,
    pub content_type: &'static str,
    pub body: String,
}

impl Answer {
    /// A `200 OK` server-sent event stream.
    pub fn events(body: String) -> Self {
        Answer {
            status: "200 OK",
            headers: "Cache-Control: no-cache\r\n".into(),
            content_type: "text/event-stream",
            body,
        }
    }
}

/// Server-sent events, each `event: <type>` and its JSON.
pub fn sse(events: &[Value]) -> String {
    events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap_or("")))
        .collect()
}

/// Serves `handler`'s answers; returns the base URL and the count of requests.
pub fn serve(handler: impl Fn(&Value) -> Answer + Send + 'static) -> (String, Arc<AtomicUsize>) {
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
            let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let answer = handler(&request);
            let _ = write!(
                stream,
                "HTTP/1.1 {}\r\nContent-Type: {}\r\n{}Content-Length: {}\r\nConnection: close\r\n\r\n{}",
                answer.status,
                answer.content_type,
                answer.headers,
                answer.body.len(),
                answer.body
            );
        }
    });
    (url, served)
}

/// The binary an end-to-end test of an agent CLI runs: `$var`. These tests
/// are `#[ignore]`d, so a plain `cargo test` reports them as not run instead
/// of counting a skip as a pass; run them with `-- --ignored` (CI does, with
/// the pinned CLIs installed), where a missing binary fails the test.
pub fn cli_bin(var: &str, package: &str) -> String {
    let bin = std::env::var(var).ok().filter(|p| !p.is_empty());
    bin.unwrap_or_else(|| {
        panic!("set {var} to a binary of npm {package} to run this test (see the README)")
    })
}

/// A repository with one task `one/t` ("write hello.txt, then run `converge
/// done`", checked by the invariant `hello`) on a harness `kind` named like
/// it, at `bin`, with `model` for narrow tasks; `config` is appended to
/// `converge.toml` (`[sandbox]`, `[prices]`) and `task_keys` to the task.
pub fn cli_repo(kind: &str, bin: &str, model: &str, config: &str, task_keys: &str) -> Sandbox {
    let sb = Sandbox::repo();
    sb.write("README.md", "project\n");
    sb.write("planning/goal.md", "Say hello.\n");
    sb.write(
        "planning/converge.toml",
        format!(
            "[reconcile]\ndefault_harness = \"{kind}\"\n\n[harness.{kind}]\nkind = \"{kind}\"\ncommand = \"{bin}\"\nmodels = {{ narrow = \"{model}\" }}\n\n[invariants.hello]\nkind = \"custom\"\ncommand = \"test\"\nargs = [\"-f\", \"hello.txt\"]\n\n{config}"
        ),
    );
    sb.write(
        "planning/plans/one.toml",
        format!(
            "[plan]\nname = \"One\"\nstate = \"active\"\n\n[[tasks]]\nname = \"t\"\ndescription = \"Write hello.txt, then run `converge done`.\"\nscope = \"narrow\"\ngate = \"auto\"\ninvariants = [\"hello\"]\ntimeout = \"2m\"\n{task_keys}"
        ),
    );
    sb.commit_all(&format!("a {kind} task"));
    sb
}

/// The agent log of `one/t`'s attempt.
pub fn agent_log(sb: &Sandbox, attempt: u32) -> String {
    std::fs::read_to_string(
        sb.path()
            .join(format!(".git/converge/runs/one/t/{attempt}/agent.log")),
    )
    .unwrap_or_default()
}

/// Reconciles until nothing is left to do, with `env` on top of the isolated
/// environment; asserts that converge succeeded and returns plan `one`'s
/// status and attempt 1's agent log.
pub fn settle(sb: &Sandbox, env: &[(&str, &str)]) -> (toml::Table, String) {
    let home = tempfile::tempdir().expect("home");
    let out = crate::support::converge_at(
        sb.path(),
        home.path(),
        &["reconcile", "--wait", "--max-ticks", "300"],
        env,
    );
    let log = agent_log(sb, 1);
    assert!(
        out.status.success(),
        "{}{}\nagent.log:\n{log}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let status = sb.read("planning/status/one.toml").parse().expect("status");
    (status, log)
}

/// Asserts that `one/t` merged with hello.txt as `content`.
pub fn assert_merged(sb: &Sandbox, status: &toml::Table, log: &str, content: &str) {
    assert_eq!(
        status["tasks"]["t"]["phase"].as_str(),
        Some("merged"),
        "{status}\nagent.log:\n{log}"
    );
    assert_eq!(sb.read("hello.txt"), content);
}
