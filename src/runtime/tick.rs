//! One tick: prepare (load spec from the base branch commit, observe, decide;
//! `prepare.rs`) → act (≤ N) → derive status (`decide::derive`) → record
//! (`record.rs`). With a remote, fetch and claim first and push last
//! (`remote.rs`, `claim.rs`); with the GitHub forge, publish to GitHub after
//! the push (`record::publish`). The caller holds the lock.

use std::path::PathBuf;

use gix::ObjectId;

use crate::act::{ActCtx, ActError, Applied};
use crate::agent::SecretError;
use crate::decide::Decision;
use crate::git::{GitError, Repo};
use crate::observe::{Observation, ObserveError};
use crate::spec::{Diagnostic, Spec};
use crate::status::Status;
use crate::status::model::StatusError;
use crate::status::record::RecordError;
use crate::time::Timestamp;

use super::base::TickBase;
use super::claim::{Claimed, claim, reconciler_id};
use super::prepare::{Prepared, prepare};
use super::record::{Acted, record_tick};
use super::remote;

/// How to run a tick.
#[allow(missing_debug_implementations)] // holds a closure
pub struct TickOptions<'a> {
    /// Decide and show, change nothing.
    pub dry_run: bool,
    /// The converge executable, for supervisors and the `sim` agent.
    pub converge: PathBuf,
    pub now: Timestamp,
    /// The environment agents' allowed variables are read from.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// What earlier ticks of this process compiled and verified.
    pub cache: &'a super::Cache,
}

/// What a tick saw, decided and did.
#[derive(Debug)]
pub struct TickReport {
    pub base_branch: String,
    pub status_branch: String,
    /// The planning commit the tick read.
    pub spec_commit: ObjectId,
    pub spec: Spec,
    pub observation: Observation,
    /// The decision acted on.
    pub decision: Decision,
    /// Status after the tick (for a dry run: as it stands, brought in line
    /// with the spec), and what the next tick would do.
    pub status: Status,
    pub next: Decision,
    /// What each action did, in order.
    pub applied: Vec<Applied>,
    /// Why acting stopped early (the base branch moved under a merge); what
    /// came before is recorded. An action that fails is not this: it is
    /// recorded on its task (`Applied::failed`) and the others go on.
    pub failed: Option<String>,
    pub recorded: Recorded,
    /// Diagnostics of the planning files (invalid plans are set aside).
    pub diagnostics: Vec<Diagnostic>,
    /// Status files that could not be read (rebuilt from observation).
    pub status_problems: Vec<String>,
    /// What was fetched and pushed (`[reconcile].remote`).
    pub remote: Vec<String>,
    /// The push lost a race: this tick's commits were taken back locally and
    /// the next tick recomputes from the remote's state.
    pub push_rejected: Option<String>,
    /// What recovery removed before the tick: locks and worktrees a killed
    /// process left (see `runtime::recover`).
    pub recovered: Vec<String>,
    /// What the schedules did before the spec was read (`runtime::schedule`).
    pub schedules: super::schedule::Schedules,
    /// What the autonomy loop did before the spec was read (`runtime::autonomy`).
    pub autonomy: super::autonomy::Stepped,
}

impl TickReport {
    /// Whether the tick carried out at least one action.
    pub fn acted(&self) -> bool {
        self.applied.iter().any(|a| a.deferred.is_none())
    }

    /// Whether the tick's actions or the autonomy loop changed anything.
    pub fn progressed(&self) -> bool {
        self.acted() || self.autonomy.recorded.is_some()
    }

    /// The report of a tick that read `prepared`, acted on its decision and
    /// ended with `status`; `next` is what the next tick would do.
    fn of(
        prepared: Prepared,
        status: Status,
        next: Decision,
        applied: Vec<Applied>,
        failed: Option<String>,
        recorded: Recorded,
    ) -> TickReport {
        let read = prepared.into_snapshot(status);
        TickReport {
            base_branch: read.base_branch,
            status_branch: read.status_branch,
            spec_commit: read.spec_commit,
            spec: read.spec,
            observation: read.observation,
            decision: read.decision,
            status: read.status,
            next,
            applied,
            failed,
            recorded,
            diagnostics: read.diagnostics,
            status_problems: read.status_problems,
            remote: Vec::new(),
            push_rejected: None,
            recovered: Vec::new(),
            schedules: super::schedule::Schedules::default(),
            autonomy: super::autonomy::Stepped::default(),
        }
    }

    /// The report of a tick that read `prepared` and did nothing: status as
    /// read, no action taken, nothing recorded.
    pub(crate) fn unacted(prepared: Prepared) -> TickReport {
        let status = prepared.status.clone();
        let next = prepared.decision.clone();
        let mut report = TickReport::of(
            prepared,
            status,
            next,
            Vec::new(),
            None,
            Recorded::Unchanged,
        );
        report.decision.actions.clear();
        report
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    Committed {
        commit: ObjectId,
    },
    /// Nothing changed: no commit.
    Unchanged,
    /// `--dry-run`: the unified diff of the status files the tick would write.
    DryRun {
        diff: String,
    },
    /// The status branch is checked out with uncommitted changes.
    Deferred {
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum TickError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("planning/ at {commit} has errors that stop every plan")]
    InvalidSpec {
        commit: String,
        diagnostics: Vec<Diagnostic>,
    },
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Observe(#[from] ObserveError),
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Act(#[from] ActError),
    #[error("cannot read or create the reconciler id {}", path.display())]
    Identity {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    WorktreeRoot(#[from] crate::act::dispatch::WorktreeRootError),
    #[error("the autonomy loop cannot go on")]
    Autonomy(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("{branch} here and on `{remote}` have diverged; converge does not rewrite either")]
    Diverged { branch: String, remote: String },
}
/// Runs one tick. With `[reconcile].remote`, the base and status branches are
/// first fetched and fast-forwarded, and what the tick committed is pushed with
/// a lease on the fetched values: across machines, the push is the
/// compare-and-swap. A dry run does not fetch.
pub fn tick(repo: &Repo, options: &TickOptions<'_>) -> Result<TickReport, TickError> {
    tick_on(repo, options, TickBase::choose(repo))
}

/// [`tick`] on the base branch its caller chose (for recovery, before it);
/// a base that could not be chosen then is chosen again after the checkouts
/// are recovered, and its error is the tick's.
pub(crate) fn tick_on(
    repo: &Repo,
    options: &TickOptions<'_>,
    base: Result<TickBase, GitError>,
) -> Result<TickReport, TickError> {
    if !options.dry_run {
        // A checkout left behind its branch by a crash is brought along first.
        repo.recover_checkouts()?;
    }
    let mut base = match base {
        Ok(base) => base,
        Err(_) => TickBase::choose(repo)?,
    };
    let chosen = base.read().clone();
    let (remote, status_branch) = crate::spec::base::remote_settings(repo, chosen.commit)?;
    let remote = remote.filter(|_| !options.dry_run);
    let Some(remote) = remote else {
        // Due schedules enqueue first, so that this tick's spec has their items.
        let schedules = super::schedule::fire(repo, &mut base, options)?;
        // The loop files its items before the spec is read, too (it runs
        // only without a remote: the config refuses it with one).
        // A failing step is the loop's, not the tick's: the tasks go on.
        let autonomy = super::autonomy::step(repo, &mut base, options).unwrap_or_else(|e| {
            let why = crate::check::error_chain(&e);
            tracing::warn!(error = %why, "the autonomy loop's step failed");
            let code = crate::model::LoopCode::StepFailed.as_str();
            super::autonomy::Stepped {
                lines: vec![format!(
                    "autonomy: the loop's step failed ({code}): {why}; the tasks go on, and the next tick tries again"
                )],
                wait: Some((code.to_owned(), why)),
                ..super::autonomy::Stepped::default()
            }
        });
        let forge = crate::forge::github::session::Session::new(options.env, options.now);
        let refresh = autonomy.recorded.is_some();
        let mut report = tick_local(repo, &mut base, options, &forge, None, None, refresh)?;
        report.schedules = schedules;
        report.autonomy = autonomy;
        return Ok(report);
    };
    let mut branches = vec![chosen.rev.clone()];
    if let Some(status) = status_branch.filter(|s| *s != chosen.rev && s != "main") {
        branches.push(status);
    }
    let (mut leases, mut lines) = remote::sync_all(repo, &remote, &branches)?;
    // On the fetched base: the push's lease makes the enqueue commit a
    // compare-and-swap across machines.
    let mut schedules = super::schedule::fire(repo, &mut base, options)?;
    super::schedule::push(repo, &remote, &mut leases, &mut schedules, &mut lines)?;
    let me = reconciler_id(repo)?;
    // One session with the GitHub forge for the whole tick.
    let forge = crate::forge::github::session::Session::new(options.env, options.now);
    // A tick that claimed nothing acts on what it read; one whose claims were
    // pushed reads status again (it changed).
    let read = prepare(
        repo,
        &mut base,
        options.now,
        Some(&me),
        Some(&forge),
        options.cache,
    )?;
    let claimed = claim(repo, options, read, &me, &remote, &mut leases, &mut lines)?;
    let prepared = match claimed {
        Claimed::Nothing(prepared) => Some(*prepared),
        Claimed::Pushed => None,
        Claimed::Lost(mut report) => {
            report.schedules = schedules;
            return Ok(*report);
        }
    };
    let mut report = tick_local(repo, &mut base, options, &forge, Some(&me), prepared, false)?;
    report.remote = lines;
    report.schedules = schedules;
    if report.status_branch != report.base_branch && !leases.contains_key(&report.status_branch) {
        let (tip, _) = remote::sync_from_remote(repo, &remote, &report.status_branch)?;
        leases.insert(report.status_branch.clone(), tip);
    }
    remote::follow_fetched(repo, &remote, &mut leases)?;
    remote::push_all(repo, &remote, &leases, &mut report)?;
    super::record::publish(repo, &forge, &mut report);
    Ok(report)
}

/// One tick on the local branches: act on the decision, bring status in line
/// with what comes next, record.
/// `prepared`: what the tick already read and decided, if anything.
fn tick_local(
    repo: &Repo,
    base: &mut TickBase,
    options: &TickOptions<'_>,
    session: &crate::forge::github::session::Session<'_>,
    reconciler: Option<&str>,
    prepared: Option<Prepared>,
    refresh_dashboard: bool,
) -> Result<TickReport, TickError> {
    let prepared = match prepared {
        Some(prepared) => prepared,
        None => prepare(
            repo,
            base,
            options.now,
            reconciler,
            Some(session),
            options.cache,
        )?,
    };
    let Prepared {
        base,
        spec,
        secret,
        observation,
        decision,
        status,
        ..
    } = &prepared;

    let mut new_status = status.clone();
    let redactor = crate::agent::Redactor::for_reconciler(secret);
    let worktree_root = crate::act::dispatch::worktree_root(
        repo.common_dir(),
        spec.config.reconcile.worktree_root.as_deref(),
    )?;
    let confinement = crate::check::confine::Confinement::new(
        repo,
        &worktree_root,
        &spec.config.sandbox,
        observation.sandbox.as_ref(),
        &options.converge,
    );
    let local = crate::forge::local::LocalForge {
        repo,
        invariants: spec
            .config
            .merge
            .invariants
            .iter()
            .filter_map(|n| spec.config.invariants.get(n))
            .collect(),
        redactor: &redactor,
        confinement: &confinement,
    };
    let github = github_forge(repo, &prepared, options, session)?;
    let forge: &dyn crate::forge::Forge = match &github {
        Some(g) => g,
        None => &local,
    };
    let mut ctx = ActCtx {
        repo,
        spec,
        secret,
        forge,
        converge: &options.converge,
        now: options.now,
        env: options.env,
        base_branch: base.rev.clone(),
        base_tip: base.commit,
        redactor: redactor.clone(),
        sandbox: observation.sandbox.clone(),
        worktree_root,
    };
    let (applied, failed) = if options.dry_run {
        (Vec::new(), None)
    } else {
        act(&mut ctx, &decision.actions, &mut new_status, options.now)
    };
    let base_tip = ctx.base_tip;
    if !applied.is_empty() {
        crate::crash::point("after-act");
    }
    let (next, recorded) = look_again_and_record(
        repo,
        options,
        &prepared,
        &mut new_status,
        &applied,
        base_tip,
        refresh_dashboard,
    )?;
    Ok(TickReport::of(
        prepared, new_status, next, applied, failed, recorded,
    ))
}

/// The GitHub forge when the spec names it, on the tick's session (a token
/// is needed only when an action talks to it: decide held them back when
/// there was none); `None` for the local forge and in a dry run.
fn github_forge<'r>(
    repo: &'r Repo,
    prepared: &'r Prepared,
    options: &TickOptions<'_>,
    session: &crate::forge::github::session::Session<'_>,
) -> Result<Option<crate::forge::github::GithubForge<'r>>, TickError> {
    let Some(config) = prepared.spec.config.forge.github() else {
        return Ok(None);
    };
    if options.dry_run {
        return Ok(None);
    }
    let Some(client) = session.client(repo.common_dir(), config) else {
        return Ok(None);
    };
    let forge = client
        .map_err(crate::forge::ForgeError::from)
        .and_then(|client| {
            crate::forge::github::GithubForge::new(
                repo,
                config,
                &prepared.base.rev,
                client,
                options.now,
            )
        })
        .map_err(ActError::from)?;
    Ok(Some(forge))
}

/// Carries out `actions` in order on `status`: what each did, and why acting
/// stopped early (the base branch moved under a merge), if it did.
fn act(
    ctx: &mut ActCtx<'_>,
    actions: &[crate::decide::Action],
    status: &mut Status,
    now: Timestamp,
) -> (Vec<Applied>, Option<String>) {
    let backoff = &ctx.spec.config.reconcile.backoff;
    let mut applied = Vec::new();
    for action in actions {
        let key = action.key().map(|k| (k.plan.as_str(), k.task.as_str()));
        tracing::debug!(%action, "acting");
        // The executor reports what happened; the transition records it.
        let done = match crate::act::apply(ctx, status, action) {
            Ok(mut done) => {
                // Failures of earlier actions on the task are over.
                done.outcomes.push(crate::act::Outcome::ActionSucceeded);
                done
            }
            // The failure is the task's, not the tick's (see act::policy):
            // the action changed nothing, the failure is recorded on the
            // task (a backoff, escalation when it repeats), and the other
            // actions go on.
            Err(e) => match crate::act::policy::failed(ctx, status, action, e) {
                Ok(done) => done,
                Err(stop) => {
                    // Someone else moved the base: nothing of this merge
                    // happened; record what came before and let the next
                    // tick recompute.
                    if let Some(key) = key {
                        crate::status::transition::apply_to(status, key, &stop.kept, now, backoff);
                    }
                    tracing::warn!(%action, reason = %stop.reason, "acting stopped");
                    return (applied, Some(stop.reason));
                }
            },
        };
        tracing::info!(
            done = %done.line,
            deferred = done.deferred.as_deref(),
            failed = done.failed.as_deref(),
            "action"
        );
        if let Some(key) = key {
            crate::status::transition::apply_to(status, key, &done.outcomes, now, backoff);
        }
        applied.push(done);
    }
    (applied, None)
}

/// What the next tick would do, for STATUS.md: re-observed after acting so
/// that a tick with nothing to do renders the same bytes; `status` brought
/// in line with it, and recorded.
fn look_again_and_record(
    repo: &Repo,
    options: &TickOptions<'_>,
    prepared: &Prepared,
    status: &mut Status,
    applied: &[Applied],
    base_tip: ObjectId,
    refresh_dashboard: bool,
) -> Result<(Decision, Recorded), TickError> {
    let acted = applied.iter().any(|a: &Applied| a.deferred.is_none());
    let looking = std::time::Instant::now();
    let (after_obs, after) =
        prepared.look_again(repo, status, base_tip, options.now, acted, options.cache)?;
    prepared.derive(status, &after, &after_obs, options.now);
    let derived = looking.elapsed();
    let recorded = record_tick(
        repo,
        options,
        prepared,
        &Acted {
            status,
            observation: &after_obs,
            applied,
            base_tip,
            refresh_dashboard,
        },
    )?;
    tracing::debug!(
        look_again_us = derived.as_micros() as u64,
        record_us = (looking.elapsed() - derived).as_micros() as u64,
        "recorded"
    );
    Ok((after, recorded))
}
