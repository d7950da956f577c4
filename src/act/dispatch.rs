//! Dispatch (and retry): start an attempt of a task.
//!
//! Idempotent at every step, so re-running it after a crash anywhere converges:
//!
//! 1. The task branch `converge/<plan>/<task>` is created at the fork commit
//!    (the current base tip) by compare-and-swap, or adopted if already there.
//!    On a later attempt the previous head is kept as
//!    `refs/converge/attempts/<plan>/<task>/<n>` before the branch moves, so no
//!    attempt's work is lost.
//! 2. A fresh linked worktree is checked out at
//!    `<checkout>/.converge/worktrees/<plan>/<task>` (see [`worktree_root`]),
//!    or adopted.
//! 3. The prompt is written and the run is started under its supervisor, or an
//!    existing lease for this attempt is adopted.

use std::path::{Path, PathBuf};

use gix::ObjectId;

use crate::agent::Secret;
use crate::git::{GitError, Repo};
use crate::harness::Launch;
use crate::model::TaskKey;
use crate::rundir::records::{self, create_dir, write_file};
use crate::rundir::{Layout, RunError, layout};
use crate::time::Timestamp;

use super::run::{RunPlan, SuperviseError, start};

/// Everything one attempt needs.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    pub key: &'a TaskKey,
    pub attempt: u32,
    /// The base tip the branch starts from.
    pub fork: ObjectId,
    pub launch: Launch,
    /// The agent's environment, without converge's per-attempt variables.
    pub env: Vec<(String, String)>,
    pub prompt: String,
    pub deadline: Timestamp,
    pub generation: String,
    pub harness: String,
    /// `brief.json` for the agent-mode commands.
    pub brief: Vec<u8>,
    /// Run the agent under the Landlock sandbox; `Some(true)`: refuse to run
    /// it unconfined.
    pub sandbox: Option<bool>,
    /// Who converge's own commits (leftovers of an earlier attempt) are written as.
    pub signer: crate::git::Signer,
    /// Where task worktrees live (see [`worktree_root`]).
    pub worktree_root: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub run_dir: PathBuf,
    pub worktree: PathBuf,
    /// Whether an existing run of this attempt was adopted instead of started.
    pub adopted: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Supervise(#[from] SuperviseError),
    #[error("cannot check out {branch} at {}", path.display())]
    Worktree {
        branch: String,
        path: PathBuf,
        #[source]
        source: gix::Error,
    },
    #[error("cannot find the converge executable to supervise the run")]
    Exe(#[source] std::io::Error),
}

/// `[reconcile] worktree_root` names a directory converge cannot use.
#[derive(Debug, thiserror::Error)]
#[error("`worktree_root` in [reconcile] is {}, {reason}", root.display())]
pub struct WorktreeRootError {
    pub root: PathBuf,
    pub reason: &'static str,
}

/// Where task worktrees live: `configured` (`[reconcile] worktree_root`,
/// relative to the checkout, or to the directory holding a bare repository,
/// or absolute), else [`Layout::default_worktree_root`]. A root inside the git
/// directory or inside `planning/` is refused (the config layer refuses the
/// relative ones with a located diagnostic; this catches absolute ones).
pub fn worktree_root(
    common_dir: &Path,
    configured: Option<&str>,
) -> Result<PathBuf, WorktreeRootError> {
    let Some(configured) = configured else {
        return Ok(Layout::new(common_dir).default_worktree_root());
    };
    let base = layout::checkout_of(common_dir)
        .or_else(|| common_dir.parent())
        .unwrap_or(common_dir);
    let root = normalize(&base.join(configured));
    let refuse = |reason| {
        Err(WorktreeRootError {
            root: root.clone(),
            reason,
        })
    };
    if root.starts_with(normalize(common_dir)) {
        return refuse("inside the git directory, where agent CLIs cannot edit files");
    }
    if let Some(checkout) = layout::checkout_of(common_dir) {
        let checkout = normalize(checkout);
        if root.starts_with(checkout.join("planning")) {
            return refuse("inside planning/, which agents must not change");
        }
        if checkout.starts_with(&root) {
            return refuse("the checkout or a directory holding it");
        }
    }
    Ok(root)
}

/// `path` with `.` and `..` components resolved lexically.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Where `key`'s work is checked out now, if anywhere: a linked worktree of
/// an earlier converge version on its branch, else the private worktree its
/// newest run started in (its run plan, converge's record, says where), so
/// that a change of `worktree_root` since then does not lose it.
pub fn checkout_of(repo: &Repo, key: &TaskKey) -> Result<Option<PathBuf>, GitError> {
    let branch = key.branch();
    let linked = repo
        .linked_worktrees()?
        .into_iter()
        .find(|(_, b)| b.as_deref() == Some(branch.as_str()))
        .map(|(path, _)| path);
    if linked.is_some() {
        return Ok(linked);
    }
    let layout = Layout::new(repo.common_dir());
    let Ok(entries) = std::fs::read_dir(layout.task_runs(key)) else {
        return Ok(None);
    };
    let mut attempts: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    attempts.sort_unstable();
    for attempt in attempts.into_iter().rev() {
        let run = layout.run(key, attempt);
        if !layout::run_plan(&run).exists() {
            continue;
        }
        let cwd = super::run::read_plan(&run).ok().map(|plan| plan.cwd);
        return Ok(cwd.filter(|cwd| crate::git::private::is_private(cwd)));
    }
    Ok(None)
}

/// Lists `root` (as `/<path>/`) in `<git-common-dir>/info/exclude` when task
/// worktrees live in the checkout, so that `git status` and `git add -A` there
/// do not see them; the default root is listed as `/.converge/`. Idempotent;
/// leaves every other line of the file as it was.
pub fn exclude_worktree_root(common_dir: &Path, root: &Path) -> Result<(), GitError> {
    let Some(checkout) = layout::checkout_of(common_dir) else {
        return Ok(());
    };
    let pattern = if root == Layout::new(common_dir).default_worktree_root() {
        layout::DEFAULT_ROOT_EXCLUDE.to_owned()
    } else {
        let root = normalize(root);
        let Ok(relative) = root.strip_prefix(normalize(checkout)) else {
            return Ok(());
        };
        let relative: Vec<String> = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        format!("/{}/", relative.join("/"))
    };
    let info = common_dir.join("info");
    let path = info.join("exclude");
    let io = |source| GitError::Io {
        path: path.clone(),
        source,
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(e)),
    };
    let bare = pattern.trim_matches('/');
    if text.lines().any(|l| {
        let l = l.trim();
        l == pattern || l.trim_start_matches('/').trim_end_matches('/') == bare
    }) {
        return Ok(());
    }
    std::fs::create_dir_all(&info).map_err(|source| GitError::Io {
        path: info.clone(),
        source,
    })?;
    let mut text = text;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!(
        "# converge: task worktrees (see docs/agent-protocol.md)\n{pattern}\n"
    ));
    crate::rundir::atomic::write_atomically(&path, text.as_bytes()).map_err(io)
}

/// Starts (or adopts) one attempt.
pub fn dispatch(
    repo: &Repo,
    secret: &Secret,
    attempt: &Attempt<'_>,
    converge: &Path,
) -> Result<Started, DispatchError> {
    let key = attempt.key;
    let common = repo.common_dir().to_owned();
    let rundir = Layout::new(&common);
    let run = rundir.run(key, attempt.attempt);
    let worktree = layout::worktree(&attempt.worktree_root, key);
    if layout::lease(&run).exists() {
        // This attempt already started; a crash hit after the lease was written.
        return Ok(Started {
            run_dir: run,
            worktree,
            adopted: true,
        });
    }
    let branch = key.branch();
    // An earlier version's agent (in a linked worktree) killed while it
    // committed leaves the branch's lock behind; with none of the earlier
    // attempt's processes alive, nobody else holds it.
    let earlier = rundir.run(key, attempt.attempt.saturating_sub(1));
    if crate::rundir::procs::processes_of_run(&earlier).is_empty() {
        repo.clear_ref_lock(&branch)?;
    }
    // Whatever an earlier attempt left in its worktree goes onto the branch
    // first (imported from its private repository), so that keeping the
    // branch's head keeps it too. The branch may still be checked out where
    // earlier versions kept linked worktrees. A repository the agent tampered
    // with, or whose objects are forged, gives nothing: its gate said so.
    let current = checkout_of(repo, key)?.unwrap_or_else(|| worktree.clone());
    let message = format!(
        "converge: leftovers of {key} before attempt {}",
        attempt.attempt
    );
    super::import::import_or_set_aside(
        repo,
        key,
        attempt.attempt.saturating_sub(1),
        &current,
        &message,
        &attempt.signer,
    )?;
    if !crate::git::same_path(&current, &worktree) {
        repo.remove_checkout(&current)?;
    }
    exclude_worktree_root(&common, &attempt.worktree_root)?;
    prepare_branch(repo, key, &branch, attempt.attempt, attempt.fork)?;
    crate::crash::point("after-branch");
    // Always a fresh checkout: a worktree left by a crash may show another
    // commit than the branch (the branch moved without it).
    prepare_worktree(repo, &branch, attempt.fork, &worktree)?;

    create_dir(&run)?;
    let prompt_file = layout::prompt(&run);
    write_file(&prompt_file, attempt.prompt.as_bytes())?;
    write_file(&layout::brief(&run), &attempt.brief)?;
    let token = secret.mint(&key.plan, &key.task, attempt.attempt);
    let mut env = attempt.env.clone();
    env.extend([
        ("CONVERGE_AGENT_TOKEN".to_owned(), token),
        (
            "CONVERGE_RUN_DIR".to_owned(),
            run.to_string_lossy().into_owned(),
        ),
        ("CONVERGE_TASK".to_owned(), key.to_string()),
        (
            "CONVERGE_PROMPT_FILE".to_owned(),
            prompt_file.to_string_lossy().into_owned(),
        ),
    ]);
    let sandbox = match attempt.sandbox {
        None => None,
        Some(required) => {
            // What the agent may write must exist before it starts; its
            // temporary directory is private (/tmp may hold other checkouts).
            for path in super::sandbox::agent_writable(&run) {
                if path == layout::events(&run) {
                    write_file(&path, b"")?;
                } else {
                    create_dir(&path)?;
                }
            }
            let tmp = layout::tmp(&run);
            env.retain(|(k, _)| k != "TMPDIR");
            env.push(("TMPDIR".to_owned(), tmp.to_string_lossy().into_owned()));
            Some(super::sandbox::Policy::for_attempt(
                &common, &worktree, &run, required,
            ))
        }
    };
    let plan = RunPlan {
        sandbox,
        program: attempt.launch.program.clone(),
        args: attempt.launch.args.clone(),
        cwd: worktree.clone(),
        env,
        secret_env: Vec::new(),
        deadline: attempt.deadline,
        fork: Some(crate::git::commit_id(attempt.fork)?),
        generation: attempt.generation.clone(),
        harness: attempt.harness.clone(),
    };
    start(&run, &plan, converge)?;
    Ok(Started {
        run_dir: run,
        worktree,
        adopted: false,
    })
}

/// Puts the task branch at `fork`, keeping an earlier attempt's head.
fn prepare_branch(
    repo: &Repo,
    key: &TaskKey,
    branch: &str,
    attempt: u32,
    fork: ObjectId,
) -> Result<(), DispatchError> {
    // Note the fork before the branch moves (see `Layout::fork_marker`).
    records::write_fork(
        &Layout::new(repo.common_dir()),
        key,
        crate::git::commit_id(fork)?,
    )?;
    match repo.branch_tip(branch)? {
        None => {
            repo.create_ref(&format!("refs/heads/{branch}"), fork, "converge: dispatch")?;
            Ok(())
        }
        Some(head) if head == fork => Ok(()),
        Some(head) => {
            // An earlier attempt's work: keep it reachable, then start over.
            keep_attempt(repo, key, attempt.saturating_sub(1), head)?;
            repo.compare_and_swap(branch, head, fork, "converge: retry from the base tip")?;
            Ok(())
        }
    }
}

/// Keeps `head`, an attempt's work, reachable as
/// `refs/converge/attempts/<plan>/<task>/<attempt>` (once: an existing ref is
/// left as it is).
pub fn keep_attempt(
    repo: &Repo,
    key: &TaskKey,
    attempt: u32,
    head: ObjectId,
) -> Result<(), GitError> {
    let keep = format!("refs/converge/attempts/{}/{}/{attempt}", key.plan, key.task);
    if repo.ref_target(&keep)?.is_none() {
        repo.create_ref(&keep, head, "converge: keep an attempt's work")?;
    }
    Ok(())
}

/// A fresh private repository at `path` (see [`crate::git::private`]) with
/// `branch` at `fork` checked out.
fn prepare_worktree(
    repo: &Repo,
    branch: &str,
    fork: ObjectId,
    path: &Path,
) -> Result<(), DispatchError> {
    repo.remove_checkout(path)?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| GitError::Io {
            path: parent.to_owned(),
            source,
        })?;
    }
    let _noted = crate::git::intent::note(
        repo.common_dir(),
        &crate::git::intent::Intent::Worktree(path.to_owned()),
    );
    repo.create_private(path, branch, fork)
        .map_err(|source| match source {
            GitError::Write { source, .. } => DispatchError::Worktree {
                branch: branch.to_owned(),
                path: path.to_owned(),
                source,
            },
            other => DispatchError::Git(other),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worktree_root_is_resolved_against_the_checkout_and_refused_in_git_or_planning() {
        let common = Path::new("/p/repo/.git");
        let root = |c: Option<&str>| worktree_root(common, c).map_err(|e| e.reason);
        assert_eq!(
            root(None).ok(),
            Some(PathBuf::from("/p/repo/.converge/worktrees"))
        );
        assert_eq!(root(Some("wt")).ok(), Some(PathBuf::from("/p/repo/wt")));
        assert_eq!(root(Some("../trees")).ok(), Some(PathBuf::from("/p/trees")));
        assert_eq!(
            root(Some("/elsewhere")).ok(),
            Some(PathBuf::from("/elsewhere"))
        );
        for bad in [
            "/p/repo/.git/wt",
            "../repo/planning/x",
            "/p/repo",
            "/p",
            ".",
        ] {
            assert!(root(Some(bad)).is_err(), "{bad}");
        }
        // A bare repository: relative to the directory that holds it.
        let bare = Path::new("/p/repo.git");
        assert_eq!(
            worktree_root(bare, Some("wt")).ok(),
            Some(PathBuf::from("/p/wt"))
        );
        assert!(worktree_root(bare, Some("repo.git/wt")).is_err());
    }
}
