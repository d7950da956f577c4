//! The loop's record (`planning/status/autonomy/loop.toml` on the status
//! branch): where it is read ([`status_branch`]), how it loads and what
//! STATUS.md and `converge autonomy` show of it, the commit that saves it
//! ([`record_state`]), and the adoption of a planner attempt a crash left
//! unrecorded ([`adopt`]). The step itself (`step.rs`) decides what goes in.

use gix::ObjectId;

use crate::act::planner;
use crate::git::Repo;
use crate::spec::Spec;
use crate::status::Status;
use crate::status::record::{self, Change, Message};

use super::decide::next;
use super::state::{Inflight, LoopState, RunKind, STATE_PATH};
use crate::runtime::tick::TickError;

/// The status branch (the base branch, whatever it is called, unless one is
/// configured) and its tip. The tick and the loop read status there alike.
pub fn status_branch(
    repo: &Repo,
    spec: &Spec,
    base_rev: &str,
) -> Result<(String, Option<ObjectId>), TickError> {
    let configured = &spec.config.reconcile.status_branch;
    let branch = if *configured == spec.config.reconcile.base_branch {
        base_rev.to_owned()
    } else {
        configured.clone()
    };
    let tip = repo.branch_tip(&branch)?;
    Ok((branch, tip))
}

/// The loop's record at `commit` (a default one when there is none yet).
/// A record that cannot be read starts over, and says so: it is a record,
/// and what matters of it (the items) is rebuilt from the queue's status.
pub fn load(repo: &Repo, commit: ObjectId) -> Result<(LoopState, Option<String>), TickError> {
    Ok(parse(repo.read_blob_at(commit, STATE_PATH)?))
}

/// The record in `bytes` (see [`load`]).
fn parse(bytes: Option<Vec<u8>>) -> (LoopState, Option<String>) {
    match bytes {
        None => (LoopState::default(), None),
        Some(bytes) => match LoopState::from_toml(&String::from_utf8_lossy(&bytes)) {
            Ok(state) => (state, None),
            Err(e) => (LoopState::default(), Some(e.to_string())),
        },
    }
}

/// The loop's view at `commit` of the status branch, decided against
/// `status` (read there when `None`); `None`: the loop is disabled and has
/// no record.
pub fn view_at(
    repo: &Repo,
    spec: &Spec,
    commit: ObjectId,
    status: Option<&Status>,
    now: crate::time::Timestamp,
) -> Result<Option<super::view::AutonomyView>, TickError> {
    let config = &spec.config.autonomy;
    let bytes = repo.read_blob_at(commit, STATE_PATH)?;
    if !config.enabled && bytes.is_none() {
        return Ok(None);
    }
    let (st, _) = parse(bytes);
    let read;
    let status = match status {
        Some(status) => status,
        None => {
            read = crate::status::load::load(repo, commit)?.0;
            &read
        }
    };
    let tasks_usd = crate::decide::spending(status, None, now).today_usd;
    let usd = spec.config.budget.usd_per_day;
    let n = next(config, usd, tasks_usd, &st, now);
    Ok(Some(super::view::view(config, usd, &st, &n)))
}

/// A planner attempt on disk that was dispatched but never recorded (a crash
/// between the two) and never read back: taken into the record as in flight,
/// so that it is read back, cleaned up and paid for like any other.
pub(super) fn adopt(
    repo: &Repo,
    st: &mut LoopState,
    now: crate::time::Timestamp,
) -> Option<String> {
    let (prefix, n, _) = planner::on_disk(repo)
        .into_iter()
        .filter(|(_, n, harvested)| !harvested && *n > 0)
        .max_by_key(|(_, n, _)| *n)?;
    let key = planner::key(&prefix, n);
    let brief = planner::brief_of(repo, &key)?;
    let kind = match brief.kind.as_str() {
        "gap-analysis" => RunKind::GapAnalysis,
        "capability-update" => RunKind::CapabilityUpdate,
        "review" => RunKind::Review,
        _ => return None,
    };
    st.runs = st.runs.max(n);
    st.today = super::decide::counters_on(st, now);
    st.today.runs += 1;
    st.inflight = Some(Inflight {
        run: n,
        capabilities: None,
        kind,
        started_at: now,
        item: brief.item,
        lens: brief.lens,
    });
    let line = format!(
        "{} {n} was started but not recorded (a crash): taken over as {key}",
        kind.as_str()
    );
    st.note(now, line.clone());
    Some(line)
}

/// What came of [`record_state`].
#[derive(Debug)]
pub enum Saved {
    Committed(ObjectId),
    /// The record already said this.
    Unchanged,
    /// The status branch moved since it was read.
    Moved,
    /// The status branch is checked out with uncommitted changes in the way
    /// (the error says where and which).
    Deferred(record::RecordError),
}

impl Saved {
    /// The commit, when one was made.
    pub fn commit(&self) -> Option<ObjectId> {
        match self {
            Saved::Committed(commit) => Some(*commit),
            _ => None,
        }
    }
}

/// Commits the loop's record on the status branch, compare-and-swap from its
/// tip as read now (the step's own base commits may have moved it, when the
/// status branch is the base branch).
pub fn record_state(
    repo: &Repo,
    spec: &Spec,
    base_rev: &str,
    st: &LoopState,
    lines: &[String],
    signer: &crate::git::Signer,
) -> Result<Saved, TickError> {
    let (branch, tip) = status_branch(repo, spec, base_rev)?;
    let base_tip = repo
        .branch_tip(base_rev)?
        .ok_or_else(|| TickError::Autonomy(format!("the base branch {base_rev} is gone").into()))?;
    let parent = crate::runtime::record::status_parent(repo, &branch, tip, base_tip)?;
    let text = st.to_toml().map_err(|e| TickError::Autonomy(Box::new(e)))?;
    let summary = lines
        .first()
        .map(|l| l.trim_start_matches("autonomy: ").to_owned())
        .unwrap_or_else(|| "the loop's record".into());
    let message = Message {
        action: "autonomy".into(),
        plan: None,
        task: None,
        attempt: None,
        spec: base_tip.to_string(),
        body: lines.to_vec(),
        summary: Some(format!("autonomy: {}", first_line(&summary))),
    };
    match record::record(
        repo,
        &branch,
        parent,
        &[Change {
            path: STATE_PATH.to_owned(),
            content: Some(text.into_bytes()),
        }],
        &message,
        signer,
    ) {
        Ok(record::Outcome::Committed { commit, .. }) => Ok(Saved::Committed(commit)),
        Ok(record::Outcome::Unchanged) => Ok(Saved::Unchanged),
        // Someone moved the status branch: the next tick steps again from
        // what it reads (the loop's files on the base are idempotent).
        Err(record::RecordError::Conflict { .. }) => Ok(Saved::Moved),
        // The status branch is checked out with the record's file changed.
        Err(e @ record::RecordError::Deferred { .. }) => Ok(Saved::Deferred(e)),
        Err(e) => Err(e.into()),
    }
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() > 100 {
        let cut: String = line.chars().take(99).collect();
        format!("{cut}…")
    } else {
        line.to_owned()
    }
}
