//! Running invariants: in a task's worktree for the gate and `converge check`,
//! and on a merge result before the base branch moves. What `converge check`'s
//! invariants change in the worktree is taken back ([`Snapshot`]), so that it
//! never becomes part of the attempt.

pub mod confine;
pub mod exec;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use gix::ObjectId;
use sha2::{Digest, Sha256};

use crate::agent::Redactor;
use crate::git::{GitError, PathState, Repo};
use crate::model::TaskKey;
use crate::rundir::Layout;
use crate::rundir::atomic::write_atomically;
use crate::spec::Invariant;
use crate::spec::duration;

use exec::{Ending, RunSpec};

/// Lines of output kept in status and fed to the next prompt.
pub const TAIL_LINES: usize = 30;

/// The result of one invariant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub passed: bool,
    pub advisory: bool,
    pub exit_code: Option<i32>,
    /// How it ended, for people: `exit code 1 (expected 0)`, `timed out after 5m`.
    pub ending: String,
    pub duration: Duration,
    /// The last [`TAIL_LINES`] lines of output.
    pub output_tail: String,
    /// Where the kept output was written, if anywhere.
    pub log: Option<PathBuf>,
    /// SHA-256 of that log.
    pub log_digest: String,
}

impl CheckResult {
    /// Whether this result fails a gate (advisory failures do not).
    pub fn blocks(&self) -> bool {
        !self.passed && !self.advisory
    }
}

impl CheckResult {
    /// The result as evidence in status, for the tree it ran on.
    pub fn evidence(&self, tree: ObjectId) -> crate::status::Evidence {
        crate::status::Evidence {
            passed: self.passed,
            exit_code: self.exit_code,
            advisory: self.advisory,
            duration_ms: u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX),
            tree: tree.to_string(),
            output_tail: self.output_tail.clone(),
            log_digest: self.log_digest.clone(),
        }
    }
}

/// Runs one invariant in `cwd`. The output (its last 64 KiB), with sensitive
/// values masked by `redactor`, is written to `log_dir/<name>.log` when a
/// directory is given. A program that cannot start is a failed check, not an
/// error: the gate must still decide.
pub fn run_check(
    invariant: &Invariant,
    cwd: &Path,
    log_dir: Option<&Path>,
    redactor: &Redactor,
) -> CheckResult {
    let spec = RunSpec {
        program: invariant.command.clone(),
        args: invariant.args.clone(),
        cwd: cwd.to_owned(),
        timeout: invariant.timeout,
        env: None,
    };
    check_with(invariant, &spec, log_dir, redactor)
}

/// [`run_check`] with the command line, directory and environment of `spec`
/// (the gate's confined runs: see [`confine`]).
fn check_with(
    invariant: &Invariant,
    spec: &RunSpec,
    log_dir: Option<&Path>,
    redactor: &Redactor,
) -> CheckResult {
    let outcome = exec::run(spec);
    let (passed, exit_code, ending, elapsed, output) = match outcome {
        Ok(outcome) => {
            let passed = outcome.ending == Ending::Exited(invariant.expected_exit_code);
            let (code, ending) = match &outcome.ending {
                Ending::Exited(code) => (
                    Some(*code),
                    format!(
                        "exit code {code} (expected {})",
                        invariant.expected_exit_code
                    ),
                ),
                Ending::Signaled(signal) => (None, format!("killed by signal {signal}")),
                Ending::TimedOut => (
                    None,
                    format!(
                        "timed out after {}; its process group was killed",
                        duration::format(invariant.timeout)
                    ),
                ),
            };
            (passed, code, ending, outcome.duration, outcome.output_tail)
        }
        Err(e) => {
            let text = error_chain(&e);
            (false, None, text.clone(), Duration::ZERO, text)
        }
    };
    let output = redactor.redact(&output).into_owned();
    let output_tail = exec::last_lines(&output, TAIL_LINES).join("\n");
    let log_digest = format!("{:x}", Sha256::digest(output.as_bytes()));
    let log = log_dir.and_then(|dir| {
        let path = crate::rundir::layout::invariant_log(dir, &invariant.name);
        std::fs::create_dir_all(dir).ok()?;
        write_atomically(&path, output.as_bytes()).ok()?;
        Some(path)
    });
    CheckResult {
        name: invariant.name.clone(),
        passed,
        advisory: invariant.advisory,
        exit_code,
        ending,
        duration: elapsed,
        output_tail,
        log,
        log_digest,
    }
}

/// The results of a gate, kept where agents cannot write
/// (`<git-common-dir>/converge/gates/`), so that a tick whose status commit
/// was deferred (the person's checkout had changes in `planning/STATUS.md`)
/// does not run the same invariants on the same commit again: the next tick
/// takes them from here. Keyed by task, attempt, the head gated and the
/// invariants as configured; anything else runs the gate afresh.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GateRecord {
    pub head: String,
    pub invariants: String,
    pub results: Vec<CheckResult>,
}

/// See [`Layout::gate_record`].
fn gate_record_path(common: &Path, plan: &str, task: &str, attempt: u32) -> PathBuf {
    Layout::new(common).gate_record(&TaskKey::new(plan, task), attempt)
}

/// What identifies the invariants a gate ran: their definitions, in order.
pub fn invariants_fingerprint(invariants: &[&Invariant]) -> String {
    let text = serde_json::to_string(invariants).unwrap_or_default();
    crate::agent::token::hex(&Sha256::digest(text.as_bytes()))
}

/// The results kept for this gate, if they were taken on `head` with the same
/// invariants.
pub fn kept_gate(
    common: &Path,
    plan: &str,
    task: &str,
    attempt: u32,
    head: &str,
    invariants: &str,
) -> Option<Vec<CheckResult>> {
    let bytes = std::fs::read(gate_record_path(common, plan, task, attempt)).ok()?;
    let record: GateRecord = serde_json::from_slice(&bytes).ok()?;
    (record.head == head && record.invariants == invariants).then_some(record.results)
}

/// Keeps a gate's results for the next tick.
pub fn keep_gate(
    common: &Path,
    plan: &str,
    task: &str,
    attempt: u32,
    record: &GateRecord,
) -> std::io::Result<()> {
    let path = gate_record_path(common, plan, task, attempt);
    let bytes = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    write_atomically(&path, &bytes)
}

/// Forgets every kept gate of a task (when its worktree is retired).
pub fn forget_gates(common: &Path, plan: &str, task: &str) {
    let _ = std::fs::remove_dir_all(Layout::new(common).task_gates(&TaskKey::new(plan, task)));
}

/// A worktree's changed paths as `converge check` found them before running
/// the invariants, so that it can take back whatever they change: a report,
/// an edited or deleted file. Only non-ignored paths count (ignored files,
/// such as build caches, are never swept into an attempt).
#[derive(Debug)]
pub struct Snapshot {
    head_tree: Option<ObjectId>,
    /// Every path that differed from HEAD, with what it held.
    touched: BTreeMap<String, PathState>,
}

/// A path the invariants changed, and whether its version was kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenBack {
    pub path: String,
    /// Where the version the invariants left was copied to, if it was a file.
    pub kept: Option<PathBuf>,
}

impl Snapshot {
    pub fn capture(repo: &Repo) -> Result<Snapshot, GitError> {
        let head_tree = match repo.head_commit()? {
            Some(commit) => Some(repo.tree_of(commit)?),
            None => None,
        };
        let mut touched = BTreeMap::new();
        for path in repo.touched_paths()? {
            let state = repo.save_state_on_disk(&path)?;
            touched.insert(path, state);
        }
        Ok(Snapshot { head_tree, touched })
    }

    /// Puts back every path whose state differs from the snapshot (what
    /// changed since, from any source: the caller runs invariants in the
    /// meantime, in the foreground). The version found is first copied below
    /// `keep` for the agent to read, if it is text, masked by `redactor` like
    /// every log converge writes.
    pub fn take_back(
        &self,
        repo: &Repo,
        keep: &Path,
        redactor: &Redactor,
    ) -> Result<Vec<TakenBack>, GitError> {
        let mut paths: BTreeSet<String> = repo.touched_paths()?.into_iter().collect();
        paths.extend(self.touched.keys().cloned());
        let root = repo.workdir()?.to_owned();
        let mut out = Vec::new();
        for path in paths {
            let before = match self.touched.get(&path) {
                Some(state) => state.clone(),
                None => repo.state_in_tree(self.head_tree, &path)?,
            };
            let now = repo.state_on_disk(&path)?;
            if now == before {
                continue;
            }
            let kept = matches!(now, PathState::File { .. })
                .then(|| keep_copy(&root.join(&path), &keep.join(&path), redactor))
                .flatten();
            repo.restore_path(&path, &before)?;
            out.push(TakenBack { path, kept });
        }
        Ok(out)
    }
}

/// Copies the text file `from` to `to` (replacing it) with sensitive values
/// masked, if it can. Other files are not copied: a mask could not be
/// applied to them.
fn keep_copy(from: &Path, to: &Path, redactor: &Redactor) -> Option<PathBuf> {
    let bytes = std::fs::read(from).ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    std::fs::create_dir_all(to.parent()?).ok()?;
    write_atomically(to, redactor.redact(text).as_bytes()).ok()?;
    Some(to.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::InvariantKind;

    fn invariant(command: &str, args: &[&str], advisory: bool) -> Invariant {
        Invariant {
            name: "t".into(),
            kind: InvariantKind::Custom,
            command: command.into(),
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            timeout: Duration::from_secs(10),
            expected_exit_code: 0,
            advisory,
        }
    }

    #[test]
    fn results_carry_the_verdict_tail_and_a_digest_of_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let failing = run_check(
            &invariant("sh", &["-c", "echo one; echo two; exit 3"], false),
            dir.path(),
            Some(&dir.path().join("logs")),
            &Redactor::default(),
        );
        assert!(!failing.passed && failing.blocks());
        assert_eq!(failing.exit_code, Some(3));
        assert_eq!(failing.output_tail, "one\ntwo");
        let log = std::fs::read(failing.log.as_ref().expect("log")).expect("read");
        assert_eq!(failing.log_digest, format!("{:x}", Sha256::digest(&log)));

        let advisory = run_check(
            &invariant("false", &[], true),
            dir.path(),
            None,
            &Redactor::default(),
        );
        assert!(!advisory.passed && !advisory.blocks());

        let missing = run_check(
            &invariant("/nonexistent/converge-check", &[], false),
            dir.path(),
            None,
            &Redactor::default(),
        );
        assert!(missing.blocks());
        assert!(
            missing.ending.contains("cannot start"),
            "{}",
            missing.ending
        );
    }

    #[test]
    fn sensitive_values_never_reach_the_log_or_the_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let redactor = Redactor::new(["sk-live-0123456789".to_owned()]);
        let result = run_check(
            &invariant("sh", &["-c", "echo key=sk-live-0123456789; exit 1"], false),
            dir.path(),
            Some(&dir.path().join("logs")),
            &redactor,
        );
        assert_eq!(result.output_tail, "key=[redacted]");
        let log = std::fs::read_to_string(result.log.as_ref().expect("log")).expect("read");
        assert_eq!(log, "key=[redacted]\n");
    }
}

#[cfg(test)]
mod gate_record_tests {
    use super::*;

    fn record(head: &str) -> GateRecord {
        GateRecord {
            head: head.into(),
            invariants: "fp".into(),
            results: Vec::new(),
        }
    }

    #[test]
    fn kept_gates_are_per_task_and_attempt_and_names_never_collide() {
        let dir = tempfile::tempdir().expect("dir");
        let common = dir.path();
        keep_gate(common, "a", "b--c", 1, &record("h1")).expect("keep");
        keep_gate(common, "a--b", "c", 1, &record("h2")).expect("keep");
        assert!(kept_gate(common, "a", "b--c", 1, "h1", "fp").is_some());
        assert!(kept_gate(common, "a--b", "c", 1, "h2", "fp").is_some());
        // Another head, other invariants or another attempt: not reused.
        assert!(kept_gate(common, "a", "b--c", 1, "h2", "fp").is_none());
        assert!(kept_gate(common, "a", "b--c", 1, "h1", "other").is_none());
        assert!(kept_gate(common, "a", "b--c", 2, "h1", "fp").is_none());
        forget_gates(common, "a", "b");
        forget_gates(common, "a", "b--c");
        assert!(kept_gate(common, "a", "b--c", 1, "h1", "fp").is_none());
        assert!(kept_gate(common, "a--b", "c", 1, "h2", "fp").is_some());
    }
}

/// An error and its causes on one line: `cannot start `x`: No such file`
/// (an invariant that cannot run, an action that failed).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}
