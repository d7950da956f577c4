//! The last step of a tick: the files its status commit wants (one TOML file per
//! plan, STATUS.md, and what actions asked for, such as queue moves), the rule
//! that STATUS.md alone never makes a commit, the commit message, and for a dry
//! run the unified diff instead of a commit.

use std::collections::BTreeMap;

use gix::ObjectId;

use crate::act::Applied;
use crate::decide::Action;
use crate::git::Repo;
use crate::observe::Observation;
use crate::status::Status;
use crate::status::load::STATUS_DIR;
use crate::status::model::to_toml;
use crate::status::record::{self, Change, Message, Outcome, RecordError};
use crate::view::StatusView;
use crate::view::status_md::status_md;

use super::prepare::Prepared;
use super::tick::{Recorded, TickError, TickOptions};

/// The dashboard, a view of status.
pub const STATUS_MD: &str = "planning/STATUS.md";

/// What the tick did, to be recorded.
pub(crate) struct Acted<'a> {
    /// Status after acting, derived.
    pub status: &'a Status,
    /// What was observed after acting (the next decision's input).
    pub observation: &'a Observation,
    pub applied: &'a [Applied],
    /// The base branch's tip after acting (a merge moves it).
    pub base_tip: ObjectId,
    /// Write STATUS.md even when only it changed: the autonomy loop's record
    /// changed this tick, and its section with it.
    pub refresh_dashboard: bool,
}

/// Writes the status commit of a tick (or, for a dry run, the diff it would
/// write), compare-and-swap from the status tip the tick read.
pub(crate) fn record_tick(
    repo: &Repo,
    options: &TickOptions<'_>,
    prepared: &Prepared,
    acted: &Acted<'_>,
) -> Result<Recorded, TickError> {
    let status_tip_now = if prepared.status_branch == prepared.base.rev {
        Some(acted.base_tip)
    } else {
        prepared.status_tip
    };
    let read_from = status_tip_now.unwrap_or(acted.base_tip);
    let wanted = files_wanted(repo, options, prepared, acted, read_from)?;
    let mut changes = Vec::new();
    let mut diff = String::new();
    for (path, content) in wanted {
        let current = repo.read_blob_at(read_from, &path)?;
        if current == content {
            continue;
        }
        if options.dry_run {
            diff.push_str(&unified_diff(&path, current.as_deref(), content.as_deref()));
        }
        changes.push(Change { path, content });
    }
    // STATUS.md is a view: it is refreshed with every change to status (and
    // written when missing), never on its own, so that timing (an agent that
    // just exited, a slot that just freed) does not make commits.
    if dashboard_only(&changes)
        && !acted.refresh_dashboard
        && repo.read_blob_at(read_from, STATUS_MD)?.is_some()
    {
        changes.clear();
        diff.clear();
    }
    if options.dry_run {
        return Ok(Recorded::DryRun { diff });
    }
    if changes.is_empty() {
        return Ok(Recorded::Unchanged);
    }
    let expected = status_parent(
        repo,
        &prepared.status_branch,
        status_tip_now,
        acted.base_tip,
    )?;
    let message = message_of(
        &prepared.decision.actions,
        acted.applied,
        prepared.base.commit,
    );
    let signer = prepared.spec.config.reconcile.signer(options.env);
    let branch = &prepared.status_branch;
    match record::record(repo, branch, expected, &changes, &message, &signer) {
        Ok(Outcome::Committed { commit, .. }) => Ok(Recorded::Committed { commit }),
        Ok(Outcome::Unchanged) => Ok(Recorded::Unchanged),
        Err(e @ RecordError::Deferred { .. }) => Ok(Recorded::Deferred {
            reason: format!(
                "{e}; commit or stash them (`git stash push -- <path>`), set `[reconcile] status_branch` to a branch nobody has checked out, or run converge in a clone of its own; status is recorded on the next tick"
            ),
        }),
        Err(e) => Err(e.into()),
    }
}

/// After the tick recorded and pushed status: with the GitHub forge, says on
/// GitHub what status says (hands-off pull requests labelled, the dashboard
/// issue mirroring STATUS.md as the status branch holds it). Never fails
/// the tick: what it did or could not do becomes lines of the report, and
/// what it could not do is tried again next tick.
pub(crate) fn publish(
    repo: &Repo,
    forge: &crate::forge::github::session::Session<'_>,
    report: &mut super::TickReport,
) {
    let Some(config) = report.spec.config.forge.github() else {
        return;
    };
    let status_md = match repo.branch_tip(&report.status_branch) {
        Ok(Some(tip)) => repo.read_blob_at(tip, STATUS_MD),
        Ok(None) => Ok(None),
        Err(e) => Err(e),
    };
    let status_md = match status_md {
        Ok(md) => md.map(|b| String::from_utf8_lossy(&b).into_owned()),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read STATUS.md for the dashboard issue");
            None
        }
    };
    let what = crate::forge::github::publish::Published {
        status: &report.status,
        status_md: status_md.as_deref(),
        status_branch: &report.status_branch,
    };
    let lines = crate::forge::github::publish::publish(repo.common_dir(), config, forge, &what);
    report.remote.extend(lines);
}

/// The commit a status commit goes on: the status branch's tip, or, for a
/// dedicated status branch that does not exist yet, the base tip (the branch
/// is created there).
pub(crate) fn status_parent(
    repo: &Repo,
    status_branch: &str,
    status_tip: Option<ObjectId>,
    base_tip: ObjectId,
) -> Result<ObjectId, TickError> {
    if let Some(tip) = status_tip {
        return Ok(tip);
    }
    repo.create_ref(
        &format!("refs/heads/{status_branch}"),
        base_tip,
        "converge: create the status branch",
    )?;
    Ok(base_tip)
}

/// Every file the status commit should hold after the tick (`None`: deleted):
/// a TOML file per plan in status (and none for plans no longer there),
/// STATUS.md, and the files actions asked for.
fn files_wanted(
    repo: &Repo,
    options: &TickOptions<'_>,
    prepared: &Prepared,
    acted: &Acted<'_>,
    read_from: ObjectId,
) -> Result<BTreeMap<String, Option<Vec<u8>>>, TickError> {
    let status = acted.status;
    let mut wanted: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
    for (plan, plan_status) in &status.plans {
        wanted.insert(
            format!("{STATUS_DIR}/{plan}.toml"),
            Some(to_toml(plan, plan_status)?.into_bytes()),
        );
    }
    for name in repo.list_dir_at(read_from, STATUS_DIR)? {
        if let Some(plan) = name.strip_suffix(".toml")
            && !status.plans.contains_key(plan)
        {
            wanted.insert(format!("{STATUS_DIR}/{name}"), None);
        }
    }
    let dashboard =
        super::prepare::dashboard_decision(&prepared.spec, acted.observation, status, options.now);
    let view = StatusView::new(
        &prepared.base.rev,
        &prepared.base.commit.to_string(),
        &prepared.spec,
        status,
        &dashboard,
    );
    let autonomy = super::autonomy::record::view_at(
        repo,
        &prepared.spec,
        read_from,
        Some(status),
        options.now,
    )?;
    wanted.insert(
        STATUS_MD.to_owned(),
        Some(status_md(&view, autonomy.as_ref()).into_bytes()),
    );
    for done in acted.applied {
        for (path, content) in &done.files {
            wanted.insert(path.clone(), content.clone());
        }
    }
    Ok(wanted)
}

/// Whether `changes` touch nothing but STATUS.md (or nothing at all): then
/// they are dropped, unless STATUS.md is missing.
fn dashboard_only(changes: &[Change]) -> bool {
    changes.iter().all(|c| c.path == STATUS_MD)
}

/// The commit message of a tick: the one action's subject, or a summary.
fn message_of(actions: &[Action], applied: &[Applied], spec: ObjectId) -> Message {
    let done: Vec<&Action> = actions
        .iter()
        .zip(applied)
        .filter(|(_, a)| a.deferred.is_none() && a.failed.is_none())
        .map(|(action, _)| action)
        .collect();
    let body: Vec<String> = applied.iter().map(|a| a.line.clone()).collect();
    let summary = (done.len() > 1).then(|| {
        done.iter()
            .map(|a| match a {
                Action::Promote { item } => format!("promote queue/{item}"),
                other => match other.key() {
                    Some(k) => format!("{} {k}", record::subject_word(other.kind().as_str())),
                    None => other.kind().as_str().to_owned(),
                },
            })
            .collect::<Vec<_>>()
            .join(", ")
    });
    let (action, plan, task, attempt) = match done.as_slice() {
        [one] => subject_of(one),
        [] => ("status".to_owned(), None, None, None),
        _ => ("tick".to_owned(), None, None, None),
    };
    Message {
        action,
        plan,
        task,
        attempt,
        spec: spec.to_string(),
        body,
        summary,
    }
}

/// The subject's parts for a tick that did one action: its kind, plan, task
/// and attempt.
fn subject_of(one: &Action) -> (String, Option<String>, Option<String>, Option<u32>) {
    let attempt = match one {
        Action::Reap { attempt, .. }
        | Action::Cancel { attempt, .. }
        | Action::Gate { attempt, .. }
        | Action::Retry { attempt, .. }
        | Action::Dispatch { attempt, .. } => Some(*attempt),
        _ => None,
    };
    let (plan, task) = match one {
        Action::Promote { item } => (Some("queue".to_owned()), Some(item.clone())),
        other => match other.key() {
            Some(k) => (Some(k.plan.clone()), Some(k.task.clone())),
            None => (None, None),
        },
    };
    (one.kind().as_str().to_owned(), plan, task, attempt)
}

/// `diff -u` of one file, `/dev/null` for a side that does not exist.
fn unified_diff(path: &str, old: Option<&[u8]>, new: Option<&[u8]>) -> String {
    let old_text = old.map(String::from_utf8_lossy).unwrap_or_default();
    let new_text = new.map(String::from_utf8_lossy).unwrap_or_default();
    let from = if old.is_some() {
        format!("a/{path}")
    } else {
        "/dev/null".to_owned()
    };
    let to = if new.is_some() {
        format!("b/{path}")
    } else {
        "/dev/null".to_owned()
    };
    similar::TextDiff::from_lines(old_text.as_ref(), new_text.as_ref())
        .unified_diff()
        .header(&from, &to)
        .to_string()
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
