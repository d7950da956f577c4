//! The GitHub forge's quiet tick against the local one, measured in the same
//! run (issue: the GitHub forge, Performance): "A no-op tick with 50 open task
//! PRs makes at most 3 API requests, answered 304 when nothing changed, and
//! costs within 2x the local no-op tick plus the fake's round trips."
//!
//! 1. The GitHub side: the test binary's fake GitHub (tests/cli/github/, the
//!    same code, compiled into this bench), a clone of its bare repository
//!    and 50 `human_review` sim tasks, each with its pull request open and
//!    waiting for a review. A quiet `converge reconcile --once` there.
//! 2. The local side: the same plan on a clone of a plain bare repository
//!    (the same `[reconcile] remote`, so both ticks fetch and compare), every
//!    task waiting for `converge approve`. A quiet tick there.
//! 3. The fake's round trips: the requests the quiet GitHub tick sent (read
//!    from the fake's log), replayed over raw HTTP/1.1 with the same
//!    `If-None-Match`, one connection each (a tick is a fresh process), in
//!    this process.
//!
//! Row 2's baseline is row 1 + row 3 of the same round (medians of the
//! per-round sums). Run: `cargo bench --bench forge` (`-- --quick`: 3 rounds).

mod common;
#[allow(dead_code, unreachable_pub)]
#[path = "../tests/cli/support.rs"]
mod support;

#[allow(dead_code, unreachable_pub, clippy::all)]
#[path = "common/github.rs"]
mod github;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Cmd, Row, Stats, run_supervised};
use github::fake::FakeGitHub;
use support::{BIN, Sandbox};

const TASKS: usize = 50;
/// The fake's token.
const TOKEN: &str = "fake-token";

fn main() {
    let Some(runs) = common::rounds(21) else {
        return;
    };
    let fake = FakeGitHub::start();
    let gh = github_repo(&fake);
    let (local, _remote) = local_repo();
    assert_eq!(fake.token(), TOKEN);
    let token = format!("CONVERGE_GITHUB_TOKEN={TOKEN}");
    // Both ticks run under `env` with the token, so neither is charged for an
    // exec the other does not make.
    let tick = Cmd::new(&["env", &token, BIN, "reconcile", "--once"]);

    // What a quiet tick sends: at most three requests, all answered 304.
    let _ = run_supervised(gh.path(), &tick, true);
    let mark = fake.mark();
    let (_, _, out) = run_supervised(gh.path(), &tick, true);
    assert!(out.contains("nothing to do"), "a quiet tick: {out}");
    let sent = fake.requests_since(mark);
    assert!(
        !sent.is_empty() && sent.len() <= 3 && sent.iter().all(|r| r.status == 304),
        "a quiet tick sends at most 3 requests, all answered 304: {sent:?}"
    );
    let (_, _, out) = run_supervised(local.path(), &tick, true);
    assert!(out.contains("nothing to do"), "a quiet local tick: {out}");
    let replay: Vec<(String, String)> = sent
        .iter()
        .map(|r| {
            let etag = etag_of(&fake.api_url(), &r.path);
            (r.path.clone(), etag)
        })
        .collect();

    let mut times: [Vec<Duration>; 4] = Default::default();
    let mut rss = [0u64; 2];
    for round in 0..=runs {
        let mark = fake.mark();
        let (g, g_rss, _) = run_supervised(gh.path(), &tick, false);
        let quiet = fake.requests_since(mark);
        assert!(
            quiet.len() <= 3 && quiet.iter().all(|r| r.status == 304),
            "{quiet:?}"
        );
        let (l, l_rss, _) = run_supervised(local.path(), &tick, false);
        let started = Instant::now();
        for (path, etag) in &replay {
            let status = get(&fake.api_url(), path, Some(etag)).0;
            assert_eq!(status, 304, "{path}");
        }
        let trips = started.elapsed();
        if round == 0 {
            continue;
        }
        times[0].push(l);
        times[1].push(g);
        times[2].push(trips);
        times[3].push(l + trips);
        rss[0] = rss[0].max(l_rss);
        rss[1] = rss[1].max(g_rss);
    }
    let [local_t, github_t, trips_t, sum_t] = times.map(median);
    let stats = |median, max_rss_kib| Stats {
        median,
        max_rss_kib,
    };
    let rows = vec![
        Row {
            name: format!(
                "no-op tick, GitHub forge, {TASKS} open task PRs waiting for review ({} request(s), all 304)",
                sent.len()
            ),
            measured: stats(github_t, rss[1]),
            baseline: Some((
                "the local no-op tick + the fake's round trips (per round)",
                stats(sum_t, rss[0]),
            )),
            target: "< 2x",
        },
        Row {
            name: format!(
                "no-op tick, local forge, {TASKS} tasks waiting for approval, same remote"
            ),
            measured: stats(local_t, rss[0]),
            baseline: None,
            target: "-",
        },
        Row {
            name: format!(
                "the fake's round trips: the tick's {} request(s) replayed over HTTP/1.1, answered 304 (in process; no RSS)",
                replay.len()
            ),
            measured: stats(trips_t, 0),
            baseline: None,
            target: "-",
        },
    ];
    common::print_rows(rows, runs);
    println!(
        "converge's own cost of the GitHub forge on a quiet tick (GitHub tick - local tick - round trips, medians): {:.1} ms",
        (github_t.as_secs_f64() - local_t.as_secs_f64() - trips_t.as_secs_f64()) * 1000.0
    );
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The plan: `TASKS` sim tasks waiting for a human, each writing its file.
fn plan() -> String {
    let mut plan = String::from("[plan]\nname = \"Many\"\nstate = \"active\"\n");
    for i in 0..TASKS {
        plan.push_str(&format!(
            "\n[[tasks]]\nname = \"t{i:02}\"\ndescription = \"Write t{i:02}.\"\nscope = \"narrow\"\ngate = \"human_review\"\n[tasks.sim]\nfiles = [{{ path = \"t{i:02}.txt\", content = \"t\\n\" }}]\n"
        ));
    }
    plan
}

const RECONCILE: &str = "[reconcile]\ndefault_harness = \"sim\"\nremote = \"origin\"\nstatus_branch = \"converge/status\"\nactions_per_tick = 60\nmax_agents = 60\ndispatches_per_hour = 1000\n";

/// A clone of `remote` with the plan and `config` pushed to its `main`, run
/// until every task waits for a human.
fn prepared(remote: &Path, config: &str, env: &[(&str, &str)]) -> Sandbox {
    let sb = Sandbox::new();
    sb.git(&["clone", "-q", &remote.to_string_lossy(), "."]);
    sb.git(&["config", "user.name", "Bench"]);
    sb.git(&["config", "user.email", "bench@example.com"]);
    sb.write("planning/goal.md", "Benchmark.\n");
    sb.write("planning/converge.toml", config);
    sb.write("planning/plans/many.toml", plan());
    sb.commit_all("plan");
    sb.git(&["push", "-q", "origin", "main"]);
    for _ in 0..20 {
        let out = support::converge_at(
            sb.path(),
            sb.home(),
            &["reconcile", "--until-idle", "--wait"],
            env,
        );
        assert!(out.status.success(), "{out:?}");
        let status = sb.git(&["show", "converge/status:planning/status/many.toml"]);
        if status.matches("phase = \"awaiting_approval\"").count() == TASKS {
            return sb;
        }
    }
    panic!("the {TASKS} tasks never all waited for approval");
}

fn github_repo(fake: &FakeGitHub) -> Sandbox {
    let config = format!(
        "{RECONCILE}\n[forge]\nkind = \"github\"\nrepo = \"{}/{}\"\napi_url = \"{}\"\nmax_open_prs = 60\nprs_per_hour = 1000\n",
        fake.owner(),
        fake.repo(),
        fake.api_url()
    );
    let token = fake.token();
    let sb = prepared(
        &fake.remote_path(),
        &config,
        &[("CONVERGE_GITHUB_TOKEN", &token)],
    );
    assert_eq!(fake.prs().iter().filter(|p| p.open).count(), TASKS);
    sb
}

fn local_repo() -> (Sandbox, Sandbox) {
    let remote = Sandbox::new();
    remote.git(&["init", "-q", "--bare", "-b", "main"]);
    // The bare repository needs a first commit on main to be cloned with one.
    let seed = Sandbox::repo();
    seed.write("README.md", "bench\n");
    seed.commit_all("init");
    seed.git(&["push", "-q", &remote.path().to_string_lossy(), "main"]);
    let sb = prepared(remote.path(), RECONCILE, &[]);
    (sb, remote)
}

/// The ETag the fake gives `path` now.
fn etag_of(api: &str, path: &str) -> String {
    let (status, etag) = get(api, path, None);
    assert_eq!(status, 200, "{path}");
    etag.expect("an ETag")
}

/// One GET on a new connection: the status and the ETag.
fn get(api: &str, path: &str, etag: Option<&str>) -> (u16, Option<String>) {
    let addr = api.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).expect("connect");
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {TOKEN}\r\naccept: application/vnd.github+json\r\nuser-agent: bench\r\nconnection: close\r\n"
    );
    if let Some(etag) = etag {
        request.push_str(&format!("if-none-match: {etag}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read");
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let etag = text
        .lines()
        .take_while(|l| !l.is_empty() && *l != "\r")
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("etag")
                .then(|| value.trim().to_owned())
        });
    (status, etag)
}
