//! `converge gc [--dry-run]`: the retention of run records and kept attempt
//! heads (see `runtime::gc`).

use std::time::Duration;

use super::human::snapshot;
use super::source::open_repo;
use super::{CliError, CliResult, Ctx, print};
use crate::runtime::Lock;
use crate::runtime::gc;

#[derive(Debug, clap::Args)]
pub struct GcArgs {
    /// List what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(ctx: &Ctx, args: &GcArgs) -> CliResult {
    let repo = open_repo(ctx)?;
    // A tick could dispatch the attempt gc is about to judge; a tick is
    // short, so gc waits a little for one to finish.
    let _lock = Lock::acquire(repo.common_dir(), Duration::from_secs(5))
        .map_err(|e| CliError::lock(e, "gc"))?;
    let report = snapshot(&repo)?;
    let keep = report.spec.config.reconcile.keep_attempts;
    let base_tip = repo
        .branch_tip(&report.base_branch)
        .map_err(|e| CliError::failure("cannot read the base branch").source(e))?;
    let failed = |e: gc::GcError| CliError::failure("gc failed").source(e);
    let attempts = gc::observe(&repo, base_tip).map_err(failed)?;
    let verdicts = gc::plan(
        &attempts,
        &|key| gc::current_attempt(&report.status, key),
        keep,
    );
    let mut out = String::new();
    let removed = if args.dry_run {
        verdicts
            .iter()
            .filter(|v| v.keep.is_none())
            .map(gc::describe)
            .collect()
    } else {
        gc::remove(&repo, &verdicts).map_err(failed)?
    };
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for line in &removed {
        out.push_str(&format!("{verb} {line}\n"));
    }
    for v in verdicts
        .iter()
        .filter(|v| v.keep.is_some_and(|k| k != gc::Keep::Newest))
    {
        if let Some(k) = v.keep {
            out.push_str(&format!("kept {}: {}\n", gc::describe(v), k.reason(keep)));
        }
    }
    let kept = verdicts.iter().filter(|v| v.keep.is_some()).count();
    out.push_str(&format!(
        "{verb} {} attempt(s); kept {kept} (the newest {keep} per task, `[reconcile] keep_attempts`, and those listed)\n",
        removed.len()
    ));
    print(&out)
}
