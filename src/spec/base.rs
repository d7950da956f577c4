//! What converge reads from the base branch before (and in order to) compile
//! the spec: which branch is the base, which is the status branch, which
//! remote to sync with, and the raw files of `planning/` at a commit.
//!
//! Policy comes from the base branch itself, so these settings are read from
//! its `planning/converge.toml`, leniently: the remote is fetched and the base
//! branch chosen before the spec is compiled, and a file that does not parse
//! simply names nothing here (full validation happens when the spec is
//! compiled). The git layer only supplies primitives (branch tips, HEAD, git
//! configuration, blobs and trees at a commit); the choices are made here.

use gix::ObjectId;

use super::config::CONFIG_PATH;
use super::load::{self, Content, MAX_FILE_SIZE, PLANNING_DIR, PlanningFiles};
use crate::git::{GitError, Repo, TreeEntry, TreeFile, TreeFilter};

/// Where a spec was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitSource {
    /// What the user asked for, or the branch that was chosen.
    pub rev: String,
    pub commit: ObjectId,
}

/// The `[reconcile]` keys of converge.toml that matter before the spec is
/// compiled, each `None` when absent, not a string, or the file does not parse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BaseSettings {
    pub base_branch: Option<String>,
    pub status_branch: Option<String>,
    pub remote: Option<String>,
    /// Read by recovery, which runs before the spec can be compiled.
    pub worktree_root: Option<String>,
}

/// Reads [`BaseSettings`] from the bytes of a converge.toml, leniently:
/// bytes that are not UTF-8 or not TOML give the default (nothing named).
pub fn parse_settings(bytes: &[u8]) -> BaseSettings {
    let Ok(Ok(table)) = std::str::from_utf8(bytes).map(str::parse::<toml::Table>) else {
        return BaseSettings::default();
    };
    let get = |key: &str| {
        table
            .get("reconcile")
            .and_then(|r| r.get(key))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    BaseSettings {
        base_branch: get("base_branch"),
        status_branch: get("status_branch"),
        remote: get("remote"),
        worktree_root: get("worktree_root"),
    }
}

/// The [`BaseSettings`] of the converge.toml at `commit` (the default when
/// there is none).
pub fn settings_at(repo: &Repo, commit: ObjectId) -> Result<BaseSettings, GitError> {
    Ok(repo
        .read_blob_at(commit, CONFIG_PATH)?
        .map(|bytes| parse_settings(&bytes))
        .unwrap_or_default())
}

/// Chooses the branch whose `planning/` is the desired state: the git config
/// `converge.baseBranch` if set, else the first of `main`, `master`, `trunk`
/// and the checked-out branch that exists. If that branch's converge.toml names
/// another existing `base_branch`, that one is used (policy comes from the base
/// branch itself).
pub fn base_source(repo: &Repo) -> Result<CommitSource, GitError> {
    let configured = repo.config_string("converge.baseBranch");
    let mut candidates: Vec<String> = Vec::new();
    if let Some(branch) = configured {
        candidates.push(branch);
    } else {
        candidates.extend(["main", "master", "trunk"].map(String::from));
        if let Some(head) = repo.head_branch()?
            && !head.starts_with("converge/")
        {
            candidates.push(head);
        }
    }
    for branch in &candidates {
        let Some(commit) = repo.branch_tip(branch)? else {
            continue;
        };
        if let Some(named) = settings_at(repo, commit)?.base_branch
            && &named != branch
            && let Some(tip) = repo.branch_tip(&named)?
        {
            return Ok(CommitSource {
                rev: named,
                commit: tip,
            });
        }
        return Ok(CommitSource {
            rev: branch.clone(),
            commit,
        });
    }
    Err(GitError::NoBaseBranch {
        candidates: candidates
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// `[reconcile].remote` and `.status_branch` from the converge.toml at
/// `commit`, read leniently (before the spec is compiled: the remote is
/// fetched first).
pub fn remote_settings(
    repo: &Repo,
    commit: ObjectId,
) -> Result<(Option<String>, Option<String>), GitError> {
    let settings = settings_at(repo, commit)?;
    Ok((settings.remote, settings.status_branch))
}

/// The input files of `planning/` (the spec's; not `planning/status/`).
const PLANNING_INPUTS: TreeFilter = TreeFilter {
    descend: load::may_contain_input,
    keep: load::is_input,
    max_size: MAX_FILE_SIZE,
};

/// The input files of `planning/` at `commit`, with their object ids, without
/// reading them; `None` without `planning/`. What the spec is compiled from:
/// equal listings compile to equal specs.
pub fn list_planning(repo: &Repo, commit: ObjectId) -> Result<Option<Vec<TreeEntry>>, GitError> {
    repo.list_tree_files(commit, PLANNING_DIR, &PLANNING_INPUTS)
}

/// Reads the input files of `planning/` from the tree of `commit`, without
/// touching any working tree.
pub fn read_planning(repo: &Repo, commit: ObjectId) -> Result<PlanningFiles, GitError> {
    read_listed_planning(repo, list_planning(repo, commit)?.as_deref())
}

/// Reads the files [`list_planning`] listed.
pub fn read_listed_planning(
    repo: &Repo,
    listed: Option<&[TreeEntry]>,
) -> Result<PlanningFiles, GitError> {
    let Some(listed) = listed else {
        return Ok(PlanningFiles::default());
    };
    let files = repo.read_tree_entries(listed, PLANNING_INPUTS.max_size)?;
    Ok(PlanningFiles {
        exists: true,
        files: files
            .into_iter()
            .map(|(path, file)| {
                let content = match file {
                    TreeFile::Bytes(bytes) => Content::Bytes(bytes),
                    TreeFile::TooLarge(size) => Content::TooLarge(size),
                    TreeFile::Symlink => Content::Symlink,
                };
                (path, content)
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_come_from_the_reconcile_table() {
        let settings = parse_settings(
            b"[reconcile]\nbase_branch = \"trunk\"\nstatus_branch = \"converge/status\"\nremote = \"origin\"\nworktree_root = \"../trees\"\n",
        );
        assert_eq!(
            settings,
            BaseSettings {
                base_branch: Some("trunk".into()),
                status_branch: Some("converge/status".into()),
                remote: Some("origin".into()),
                worktree_root: Some("../trees".into()),
            }
        );
    }

    #[test]
    fn unreadable_settings_name_nothing() {
        for bytes in [
            &b"[reconcile\nbase_branch = \"trunk\"\n"[..],
            b"\xff\xfe[reconcile]\n",
            b"base_branch = \"trunk\"\n",
            b"[reconcile]\nbase_branch = 3\nremote = [\"origin\"]\n",
            b"",
        ] {
            assert_eq!(parse_settings(bytes), BaseSettings::default(), "{bytes:?}");
        }
    }
}
