//! What converge sees on a tick. These are plain values: the code that fills them
//! from git, the run directories and the forge lives beside them (next), and
//! `decide` reads only these.

use std::collections::{BTreeMap, BTreeSet};

use crate::time::Timestamp;

/// A task, by plan id and task name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskKey {
    pub plan: String,
    pub task: String,
}

impl TaskKey {
    pub fn new(plan: impl Into<String>, task: impl Into<String>) -> Self {
        TaskKey {
            plan: plan.into(),
            task: task.into(),
        }
    }

    /// The task branch: `converge/<plan>/<task>`.
    pub fn branch(&self) -> String {
        format!("converge/{}/{}", self.plan, self.task)
    }
}

impl std::fmt::Display for TaskKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.plan, self.task)
    }
}

/// Everything observed on one tick.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observation {
    /// The tip of the base branch.
    pub base_tip: String,
    /// What exists for each task that has anything (a branch, a worktree, a run).
    pub tasks: BTreeMap<TaskKey, TaskObs>,
    /// Queue items already promoted (found under `planning/queue/done/`).
    pub promoted: BTreeSet<String>,
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
    pub branch_head: Option<String>,
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
