//! Running a command with a deadline: argv only (no shell), in its own process
//! group so that a timeout kills everything it started, with stdout and stderr
//! merged into one stream of which only a bounded tail is kept.

use std::collections::VecDeque;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// At most this many bytes of output are kept (the end of it).
pub const TAIL_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct RunSpec {
    pub program: String,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    pub timeout: Duration,
    /// The command's whole environment; `None` inherits converge's.
    pub env: Option<Vec<(String, String)>>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Exited with this code.
    Exited(i32),
    /// Killed by this signal (not by converge).
    Signaled(i32),
    /// Still running at the deadline; its process group was killed.
    TimedOut,
}

#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub ending: Ending,
    pub duration: Duration,
    /// The last [`TAIL_BYTES`] of combined output, lossily decoded.
    pub output_tail: String,
    /// Total bytes of output, including what was dropped from the tail.
    pub output_bytes: u64,
}

impl RunOutcome {
    /// The last `lines` lines of output.
    pub fn last_lines(&self, lines: usize) -> Vec<&str> {
        last_lines(&self.output_tail, lines)
    }
}

/// The last `lines` lines of `text`.
pub fn last_lines(text: &str, lines: usize) -> Vec<&str> {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].to_vec()
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("cannot start `{program}`")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot wait for `{program}`")]
    Wait {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the command to completion or until its timeout.
pub fn run(spec: &RunSpec) -> Result<RunOutcome, ExecError> {
    let spawn_err = |source| ExecError::Spawn {
        program: spec.program.clone(),
        source,
    };
    let (reader, writer) = std::io::pipe().map_err(spawn_err)?;
    let writer_err = writer.try_clone().map_err(spawn_err)?;
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .current_dir(&spec.cwd)
        // What the command runs may be the agent's code: never the secret.
        .env_remove(crate::agent::token::SECRET_ENV)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer_err)
        .process_group(0);
    if let Some(env) = &spec.env {
        command.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
    }
    let started = Instant::now();
    let mut child = command.spawn().map_err(spawn_err)?;
    // The command holds the only write ends now; drop ours so EOF arrives when it exits.
    drop(command);
    let collector = std::thread::spawn(move || collect_tail(reader));
    let deadline = started + spec.timeout;
    let wait_err = |source| ExecError::Wait {
        program: spec.program.clone(),
        source,
    };
    // Polled, from 1 ms doubling to 20 ms: a quick command (most invariants
    // of a small change) is seen ending within a millisecond or two, a long
    // one costs 50 wakeups a second.
    let mut pause = Duration::from_millis(1);
    let ending = loop {
        if let Some(status) = child.try_wait().map_err(wait_err)? {
            break match (status.code(), status.signal()) {
                (Some(code), _) => Ending::Exited(code),
                (None, Some(signal)) => Ending::Signaled(signal),
                (None, None) => Ending::Exited(-1),
            };
        }
        if Instant::now() >= deadline {
            kill_group(child.id());
            let _ = child.wait();
            break Ending::TimedOut;
        }
        std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    let duration = started.elapsed();
    // Children of the command that are still alive keep the pipe open; end them too.
    kill_group(child.id());
    let (output_tail, output_bytes) = collector.join().unwrap_or_default();
    Ok(RunOutcome {
        ending,
        duration,
        output_tail,
        output_bytes,
    })
}

fn kill_group(pid: u32) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        // The group may be gone already; that is the goal, not an error.
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

fn collect_tail(mut reader: std::io::PipeReader) -> (String, u64) {
    let mut tail: VecDeque<u8> = VecDeque::with_capacity(TAIL_BYTES);
    let mut total = 0u64;
    let mut buffer = [0u8; 8192];
    loop {
        match reader.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                total += n as u64;
                tail.extend(&buffer[..n]);
                let excess = tail.len().saturating_sub(TAIL_BYTES);
                tail.drain(..excess);
            }
        }
    }
    let bytes: Vec<u8> = tail.into();
    (String::from_utf8_lossy(&bytes).into_owned(), total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration) -> RunOutcome {
        run(&RunSpec {
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            cwd: std::env::temp_dir(),
            timeout,
            env: None,
        })
        .expect("sh runs")
    }

    #[test]
    fn captures_exit_code_and_merged_output() {
        let outcome = sh("echo out; echo err >&2; exit 3", Duration::from_secs(10));
        assert_eq!(outcome.ending, Ending::Exited(3));
        assert!(outcome.output_tail.contains("out\n") && outcome.output_tail.contains("err\n"));
    }

    #[test]
    fn timeout_kills_the_whole_process_group() {
        let started = Instant::now();
        let outcome = sh(
            "sleep 30 & sleep 30; echo never",
            Duration::from_millis(300),
        );
        assert_eq!(outcome.ending, Ending::TimedOut);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "background child kept the pipe open"
        );
        assert!(!outcome.output_tail.contains("never"));
    }

    #[test]
    fn keeps_only_the_tail_of_floods() {
        let outcome = sh(
            "head -c 1000000 /dev/zero | tr '\\0' x; echo END",
            Duration::from_secs(20),
        );
        assert_eq!(outcome.output_bytes, 1_000_004);
        assert_eq!(outcome.output_tail.len(), TAIL_BYTES);
        assert!(outcome.output_tail.ends_with("END\n"));
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let result = run(&RunSpec {
            program: "/nonexistent/converge-test".into(),
            args: vec![],
            cwd: std::env::temp_dir(),
            timeout: Duration::from_secs(1),
            env: None,
        });
        assert!(matches!(result, Err(ExecError::Spawn { .. })));
    }
}
