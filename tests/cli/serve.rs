//! `[serve]`: the HTTP endpoints of `converge watch`, on the real binary. The
//! daemon listens on port 0 and logs the bound address (`address` in the
//! "serving ..." line), which the tests read. Requests are written by hand on
//! a TCP socket; `/metrics` goes through a strict parser of the text format
//! below; the dashboard is loaded in headless Chromium.
//!
//! The browser test FAILS when `chromium` is missing (`.ci/run` installs
//! Debian's package) unless `CONVERGE_SKIP_BROWSER=1` says to skip it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::support::Sandbox;
use crate::watch::{Daemon, repo};

const SECRET: &str = "a webhook secret for the tests";

/// Two tasks that wait for an agent slot (`max_agents = 0`): a state that no
/// tick changes, so the daemon and `converge status` see the same.
fn served() -> Sandbox {
    let sb = repo("max_agents = 0\n\n[serve]\nlisten = \"127.0.0.1:0\"\n");
    sb.write(
        "planning/plans/web.toml",
        "[plan]\nname = \"Web\"\nstate = \"active\"\n\n[[tasks]]\nname = \"render-page\"\ndescription = \"R.\"\nscope = \"narrow\"\ngate = \"human_review\"\n\n[[tasks]]\nname = \"ship-it\"\ndescription = \"S.\"\nscope = \"narrow\"\ngate = \"human_review\"\ndepends_on = [\"render-page\"]\n",
    );
    sb.commit_all("plan");
    sb
}

/// Waits until no tick has run for 800 ms: the first tick's status commit is
/// itself a file event, so a second tick follows it.
fn settle(daemon: &Daemon) {
    let until = Instant::now() + Duration::from_secs(20);
    let mut seen = daemon.ticks().len();
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_millis(800) {
        assert!(
            Instant::now() < until,
            "ticks never stopped:\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
        let now = daemon.ticks().len();
        if now != seen {
            seen = now;
            quiet_since = Instant::now();
        }
    }
}

/// A busier repository for the page: an agent at work that reported
/// progress (with markup in it), a task waiting on it, and a task awaiting
/// approval.
fn busy() -> Sandbox {
    let sb = repo(
        "max_agents = 2\ninterval = \"2s\"\n\n[serve]\nlisten = \"127.0.0.1:0\"\n\n[harness.slow]\nkind = \"command\"\ncommand = \"sh\"\nargs = [\"-c\", '''converge progress 'rendering <b>html</b> & co'; sleep 20''']\n",
    );
    sb.write(
        "planning/plans/web.toml",
        "[plan]\nname = \"Web\"\nstate = \"active\"\n\n[[tasks]]\nname = \"render-page\"\ndescription = \"R.\"\nscope = \"narrow\"\ngate = \"human_review\"\nharness = \"slow\"\n\n[[tasks]]\nname = \"ship-it\"\ndescription = \"S.\"\nscope = \"narrow\"\ngate = \"human_review\"\ndepends_on = [\"render-page\"]\n",
    );
    sb.write(
        "planning/plans/ops.toml",
        "[plan]\nname = \"Ops\"\nstate = \"active\"\n\n[[tasks]]\nname = \"approve-me\"\ndescription = \"A.\"\nscope = \"narrow\"\ngate = \"human_review\"\n[tasks.sim]\nfiles = [{ path = \"a.txt\", content = \"a\\n\" }]\n",
    );
    sb.commit_all("plans");
    sb
}

/// The address the daemon logged, once the ticks settled.
fn address(daemon: &Daemon) -> SocketAddr {
    settle(daemon);
    daemon.wait_for("the HTTP address", Duration::from_secs(10), |lines| {
        lines.iter().any(|l| l["fields"]["address"].is_string())
    });
    let lines = daemon.lines();
    let line = lines
        .iter()
        .find(|l| l["fields"]["address"].is_string())
        .expect("address line");
    line["fields"]["address"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("a socket address")
}

struct Response {
    status: u16,
    headers: String,
    body: String,
}

fn request(
    at: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut stream = TcpStream::connect_timeout(&at, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {at}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write");
    stream.write_all(body).expect("write body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "bodies are sent whole: {head}"
    );
    Response {
        status,
        headers: head.to_owned(),
        body: body.to_owned(),
    }
}

fn get(at: SocketAddr, path: &str) -> Response {
    request(at, "GET", path, &[], b"")
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[test]
fn the_state_is_what_status_json_prints_and_metrics_parse() {
    let sb = served();
    let logs = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_with(&sb, logs.path(), &[]);
    let at = address(&daemon);

    let state = get(at, "/api/v1/state");
    assert_eq!(state.status, 200, "{}", state.body);
    assert!(
        state.headers.contains("application/json"),
        "{}",
        state.headers
    );
    let status = sb.converge(&["status", "--json"]).success().stdout.clone();
    assert_eq!(
        state.body, status,
        "/api/v1/state and `converge status --json`"
    );
    let json: serde_json::Value = serde_json::from_str(&state.body).expect("json");
    assert_eq!(json["tasks"].as_array().map(Vec::len), Some(2), "{json}");

    let metrics = get(at, "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.headers.contains("text/plain; version=0.0.4"),
        "{}",
        metrics.headers
    );
    let families = parse_exposition(&metrics.body);
    let want: BTreeMap<&str, &str> = [
        ("converge_tasks", "gauge"),
        ("converge_actions_total", "counter"),
        ("converge_ticks_total", "counter"),
        ("converge_tick_duration_seconds", "histogram"),
        ("converge_agents_running", "gauge"),
        ("converge_oldest_ready_task_age_seconds", "gauge"),
        ("converge_tokens", "gauge"),
        ("converge_cost_usd", "gauge"),
        ("converge_attempt_failures", "gauge"),
        ("converge_forge_rate_limit_remaining", "gauge"),
        ("converge_last_tick_timestamp_seconds", "gauge"),
    ]
    .into_iter()
    .collect();
    let got: BTreeMap<&str, &str> = families
        .iter()
        .map(|(n, f)| (n.as_str(), f.kind.as_str()))
        .collect();
    assert_eq!(got, want);

    let phases = label_values(&families["converge_tasks"], "phase");
    let expected: BTreeSet<String> = [
        "pending",
        "running",
        "checking",
        "awaiting_approval",
        "passed",
        "merged",
        "failed",
        "escalated",
        "blocked",
        "cancelled",
    ]
    .map(String::from)
    .into();
    assert_eq!(phases, expected);
    assert_eq!(
        value(&families["converge_tasks"], &[("phase", "pending")]),
        2.0
    );
    assert_eq!(
        value(&families["converge_tasks"], &[("phase", "running")]),
        0.0
    );
    let kinds = label_values(&families["converge_actions_total"], "kind");
    let expected: BTreeSet<String> = [
        "reap", "cancel", "gate", "merge", "propose", "retry", "escalate", "cleanup", "dispatch",
        "promote",
    ]
    .map(String::from)
    .into();
    assert_eq!(kinds, expected);
    let codes = label_values(&families["converge_attempt_failures"], "code");
    assert!(
        codes.contains("no-done") && codes.contains("merge-conflict") && codes.len() >= 28,
        "{codes:?}"
    );
    assert!(value(&families["converge_ticks_total"], &[("result", "ok")]) >= 1.0);
    assert!(value(&families["converge_forge_rate_limit_remaining"], &[]).is_nan());
    // Both tasks are ready but for the agent slot: the older waits > 0 s.
    let age = value(&families["converge_oldest_ready_task_age_seconds"], &[]);
    assert!(age >= 0.0, "{age}");
    let hist = &families["converge_tick_duration_seconds"];
    let count = hist
        .samples
        .iter()
        .find(|s| s.name.ends_with("_count"))
        .map(|s| s.value)
        .expect("count");
    let inf = value(hist, &[("le", "+Inf")]);
    assert!(count >= 1.0 && inf == count, "{count} {inf}");

    // Nothing else is served, and nothing is written.
    assert_eq!(get(at, "/nope").status, 404);
    assert_eq!(get(at, "/api/v1/state/../../etc/passwd").status, 404);
    for (method, path) in [
        ("POST", "/"),
        ("PUT", "/api/v1/state"),
        ("DELETE", "/metrics"),
        ("GET", "/webhook/github"),
    ] {
        let r = request(at, method, path, &[], b"");
        assert!(
            r.status == 404 || r.status == 405,
            "{method} {path}: {}",
            r.status
        );
    }
}

#[test]
fn a_signed_delivery_wakes_a_tick_and_a_bad_or_missing_signature_is_401() {
    let sb = served();
    let logs = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_with(&sb, logs.path(), &[("CONVERGE_WEBHOOK_SECRET", SECRET)]);
    let at = address(&daemon);
    let webhook_ticks = || {
        daemon
            .ticks()
            .iter()
            .filter(|t| {
                t["fields"]["causes"]
                    .as_str()
                    .is_some_and(|c| c.contains("webhook"))
            })
            .count()
    };
    let body = br#"{"ref":"refs/heads/main","after":"0000000000000000000000000000000000000000"}"#;

    // Bad and missing signatures: 401, and no tick.
    let before = daemon.ticks().len();
    let wrong = sign("another secret", body);
    let tampered = sign(SECRET, b"another body");
    let cases: [&[(&str, &str)]; 4] = [
        &[("X-GitHub-Event", "push")],
        &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &wrong)],
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &tampered),
        ],
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", "sha256="),
        ],
    ];
    for headers in cases {
        let r = request(at, "POST", "/webhook/github", headers, body);
        assert_eq!(r.status, 401, "{headers:?}: {}", r.body);
    }
    // An unsigned ping is refused too; a signed one is answered, no tick.
    let r = request(
        at,
        "POST",
        "/webhook/github",
        &[("X-GitHub-Event", "ping")],
        b"{}",
    );
    assert_eq!(r.status, 401);
    let ping_sig = sign(SECRET, b"{}");
    let r = request(
        at,
        "POST",
        "/webhook/github",
        &[
            ("X-GitHub-Event", "ping"),
            ("X-Hub-Signature-256", &ping_sig),
        ],
        b"{}",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        daemon.ticks().len(),
        before,
        "no tick without a good signature:\n{}",
        daemon.log_text()
    );
    assert_eq!(webhook_ticks(), 0);

    // A good signature: a tick within a second.
    let signature = sign(SECRET, body);
    let sent = Instant::now();
    let r = request(
        at,
        "POST",
        "/webhook/github",
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &signature),
            ("Content-Type", "application/json"),
        ],
        body,
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let ticked = daemon.wait_for("a webhook tick", Duration::from_secs(5), |_| {
        webhook_ticks() >= 1
    });
    let latency = ticked - sent;
    eprintln!("webhook to tick: {latency:?}");
    assert!(latency < Duration::from_secs(1), "{latency:?}");

    // A body over the limit is refused from its length, before it is read.
    let mut stream = TcpStream::connect(at).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let head = format!(
        "POST /webhook/github HTTP/1.1\r\nHost: {at}\r\nConnection: close\r\nX-Hub-Signature-256: {signature}\r\nContent-Length: {}\r\n\r\n",
        5 * 1024 * 1024
    );
    stream.write_all(head.as_bytes()).expect("write");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
}

#[test]
fn without_a_secret_the_webhook_answers_503_and_never_ticks() {
    let sb = served();
    let logs = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_with(&sb, logs.path(), &[]);
    let at = address(&daemon);
    let before = daemon.ticks().len();
    let body = b"{}";
    // Signed with the secret an attacker might guess for an unset one.
    let r = request(
        at,
        "POST",
        "/webhook/github",
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &sign("", body)),
        ],
        body,
    );
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.body.contains("CONVERGE_WEBHOOK_SECRET is not set"),
        "{}",
        r.body
    );
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(daemon.ticks().len(), before);
}

#[test]
fn without_serve_nothing_listens() {
    let sb = repo("");
    let logs = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_with(&sb, logs.path(), &[]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !daemon
            .lines()
            .iter()
            .any(|l| l["fields"]["address"].is_string()),
        "{}",
        daemon.log_text()
    );
}

/// Where screenshots are kept: `target/test-artifacts/`.
fn artifacts() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().unwrap_or(tmp).join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            let out = Command::new("which").arg(name).output().ok()?;
            out.status
                .success()
                .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        })
}

/// Runs headless Chromium with `args` and a private profile; its stdout.
fn browse(browser: &Path, args: &[&str]) -> String {
    let profile = tempfile::tempdir().expect("profile");
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .env("HOME", profile.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let until = Instant::now() + Duration::from_secs(90);
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium {args:?} did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().expect("reader")
}

#[test]
fn the_dashboard_renders_in_headless_chromium_with_the_tasks_and_phases() {
    let Some(browser) = chromium() else {
        if std::env::var_os("CONVERGE_SKIP_BROWSER").is_some_and(|v| v == "1") {
            eprintln!("chromium is not installed; skipped (CONVERGE_SKIP_BROWSER=1)");
            return;
        }
        panic!(
            "chromium is not installed: `apt-get install chromium` (what .ci/run does), or set CONVERGE_SKIP_BROWSER=1 to skip this test"
        );
    };
    let sb = busy();
    let logs = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_with(&sb, logs.path(), &[]);
    let at = address(&daemon);
    let url = format!("http://{at}/");
    // The agent's progress shows from the tick after it was reported (the
    // resync here is 2 s); the sim task waits for approval by then.
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let page = get(at, "/");
        assert_eq!(page.status, 200);
        assert!(page.headers.contains("text/html"), "{}", page.headers);
        if page.body.contains("rendering &lt;b&gt;")
            && page.body.contains("phase awaiting_approval")
        {
            break;
        }
        assert!(
            Instant::now() < until,
            "no progress and approval on the page:\n{}\nlog:\n{}",
            page.body,
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let dom = browse(&browser, &["--dump-dom", &url]);
    for text in [
        "render-page",
        "ship-it",
        "approve-me",
        "waiting-on-dependency",
        "Needs attention",
        "Agents at work",
        "Recent ticks",
        "<span class=\"phase running\">running</span>",
        "<span class=\"phase pending\">pending</span>",
        "<span class=\"phase awaiting_approval\">awaiting_approval</span>",
        // The agent's text, escaped: shown, never markup.
        "rendering &lt;b&gt;html&lt;/b&gt; &amp; co",
    ] {
        assert!(dom.contains(text), "{text} not in the DOM:\n{dom}");
    }
    assert!(!dom.contains("<b>html</b>"), "{dom}");
    let attention = dom.find("id=\"attention\"").expect("attention");
    let plans = dom.find("id=\"plans\"").expect("plans");
    let approve = dom.find("approve-me").expect("approve-me");
    assert!(
        attention < approve && approve < plans,
        "what needs a person comes first"
    );

    let shot = artifacts().join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    browse(
        &browser,
        &[&format!("--screenshot={}", shot.display()), &url],
    );
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5_000,
        "{} bytes",
        png.len()
    );
    eprintln!("dashboard screenshot: {}", shot.display());
}

// A strict parser of the Prometheus text format (0.0.4), enough to hold the
// exposition to the format: every sample belongs to the family declared just
// before it, by HELP and TYPE, once each; names and labels are well formed.

#[derive(Debug, Default)]
struct Family {
    kind: String,
    samples: Vec<Sample>,
}

#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_exposition(text: &str) -> BTreeMap<String, Family> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut helped: BTreeSet<String> = BTreeSet::new();
    assert!(text.ends_with('\n'), "the exposition ends with a newline");
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _help) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(valid_name(name), "line {n}: {line}");
            assert!(
                helped.insert(name.to_owned()),
                "line {n}: second HELP for {name}"
            );
            current = Some(name.to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert_eq!(
                current.as_deref(),
                Some(name),
                "line {n}: TYPE after its HELP"
            );
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "line {n}: {kind}"
            );
            assert!(
                !families.contains_key(name),
                "line {n}: second TYPE for {name}"
            );
            families.insert(
                name.to_owned(),
                Family {
                    kind: kind.to_owned(),
                    samples: Vec::new(),
                },
            );
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.trim().is_empty(),
            "line {n}: {line:?}"
        );
        let sample = parse_sample(line, n);
        let family = current.as_deref().expect("a sample after a family");
        let f = families.get_mut(family).expect("TYPE before samples");
        let allowed: Vec<String> = match f.kind.as_str() {
            "histogram" => ["_bucket", "_sum", "_count"]
                .iter()
                .map(|s| format!("{family}{s}"))
                .collect(),
            _ => vec![family.to_owned()],
        };
        assert!(
            allowed.contains(&sample.name),
            "line {n}: {} outside {family}",
            sample.name
        );
        if f.kind == "counter" {
            assert!(
                family.ends_with("_total"),
                "counter {family} ends with _total"
            );
            assert!(sample.value >= 0.0, "line {n}");
        }
        if sample.name.ends_with("_bucket") {
            assert!(sample.labels.contains_key("le"), "line {n}");
        }
        f.samples.push(sample);
    }
    for (name, f) in &families {
        assert!(!f.samples.is_empty(), "{name} has no sample");
        let mut seen = BTreeSet::new();
        for s in &f.samples {
            assert!(
                seen.insert((s.name.clone(), s.labels.clone())),
                "{name}: duplicate series"
            );
        }
        if f.kind == "histogram" {
            let buckets: Vec<f64> = f
                .samples
                .iter()
                .filter(|s| s.name.ends_with("_bucket"))
                .map(|s| s.value)
                .collect();
            assert!(
                buckets.windows(2).all(|w| w[0] <= w[1]),
                "{name}: buckets are cumulative"
            );
        }
    }
    families
}

fn parse_sample(line: &str, n: usize) -> Sample {
    let (series, value) = line.rsplit_once(' ').expect("a series and a value");
    let value = match value {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v
            .parse()
            .unwrap_or_else(|_| panic!("line {n}: value {v:?}")),
    };
    let (name, labels) = match series.split_once('{') {
        None => (series, BTreeMap::new()),
        Some((name, rest)) => {
            let body = rest
                .strip_suffix('}')
                .unwrap_or_else(|| panic!("line {n}: {line}"));
            let mut labels = BTreeMap::new();
            for pair in body.split(',') {
                let (k, v) = pair
                    .split_once('=')
                    .unwrap_or_else(|| panic!("line {n}: {pair}"));
                assert!(valid_name(k) && !k.contains(':'), "line {n}: label {k}");
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or_else(|| panic!("line {n}: label value {v}"));
                assert!(!v.contains('"') && !v.contains('\\'), "line {n}: {v}");
                assert!(
                    labels.insert(k.to_owned(), v.to_owned()).is_none(),
                    "line {n}: {k} twice"
                );
            }
            (name, labels)
        }
    };
    assert!(valid_name(name), "line {n}: {name}");
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

fn label_values(f: &Family, label: &str) -> BTreeSet<String> {
    f.samples
        .iter()
        .filter_map(|s| s.labels.get(label).cloned())
        .collect()
}

#[track_caller]
fn value(f: &Family, labels: &[(&str, &str)]) -> f64 {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let found: Vec<&Sample> = f.samples.iter().filter(|s| s.labels == want).collect();
    assert_eq!(found.len(), 1, "{labels:?}: {found:?}");
    found[0].value
}
