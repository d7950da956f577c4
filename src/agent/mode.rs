//! Agent mode: what `converge` offers a running agent, identified by the
//! `CONVERGE_AGENT_TOKEN` in its environment.
//!
//! Dispatch writes a brief (`brief.json`) into the run directory with what the
//! agent's commands need: the task, the attempt, its invariants, and the `sim`
//! script. Commands append events to `events.jsonl` in the run directory, each
//! carrying the token; the reconciler verifies every token when it reads them,
//! so a forged or misdirected event is ignored (and counted), never trusted.

use crate::model::EventKind;
use std::path::PathBuf;

use crate::rundir::RunError;
use crate::rundir::records::{self, Brief, Event};
use crate::time::Timestamp;

pub const TOKEN_ENV: &str = "CONVERGE_AGENT_TOKEN";
pub const RUN_DIR_ENV: &str = "CONVERGE_RUN_DIR";
pub const TASK_ENV: &str = "CONVERGE_TASK";
pub const PROMPT_ENV: &str = "CONVERGE_PROMPT_FILE";

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("`{name}` is not set; agent commands run only inside a converge attempt")]
    NotInAttempt { name: &'static str },
    /// The brief cannot be read, or the event cannot be recorded.
    #[error(transparent)]
    Record(#[from] RunError),
    #[error("CONVERGE_AGENT_TOKEN is not a converge token")]
    BadToken,
    #[error("this token is for {token_for}, but the run directory is for {run}")]
    WrongAttempt { token_for: String, run: String },
    #[error("attempt {attempt} of {task} is over; its events are no longer accepted")]
    AttemptOver { task: String, attempt: u32 },
    #[error("cannot read the run record in {}", path.display())]
    Run {
        path: PathBuf,
        #[source]
        source: RunError,
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

    /// Checks what an agent can check without the secret: the token names the
    /// task and attempt of this run directory, and the attempt is not over.
    /// (Whether the token is genuine only the reconciler can tell: it verifies
    /// every event's token and ignores, and reports, those that fail.)
    pub fn check_attempt(&self) -> Result<Brief, AgentError> {
        let token = crate::agent::Token::parse(&self.token).map_err(|_| AgentError::BadToken)?;
        let brief = self.brief()?;
        let token_for = format!("{}/{}", token.plan, token.task);
        if token_for != brief.task || token.attempt != brief.attempt {
            return Err(AgentError::WrongAttempt {
                token_for: format!("{token_for} attempt {}", token.attempt),
                run: format!("{} attempt {}", brief.task, brief.attempt),
            });
        }
        let exit = records::read_exit(&self.run_dir).map_err(|source| AgentError::Run {
            path: self.run_dir.clone(),
            source,
        })?;
        if exit.is_some() {
            return Err(AgentError::AttemptOver {
                task: brief.task,
                attempt: brief.attempt,
            });
        }
        Ok(brief)
    }

    /// Appends one event, after [`AgentEnv::check_attempt`] (see
    /// [`records::append_event`]).
    pub fn emit(&self, kind: EventKind, message: Option<&str>) -> Result<(), AgentError> {
        self.check_attempt()?;
        self.append(kind, message)
    }

    fn append(&self, kind: EventKind, message: Option<&str>) -> Result<(), AgentError> {
        let event = Event {
            kind: kind.as_str().to_owned(),
            token: self.token.clone(),
            message: message.map(str::to_owned),
            at: Some(Timestamp::now()),
        };
        Ok(records::append_event(&self.run_dir, &event)?)
    }

    /// The brief of this attempt (what dispatch wrote for its commands).
    pub fn brief(&self) -> Result<Brief, AgentError> {
        Ok(Brief::read(&self.run_dir)?)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::agent::Secret;
    use crate::model::TaskKey;
    use crate::observe::runs::read_run;
    use crate::rundir::layout;

    fn write_brief(dir: &Path, task: &str, attempt: u32) {
        let brief = Brief {
            task: task.to_owned(),
            attempt,
            invariants: Vec::new(),
            sim: None,
            planner: None,
        };
        std::fs::write(
            layout::brief(dir),
            serde_json::to_vec(&brief).expect("json"),
        )
        .expect("brief");
    }

    #[test]
    fn events_carry_the_token_and_only_a_valid_one_counts_as_done() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_brief(dir.path(), "auth/login", 1);
        let secret = Secret::from_bytes(vec![7; 32]);
        let key = TaskKey::new("auth", "login");
        let forged = AgentEnv {
            token: Secret::from_bytes(vec![8; 32]).mint("auth", "login", 1),
            run_dir: dir.path().to_owned(),
            prompt_file: None,
        };
        forged.emit(EventKind::Done, None).expect("emit");
        let record = read_run(dir.path(), &key, 1, &secret).expect("read");
        assert_eq!(record.obs.rejected_events, 1);

        let agent = AgentEnv {
            token: secret.mint("auth", "login", 1),
            ..forged
        };
        agent
            .emit(EventKind::Progress, Some("half way"))
            .expect("emit");
        agent.emit(EventKind::Done, None).expect("emit");
        std::fs::write(
            layout::exit(dir.path()),
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
    fn tokens_of_another_task_or_attempt_or_of_a_finished_attempt_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_brief(dir.path(), "auth/login", 2);
        let secret = Secret::from_bytes(vec![7; 32]);
        let with = |token: String| AgentEnv {
            token,
            run_dir: dir.path().to_owned(),
            prompt_file: None,
        };
        let other_task = with(secret.mint("auth", "logout", 2))
            .emit(EventKind::Done, None)
            .expect_err("another task");
        assert_eq!(
            other_task.to_string(),
            "this token is for auth/logout attempt 2, but the run directory is for auth/login attempt 2"
        );
        let old_attempt = with(secret.mint("auth", "login", 1))
            .emit(EventKind::Done, None)
            .expect_err("another attempt");
        assert!(
            old_attempt.to_string().contains("auth/login attempt 1"),
            "{old_attempt}"
        );
        let garbage = with("let me in".into())
            .emit(EventKind::Done, None)
            .expect_err("garbage");
        assert_eq!(
            garbage.to_string(),
            "CONVERGE_AGENT_TOKEN is not a converge token"
        );
        let current = with(secret.mint("auth", "login", 2));
        current
            .emit(EventKind::Progress, Some("working"))
            .expect("accepted");
        std::fs::write(
            layout::exit(dir.path()),
            r#"{"exit_code":0,"signal":null,"ended_at":"2026-01-01T00:00:00Z"}"#,
        )
        .expect("exit");
        let over = current.emit(EventKind::Done, None).expect_err("finished");
        assert_eq!(
            over.to_string(),
            "attempt 2 of auth/login is over; its events are no longer accepted"
        );
        // Nothing refused reached the events file.
        let events = std::fs::read_to_string(layout::events(dir.path())).expect("events");
        assert_eq!(events.lines().count(), 1, "{events}");
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
