//! Agent mode: what `converge` offers a running agent, identified by the
//! `CONVERGE_AGENT_TOKEN` in its environment.
//!
//! Dispatch writes a brief (`brief.json`) into the run directory with what the
//! agent's commands need: the task, the attempt, its invariants, and the `sim`
//! script. Commands append events to `events.jsonl` in the run directory, each
//! carrying the token; the reconciler verifies every token when it reads them,
//! so a forged or misdirected event is ignored (and counted), never trusted.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::observe::runs::Event;
use crate::spec::{Invariant, Sim};
use crate::time::Timestamp;

pub const TOKEN_ENV: &str = "CONVERGE_AGENT_TOKEN";
pub const RUN_DIR_ENV: &str = "CONVERGE_RUN_DIR";
pub const TASK_ENV: &str = "CONVERGE_TASK";
pub const PROMPT_ENV: &str = "CONVERGE_PROMPT_FILE";

/// What an agent's commands know about its attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Brief {
    /// `plan/task`.
    pub task: String,
    pub attempt: u32,
    /// The task's invariants, as the base branch defines them.
    pub invariants: Vec<Invariant>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim: Option<Sim>,
}

impl Brief {
    pub const FILE: &'static str = "brief.json";

    pub fn read(run_dir: &Path) -> Result<Brief, AgentError> {
        let path = run_dir.join(Self::FILE);
        let bytes = std::fs::read(&path).map_err(|source| AgentError::Read {
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| AgentError::BadBrief {
            path,
            message: e.to_string(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("`{name}` is not set; agent commands run only inside a converge attempt")]
    NotInAttempt { name: &'static str },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a valid brief: {message}", path.display())]
    BadBrief { path: PathBuf, message: String },
    #[error("cannot record the event in {}", path.display())]
    Event {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The agent's side of an attempt, from its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentEnv {
    pub token: String,
    pub run_dir: PathBuf,
    pub prompt_file: Option<PathBuf>,
}

impl AgentEnv {
    /// Whether converge runs in agent mode (a token is set).
    pub fn active(from: &dyn Fn(&str) -> Option<String>) -> bool {
        from(TOKEN_ENV).is_some_and(|t| !t.is_empty())
    }

    pub fn from_env(from: &dyn Fn(&str) -> Option<String>) -> Result<AgentEnv, AgentError> {
        let get = |name: &'static str| {
            from(name)
                .filter(|v| !v.is_empty())
                .ok_or(AgentError::NotInAttempt { name })
        };
        Ok(AgentEnv {
            token: get(TOKEN_ENV)?,
            run_dir: PathBuf::from(get(RUN_DIR_ENV)?),
            prompt_file: from(PROMPT_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        })
    }

    /// Appends one event. Each line is written with a single `write` on a file
    /// opened for appending, so concurrent writers do not interleave lines.
    pub fn emit(&self, kind: &str, message: Option<&str>) -> Result<(), AgentError> {
        let path = self.run_dir.join("events.jsonl");
        let event = Event {
            kind: kind.to_owned(),
            token: self.token.clone(),
            message: message.map(str::to_owned),
            at: Some(Timestamp::now()),
        };
        let mut line = serde_json::to_vec(&event).unwrap_or_default();
        line.push(b'\n');
        let err = |source| AgentError::Event {
            path: path.clone(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(err)?;
        file.write_all(&line).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::Secret;
    use crate::observe::TaskKey;
    use crate::observe::runs::read_run;

    #[test]
    fn events_carry_the_token_and_only_a_valid_one_counts_as_done() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = Secret::from_bytes(vec![7; 32]);
        let key = TaskKey::new("auth", "login");
        let forged = AgentEnv {
            token: Secret::from_bytes(vec![8; 32]).mint("auth", "login", 1),
            run_dir: dir.path().to_owned(),
            prompt_file: None,
        };
        forged.emit("done", None).expect("emit");
        let record = read_run(dir.path(), &key, 1, &secret).expect("read");
        assert_eq!(record.obs.rejected_events, 1);

        let agent = AgentEnv {
            token: secret.mint("auth", "login", 1),
            ..forged
        };
        agent.emit("progress", Some("half way")).expect("emit");
        agent.emit("done", None).expect("emit");
        std::fs::write(
            dir.path().join("exit.json"),
            r#"{"exit_code":0,"signal":null,"ended_at":"2026-01-01T00:00:00Z"}"#,
        )
        .expect("exit");
        let record = read_run(dir.path(), &key, 1, &secret).expect("read");
        assert_eq!(
            record.obs.state,
            crate::observe::RunState::Exited {
                done: true,
                exit_code: Some(0)
            }
        );
        assert_eq!(record.obs.rejected_events, 1);
    }

    #[test]
    fn agent_mode_needs_a_token_and_a_run_directory() {
        let none = |_: &str| None;
        assert!(!AgentEnv::active(&none));
        let only_token = |n: &str| (n == TOKEN_ENV).then(|| "cvg1.x".to_owned());
        assert!(AgentEnv::active(&only_token));
        let err = AgentEnv::from_env(&only_token).expect_err("no run dir");
        assert!(err.to_string().contains(RUN_DIR_ENV), "{err}");
    }
}
