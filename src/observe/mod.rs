//! What converge sees on a tick. These are plain values: the code that fills them
//! from git, the run directories and the forge lives beside them (next), and
//! `decide` reads only these.

use std::collections::{BTreeMap, BTreeSet};

use crate::git::commit_id;
use crate::model::CommitId;
use crate::time::Timestamp;

pub mod change;
pub mod merges;
pub mod runs;

pub use change::{ChangeObs, ChangeState, Feedback, ForgeObs};

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
    /// The forge, as asked this tick.
    pub forge: ForgeObs,
    /// What the autonomy loop's planner attempts spent on their recorded UTC
    /// day (its record on the status branch): `[budget]` counts it with the
    /// tasks' attempts.
    pub planner_spend: PlannerSpend,
}

/// What the autonomy loop's planner attempts spent on one UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlannerSpend {
    /// Days since 1970-01-01.
    pub day: i64,
    /// In millionths of a dollar (so that observations compare exactly).
    pub micro_usd: u64,
    pub tokens: u64,
}

impl PlannerSpend {
    pub fn usd(&self) -> f64 {
        self.micro_usd as f64 / 1e6
    }
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
            forge: ForgeObs::Local,
            planner_spend: PlannerSpend::default(),
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
    /// The task is merged: a merge commit converge recorded for it (see
    /// [`merges`]) is in the base branch, `merged_as`.
    pub merged: bool,
    /// That merge commit: the one status records, checked, or the one found
    /// on the base branch's history when status records none.
    pub merged_as: Option<CommitId>,
    /// Status claims the task merged (its phase, or `merged_as`) and git does
    /// not back the claim: why.
    pub unbacked: Option<String>,
    /// A linked worktree exists for the task.
    pub worktree: bool,
    /// The newest run record of the task, if any.
    pub run: Option<RunObs>,
    /// Its change on the forge (a pull request), if it has one.
    pub change: Option<ChangeObs>,
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
/// processes and tokens), task branches, which tasks converge merged,
/// linked worktrees, and promoted queue items at `base`.
///
/// A task is merged only through a merge commit of converge's in the base
/// branch ([`merges`]): the one status records, when git backs it, or else
/// one found on the base's first-parent history (a crash after the merge lost
/// its status). Where a task branch points says nothing: an agent can move it.
pub fn observe(
    repo: &crate::git::Repo,
    status: &crate::status::Status,
    base: gix::ObjectId,
    secret: &crate::agent::Secret,
    events: &runs::EventCache,
) -> Result<Observation, ObserveError> {
    let mut obs = Observation {
        base_tip: commit_id(base)?,
        ..Observation::default()
    };
    let layout = crate::rundir::Layout::new(repo.common_dir());
    let mut forks: BTreeMap<TaskKey, CommitId> = BTreeMap::new();
    // The autonomy loop's planner attempts are its own (`runtime::autonomy`):
    // no plan's tasks, never cancelled or cleaned up as removed ones.
    let mut latest = crate::rundir::records::latest_attempts(&layout)?;
    latest.retain(|(key, _, _)| !key.is_planner());
    events.keep_only(latest.iter().map(|(_, _, d)| d.as_path()));
    for (key, attempt, dir) in latest {
        let record = runs::read_run_cached(&dir, &key, attempt, secret, events)?;
        if let Some(fork) = record.lease.as_ref().and_then(|l| l.fork) {
            forks.insert(key.clone(), fork);
        }
        obs.tasks.entry(key).or_default().run = Some(record.obs);
    }
    let branches: Vec<(TaskKey, gix::ObjectId)> = repo
        .branches_with_prefix("converge/")?
        .into_iter()
        .filter_map(|(branch, head)| key_of_branch(&branch).map(|k| (k, head)))
        .filter(|(key, _)| !key.is_planner())
        .collect();
    // A task that still has a branch: the fork noted when the branch last
    // moved wins over the lease's.
    for (key, _) in &branches {
        let lease = forks.get(key).copied();
        if let Some(fork) = crate::rundir::records::attempt_fork(&layout, key, lease) {
            forks.insert(key.clone(), fork);
        }
    }
    for (key, head) in branches {
        obs.tasks.entry(key).or_default().branch_head = Some(commit_id(head)?);
    }
    observe_merges(repo, status, base, &forks, &mut obs)?;
    for (_, branch) in repo.linked_worktrees()? {
        if let Some(key) = branch
            .as_deref()
            .and_then(key_of_branch)
            .filter(|k| !k.is_planner())
        {
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
            if key.is_planner() {
                continue;
            }
            obs.tasks.entry(key).or_default().worktree = true;
        }
    }
}

/// Fills `merged`, `merged_as` and `unbacked` of every task status knows.
/// Status's claims are checked against git (one history walk answers every
/// "is it in the base" question); tasks with an attempt and no backed merge
/// are searched for on the base's first-parent history, back to their fork.
fn observe_merges(
    repo: &crate::git::Repo,
    status: &crate::status::Status,
    base: gix::ObjectId,
    forks: &BTreeMap<TaskKey, CommitId>,
    obs: &mut Observation,
) -> Result<(), ObserveError> {
    let tasks: Vec<(TaskKey, &crate::status::TaskStatus)> = status
        .plans
        .iter()
        .flat_map(|(plan, p)| {
            p.tasks
                .iter()
                .map(move |(t, st)| (TaskKey::new(plan, t), st))
        })
        .collect();
    let claimed: BTreeSet<gix::ObjectId> = tasks
        .iter()
        .filter_map(|(_, st)| st.merged_as.map(Into::into))
        .collect();
    let in_base = repo.reachable_among(base, &claimed)?;
    let layout = crate::rundir::Layout::new(repo.common_dir());
    let mut sought = BTreeMap::new();
    // Tasks status says are merged without naming the commit.
    let mut unnamed = BTreeSet::new();
    for (key, st) in &tasks {
        let entry = obs.tasks.entry(key.clone()).or_default();
        if let Some(merged_as) = st.merged_as {
            let noted = crate::rundir::records::read_forge_merge(&layout, key).map(Into::into);
            match merges::verify(repo, key, merged_as.into(), &in_base, noted)? {
                Ok(()) => {
                    entry.merged = true;
                    entry.merged_as = Some(merged_as);
                    continue;
                }
                Err(why) => entry.unbacked = Some(why),
            }
        } else if st.phase == crate::status::Phase::Merged {
            unnamed.insert(key.clone());
            entry.unbacked = Some(format!(
                "status records {key} as merged, but no merge commit of converge's for it is in the base branch's last {} commits",
                merges::SEARCH_LIMIT
            ));
        }
        // Attempts status has not seen yet (a crash lost their status) may
        // have merged too.
        let newest = entry.run.as_ref().map_or(0, |r| r.attempt).max(st.attempt);
        if st.attempt >= 1 {
            sought.insert(
                key.clone(),
                merges::Sought {
                    attempts: st.attempt..=newest,
                    fork: forks.get(key).copied().map(Into::into),
                },
            );
        }
    }
    for (key, merge) in merges::search(repo, base, &sought)? {
        // A status that says merged without naming the commit is completed,
        // not corrected; one naming another commit is reported.
        let named_another = !unnamed.contains(&key);
        let entry = obs.tasks.entry(key).or_default();
        entry.merged = true;
        entry.merged_as = Some(commit_id(merge)?);
        if !named_another {
            entry.unbacked = None;
        }
    }
    Ok(())
}
