//! The read-only half of a tick: load the spec from the base branch, read
//! status, observe, decide. Nothing here changes a ref, a worktree or a run
//! (the only write is the reconciler's secret, made once on first use).
//!
//! The tick acts on a [`Prepared`]; `converge status`, `approve` and the other
//! human commands read a [`Snapshot`]: the same reading with status brought in
//! line with the decision (`decide::derive`), as the next tick would record it.

use gix::ObjectId;

use crate::agent::Secret;
use crate::decide::derive::{self, Inputs};
use crate::decide::{self, Decision, Limits};
use crate::git::Repo;
use crate::observe::{self, Observation};
use crate::spec::base::CommitSource;
use crate::spec::{Diagnostic, Spec};
use crate::status::Status;
use crate::time::Timestamp;

use super::base::TickBase;
use super::tick::TickError;

/// What a tick reads and decides before it acts.
pub(crate) struct Prepared {
    pub base: CommitSource,
    pub spec: Spec,
    pub diagnostics: Vec<Diagnostic>,
    pub status_branch: String,
    /// The status branch's tip as read (`None`: it does not exist yet).
    pub status_tip: Option<ObjectId>,
    /// Status as read from the status branch.
    pub status: Status,
    pub status_problems: Vec<String>,
    pub secret: Secret,
    pub observation: Observation,
    pub limits: Limits,
    pub decision: Decision,
}

/// Reads and decides at `now`. `reconciler`: this reconciler's id when claims
/// are in play (a remote), so that its own claims are told from others'.
/// `forge`: the tick's session with the GitHub forge, when the forge is to
/// be asked (a tick); `None` for the read-only commands, which show what
/// status recorded of the forge.
/// `base`: the tick's base branch (read again here: the schedules and the
/// loop may have moved it).
pub(crate) fn prepare(
    repo: &Repo,
    base: &mut TickBase,
    now: Timestamp,
    reconciler: Option<&str>,
    forge: Option<&crate::forge::github::session::Session<'_>>,
    cache: &super::Cache,
) -> Result<Prepared, TickError> {
    let started = std::time::Instant::now();
    let base = base.current(repo)?.clone();
    let loaded = cache.spec(repo, base.commit)?;
    let spec_at = started.elapsed();
    let Some(spec) = loaded.spec else {
        return Err(TickError::InvalidSpec {
            commit: base.commit.to_string(),
            diagnostics: loaded.diagnostics,
        });
    };
    let diagnostics = loaded.diagnostics;
    let (status_branch, status_tip) =
        super::autonomy::record::status_branch(repo, &spec, &base.rev)?;
    let status_read_at = status_tip.unwrap_or(base.commit);
    let (status, problems) = crate::status::load::load(repo, status_read_at)?;
    let status_problems = problems.iter().map(ToString::to_string).collect();
    let status_at = started.elapsed();
    let secret = Secret::load_or_create(repo.common_dir())?;
    let mut observation = observe::observe(repo, &status, base.commit, &secret, &cache.events)?;
    note_worktrees(repo, &spec, &mut observation);
    observation.reconciler = reconciler.map(str::to_owned);
    // What the loop's planners spent (nothing when it has no record, or one
    // that does not read).
    let (loop_state, _) = super::autonomy::record::load(repo, status_read_at)?;
    observation.planner_spend = observe::PlannerSpend {
        day: loop_state.today.day,
        micro_usd: (loop_state.today.usd.max(0.0) * 1e6).round() as u64,
        tokens: loop_state.today.tokens,
    };
    if spec.config.sandbox.enabled {
        observation.sandbox = Some(crate::act::sandbox::probe());
    }
    if let Some(github) = spec.config.forge.github() {
        match forge {
            Some(session) => crate::forge::github::observe_into(
                repo,
                github,
                &status,
                &spec,
                &mut observation,
                session,
            )?,
            None => observation.forge = observe::ForgeObs::NotAsked,
        }
    }
    let limits = Limits::from(&spec.config.reconcile);
    let observe_at = started.elapsed();
    let decision = decide::decide(&spec, &observation, &status, now, &limits);
    tracing::debug!(
        spec_us = spec_at.as_micros() as u64,
        status_us = (status_at - spec_at).as_micros() as u64,
        observe_us = (observe_at - status_at).as_micros() as u64,
        decide_us = (started.elapsed() - observe_at).as_micros() as u64,
        "prepared"
    );
    Ok(Prepared {
        base,
        spec,
        diagnostics,
        status_branch,
        status_tip,
        status,
        status_problems,
        secret,
        observation,
        limits,
        decision,
    })
}

impl Prepared {
    /// What the next tick would do, for STATUS.md and the report: observed
    /// again after acting (`base_tip` may have moved), so that a tick with
    /// nothing to do renders the same bytes; without action, what was read.
    pub fn look_again(
        &self,
        repo: &Repo,
        status: &Status,
        base_tip: ObjectId,
        now: Timestamp,
        acted: bool,
        cache: &super::Cache,
    ) -> Result<(Observation, Decision), TickError> {
        if !acted {
            return Ok((self.observation.clone(), self.decision.clone()));
        }
        let mut obs = observe::observe(repo, status, base_tip, &self.secret, &cache.events)?;
        note_worktrees(repo, &self.spec, &mut obs);
        carry_forge(&self.observation, (&self.status, status), &mut obs);
        let decision = decide::decide(&self.spec, &obs, status, now, &self.limits);
        Ok((obs, decision))
    }

    /// Brings `status` (this tick's, after acting) in line with `next`, the
    /// decision made from `observation`.
    pub fn derive(
        &self,
        status: &mut Status,
        next: &Decision,
        observation: &Observation,
        now: Timestamp,
    ) {
        let spec_commit = self.base.commit.to_string();
        let inputs = Inputs {
            spec: &self.spec,
            decision: next,
            observation,
            diagnostics: &self.diagnostics,
            spec_commit: &spec_commit,
            now,
        };
        derive::derive(status, &self.status, &inputs);
    }
}

/// The state as the next tick would see and record it, without acting: the
/// spec, status brought in line with it, and what the next tick would do.
#[derive(Debug)]
pub struct Snapshot {
    pub base_branch: String,
    pub status_branch: String,
    /// The planning commit read.
    pub spec_commit: ObjectId,
    pub spec: Spec,
    /// Diagnostics of the planning files (invalid plans are set aside).
    pub diagnostics: Vec<Diagnostic>,
    /// Status as read, brought in line with the spec and the decision.
    pub status: Status,
    /// Status files that could not be read (rebuilt from observation).
    pub status_problems: Vec<String>,
    pub observation: Observation,
    /// What the next tick would do.
    pub decision: Decision,
}

/// Reads, decides and derives at `now`; changes nothing (but the secret).
pub fn snapshot(repo: &Repo, now: Timestamp) -> Result<Snapshot, TickError> {
    let mut base = TickBase::choose(repo)?;
    let prepared = prepare(repo, &mut base, now, None, None, &super::Cache::default())?;
    let mut status = prepared.status.clone();
    prepared.derive(&mut status, &prepared.decision, &prepared.observation, now);
    Ok(prepared.into_snapshot(status))
}

impl Prepared {
    /// What was read and decided, with `status` for the status: a
    /// [`Snapshot`], and the part of a tick's report that is the reading.
    pub fn into_snapshot(self, status: Status) -> Snapshot {
        let Prepared {
            base,
            spec,
            diagnostics,
            status_branch,
            status_problems,
            observation,
            decision,
            ..
        } = self;
        Snapshot {
            base_branch: base.rev,
            status_branch,
            spec_commit: base.commit,
            spec,
            diagnostics,
            status,
            status_problems,
            observation,
            decision,
        }
    }
}

/// What the forge said this tick, with what the tick's proposals changed
/// (the head each pushed, on its change), for the decision after acting:
/// the forge is asked once a tick.
fn carry_forge(before: &Observation, (read, status): (&Status, &Status), obs: &mut Observation) {
    obs.forge = before.forge.clone();
    for (key, seen) in &before.tasks {
        if let Some(change) = &seen.change {
            obs.tasks.entry(key.clone()).or_default().change = Some(change.clone());
        }
    }
    if matches!(obs.forge, observe::ForgeObs::Local) {
        return;
    }
    for (plan, p) in &status.plans {
        for (task, st) in &p.tasks {
            let Some(record) = &st.change else { continue };
            // Only what this tick proposed: the forge's word stands for the rest.
            let was = read.task(plan, task).and_then(|t| t.change.as_ref());
            if was.is_some_and(|w| w.number == record.number && w.tip() == record.tip()) {
                continue;
            }
            let entry = obs
                .tasks
                .entry(crate::model::TaskKey::new(plan, task))
                .or_default();
            let stale = entry.change.as_ref().is_none_or(|c| {
                c.number != record.number
                    || (c.state == observe::ChangeState::Open && c.head != record.tip())
            });
            if stale
                && record.hands_off.is_none()
                && entry
                    .change
                    .as_ref()
                    .is_none_or(|c| c.state == observe::ChangeState::Open)
            {
                entry.change = Some(observe::ChangeObs {
                    number: record.number,
                    head: record.tip(),
                    state: observe::ChangeState::Open,
                    merged_as: None,
                    approved_by: None,
                    changes_requested: None,
                    update_of: None,
                });
            }
        }
    }
}

impl Snapshot {
    /// What `converge status` shows: decided as STATUS.md is, under the real
    /// limits, not one tick's budget.
    pub fn dashboard_decision(&self, now: Timestamp) -> Decision {
        dashboard_decision(&self.spec, &self.observation, &self.status, now)
    }
}

/// What the dashboards (STATUS.md, `converge status`, the board) show: what
/// waits on a real limit (agents, the hourly rate), decided under the real
/// limits, not one tick's `actions_per_tick` budget.
pub(crate) fn dashboard_decision(
    spec: &Spec,
    observation: &Observation,
    status: &Status,
    now: Timestamp,
) -> Decision {
    let limits = Limits::from(&spec.config.reconcile).for_dashboard();
    decide::decide(spec, observation, status, now, &limits)
}

/// The agents' private worktrees under the configured worktree root (none
/// when the root is refused: dispatch reports that).
fn note_worktrees(repo: &Repo, spec: &Spec, obs: &mut Observation) {
    let configured = spec.config.reconcile.worktree_root.as_deref();
    if let Ok(root) = crate::act::dispatch::worktree_root(repo.common_dir(), configured) {
        observe::note_private_worktrees(obs, &root);
    }
}
