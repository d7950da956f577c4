//! Detached agent runs under `converge __supervise`: lease before the agent,
//! output captured, exact environment, deadline kills the whole group.

use std::path::Path;
use std::time::{Duration, Instant};

use converge::act::run::{RunPlan, start};
use converge::agent::Secret;
use converge::observe::runs::{ExitRecord, Lease, process_alive, read_run};
use converge::observe::{RunState, TaskKey};
use converge::time::Timestamp;

use crate::support::BIN;

fn plan(dir: &Path, script: &str, seconds: i64) -> RunPlan {
    RunPlan {
        program: "sh".into(),
        args: vec!["-c".into(), script.into()],
        cwd: dir.to_owned(),
        env: vec![
            ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
            ("CONVERGE_AGENT_TOKEN".into(), "cvg1.p.a.1.token".into()),
        ],
        secret_env: Vec::new(),
        sandbox: None,
        deadline: Timestamp::from_unix(Timestamp::now().unix() + seconds),
        fork: Some("f".repeat(40).parse().expect("hex")),
        generation: "g".into(),
        harness: "command".into(),
    }
}

fn wait_for_exit(run_dir: &Path, limit: Duration) -> ExitRecord {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Ok(bytes) = std::fs::read(run_dir.join("exit.json")) {
            return serde_json::from_slice(&bytes).expect("exit.json parses");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no exit.json after {limit:?}");
}

fn lease(run_dir: &Path) -> Lease {
    serde_json::from_slice(&std::fs::read(run_dir.join("lease.json")).expect("lease"))
        .expect("parses")
}

#[test]
fn a_run_records_its_lease_output_and_exit() {
    let dir = tempfile::tempdir().expect("dir");
    let run_dir = dir.path().join("run");
    std::fs::create_dir_all(&run_dir).expect("mkdir");
    let script =
        "echo working; echo \"token=$CONVERGE_AGENT_TOKEN home=${HOME:-unset}\"; sleep 0.3; exit 3";
    let pid = start(&run_dir, &plan(dir.path(), script, 60), Path::new(BIN)).expect("starts");
    let first = lease(&run_dir);
    assert_eq!(first.pid, pid);
    assert!(first.start_ticks.is_some());

    let secret = Secret::from_bytes(b"runs test secret, long enough!!".to_vec());
    let key = TaskKey::new("p", "a");
    let running = read_run(&run_dir, &key, 1, &secret).expect("reads");
    assert!(
        matches!(running.obs.state, RunState::Running { .. }),
        "{running:?}"
    );

    let exit = wait_for_exit(&run_dir, Duration::from_secs(20));
    assert_eq!((exit.exit_code, exit.timed_out), (Some(3), false));
    let log = std::fs::read_to_string(run_dir.join("agent.log")).expect("log");
    // The agent sees exactly the planned environment: its token (masked in the
    // log; an empty value would print `token= `), no HOME leaked from converge.
    assert_eq!(log, "working\ntoken=[redacted] home=unset\n");
    let recorded = std::fs::read_to_string(run_dir.join("run.json")).expect("run.json");
    assert!(
        !recorded.contains("cvg1.p.a.1.token") && recorded.contains("\"secret_env\""),
        "the token is not written to disk: {recorded}"
    );
    assert!(lease(&run_dir).agent_pid.is_some());
    let record = read_run(&run_dir, &key, 1, &secret).expect("reads");
    assert_eq!(
        record.obs.state,
        RunState::Exited {
            done: false,
            exit_code: Some(3)
        }
    );
}

#[test]
fn the_deadline_kills_the_agents_whole_process_group() {
    let dir = tempfile::tempdir().expect("dir");
    let run_dir = dir.path().join("run");
    std::fs::create_dir_all(&run_dir).expect("mkdir");
    // The background child is found by a marker on its command line: the
    // agent runs in a PID namespace of its own, where `$!` is not a pid of
    // the test's.
    let marker = format!("bg-of-{}", dir.path().display());
    let script = format!("sh -c 'sleep 60; : {marker}' & sleep 60");
    let bg = || {
        std::fs::read_dir("/proc")
            .expect("/proc")
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .find(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&marker))
                    && process_alive(*pid, None)
            })
    };
    start(&run_dir, &plan(dir.path(), &script, 1), Path::new(BIN)).expect("starts");
    let started = Instant::now();
    while bg().is_none() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(bg().is_some(), "the background child started");
    let exit = wait_for_exit(&run_dir, Duration::from_secs(30));
    assert!(exit.timed_out, "{exit:?}");
    assert_eq!(
        exit.signal,
        Some(15),
        "TERM ends it within the grace period"
    );
    let started = Instant::now();
    while bg().is_some() && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        bg().is_none(),
        "the agent's background child survived the deadline"
    );
}

#[test]
fn a_missing_agent_program_is_recorded_not_lost() {
    let dir = tempfile::tempdir().expect("dir");
    let run_dir = dir.path().join("run");
    std::fs::create_dir_all(&run_dir).expect("mkdir");
    let mut missing = plan(dir.path(), "", 60);
    missing.program = "/nonexistent/agent-cli".into();
    start(&run_dir, &missing, Path::new(BIN)).expect("the supervisor starts");
    let exit = wait_for_exit(&run_dir, Duration::from_secs(20));
    assert_eq!(exit.exit_code, None);
    assert!(
        exit.spawn_error
            .as_deref()
            .is_some_and(|e| e.contains("/nonexistent/agent-cli")),
        "{exit:?}"
    );
}
