//! `converge watch`, the real binary on temporary repositories: it reacts to a
//! commit and to an agent's exit within a second, coalesces a burst of
//! commits, stops cleanly on SIGTERM (agents keep running) and at once on a
//! second signal.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{BIN, Sandbox, isolate};

/// The daemon, killed when the test ends however it ends (also used by
/// serve.rs).
pub(crate) struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn start(sb: &Sandbox, log_dir: &Path) -> Daemon {
        Daemon::start_with(sb, log_dir, &[])
    }

    /// Starts it with these environment variables set.
    pub(crate) fn start_with(sb: &Sandbox, log_dir: &Path, env: &[(&str, &str)]) -> Daemon {
        let log = log_dir.join("watch.log");
        let file = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(BIN);
        isolate(&mut command, sb.home());
        let child = command
            .args(["watch", "--log-format", "json"])
            .env("CONVERGE_LOG", "converge=debug")
            .envs(env.iter().copied())
            .current_dir(sb.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("converge watch starts");
        let daemon = Daemon { child, log };
        daemon.wait_for("the first tick", Duration::from_secs(20), |l| {
            !daemon.ticks_in(l).is_empty()
        });
        daemon
    }

    pub(crate) fn lines(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The "tick" events among `lines`.
    fn ticks_in(&self, lines: &[serde_json::Value]) -> Vec<serde_json::Value> {
        lines
            .iter()
            .filter(|l| l["fields"]["message"] == "tick")
            .cloned()
            .collect()
    }

    pub(crate) fn ticks(&self) -> Vec<serde_json::Value> {
        self.ticks_in(&self.lines())
    }

    #[track_caller]
    pub(crate) fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Instant {
        let until = Instant::now() + timeout;
        loop {
            if done(&self.lines()) {
                return Instant::now();
            }
            assert!(
                Instant::now() < until,
                "no {what} within {timeout:?}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the process to exit; its exit code, or the signal as 128+n.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> i32 {
        use std::os::unix::process::ExitStatusExt;
        let until = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status
                    .code()
                    .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
            }
            assert!(
                Instant::now() < until,
                "converge watch did not exit within {timeout:?}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

pub(crate) fn repo(config_extra: &str) -> Sandbox {
    let sb = Sandbox::repo();
    sb.write("README.md", "watch test\n");
    sb.write("planning/goal.md", "React within a second.\n");
    sb.write(
        "planning/converge.toml",
        format!(
            "[reconcile]\ndefault_harness = \"sim\"\ndispatches_per_hour = 10000\nactions_per_tick = 4\n{config_extra}"
        ),
    );
    sb.commit_all("planning");
    sb
}

fn plan(sleep: &str) -> String {
    format!(
        "[plan]\nname = \"P\"\nstate = \"active\"\n\n[[tasks]]\nname = \"t\"\ndescription = \"T.\"\nscope = \"narrow\"\ngate = \"auto\"\nallow_unchecked = true\n[tasks.sim]\nsleep = \"{sleep}\"\nfiles = [{{ path = \"f.txt\", content = \"x\\n\" }}]\n"
    )
}

fn run_dir(sb: &Sandbox) -> PathBuf {
    sb.path().join(".git/converge/runs/p/t/1")
}

#[track_caller]
fn wait_path(path: &Path, timeout: Duration, daemon: &Daemon) -> Instant {
    let until = Instant::now() + timeout;
    while !path.exists() {
        assert!(
            Instant::now() < until,
            "{} did not appear within {timeout:?}; log:\n{}",
            path.display(),
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    Instant::now()
}

/// An "action" event whose text contains `word`.
fn acted(lines: &[serde_json::Value], word: &str) -> bool {
    lines.iter().any(|l| {
        l["fields"]["message"] == "action"
            && l["fields"]["done"]
                .as_str()
                .is_some_and(|d| d.contains(word))
    })
}

#[test]
fn a_committed_plan_is_dispatched_and_an_exit_gated_within_a_second() {
    let sb = repo("");
    let logs = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(&sb, logs.path());
    sb.write("planning/plans/p.toml", plan("1s"));
    sb.commit_all("plan");
    let committed = Instant::now();
    let dispatched = wait_path(&run_dir(&sb), Duration::from_secs(10), &daemon);
    let latency = dispatched - committed;
    eprintln!("commit to dispatch: {latency:?}");
    assert!(
        latency < Duration::from_secs(1),
        "dispatch took {latency:?}"
    );

    let exited = wait_path(
        &run_dir(&sb).join("exit.json"),
        Duration::from_secs(20),
        &daemon,
    );
    let gated = daemon.wait_for("gate", Duration::from_secs(10), |l| acted(l, "gate"));
    let latency = gated - exited;
    eprintln!("exit to gate: {latency:?}");
    assert!(latency < Duration::from_secs(1), "gate took {latency:?}");
}

#[test]
fn sigterm_after_a_dispatch_exits_0_and_leaves_the_agent_running() {
    let sb = repo("");
    let logs = tempfile::tempdir().expect("tempdir");
    let mut daemon = Daemon::start(&sb, logs.path());
    sb.write("planning/plans/p.toml", plan("3s"));
    sb.commit_all("plan");
    wait_path(
        &run_dir(&sb).join("lease.json"),
        Duration::from_secs(10),
        &daemon,
    );
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(10)), 0);
    let exit = run_dir(&sb).join("exit.json");
    assert!(!exit.exists(), "the agent is still running");
    let doctor = sb.converge(&["doctor"]);
    assert_eq!(doctor.code, 0, "doctor:\n{}", doctor.transcript());
    // The agent was not killed with the daemon: it finishes its work.
    let until = Instant::now() + Duration::from_secs(20);
    while !exit.exists() {
        assert!(Instant::now() < until, "the agent never exited");
        std::thread::sleep(Duration::from_millis(20));
    }
    let exit_record = std::fs::read_to_string(&exit).expect("exit record");
    assert!(exit_record.contains("\"exit_code\": 0"), "{exit_record}");
    let tick = sb.converge(&["reconcile", "--once"]);
    tick.success();
    assert!(tick.stdout.contains("gate"), "{}", tick.transcript());
}

#[test]
fn a_burst_of_commits_gives_a_bounded_number_of_ticks() {
    let sb = repo("");
    let logs = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(&sb, logs.path());
    let before = daemon.ticks().len();
    let mut command = Command::new("sh");
    isolate(&mut command, sb.home());
    let started = Instant::now();
    let status = command
        .args([
            "-c",
            "i=0; while [ $i -lt 200 ]; do git commit -q --allow-empty -m c$i || exit 1; i=$((i+1)); done",
        ])
        .current_dir(sb.path())
        .status()
        .expect("sh runs");
    assert!(status.success());
    let burst = started.elapsed();
    // Settle: the last commit is seen by a tick.
    std::thread::sleep(Duration::from_millis(1500));
    let ticks = daemon.ticks().len() - before;
    eprintln!("200 commits in {burst:?}: {ticks} ticks");
    assert!(ticks >= 1, "the burst was seen");
    // File events start at most one tick per 100 ms (and "again" ticks
    // follow those that acted): far fewer than one per commit.
    let bound = (burst.as_millis() as usize / 100 + 2) * 2 + 4;
    assert!(ticks <= bound.min(100), "{ticks} ticks for 200 commits");
}

#[test]
fn a_second_sigterm_aborts_a_long_tick_at_once() {
    // A merge invariant that sleeps makes the tick that merges a long one.
    let sb = repo(
        "\n[invariants.slow]\nkind = \"custom\"\ncommand = \"sleep\"\nargs = [\"8\"]\n\n[merge]\ninvariants = [\"slow\"]\n",
    );
    let logs = tempfile::tempdir().expect("tempdir");
    let mut daemon = Daemon::start(&sb, logs.path());
    sb.write("planning/plans/p.toml", plan("0s"));
    sb.commit_all("plan");
    daemon.wait_for("a merge under way", Duration::from_secs(20), |lines| {
        lines.iter().any(|l| {
            l["fields"]["message"] == "acting"
                && l["fields"]["action"]
                    .as_str()
                    .is_some_and(|a| a.contains("merge"))
        })
    });
    std::thread::sleep(Duration::from_millis(300));
    daemon.signal("TERM");
    daemon.wait_for("the stop notice", Duration::from_secs(5), |lines| {
        lines
            .iter()
            .any(|l| l["fields"]["signal"] == "SIGTERM" && l["fields"]["tick_running"] == true)
    });
    let second = Instant::now();
    daemon.signal("TERM");
    let code = daemon.wait_exit(Duration::from_secs(5));
    let took = second.elapsed();
    assert_eq!(code, 128 + 15, "log:\n{}", daemon.log_text());
    assert!(took < Duration::from_secs(1), "abort took {took:?}");
    // A later tick recovers from the abort like from a kill.
    let tick = sb.converge(&["doctor", "--fix"]);
    assert!(tick.code == 0 || tick.code == 1, "{}", tick.transcript());
}
