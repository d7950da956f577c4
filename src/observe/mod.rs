//! What converge sees on a tick. These are plain values: the code that fills them
//! from git, the run directories and the forge lives beside them (next), and
//! `decide` reads only these.

use std::collections::{BTreeMap, BTreeSet};

use crate::git::commit_id;
use crate::model::CommitId;
use crate::time::Timestamp;

pub mod runs;

pub use crate::model::TaskKey;

/// Everything observed on one tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The tip of the base branch.
    pub base_tip: CommitId,
    /// What exists for each task that has anything (a branch, a worktree, a run).
    pub tasks: BTreeMap<TaskKey, TaskObs>,
    /// Queue items already promoted (found under `planning/queue/done/`).
    pub promoted: BTreeSet<String>,
    /// This reconciler's id when reconcilers share a remote and own their
    /// attempts through claims in status; `None` on a single repository, where
    /// the file lock is all the coordination there is.
    pub reconciler: Option<String>,
    /// Whether Landlock works here; probed only when `[sandbox] enabled`.
    pub sandbox: Option<Availability>,
}

/// Whether the kernel enforces the Landlock sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    Available { abi: String },
    Unavailable { reason: String },
}

/// An empty observation (tests and tools start from it): nothing exists, and
/// the base tip is git's null id until set.
impl Default for Observation {
    fn default() -> Self {
        Observation {
            base_tip: CommitId::from_bytes([0; 20]),
            tasks: BTreeMap::new(),
            promoted: BTreeSet::new(),
            reconciler: None,
            sandbox: None,
        }
    }
}

impl Observation {
    pub fn task(&self, key: &TaskKey) -> Option<&TaskObs> {
        self.tasks.get(key)
    }

    /// Runs whose agent is alive.
    pub fn running(&self) -> usize {
        self.tasks
            .values()
            .filter(|t| {
                matches!(
                    t.run,
                    Some(RunObs {
                        state: RunState::Running { .. },
                        ..
                    })
                )
            })
            .count()
    }
}

/// What exists for one task.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskObs {
    /// The head of `converge/<plan>/<task>`, if the branch exists.
    pub branch_head: Option<CommitId>,
    /// The task's work is on the base branch: its branch head, or the commit
    /// status recorded as its merge, is an ancestor of the base tip.
    pub merged: bool,
    /// A linked worktree exists for the task.
    pub worktree: bool,
    /// The newest run record of the task, if any.
    pub run: Option<RunObs>,
}

/// A run record under `<git-common-dir>/converge/runs/<plan>/<task>/<attempt>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunObs {
    pub attempt: u32,
    pub state: RunState,
    /// The spec generation the attempt was started for (from its lease), if
    /// known: what tells a superseded attempt, also when status lags behind
    /// the runs after a crash.
    pub generation: Option<String>,
    /// Events whose token did not verify for this attempt: ignored, and reported.
    pub rejected_events: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    /// The agent's process (from its lease) is alive.
    Running { deadline: Timestamp },
    /// The agent exited; `done` says whether it called `converge done`.
    Exited { done: bool, exit_code: Option<i32> },
    /// The lease names a process that is gone, and no exit was recorded.
    Vanished,
}

/// Parses `converge/<plan>/<task>` into a task key.
pub fn key_of_branch(branch: &str) -> Option<TaskKey> {
    let rest = branch.strip_prefix("converge/")?;
    let (plan, task) = rest.split_once('/')?;
    if plan.is_empty() || task.is_empty() || task.contains('/') {
        return None;
    }
    Some(TaskKey::new(plan, task))
}

#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
    #[error(transparent)]
    Run(#[from] runs::RunError),
}

/// Observes everything `decide` needs: run records (checked against live
/// processes and tokens), task branches and whether their work is on the base
/// branch, linked worktrees, and promoted queue items at `base`.
///
/// A task's work counts as merged when the commit status recorded as its merge
/// is in the base branch, or when its branch has moved past the commit it was
/// forked from and that head is in the base branch. A branch still at its fork
/// point (dispatched, no work yet), or behind it (a crash between noting a new
/// attempt's fork and moving the branch), is not merged even though it is an
/// ancestor.
pub fn observe(
    repo: &crate::git::Repo,
    status: &crate::status::Status,
    base: gix::ObjectId,
    secret: &crate::agent::Secret,
) -> Result<Observation, ObserveError> {
    let mut obs = Observation {
        base_tip: commit_id(base)?,
        ..Observation::default()
    };
    let layout = crate::rundir::Layout::new(repo.common_dir());
    let mut forks: BTreeMap<TaskKey, gix::ObjectId> = BTreeMap::new();
    for (key, attempt, dir) in crate::rundir::records::latest_attempts(&layout)? {
        let record = runs::read_run(&dir, &key, attempt, secret)?;
        // The lease is the run directory's record: its fork is still hex text.
        if let Some(fork) = record.lease.as_ref().and_then(|l| parse_oid(&l.fork)) {
            forks.insert(key.clone(), fork);
        }
        obs.tasks.entry(key).or_default().run = Some(record.obs);
    }
    // One walk answers every "is this in the base branch" question of the tick.
    let branches: Vec<(TaskKey, gix::ObjectId)> = repo
        .branches_with_prefix("converge/")?
        .into_iter()
        .filter_map(|(branch, head)| key_of_branch(&branch).map(|k| (k, head)))
        .collect();
    let recorded: Vec<(TaskKey, gix::ObjectId)> = status
        .plans
        .iter()
        .flat_map(|(plan, p)| {
            p.tasks.iter().filter_map(move |(task, t)| {
                let merged_as = t.merged_as?;
                Some((TaskKey::new(plan, task), merged_as.into()))
            })
        })
        .collect();
    // The fork noted when the branch last moved wins over the lease's: it is
    // written first, so it is right even when a crash kept the lease from being
    // written.
    for (key, _) in &branches {
        if let Some(fork) =
            crate::rundir::records::read_fork(&layout, key).and_then(|f| parse_oid(&f))
        {
            forks.insert(key.clone(), fork);
        }
    }
    // A branch has moved past its fork when it holds commits the fork does
    // not: a head behind the fork is a branch a crash caught between noting a
    // new attempt's fork and moving the branch there (the previous attempt's
    // head, with no work of its own, is in the base but was never merged).
    let mut moved: BTreeSet<TaskKey> = BTreeSet::new();
    for (key, head) in &branches {
        if let Some(fork) = forks.get(key)
            && fork != head
            && !repo.is_ancestor(*head, *fork)?
        {
            moved.insert(key.clone());
        }
    }
    let mut candidates = BTreeSet::new();
    for (key, head) in &branches {
        if moved.contains(key) {
            candidates.insert(*head);
        }
    }
    candidates.extend(recorded.iter().map(|(_, id)| *id));
    let in_base = repo.reachable_among(base, &candidates)?;
    for (key, head) in branches {
        let merged = moved.contains(&key) && in_base.contains(&head);
        let entry = obs.tasks.entry(key).or_default();
        entry.branch_head = Some(commit_id(head)?);
        entry.merged |= merged;
    }
    for (key, merged_as) in recorded {
        if in_base.contains(&merged_as) {
            obs.tasks.entry(key).or_default().merged = true;
        }
    }
    for (_, branch) in repo.linked_worktrees()? {
        if let Some(key) = branch.as_deref().and_then(key_of_branch) {
            obs.tasks.entry(key).or_default().worktree = true;
        }
    }
    obs.promoted = repo
        .list_dir_at(base, "planning/queue/done")?
        .into_iter()
        .filter_map(|name| name.strip_suffix(".md").map(str::to_owned))
        .collect();
    Ok(obs)
}

/// Notes the agents' private worktrees under `root` (`<root>/<plan>/<task>`
/// with a `.git` directory, see [`crate::git::private`]) as the tasks'
/// worktrees, beside the linked worktrees [`observe`] found.
pub fn note_private_worktrees(obs: &mut Observation, root: &std::path::Path) {
    let Ok(plans) = std::fs::read_dir(root) else {
        return;
    };
    for plan in plans.filter_map(Result::ok) {
        let Ok(tasks) = std::fs::read_dir(plan.path()) else {
            continue;
        };
        for task in tasks.filter_map(Result::ok) {
            if !crate::git::private::is_private(&task.path()) {
                continue;
            }
            let (plan, task) = (plan.file_name(), task.file_name());
            let key = TaskKey::new(&*plan.to_string_lossy(), &*task.to_string_lossy());
            obs.tasks.entry(key).or_default().worktree = true;
        }
    }
}

/// A fork the run directory recorded as text (the lease, the fork note):
/// anything but a commit id is no fork.
fn parse_oid(hex: &str) -> Option<gix::ObjectId> {
    hex.parse::<CommitId>().ok().map(gix::ObjectId::from)
}
