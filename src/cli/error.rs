//! The one error type of the command line: a message, an optional hint, the cause
//! chain, and the exit code class. Exit codes are documented in docs/cli.md.

use std::fmt;

use crate::intent::IntentError;
use crate::runtime::autonomy::hand::HandError;
use crate::runtime::{LockError, LoopError, TickError};
use crate::spec::edit::EditError;
use crate::status::record::RecordError;

/// Exit codes. Stable: scripts and CI jobs branch on them.
pub mod exit {
    /// Success; for checks, everything passed.
    pub const OK: u8 = 0;
    /// The command ran and the outcome is a failure (an invariant failed), or an
    /// operation failed (git, I/O).
    pub const FAILURE: u8 = 1;
    /// Bad input: invalid planning files, bad arguments, a refused edit.
    pub const BAD_INPUT: u8 = 2;
    /// Busy or deferred: another reconciler holds the lock, or a dirty worktree
    /// made converge wait. Retrying later is the right response.
    pub const BUSY: u8 = 3;
}

/// Which class of failure, deciding the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Failure,
    BadInput,
    Busy,
    /// A specific exit code (the simulated agent's `exit_code`).
    Exit(u8),
}

impl Kind {
    pub fn exit_code(self) -> u8 {
        match self {
            Kind::Failure => exit::FAILURE,
            Kind::BadInput => exit::BAD_INPUT,
            Kind::Busy => exit::BUSY,
            Kind::Exit(code) => code,
        }
    }
}

#[derive(Debug)]
pub struct CliError {
    pub kind: Kind,
    pub message: String,
    pub hint: Option<String>,
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
    /// The error was already reported in full (e.g. as diagnostics); print nothing more.
    pub reported: bool,
}

pub type CliResult<T = ()> = Result<T, CliError>;

impl CliError {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        CliError {
            kind,
            message: message.into(),
            hint: None,
            source: None,
            reported: false,
        }
    }

    pub fn failure(message: impl Into<String>) -> Self {
        Self::new(Kind::Failure, message)
    }

    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::new(Kind::BadInput, message)
    }

    /// An error whose details were already printed; only the exit code remains.
    pub fn reported(kind: Kind) -> Self {
        CliError {
            reported: true,
            ..Self::new(kind, String::new())
        }
    }

    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    #[must_use]
    pub fn source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }
}

impl CliError {
    /// The error as JSON, for commands asked for JSON output (`--json`,
    /// `--format json`): `{"error": {message, causes, hint, exit_code}}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut causes = Vec::new();
        let mut cause: Option<&(dyn std::error::Error + 'static)> =
            self.source.as_deref().map(|e| e as _);
        let mut previous = self.message.clone();
        while let Some(error) = cause {
            let text = error.to_string();
            if !text.is_empty() && !previous.contains(&text) {
                causes.push(text.clone());
            }
            previous = text;
            cause = error.source();
        }
        serde_json::json!({
            "error": {
                "message": self.message,
                "causes": causes,
                "hint": self.hint,
                "exit_code": self.kind.exit_code(),
            }
        })
    }
}

impl fmt::Display for CliError {
    /// `error: message`, then `  caused by: ...` for each cause, then `hint: ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "error: {}", self.message)?;
        let mut cause: Option<&(dyn std::error::Error + 'static)> =
            self.source.as_deref().map(|e| e as _);
        let mut previous = self.message.clone();
        while let Some(error) = cause {
            let text = error.to_string();
            // Some errors repeat their source's text in their own; print each once.
            if !text.is_empty() && !previous.contains(&text) {
                writeln!(f, "  caused by: {text}")?;
            }
            previous = text;
            cause = error.source();
        }
        if let Some(hint) = &self.hint {
            writeln!(f, "hint: {hint}")?;
        }
        Ok(())
    }
}

impl From<crate::git::GitError> for CliError {
    fn from(error: crate::git::GitError) -> Self {
        use crate::git::GitError;
        let (kind, hint) = match &error {
            GitError::NotARepository { .. } => (
                Kind::BadInput,
                Some(
                    "run converge inside a git repository, or pass `-C <dir>`; `git init` creates one",
                ),
            ),
            GitError::BadRevision { .. } => (
                Kind::BadInput,
                Some("give a branch, tag or commit id, e.g. `--rev main`"),
            ),
            GitError::NoBaseBranch { .. } => (
                Kind::BadInput,
                Some(
                    "commit planning/ on your main branch, set `git config converge.baseBranch <branch>`, or pass `--rev`/`--worktree`",
                ),
            ),
            GitError::DetachedHead => (Kind::BadInput, Some("`git switch <branch>` first")),
            GitError::Dirty { .. } => (
                Kind::Busy,
                Some(
                    "commit or stash the changes to those paths (`git stash push -- <path>`); converge tries again on the next run",
                ),
            ),
            GitError::Unsupported { .. } => (
                Kind::Failure,
                Some(
                    "run converge in a clone of its own, or set `[reconcile] status_branch` to a branch nobody has checked out",
                ),
            ),
            GitError::Conflict { .. } => (Kind::Busy, Some("run the command again")),
            GitError::Bare { .. } => (
                Kind::BadInput,
                Some("run converge in a clone with a working tree"),
            ),
            GitError::NotSha1 { .. } => (
                Kind::BadInput,
                Some("run converge in a SHA-1 repository (`git init --object-format=sha1`)"),
            ),
            _ => (Kind::Failure, None),
        };
        let mut e = CliError::new(kind, error.to_string());
        e.hint = hint.map(str::to_owned);
        e.source = std::error::Error::source(&error)
            .map(|s| -> Box<dyn std::error::Error + Send + Sync> { Box::new(Chain::of(s)) });
        e
    }
}

// Every hint the command line gives for a library error is below: the
// libraries say what happened; this says what a person can do about it.

impl CliError {
    /// A plan name that names no plan, with a suggestion.
    pub fn no_plan(plan: &str, spec: &crate::spec::Spec) -> CliError {
        let hint = crate::spec::suggest::did_you_mean(plan, spec.plans.keys().map(String::as_str))
            .unwrap_or_else(|| "`converge plan show` lists the plans".to_owned());
        CliError::bad_input(format!("there is no plan `{plan}`")).hint(hint)
    }

    /// The reconciler lock could not be taken by `converge <command>`.
    pub fn lock(error: LockError, command: &str) -> CliError {
        match error {
            busy @ LockError::Busy { .. } => CliError::new(Kind::Busy, busy.to_string()).hint(
                format!("run `converge {command}` when no reconciler is running"),
            ),
            other => CliError::failure("cannot take the reconciler lock").source(other),
        }
    }
}

/// A failed reconcile loop (or the dry tick the human commands take).
pub fn loop_error(e: LoopError) -> CliError {
    match e {
        LoopError::Lock(lock @ LockError::Busy { .. }) => {
            CliError::new(Kind::Busy, lock.to_string())
                .hint("wait for it to finish, or pass `--wait` to wait for the lock")
        }
        LoopError::Lock(other) => {
            CliError::failure("cannot take the reconciler lock").source(other)
        }
        LoopError::Tick(TickError::InvalidSpec {
            commit,
            diagnostics,
        }) => {
            for d in diagnostics
                .iter()
                .filter(|d| d.severity == crate::spec::Severity::Error)
            {
                eprint!("{d}");
            }
            CliError::bad_input(format!(
                "planning/ at {} has errors that stop every plan; nothing was done",
                &commit[..commit.len().min(7)]
            ))
            .hint("fix them on the base branch; `converge plan validate --rev <base>` lists them")
        }
        LoopError::Tick(TickError::Git(git)) => git.into(),
        LoopError::Tick(e @ TickError::Diverged { .. }) => CliError::failure(e.to_string())
            .hint("merge or rebase one onto the other yourself; converge never force-pushes or rewrites history"),
        LoopError::Tick(TickError::Record(
            e @ RecordError::Conflict { .. },
        )) => CliError::new(
            Kind::Busy,
            "the status branch moved during the tick; nothing was recorded",
        )
        .source(e)
        .hint("run the tick again; it recomputes from the new state"),
        LoopError::Tick(e @ TickError::WorktreeRoot(_)) => CliError::new(Kind::BadInput, e.to_string())
            .hint("set `worktree_root` in planning/converge.toml to a directory outside .git/ and planning/, for example `worktree_root = \"../worktrees\"`, or remove it for `.converge/worktrees`"),
        LoopError::Tick(TickError::Secret(e)) => CliError::failure("the tick failed")
            .source(e)
            .hint("`converge doctor --fix` makes the secret private (chmod 600); if others may have read it, delete it: agents' tokens are minted anew"),
        LoopError::Tick(other) => CliError::failure("the tick failed").source(other),
        LoopError::Recover(e) => CliError::failure("cannot remove what a killed process left behind")
            .source(e)
            .hint("`converge doctor` lists it; check the path's permissions"),
        LoopError::TooManyTicks { ticks } => {
            CliError::failure(format!("stopped after {ticks} ticks without settling"))
                .hint("raise `--max-ticks`, or look at `converge reconcile --explain`")
        }
    }
}

impl From<TickError> for CliError {
    fn from(error: TickError) -> Self {
        loop_error(LoopError::Tick(error))
    }
}

impl From<HandError> for CliError {
    fn from(error: HandError) -> Self {
        match error {
            // `converge autonomy` names the subcommand itself (cmd_autonomy).
            HandError::Lock(busy @ LockError::Busy { .. }) => CliError::new(Kind::Busy, busy.to_string())
                .hint("run the command again when no reconciler is running"),
            HandError::Lock(other) => CliError::failure("cannot take the reconciler lock").source(other),
            HandError::Git(git) => git.into(),
            e @ HandError::Damaged(_) => CliError::bad_input(e.to_string()).hint(
                "the next tick starts the record over (and says so); fix or delete the file first to keep its history",
            ),
            e @ HandError::Refused(_) => CliError::bad_input(e.to_string())
                .hint("`converge autonomy status` shows the loop's state"),
            e @ HandError::Moved => {
                CliError::new(Kind::Busy, e.to_string()).hint("run the command again")
            }
            e @ HandError::NoBase(_) => CliError::failure(e.to_string()),
            e @ HandError::Deferred(_) => CliError::new(Kind::Busy, e.to_string())
                .source(e)
                .hint("commit or stash those changes in that checkout, then run the command again"),
            HandError::Record(tick) => tick.into(),
        }
    }
}

impl From<IntentError> for CliError {
    fn from(error: IntentError) -> Self {
        let message = error.to_string();
        match error {
            IntentError::UnknownTask {
                key,
                plan_known,
                suggestion,
                ..
            } => CliError::bad_input(message).hint(suggestion.unwrap_or_else(|| {
                if plan_known {
                    format!("`converge plan show {}` lists its tasks", key.plan)
                } else {
                    "`converge status` lists the plans and tasks".to_owned()
                }
            })),
            IntentError::UnknownPlan { suggestion, .. } => CliError::bad_input(message).hint(
                suggestion.unwrap_or_else(|| "`converge plan show` lists the plans".to_owned()),
            ),
            IntentError::ReasonRequired => CliError::bad_input(message)
                .hint("pass `--reason \"...\"`: it is given to the next attempt's agent"),
            IntentError::NoBranch { .. } => CliError::bad_input(message).hint(
                "a task can be approved once it awaits approval; `converge status` shows which do",
            ),
            IntentError::Merged { .. } => CliError::bad_input(message).hint(
                "to change merged work, add a new task (or a queue item) that describes the change",
            ),
            IntentError::QueueHasNoReset { .. } => CliError::bad_input(message).hint(
                "edit planning/queue/done/<item>.md (any change restarts it), or move it back to planning/queue/",
            ),
            IntentError::QueueAlwaysActive | IntentError::Unchanged { .. } => {
                CliError::bad_input(message)
            }
            IntentError::InvalidItem { diagnostics, .. } => {
                let shown: String = diagnostics.iter().map(ToString::to_string).collect();
                CliError::bad_input(format!("{message}\n{}", shown.trim_end()))
                    .hint("fix the item as the diagnostics say (docs/plan-format.md, \"Queue items\"), then enqueue it again")
            }
            IntentError::ItemTooLarge { .. } => {
                CliError::bad_input(message).hint("shorten the description")
            }
            IntentError::AlreadyQueued { .. } => CliError::bad_input(message)
                .hint("choose another name: an item's name is its identity (`converge status` lists the queue)"),
            IntentError::NotOnBase { .. } => CliError::failure(message),
            IntentError::NotUtf8 { source, .. } => CliError::failure(message).source(source),
            IntentError::Edit(e) => e.into(),
            IntentError::Record(e @ RecordError::Deferred { .. }) => {
                CliError::new(Kind::Busy, e.to_string())
                    .hint("commit or stash your changes, then run the command again")
            }
            IntentError::Record(e @ RecordError::Conflict { .. }) => {
                CliError::new(Kind::Busy, e.to_string()).hint("run the command again")
            }
            IntentError::Record(e) => CliError::failure(message).source(e),
            IntentError::Git(e) => e.into(),
        }
    }
}

impl From<EditError> for CliError {
    fn from(error: EditError) -> Self {
        let message = error.to_string();
        match error {
            EditError::Unparsable { source, .. } => CliError::failure(message).source(source),
            EditError::NoTasks { .. }
            | EditError::NoTask { .. }
            | EditError::NoPlanTable { .. } => CliError::failure(message),
            EditError::ConfigNotToml { source } => CliError::bad_input(message)
                .source(source)
                .hint("`converge plan validate` shows where"),
            EditError::InvariantsNotTable => CliError::bad_input(message)
                .hint("invariants are written as `[invariants.<name>]` tables"),
            EditError::InvariantExists { .. } => CliError::bad_input(message)
                .hint("pass --force to replace it, or choose another name"),
            EditError::Encode(source) => CliError::failure(message).source(source),
        }
    }
}

/// A snapshot of an error chain as owned text, for errors that cannot be moved.
#[derive(Debug)]
struct Chain {
    text: String,
    next: Option<Box<Chain>>,
}

impl Chain {
    fn of(error: &(dyn std::error::Error + 'static)) -> Chain {
        Chain {
            text: error.to_string(),
            next: error.source().map(|s| Box::new(Chain::of(s))),
        }
    }
}

impl fmt::Display for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for Chain {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.next.as_deref().map(|c| c as _)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_message_causes_and_hint() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = CliError::failure("cannot read planning/goal.md")
            .source(io)
            .hint("run `converge init`");
        assert_eq!(
            e.to_string(),
            "error: cannot read planning/goal.md\n  caused by: no such file\nhint: run `converge init`\n"
        );
        assert_eq!(e.kind.exit_code(), exit::FAILURE);
    }
}
