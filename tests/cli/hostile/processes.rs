//! Hostile agents against processes (see the module above): daemons that try
//! to outlive their attempt, and an agent that reads other processes'
//! environments for converge's secret.

use std::time::{Duration, Instant};

use super::*;

/// Live processes whose command line contains `marker` (a unique string the
/// test's agent puts into every daemon it starts), by pid.
fn processes_with(marker: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rfind(')').and_then(|i| s[i + 2..].chars().next()))
            .is_some_and(|state| matches!(state, 'Z' | 'X'));
        if text.contains(marker) && !zombie {
            out.push((pid, text));
        }
    }
    out
}

/// Waits up to `limit` for no process with `marker` to be left; returns those left.
fn survivors(marker: &str, limit: Duration) -> Vec<(u32, String)> {
    let started = Instant::now();
    loop {
        let left = processes_with(marker);
        if left.is_empty() || started.elapsed() > limit {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills what a failed test left behind, so that it does not outlive the test.
fn kill_all(left: &[(u32, String)]) {
    for (pid, _) in left {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
}

/// A marker unique to this test run: the repository's directory name.
fn marker_of(sb: &Sandbox, what: &str) -> String {
    let name = sb
        .path()
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("repo");
    format!("hostile-{what}-{name}")
}

/// An agent leaves three daemons behind: one in a new session (`setsid`), one
/// orphaned by a double fork, and one in a new session with an empty
/// environment (`env -i`, so it carries no `CONVERGE_RUN_DIR`). When the task
/// has merged, none of them is alive.
#[test]
fn daemons_do_not_outlive_their_attempt() {
    let sb = Sandbox::repo();
    let m = marker_of(&sb, "daemon");
    let loop_ = |tag: &str| format!("while :; do sleep 0.2; done # {m}-{tag}");
    let script = format!(
        "setsid sh -c '{setsid}' </dev/null >/dev/null 2>&1 &\n\
         ( ( sh -c '{double}' </dev/null >/dev/null 2>&1 & ) & )\n\
         env -i /bin/sh -c \"setsid sh -c '{envi}' </dev/null >/dev/null 2>&1 &\"\n\
         sleep 0.5\n\
         echo work > work.txt\n\
         converge done\n",
        setsid = loop_("setsid"),
        double = loop_("double"),
        envi = loop_("envi"),
    );
    drop(sb);
    let sb = setup(&sh_harness("daemon", &script), &task("a", "daemon", ""));
    if !landlock(&sb) {
        return;
    }
    settle(&sb);
    assert_eq!(phase(&sb, "a"), "merged");
    let left = survivors(&m, Duration::from_secs(3));
    kill_all(&left);
    assert!(
        left.is_empty(),
        "processes of the attempt outlived it: {left:#?}"
    );
}

/// Doctor finds a process of an attempt that outlived it, whatever its
/// environment, and `doctor --fix` kills it: here the agent's init was killed
/// with SIGKILL while the agent's `env -i` daemon ran.
#[test]
fn doctor_finds_and_kills_a_survivor_without_the_run_environment() {
    let sb = Sandbox::repo();
    let m = marker_of(&sb, "doctor");
    let script = format!(
        "env -i /bin/sh -c \"setsid sh -c 'while :; do sleep 0.2; done # {m}' </dev/null >/dev/null 2>&1 &\"\n\
         sleep 600\n"
    );
    drop(sb);
    let sb = setup(&sh_harness("lurker", &script), &task("a", "lurker", ""));
    if !landlock(&sb) {
        return;
    }
    tick(&sb).success();
    let started = Instant::now();
    while processes_with(&m).is_empty() && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!processes_with(&m).is_empty(), "the daemon never started");
    // The supervisor, then the process it started for the agent, die
    // (SIGKILL, no chance to clean up: the supervisor first, or it would
    // sweep up after its agent); the daemon is in a session, a process group
    // and an environment of its own.
    let run_dir = sb.path().join(".git/converge/runs/p/a/1");
    let lease: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("lease.json")).expect("lease"))
            .expect("lease parses");
    for key in ["pid", "agent_pid"] {
        if let Some(pid) = lease[key].as_u64() {
            let _ = std::process::Command::new("kill")
                .args(["-9", "--", &pid.to_string()])
                .status();
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let doctor = sb.converge(&["doctor"]);
    let left_before = processes_with(&m);
    let supervisor_log =
        std::fs::read_to_string(run_dir.join("supervisor.log")).unwrap_or_default();
    if supervisor_log.contains("cannot create a PID namespace") {
        // Without namespaces the supervisor killed the daemon when the agent
        // died; a process that escapes a killed supervisor is then found only
        // by its environment (docs/agent-protocol.md, Processes).
        kill_all(&left_before);
        eprintln!("no PID namespaces here: only the fallback was tested");
        return;
    }
    assert!(
        !left_before.is_empty(),
        "the set-up leaves the daemon running for doctor to find"
    );
    assert!(
        doctor.stdout.contains("outlived their supervisor") || doctor.stdout.contains("still runs"),
        "doctor does not see the survivor {left_before:?}:\n{}",
        doctor.transcript()
    );
    sb.converge(&["doctor", "--fix"]);
    let left = survivors(&m, Duration::from_secs(3));
    kill_all(&left);
    assert!(left.is_empty(), "`doctor --fix` left {left:#?}");
}

/// An agent reads every process's environment it can see, looking for
/// `CONVERGE_SECRET` (converge runs with the secret in its environment, as
/// root here), and commits what it found: nothing. And the task's invariant,
/// which converge runs, finds no secret in its own environment.
#[test]
fn the_secret_is_not_readable_through_proc() {
    let secret = "hostile-proc-secret-0123456789abcdef";
    let script = "for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' < \"$f\" 2>/dev/null | grep '^CONVERGE_SECRET=' ; done > found.txt\n\
                  ls -d /proc/[0-9]* | wc -l > seen.txt\n\
                  converge done\n";
    // An invariant is code of the agent's too: converge's children never get
    // the secret in their environment.
    let invariant = "\n[invariants.no_secret]\nkind = \"custom\"\ncommand = \"sh\"\nargs = [\"-c\", \"! env | grep -q ^CONVERGE_SECRET=\"]\n";
    let sb = setup(
        &format!("{}{invariant}", sh_harness("snoop", script)),
        &task("a", "snoop", "").replace(
            "invariants = [\"ok\"]",
            "invariants = [\"ok\", \"no_secret\"]",
        ),
    );
    if !landlock(&sb) {
        return;
    }
    let home = tempfile::tempdir().expect("home");
    let out = crate::support::converge_at(
        sb.path(),
        home.path(),
        &["reconcile", "--wait", "--max-ticks", "200"],
        &[("CONVERGE_SECRET", secret)],
    );
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(phase(&sb, "a"), "merged");
    let seen = sb.git(&["show", "main:seen.txt"]);
    assert!(seen.trim().parse::<u32>().is_ok(), "the agent ran: {seen}");
    let found = sb.git(&["show", "main:found.txt"]);
    assert!(
        !found.contains(secret),
        "the agent read converge's secret from /proc: {found}"
    );
}
