//! What killed processes left behind (stale ref locks, unfinished
//! worktrees, see [`crate::runtime::recover`]): checked and fixed without a
//! tick, because these are what can make every tick fail.

use crate::git::Repo;

use super::{DoctorError, Finding, Fix, Level};

/// What killed processes left behind (stale ref locks, unfinished worktrees):
/// needs no tick, because these are what can make every tick fail. The tick
/// removes each of them too, at its start.
pub fn check_leftovers(repo: &Repo) -> Vec<Finding> {
    use crate::runtime::recover::{self, Leftover};
    let base = crate::spec::base::base_source(repo).ok();
    let found = recover::scan(
        repo,
        base.as_ref(),
        &recover::converge_branches(repo, base.as_ref()),
    );
    if found.is_empty() {
        return vec![Finding::ok(
            "crash",
            "no locks or worktrees left by a killed process",
        )];
    }
    found
        .into_iter()
        .map(|f| {
            let level = match f.leftover {
                Leftover::Note { .. } => Level::Warning,
                _ => Level::Problem,
            };
            Finding::new("crash", level, f.message.clone())
                .hint("the next `converge reconcile` removes it before it looks; `converge doctor --fix` does it now")
                .fix(Fix::Recover(f))
        })
        .collect()
}

/// Applies the fixes of [`check_leftovers`]'s findings.
pub fn fix_leftovers(findings: &[Finding]) -> Result<Vec<String>, DoctorError> {
    let mut done = Vec::new();
    // Notes last: one names what is removed before it.
    let (notes, others): (Vec<&Finding>, Vec<&Finding>) = findings.iter().partition(|f| {
        matches!(
            &f.fix,
            Some(Fix::Recover(crate::runtime::recover::Found {
                leftover: crate::runtime::recover::Leftover::Note { .. },
                ..
            }))
        )
    });
    for f in others.into_iter().chain(notes) {
        if let Some(Fix::Recover(found)) = &f.fix {
            done.push(crate::runtime::recover::repair(found)?);
        }
    }
    Ok(done)
}
