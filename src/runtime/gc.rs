//! `converge gc`: the retention of run records
//! (`<git-common-dir>/converge/runs/<plan>/<task>/<attempt>/`) and of kept
//! attempt heads (`refs/converge/attempts/<plan>/<task>/<n>`).
//!
//! Per task, an attempt is removed only when all of these hold: it is not
//! among the newest `[reconcile] keep_attempts`, it is not the attempt status
//! records as the task's current one, none of its processes is alive, and its
//! work (the kept head, if any) is merged into the base branch or contained in
//! the task branch or a newer kept head. Which attempts go is decided by
//! [`plan`], which does no IO.

use std::collections::BTreeMap;
use std::path::PathBuf;

use gix::ObjectId;

use crate::git::{GitError, Repo};
use crate::model::TaskKey;
use crate::rundir::procs::{process_alive, processes_of_run};
use crate::rundir::records::{read_lease, sorted_dirs};
use crate::rundir::{Layout, RunError};
use crate::status::Status;

/// Where kept attempt heads live.
pub const ATTEMPT_REFS: &str = "refs/converge/attempts/";

/// What is known of one attempt of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptFacts {
    pub number: u32,
    /// Its run directory, if it has one.
    pub run_dir: Option<PathBuf>,
    /// Its kept head (full ref name and commit), if it has one.
    pub kept: Option<(String, ObjectId)>,
    /// A process of the attempt (its supervisor or agent) is alive.
    pub running: bool,
    /// Its work is merged into the base branch or kept elsewhere (the task
    /// branch, a newer attempt's kept head); true when it kept no head.
    pub work_safe: bool,
}

/// Why an attempt stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Newest,
    Current,
    Running,
    Unmerged,
}

impl Keep {
    pub fn reason(self, keep_attempts: u32) -> String {
        match self {
            Keep::Newest => format!("among the newest {keep_attempts} (`keep_attempts`)"),
            Keep::Current => "the task's current attempt".into(),
            Keep::Running => "still running".into(),
            Keep::Unmerged => "its work is not merged or kept elsewhere".into(),
        }
    }
}

/// The verdict on one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub key: TaskKey,
    pub attempt: AttemptFacts,
    /// `None`: removed.
    pub keep: Option<Keep>,
}

/// Decides, per task, which attempts go. `current` is the attempt status
/// records for the task (0 if none). Pure.
pub fn plan(
    tasks: &BTreeMap<TaskKey, Vec<AttemptFacts>>,
    current: &dyn Fn(&TaskKey) -> u32,
    keep_attempts: u32,
) -> Vec<Verdict> {
    let mut out = Vec::new();
    for (key, attempts) in tasks {
        let mut attempts = attempts.clone();
        attempts.sort_by_key(|a| std::cmp::Reverse(a.number));
        let current = current(key);
        for (rank, attempt) in attempts.into_iter().enumerate() {
            let keep = if rank < keep_attempts.max(1) as usize {
                Some(Keep::Newest)
            } else if current > 0 && attempt.number >= current {
                Some(Keep::Current)
            } else if attempt.running {
                Some(Keep::Running)
            } else if !attempt.work_safe {
                Some(Keep::Unmerged)
            } else {
                None
            };
            out.push(Verdict {
                key: key.clone(),
                attempt,
                keep,
            });
        }
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("cannot remove {}", path.display())]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Gathers the facts of every attempt with a run directory or a kept head.
pub fn observe(
    repo: &Repo,
    base_tip: Option<ObjectId>,
) -> Result<BTreeMap<TaskKey, Vec<AttemptFacts>>, GcError> {
    let rundir = Layout::new(repo.common_dir());
    let mut found: BTreeMap<TaskKey, BTreeMap<u32, AttemptFacts>> = BTreeMap::new();
    let blank = |number| AttemptFacts {
        number,
        run_dir: None,
        kept: None,
        running: false,
        work_safe: true,
    };
    let root = rundir.runs();
    for plan in sorted_dirs(&root)? {
        for task in sorted_dirs(&root.join(&plan))? {
            let key = TaskKey::new(&plan, &task);
            for attempt in sorted_dirs(&rundir.task_runs(&key))? {
                let Ok(number) = attempt.parse::<u32>() else {
                    continue;
                };
                let dir = rundir.task_runs(&key).join(&attempt);
                let lease = read_lease(&dir).ok().flatten();
                let supervisor = lease
                    .as_ref()
                    .is_some_and(|l| process_alive(l.pid, l.start_ticks));
                let running = supervisor || !processes_of_run(&dir).is_empty();
                let facts = found
                    .entry(key.clone())
                    .or_default()
                    .entry(number)
                    .or_insert_with(|| blank(number));
                facts.run_dir = Some(dir);
                facts.running = running;
            }
        }
    }
    for (name, commit) in repo.refs_with_prefix(ATTEMPT_REFS)? {
        let rest = &name[ATTEMPT_REFS.len()..];
        let parts: Vec<&str> = rest.split('/').collect();
        let [plan, task, number] = parts.as_slice() else {
            continue;
        };
        let Ok(number) = number.parse::<u32>() else {
            continue;
        };
        let facts = found
            .entry(TaskKey::new(*plan, *task))
            .or_default()
            .entry(number)
            .or_insert_with(|| blank(number));
        facts.kept = Some((name.clone(), commit));
    }
    let mut out = BTreeMap::new();
    for (key, attempts) in found {
        let branch_tip = repo.branch_tip(&key.branch())?;
        let mut newer_kept: Vec<ObjectId> = Vec::new();
        let mut list = Vec::new();
        for (_, mut facts) in attempts.into_iter().rev() {
            if let Some((_, commit)) = &facts.kept {
                let mut safe = false;
                for tip in base_tip
                    .iter()
                    .chain(branch_tip.iter())
                    .chain(newer_kept.iter())
                {
                    if repo.is_ancestor(*commit, *tip)? {
                        safe = true;
                        break;
                    }
                }
                facts.work_safe = safe;
                newer_kept.push(*commit);
            }
            list.push(facts);
        }
        out.insert(key, list);
    }
    Ok(out)
}

/// Removes what `verdicts` let go; returns one line per removed attempt.
pub fn remove(repo: &Repo, verdicts: &[Verdict]) -> Result<Vec<String>, GcError> {
    let mut lines = Vec::new();
    for v in verdicts.iter().filter(|v| v.keep.is_none()) {
        if let Some((name, commit)) = &v.attempt.kept {
            repo.delete_ref(name, *commit)?;
        }
        if let Some(dir) = &v.attempt.run_dir {
            match std::fs::remove_dir_all(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(GcError::Remove {
                        path: dir.clone(),
                        source,
                    });
                }
            }
        }
        lines.push(describe(v));
    }
    Ok(lines)
}

/// `tidy/a attempt 1: run record, refs/converge/attempts/tidy/a/1`.
pub fn describe(v: &Verdict) -> String {
    let mut what = Vec::new();
    if v.attempt.run_dir.is_some() {
        what.push("run record".to_owned());
    }
    if let Some((name, _)) = &v.attempt.kept {
        what.push(name.clone());
    }
    format!(
        "{} attempt {}: {}",
        v.key,
        v.attempt.number,
        what.join(", ")
    )
}

/// The attempt status records for `key`.
pub fn current_attempt(status: &Status, key: &TaskKey) -> u32 {
    status.task(&key.plan, &key.task).map_or(0, |t| t.attempt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(number: u32, running: bool, work_safe: bool) -> AttemptFacts {
        AttemptFacts {
            number,
            run_dir: Some(PathBuf::from(format!("runs/p/t/{number}"))),
            kept: None,
            running,
            work_safe,
        }
    }

    fn verdicts(attempts: Vec<AttemptFacts>, current: u32, keep: u32) -> Vec<(u32, Option<Keep>)> {
        let mut tasks = BTreeMap::new();
        tasks.insert(TaskKey::new("p", "t"), attempts);
        plan(&tasks, &|_| current, keep)
            .into_iter()
            .map(|v| (v.attempt.number, v.keep))
            .collect()
    }

    #[test]
    fn keeps_the_newest_the_current_the_running_and_unmerged_work() {
        let attempts = vec![
            facts(1, false, true),
            facts(2, false, false),
            facts(3, true, true),
            facts(4, false, true),
            facts(5, false, true),
            facts(6, false, true),
        ];
        assert_eq!(
            verdicts(attempts, 6, 2),
            [
                (6, Some(Keep::Newest)),
                (5, Some(Keep::Newest)),
                (4, None),
                (3, Some(Keep::Running)),
                (2, Some(Keep::Unmerged)),
                (1, None),
            ]
        );
    }

    #[test]
    fn the_current_attempt_stays_even_when_newer_records_exist() {
        // Status says attempt 2 is current (records of 3 were left by a crash).
        let attempts = vec![
            facts(1, false, true),
            facts(2, false, true),
            facts(3, false, true),
        ];
        assert_eq!(
            verdicts(attempts, 2, 1),
            [(3, Some(Keep::Newest)), (2, Some(Keep::Current)), (1, None)]
        );
    }

    #[test]
    fn at_least_the_latest_attempt_stays() {
        let attempts = vec![facts(1, false, true), facts(2, false, true)];
        assert_eq!(
            verdicts(attempts, 0, 0),
            [(2, Some(Keep::Newest)), (1, None)]
        );
    }
}
