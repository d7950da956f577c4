//! `converge autonomy status|pause|resume|unblock`: the autonomy loop's
//! state, and a person's hand on it (docs/autonomy.md). The loop's record
//! lives on the status branch; these commands change it under the
//! reconciler lock, one commit by compare-and-swap, as a tick would. They
//! only stop the loop or clear its own guards: what it may do (enabled, caps,
//! budget) comes from `[autonomy]` on the base branch alone.

use std::time::Duration;

use super::source::open_repo;
use super::{CliError, CliResult, Ctx, print, print_json};
use crate::git::Repo;
use crate::runtime::autonomy::state::LoopPhase;
use crate::runtime::autonomy::{LoopState, record, view};
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
        AutonomyCommand::Pause(args) => change(&repo, &spec, &base_rev, now, |st| {
            if matches!(st.phase, LoopPhase::Paused { .. }) {
                return Err("the loop is paused already".into());
            }
            st.phase = LoopPhase::Paused {
                code: crate::model::LoopCode::Paused.as_str().into(),
                why: args.reason.clone(),
                since: now,
            };
            Ok(format!("paused by a person: {}", args.reason))
        }),
        AutonomyCommand::Resume => change(&repo, &spec, &base_rev, now, |st| {
            if matches!(st.phase, LoopPhase::Running)
                && st.consecutive_escalations == 0
                && st.consecutive_refusals == 0
                && st.cooldown_until.is_none()
            {
                return Err("the loop is running already".into());
            }
            st.phase = LoopPhase::Running;
            st.consecutive_escalations = 0;
            st.consecutive_refusals = 0;
            st.cooldown_until = None;
            Ok("resumed by a person".into())
        }),
        AutonomyCommand::Unblock(args) => change(&repo, &spec, &base_rev, now, |st| {
            let ids: Vec<String> = st
                .gaps
                .iter()
                .filter(|g| g.blocked)
                .map(|g| g.id.clone())
                .collect();
            let Some(gap) = st.gaps.iter_mut().find(|g| g.id == args.gap && g.blocked) else {
                return Err(if ids.is_empty() {
                    format!("no gap is blocked (`{}` is not)", args.gap)
                } else {
                    format!(
                        "gap `{}` is not blocked; blocked: {}",
                        args.gap,
                        ids.join(", ")
                    )
                });
            };
            gap.blocked = false;
            gap.escalations = 0;
            Ok(format!(
                "gap {} ({}) unblocked by a person",
                gap.id, gap.title
            ))
        }),
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

/// Applies `edit` to the loop's record under the reconciler lock and commits it.
fn change(
    repo: &Repo,
    spec: &Spec,
    base_rev: &str,
    now: Timestamp,
    edit: impl FnOnce(&mut LoopState) -> Result<String, String>,
) -> CliResult {
    let _lock = crate::runtime::Lock::acquire(repo.common_dir(), Duration::from_secs(30))
        .map_err(|e| CliError::failure("cannot take the reconciler lock").source(e))?;
    let (_, tip) = record::status_branch(repo, spec, base_rev)?;
    let base = repo
        .branch_tip(base_rev)?
        .ok_or_else(|| CliError::failure(format!("the base branch {base_rev} has no commit")))?;
    let (mut st, problem) = record::load(repo, tip.unwrap_or(base))?;
    if let Some(problem) = problem {
        return Err(CliError::bad_input(problem).hint(
            "the next tick starts the record over (and says so); fix or delete the file first to keep its history",
        ));
    }
    let line = edit(&mut st).map_err(|why| {
        CliError::bad_input(why).hint("`converge autonomy status` shows the loop's state")
    })?;
    st.note(now, line.clone());
    let signer = spec.config.reconcile.signer(&|n| std::env::var(n).ok());
    let lines = vec![format!("autonomy: {line}")];
    match record::record_state(repo, spec, base_rev, &st, &lines, &signer)? {
        Some(commit) => print(&format!(
            "{line} (recorded as {})\n",
            &commit.to_string()[..7]
        )),
        None => Err(
            CliError::failure("the status branch moved; nothing was recorded")
                .hint("run the command again"),
        ),
    }
}
