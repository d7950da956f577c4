//! Claims, for reconcilers on several machines sharing a remote: before a tick
//! starts agents, it commits a claim on their tasks naming this reconciler and
//! pushes it with a lease. Only a reconciler whose claim reached the remote
//! starts the agent, so two machines never both start one task. A claim that
//! loses the push race starts nothing; the next tick recomputes from the
//! remote's state.

use crate::decide::Action;
use crate::git::{Pushed, Repo};
use crate::model::TaskKey;
use crate::status::load::STATUS_DIR;
use crate::status::model::to_toml;
use crate::status::record::{self, Change, Message, Outcome};
use crate::status::{Claim, Status};
use crate::time::Timestamp;

use super::prepare::Prepared;
use super::record::status_parent;
use super::remote::Leases;
use super::tick::{TickError, TickOptions, TickReport};

/// This reconciler's id for claims: `CONVERGE_RECONCILER_ID`, else the one kept
/// in `<git-common-dir>/converge/reconciler-id` (the host name and a random
/// suffix, made on first use).
pub fn reconciler_id(repo: &Repo) -> Result<String, TickError> {
    if let Some(id) = std::env::var("CONVERGE_RECONCILER_ID")
        .ok()
        .filter(|s| !s.trim().is_empty())
    {
        return Ok(id.trim().to_owned());
    }
    let path = crate::rundir::Layout::new(repo.common_dir()).reconciler_id();
    let io = |source| TickError::Identity {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    let mut bytes = [0u8; 4];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(io)?;
    let id = format!("{host}-{}", crate::agent::token::hex(&bytes));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::write(&path, format!("{id}\n")).map_err(io)?;
    Ok(id)
}

/// What claiming did.
pub(crate) enum Claimed {
    /// Nothing to claim: the tick goes on with what it read.
    Nothing(Box<Prepared>),
    /// Claims were pushed: status changed.
    Pushed,
    /// The claim lost a push race: nothing was started; the tick's report.
    Lost(Box<TickReport>),
}

/// Claims the tasks this tick would start (see the module header): commits the
/// claims on the status branch and pushes them with the lease in `leases`.
/// `lines` collects what was pushed. `prepared`: what the tick read and
/// decided as reconciler `me`.
pub(crate) fn claim(
    repo: &Repo,
    options: &TickOptions<'_>,
    prepared: Prepared,
    me: &str,
    remote: &str,
    leases: &mut Leases,
    lines: &mut Vec<String>,
) -> Result<Claimed, TickError> {
    let (status, claimed) = with_claims(&prepared, me, options.now);
    if claimed.is_empty() {
        return Ok(Claimed::Nothing(Box::new(prepared)));
    }
    let branch = prepared.status_branch.clone();
    let expected = status_parent(repo, &branch, prepared.status_tip, prepared.base.commit)?;
    let changes = changed_plans(&prepared.status, &status)?;
    let message = claim_message(&claimed, me, &prepared.base.commit.to_string());
    let claimed: Vec<String> = claimed
        .iter()
        .map(|(key, attempt)| format!("{key} (attempt {attempt})"))
        .collect();
    let signer = prepared.spec.config.reconcile.signer(options.env);
    let commit = match record::record(repo, &branch, expected, &changes, &message, &signer)? {
        Outcome::Committed { commit, .. } => commit,
        Outcome::Unchanged => return Ok(Claimed::Nothing(Box::new(prepared))),
    };
    let lease = leases.get(&branch).copied().flatten();
    match repo.push_with_lease(remote, &branch, commit, lease)? {
        Pushed::Ok => {
            lines.push(format!(
                "claimed {} on {remote} ({})",
                claimed.join(", "),
                &commit.to_string()[..7]
            ));
            leases.insert(branch, Some(commit));
            Ok(Claimed::Pushed)
        }
        Pushed::Rejected { message } => {
            repo.advance_branch(&branch, commit, expected, "converge: lost a claim race")?;
            let mut report = TickReport::unacted(prepared);
            report.remote = std::mem::take(lines);
            report.push_rejected = Some(format!(
                "claiming {} on {remote} was rejected: another reconciler pushed first; nothing was started and the next tick recomputes ({message})",
                claimed.join(", ")
            ));
            Ok(Claimed::Lost(Box::new(report)))
        }
    }
}

/// Status with a claim by `me` on every task the decision would start (until
/// the attempt's deadline and `[reconcile] claim_grace`: the owner reaps its
/// own timed-out attempts at the deadline, so a claim still there this much
/// later belongs to a reconciler that is gone), and the attempts newly claimed;
/// an attempt `me` has already claimed is not claimed again.
fn with_claims(prepared: &Prepared, me: &str, now: Timestamp) -> (Status, Vec<(TaskKey, u32)>) {
    let mut status = prepared.status.clone();
    let mut claimed = Vec::new();
    for action in &prepared.decision.actions {
        let (Action::Dispatch { key, attempt } | Action::Retry { key, attempt, .. }) = action
        else {
            continue;
        };
        let Some(task) = prepared
            .spec
            .plans
            .get(&key.plan)
            .and_then(|p| p.task(&key.task))
        else {
            continue;
        };
        let timeout = task
            .timeout
            .unwrap_or(prepared.spec.config.reconcile.task_timeout);
        let st = status
            .plans
            .entry(key.plan.clone())
            .or_default()
            .tasks
            .entry(key.task.clone())
            .or_default();
        if st
            .claim
            .as_ref()
            .is_some_and(|c| c.by == me && c.attempt == *attempt)
        {
            continue;
        }
        st.claim = Some(Claim {
            by: me.to_owned(),
            attempt: *attempt,
            until: now
                .plus(timeout)
                .plus(prepared.spec.config.reconcile.claim_grace),
        });
        claimed.push((key.clone(), *attempt));
    }
    (status, claimed)
}

/// The status files of the plans whose status differs from `before`.
fn changed_plans(before: &Status, after: &Status) -> Result<Vec<Change>, TickError> {
    let mut changes = Vec::new();
    for (plan, plan_status) in &after.plans {
        if before.plans.get(plan) != Some(plan_status) {
            changes.push(Change {
                path: format!("{STATUS_DIR}/{plan}.toml"),
                content: Some(to_toml(plan, plan_status)?.into_bytes()),
            });
        }
    }
    Ok(changes)
}

/// The claim commit's message: `claim plan/task (attempt N)` for one claim, a
/// summary for several, a body line per claim.
fn claim_message(claimed: &[(TaskKey, u32)], me: &str, spec: &str) -> Message {
    let (plan, task, attempt) = match claimed {
        [(key, attempt)] => (
            Some(key.plan.clone()),
            Some(key.task.clone()),
            Some(*attempt),
        ),
        _ => (None, None, None),
    };
    let claimed: Vec<String> = claimed
        .iter()
        .map(|(key, attempt)| format!("{key} (attempt {attempt})"))
        .collect();
    Message {
        action: "claim".to_owned(),
        plan,
        task,
        attempt,
        spec: spec.to_owned(),
        body: claimed
            .iter()
            .map(|c| format!("claim {c} for reconciler {me}"))
            .collect(),
        summary: (claimed.len() > 1).then(|| format!("claim {}", claimed.join(", "))),
    }
}
