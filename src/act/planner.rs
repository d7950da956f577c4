//! Planner attempts of the autonomy loop (`runtime::autonomy`; docs/autonomy.md):
//! started like a task's attempt (a branch at the base tip, a private
//! worktree, a run under its supervisor, the sandbox when enabled) as task
//! `_autonomy/<kind>-<n>`, which no plan can name. A planner changes nothing
//! anyone keeps: it leaves its output under [`PLANNER_OUT`] in its worktree,
//! converge copies it into the run directory (`<run>/out/`), reads it there
//! with every check an untrusted file gets, and removes the worktree and the
//! branch. What it proposes reaches the base branch only through converge's
//! own validated commits.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::agent::Secret;
use crate::git::{GitError, Repo};
use crate::harness::stream::Summary;
use crate::model::{PLANNER_PLAN, TaskKey};
use crate::observe::RunState;
use crate::rundir::records::{Brief, PLANNER_OUT, PlannerBrief};
use crate::rundir::{Layout, RunError, layout};
use crate::spec::{HarnessKind, Spec};
use crate::time::Timestamp;

use super::dispatch::{self, Attempt, DispatchError};

/// A planner output file is at most this long.
pub const MAX_OUTPUT_BYTES: u64 = 64 * 1024;

/// The files each kind of planner attempt may leave.
pub fn allowed_outputs(kind: &str) -> &'static [&'static str] {
    match kind {
        "gap-analysis" => &["item.md", "goal-met.md"],
        "capability-update" => &["capabilities.md"],
        _ => &["review.md", "item.md"],
    }
}

/// The planner task of run `run`.
pub fn key(prefix: &str, run: u32) -> TaskKey {
    TaskKey::new(PLANNER_PLAN, format!("{prefix}-{run}"))
}

#[derive(Debug, thiserror::Error)]
pub enum PlannerError {
    #[error("the planner's harness `{0}` is not declared")]
    UnknownHarness(String),
    #[error("the planner's harness cannot start here: {0}")]
    Launch(String),
    #[error(transparent)]
    Dispatch(#[from] DispatchError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    WorktreeRoot(#[from] dispatch::WorktreeRootError),
}

/// Where a planner attempt runs from.
#[allow(missing_debug_implementations)] // holds a closure
pub struct Start<'a> {
    pub repo: &'a Repo,
    pub spec: &'a Spec,
    pub secret: &'a Secret,
    pub converge: &'a Path,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub now: Timestamp,
    pub base_tip: gix::ObjectId,
}

/// Starts planner attempt `key` (adopting one a crash left started).
pub fn start(
    s: &Start<'_>,
    key: &TaskKey,
    brief: PlannerBrief,
    prompt: &str,
) -> Result<dispatch::Started, PlannerError> {
    let config = &s.spec.config;
    let name = config
        .autonomy
        .harness
        .clone()
        .unwrap_or_else(|| config.reconcile.default_harness.clone());
    let harness = config
        .harnesses
        .get(&name)
        .ok_or_else(|| PlannerError::UnknownHarness(name.clone()))?;
    let root = dispatch::worktree_root(
        s.repo.common_dir(),
        config.reconcile.worktree_root.as_deref(),
    )?;
    let run = Layout::new(s.repo.common_dir()).run(key, 1);
    let task = key.to_string();
    let launch = crate::harness::launch(
        harness,
        &crate::harness::LaunchInput {
            prompt_file: &layout::prompt(&run),
            prompt,
            worktree: &layout::worktree(&root, key),
            task: &task,
            converge: s.converge,
            model: config.autonomy.model.as_deref(),
            invariants: Vec::new(),
            confined: config.sandbox.enabled,
        },
    )
    .map_err(|e| PlannerError::Launch(e.to_string()))?;
    if harness.kind.streams()
        && !crate::harness::env::program_exists(&launch.program, (s.env)("PATH").as_deref())
    {
        return Err(PlannerError::Launch(format!(
            "the `{}` CLI is not installed here (not found on PATH)",
            launch.program
        )));
    }
    let extra = super::start::harness_extra_env(harness, s.env, &run, &[])?;
    let brief = Brief {
        task,
        attempt: 1,
        invariants: Vec::new(),
        sim: None,
        planner: Some(brief),
    };
    Ok(dispatch::dispatch(
        s.repo,
        s.secret,
        &Attempt {
            key,
            attempt: 1,
            fork: s.base_tip,
            launch,
            env: crate::harness::env::with_converge_on_path(
                crate::harness::agent_env(config, s.env, &extra),
                s.converge,
            ),
            prompt: prompt.to_owned(),
            deadline: s.now.plus(config.reconcile.task_timeout),
            generation: "autonomy".into(),
            harness: name,
            brief: serde_json::to_vec_pretty(&brief).unwrap_or_default(),
            sandbox: config.sandbox.enabled.then_some(config.sandbox.required),
            signer: config.reconcile.signer(s.env),
            worktree_root: root,
        },
        s.converge,
    )?)
}

/// What a planner attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadBack {
    /// Its agent still works.
    Running,
    /// Its run directory has no lease and no exit record: the dispatch was
    /// cut short (a crash) and nothing runs.
    NotStarted,
    Ended(Box<Ended>),
}

/// A planner attempt that ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    /// It called `converge done`.
    pub done: bool,
    pub exit_code: Option<i32>,
    /// The files it left (name, text), each checked ([`read_outputs`]).
    pub files: Vec<(String, String)>,
    /// Why its output was refused as a whole, if it was.
    pub refused: Option<String>,
    /// Its stream's summary: cost, a rate limit, an error.
    pub summary: Summary,
    /// The last lines of its log, for the history.
    pub tail: String,
}

/// Reads planner attempt `key` back: its run, and once it ended, its output
/// (copied into `<run>/out/`) and what its stream said.
pub fn read_back(
    repo: &Repo,
    spec: &Spec,
    secret: &Secret,
    key: &TaskKey,
    kind: &str,
    now: Timestamp,
) -> Result<ReadBack, PlannerError> {
    let run = Layout::new(repo.common_dir()).run(key, 1);
    if !layout::lease(&run).exists() && !layout::exit(&run).exists() {
        return Ok(ReadBack::NotStarted);
    }
    let record = crate::observe::runs::read_run(&run, key, 1, secret)?;
    let (done, exit_code) = match record.obs.state {
        RunState::Running { deadline } if now <= deadline => return Ok(ReadBack::Running),
        // Past its deadline and still alive (its supervisor gone, or a
        // process that outlived it): killed, and read back as it is.
        RunState::Running { .. } => {
            crate::rundir::procs::kill_run(&run)?;
            crate::rundir::procs::write_exit(&run, now, true)?;
            (false, None)
        }
        RunState::Exited { done, exit_code } => (done, exit_code),
        RunState::Vanished => (false, None),
    };
    let root = dispatch::worktree_root(
        repo.common_dir(),
        spec.config.reconcile.worktree_root.as_deref(),
    )?;
    let worktree = layout::worktree(&root, key);
    let out = run.join("out");
    // What is read is the run directory's copy: a step repeated after the
    // worktree was removed (a crash before the record) reads it again.
    let (files, refused) = match copy_outputs(&worktree.join(PLANNER_OUT), &out, kind) {
        Ok(()) => match read_outputs(&out, kind) {
            Ok(files) => (files, None),
            Err(why) => (Vec::new(), Some(why)),
        },
        Err(why) => (Vec::new(), Some(why)),
    };
    let log = std::fs::read(layout::agent_log(&run)).unwrap_or_default();
    let log = String::from_utf8_lossy(&log);
    let harness = record.lease.as_ref().map(|l| l.harness.clone());
    let kind_of_harness = harness
        .as_deref()
        .and_then(|h| spec.config.harnesses.get(h))
        .map(|h| h.kind);
    // The sim planner reports as Claude Code does (`harness::sim_planner`).
    let stream_kind = match kind_of_harness {
        Some(HarnessKind::Sim) | None => HarnessKind::ClaudeCode,
        Some(other) => other,
    };
    let summary = crate::harness::stream::summarize(stream_kind, now, &log);
    let tail: Vec<&str> = log.lines().rev().take(5).collect();
    let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
    Ok(ReadBack::Ended(Box::new(Ended {
        done,
        exit_code,
        files,
        refused,
        summary,
        tail,
    })))
}

/// Copies the planner's output directory `from` (in its worktree, which the
/// agent controls) into `to` (in its run directory), refusing links, other
/// files and oversized ones. A missing directory copies nothing.
pub fn copy_outputs(from: &Path, to: &Path, kind: &str) -> Result<(), String> {
    let shown = format!("{PLANNER_OUT}/");
    let meta = match std::fs::symlink_metadata(from) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot read {shown}: {e}")),
    };
    if !meta.is_dir() {
        return Err(format!("{shown} is not a directory"));
    }
    let allowed = allowed_outputs(kind);
    let entries = std::fs::read_dir(from).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mut found: Vec<(String, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {shown}: {e}"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Looked at before anything opens it: a named pipe would block the
        // open, a link would lead elsewhere.
        let plain = entry.file_type().is_ok_and(|t| t.is_file());
        if !plain {
            return Err(format!("{shown}{name} is not a plain file"));
        }
        if !allowed.contains(&name.as_str()) {
            return Err(format!(
                "{shown}{name} is not an output a {kind} may leave (only {})",
                allowed.join(", ")
            ));
        }
        found.push((name, entry.path()));
    }
    std::fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    for (name, path) in found {
        let text = read_untrusted(&path).map_err(|why| format!("{shown}{name} {why}"))?;
        crate::rundir::atomic::write_atomically(&to.join(&name), &text)
            .map_err(|e| format!("cannot keep {name} in the run directory: {e}"))?;
    }
    Ok(())
}

/// The outputs kept in `out` (a run directory's, written by converge), as text.
pub fn read_outputs(out: &Path, kind: &str) -> Result<Vec<(String, String)>, String> {
    let mut files = Vec::new();
    for name in allowed_outputs(kind) {
        let path = out.join(name);
        if !path.exists() {
            continue;
        }
        let bytes = read_untrusted(&path).map_err(|why| format!("{name} {why}"))?;
        let text = String::from_utf8(bytes).map_err(|_| format!("{name} is not UTF-8"))?;
        if text.contains('\0') {
            return Err(format!("{name} holds a NUL byte"));
        }
        files.push(((*name).to_owned(), text));
    }
    Ok(files)
}

/// A regular file's bytes, opened without following a link, at most
/// [`MAX_OUTPUT_BYTES`]. The error says why, after the file's name.
fn read_untrusted(path: &Path) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32)
        .open(path)
        .map_err(|e| format!("cannot be read as a plain file ({e})"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot be read ({e})"))?;
    if !meta.is_file() {
        return Err("is not a plain file".into());
    }
    if meta.len() > MAX_OUTPUT_BYTES {
        return Err(format!(
            "is {} bytes, over the {MAX_OUTPUT_BYTES} a planner output may be",
            meta.len()
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_OUTPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot be read ({e})"))?;
    if bytes.len() as u64 > MAX_OUTPUT_BYTES {
        return Err(format!(
            "is over the {MAX_OUTPUT_BYTES} bytes a planner output may be"
        ));
    }
    Ok(bytes)
}

/// Notes that planner attempt `key` was read back into the loop's record, so
/// that a record started over never reads it again ([`on_disk`]).
pub fn mark_harvested(repo: &Repo, key: &TaskKey) -> Result<(), PlannerError> {
    let run = Layout::new(repo.common_dir()).run(key, 1);
    crate::rundir::records::write_file(&run.join(HARVESTED), b"")?;
    Ok(())
}

/// The marker of a planner attempt read back.
const HARVESTED: &str = "harvested";

/// The planner attempts on disk, as (kind prefix, run number, read back).
pub fn on_disk(repo: &Repo) -> Vec<(String, u32, bool)> {
    let layout = Layout::new(repo.common_dir());
    let dir = layout.runs().join(PLANNER_PLAN);
    let mut out = Vec::new();
    for name in crate::rundir::records::sorted_dirs(&dir).unwrap_or_default() {
        let Some((prefix, n)) = name.rsplit_once('-') else {
            continue;
        };
        let Ok(n) = n.parse::<u32>() else {
            continue;
        };
        let run = layout.run(&key(prefix, n), 1);
        out.push((prefix.to_owned(), n, run.join(HARVESTED).exists()));
    }
    out
}

/// The brief planner attempt `key` was started with.
pub fn brief_of(repo: &Repo, key: &TaskKey) -> Option<PlannerBrief> {
    let run = Layout::new(repo.common_dir()).run(key, 1);
    Brief::read(&run).ok()?.planner
}

/// Removes planner attempt `key`'s worktree and branch (its output is in
/// its run directory). Nothing of a planner is work to keep: it changes no
/// file anyone merges.
pub fn clean_up(repo: &Repo, spec: &Spec, key: &TaskKey) -> Result<(), PlannerError> {
    let run = Layout::new(repo.common_dir()).run(key, 1);
    crate::rundir::procs::kill_stragglers(&run);
    let root = dispatch::worktree_root(
        repo.common_dir(),
        spec.config.reconcile.worktree_root.as_deref(),
    )?;
    repo.remove_checkout(&layout::worktree(&root, key))?;
    let branch = key.branch();
    if let Some(tip) = repo.branch_tip(&branch)? {
        repo.delete_branch(&branch, tip)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_copied_only_when_plain_small_and_expected() {
        let dir = tempfile::tempdir().expect("dir");
        let from = dir.path().join("wt").join(PLANNER_OUT);
        let to = dir.path().join("run/out");
        // Nothing left: nothing copied.
        assert_eq!(copy_outputs(&from, &to, "gap-analysis"), Ok(()));
        assert_eq!(read_outputs(&to, "gap-analysis"), Ok(Vec::new()));
        std::fs::create_dir_all(&from).expect("mkdir");
        std::fs::write(from.join("item.md"), "an item").expect("write");
        assert_eq!(copy_outputs(&from, &to, "gap-analysis"), Ok(()));
        assert_eq!(
            read_outputs(&to, "gap-analysis"),
            Ok(vec![("item.md".to_owned(), "an item".to_owned())])
        );
        // A capability update may leave only capabilities.md.
        let err = copy_outputs(&from, &to, "capability-update").expect_err("refused");
        assert!(err.contains("item.md is not an output"), "{err}");
        // A link to a secret is not followed.
        std::fs::remove_file(from.join("item.md")).expect("rm");
        std::os::unix::fs::symlink("/etc/passwd", from.join("item.md")).expect("link");
        let err = copy_outputs(&from, &to, "gap-analysis").expect_err("refused");
        assert!(err.contains("plain file"), "{err}");
        std::fs::remove_file(from.join("item.md")).expect("rm");
        std::fs::write(from.join("item.md"), vec![b'x'; 70 * 1024]).expect("write");
        let err = copy_outputs(&from, &to, "gap-analysis").expect_err("refused");
        assert!(err.contains("over the 65536"), "{err}");
        // The output directory itself a link: refused.
        let other = dir.path().join("wt2");
        std::fs::create_dir_all(&other).expect("mkdir");
        std::os::unix::fs::symlink(dir.path(), other.join(PLANNER_OUT)).expect("link");
        let err = copy_outputs(&other.join(PLANNER_OUT), &to, "gap-analysis").expect_err("refused");
        assert!(err.contains("not a directory"), "{err}");
    }
}
