//! Reading the recorded status back from a commit of the status branch.

use crate::git::{GitError, Repo};

use super::model::{self, Status};

/// Where status files live.
pub const STATUS_DIR: &str = "planning/status";

/// Status read from `planning/status/*.toml` at `commit`. A file that cannot be
/// decoded is left out and reported: status is a record that observation can
/// rebuild, so one bad file must not stop the reconciler.
pub fn load(
    repo: &Repo,
    commit: gix::ObjectId,
) -> Result<(Status, Vec<model::StatusError>), GitError> {
    let mut status = Status::default();
    let mut problems = Vec::new();
    for name in repo.list_dir_at(commit, STATUS_DIR)? {
        let Some(plan) = name.strip_suffix(".toml") else {
            continue;
        };
        let path = format!("{STATUS_DIR}/{name}");
        let Some(bytes) = repo.read_blob_at(commit, &path)? else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        match model::from_toml(&path, &text) {
            Ok(plan_status) => {
                status.plans.insert(plan.to_owned(), plan_status);
            }
            Err(problem) => problems.push(problem),
        }
    }
    Ok((status, problems))
}
