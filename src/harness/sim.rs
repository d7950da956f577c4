//! The built-in simulated agent (`harness = "sim"`): deterministic edits from
//! the task's `[tasks.sim]` table, for demos and tests. It behaves like a real
//! agent from converge's point of view: it runs detached in its worktree, sees
//! only its token, reports progress and `done` as events, and commits its work
//! (or leaves it for converge to commit).

use std::path::Path;

use crate::agent::{AgentEnv, AgentError};
use crate::git::{GitError, Repo};
use crate::spec::{Sim, SimEdit};

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("cannot write {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the simulated agent in `worktree`; returns its exit code.
pub fn run(worktree: &Path, env: &AgentEnv) -> Result<i32, SimError> {
    let brief = env.brief()?;
    if let Some(planner) = &brief.planner {
        // A planner attempt of the autonomy loop.
        println!("sim planner: {} (run {})", planner.kind, planner.run);
        let finished =
            super::sim_planner::run(worktree, planner).map_err(|source| SimError::Write {
                path: crate::rundir::records::PLANNER_OUT.to_owned(),
                source,
            })?;
        if !finished {
            return Ok(1);
        }
        env.emit(crate::model::EventKind::Done, None)?;
        return Ok(0);
    }
    let sim = brief.sim.clone().unwrap_or_else(|| Sim {
        files: Vec::new(),
        message: None,
        fail_attempts: 0,
        sleep: std::time::Duration::ZERO,
        exit_code: 0,
        done: true,
        commit: true,
    });
    let failing = brief.attempt <= sim.fail_attempts;
    println!("sim: {} attempt {}", brief.task, brief.attempt);
    if !sim.sleep.is_zero() {
        std::thread::sleep(sim.sleep);
    }
    if failing && sim.files.iter().all(|f| f.on_fail.is_none()) {
        env.emit(
            crate::model::EventKind::Progress,
            Some("failing on purpose (`fail_attempts`)"),
        )?;
        println!("sim: failing attempt {} on purpose", brief.attempt);
        return Ok(1);
    }
    for file in &sim.files {
        let path = worktree.join(&file.path);
        let write_err = |source| SimError::Write {
            path: file.path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(write_err)?;
        }
        match (
            &file.edit,
            failing.then_some(file.on_fail.as_ref()).flatten(),
        ) {
            (_, Some(broken)) => std::fs::write(&path, broken).map_err(write_err)?,
            (SimEdit::Content(text), None) => std::fs::write(&path, text).map_err(write_err)?,
            (SimEdit::Append(text), None) => {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(write_err)?;
                f.write_all(text.as_bytes()).map_err(write_err)?;
            }
            (SimEdit::Delete, None) => match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(write_err(e)),
            },
        }
        println!("sim: wrote {}", file.path);
        env.emit(
            crate::model::EventKind::Progress,
            Some(&format!("wrote {}", file.path)),
        )?;
    }
    if sim.commit {
        let message = sim
            .message
            .clone()
            .unwrap_or_else(|| format!("{}: simulated work", brief.task));
        let repo = Repo::open_task_worktree(worktree, &format!("converge/{}", brief.task))?;
        match repo.commit_leftovers(&message, &crate::git::Signer::Person)? {
            Some(commit) => println!("sim: committed {commit}"),
            None => println!("sim: nothing to commit"),
        }
    }
    if sim.done {
        env.emit(crate::model::EventKind::Done, None)?;
        println!("sim: done");
    }
    Ok(sim.exit_code)
}
