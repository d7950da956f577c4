//! `converge autonomy status|pause|resume|unblock`: the autonomy loop's
//! state, and a person's hand on it (docs/autonomy.md). The loop's record
//! lives on the status branch; these commands change it under the
//! reconciler lock, one commit by compare-and-swap, as a tick would. They
//! only stop the loop or clear its own guards: what it may do (enabled, caps,
//! budget) comes from `[autonomy]` on the base branch alone.

use super::source::open_repo;
use super::{CliError, CliResult, Ctx, print, print_json};
use crate::git::Repo;
use crate::runtime::autonomy::hand::HandError;
use crate::runtime::autonomy::{Hand, LoopState, record, view};
use crate::spec::Spec;
use crate::time::Timestamp;

#[derive(Debug, clap::Subcommand)]
pub enum AutonomyCommand {
    /// The loop's state, what it does next, spend today against its caps,
    /// and what needs a person.
    #[command(
        after_help = "Examples:\n  converge autonomy status\n  converge autonomy status --json"
    )]
    Status(StatusArgs),
    /// Pause the loop: no planner attempt starts until `converge autonomy resume`.
    #[command(
        after_help = "Examples:\n  converge autonomy pause --reason \"reviewing the last three items\""
    )]
    Pause(PauseArgs),
    /// Resume a loop paused by a person or by a guard (or done: a goal met),
    /// with its escalation and refusal streaks cleared.
    #[command(after_help = "Examples:\n  converge autonomy resume")]
    Resume,
    /// Let the loop propose a blocked gap again.
    #[command(
        after_help = "Examples:\n  converge autonomy unblock 18bde97e3f38   (the id `converge autonomy status` shows)"
    )]
    Unblock(UnblockArgs),
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct PauseArgs {
    /// Why, for the loop's history and STATUS.md.
    #[arg(long, default_value = "paused by a person")]
    pub reason: String,
}

#[derive(Debug, clap::Args)]
pub struct UnblockArgs {
    /// The gap's id.
    pub gap: String,
}

pub fn run(ctx: &Ctx, command: &AutonomyCommand) -> CliResult {
    let repo = open_repo(ctx)?;
    let now =
        super::cmd_reconcile::fixed_now(&|n| std::env::var(n).ok())?.unwrap_or_else(Timestamp::now);
    let (spec, base_rev) = spec_of(&repo)?;
    match command {
        AutonomyCommand::Status(args) => {
            let (_, tip) = record::status_branch(&repo, &spec, &base_rev)?;
            let base = repo.branch_tip(&base_rev)?.ok_or_else(|| {
                CliError::failure(format!("the base branch {base_rev} has no commit"))
            })?;
            let shown = record::view_at(&repo, &spec, tip.unwrap_or(base), None, now)?;
            let v = shown.unwrap_or_else(|| {
                let st = LoopState::default();
                let n = crate::runtime::autonomy::next(&spec.config.autonomy, None, 0.0, &st, now);
                view::view(&spec.config.autonomy, None, &st, &n)
            });
            if args.json {
                return print_json(&v, true);
            }
            print(&view::text(&v))
        }
        AutonomyCommand::Pause(args) => take(
            &repo,
            &spec,
            &base_rev,
            &Hand::Pause {
                reason: args.reason.clone(),
            },
            now,
        ),
        AutonomyCommand::Resume => take(&repo, &spec, &base_rev, &Hand::Resume, now),
        AutonomyCommand::Unblock(args) => take(
            &repo,
            &spec,
            &base_rev,
            &Hand::Unblock {
                gap: args.gap.clone(),
            },
            now,
        ),
    }
}

/// The spec on the base branch, and the base branch's name.
fn spec_of(repo: &Repo) -> CliResult<(Spec, String)> {
    let base = crate::spec::base::base_source(repo)?;
    let loaded = crate::runtime::Cache::default().spec(repo, base.commit)?;
    let Some(spec) = loaded.spec else {
        return Err(CliError::bad_input(format!(
            "planning/ on {} has errors that stop every plan",
            base.rev
        ))
        .hint("`converge plan validate` lists them"));
    };
    Ok((spec, base.rev))
}

/// Takes `hand` on the loop (`runtime::autonomy::hand`) and says what it did.
fn take(repo: &Repo, spec: &Spec, base_rev: &str, hand: &Hand, now: Timestamp) -> CliResult {
    let signer = spec.config.reconcile.signer(&|n| std::env::var(n).ok());
    let command = match hand {
        Hand::Pause { .. } => "autonomy pause",
        Hand::Resume => "autonomy resume",
        Hand::Unblock { .. } => "autonomy unblock",
    };
    let done = crate::runtime::autonomy::hand::take(repo, spec, base_rev, hand, now, &signer)
        .map_err(|e| match e {
            HandError::Lock(lock) => CliError::lock(lock, command),
            other => other.into(),
        })?;
    print(&format!(
        "{} (recorded as {})\n",
        done.line,
        &done.commit.to_string()[..7]
    ))
}
