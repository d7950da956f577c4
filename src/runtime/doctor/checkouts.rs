//! Checkouts a crash (or a person saving a file at that instant) left behind
//! the branch converge moved.

use crate::git::Repo;

use super::{DoctorError, Finding, Fix, Level, Snapshot, short};

pub(super) fn check(repo: &Repo, _report: &Snapshot) -> Result<Vec<Finding>, DoctorError> {
    interrupted_checkouts(repo)
}

/// Checkouts a crash (or a person saving a file at that instant) left behind
/// the branch converge moved: the next tick finishes them where it can.
fn interrupted_checkouts(repo: &Repo) -> Result<Vec<Finding>, DoctorError> {
    let journals = repo.interrupted_checkouts()?;
    let left: Vec<Finding> = repo
        .left_alone()
        .into_iter()
        .map(|(note, l)| {
            Finding::new(
                "checkouts",
                Level::Problem,
                format!(
                    "in {}, {} kept the version you changed while converge moved {} to {}: they lack converge's change, and committing them (`git commit -a`) would undo it",
                    l.worktree.display(),
                    l.paths.join(", "),
                    l.branch,
                    short(&l.to)
                ),
            )
            .hint(format!(
                "compare with `git diff {} -- {}` and keep what you want (`git checkout {} -- <path>` takes converge's); `converge doctor --fix` then forgets this note",
                short(&l.to),
                l.paths.join(" "),
                l.branch
            ))
            .fix(Fix::ForgetLeftAlone(note))
        })
        .collect();
    if journals.is_empty() && !left.is_empty() {
        return Ok(left);
    }
    if journals.is_empty() {
        return Ok(vec![Finding::ok(
            "checkouts",
            "every checked-out branch's files and index match it",
        )]);
    }
    Ok(left
        .into_iter()
        .chain(journals.into_iter().map(|j| {
            Finding::new(
                "checkouts",
                Level::Problem,
                format!(
                    "the checkout of {} at {} was not fully moved from {} to {}",
                    j.branch,
                    j.worktree.display(),
                    short(&j.from),
                    short(&j.to)
                ),
            )
            .hint("`converge doctor --fix` (or the next tick) finishes it; paths you changed since are left as they are and listed")
            .fix(Fix::FinishCheckouts)
        }))
        .collect())
}
