//! One tick: load spec (base branch commit) → observe → decide → act (≤ N) →
//! record (DESIGN §4). The caller holds the lock.

use std::collections::BTreeMap;
use std::path::PathBuf;

use gix::ObjectId;

use crate::act::{ActCtx, ActError, Applied};
use crate::agent::{Secret, SecretError};
use crate::decide::{self, Action, Decision, Limits};
use crate::git::{GitError, Repo};
use crate::observe::{self, Observation, ObserveError};
use crate::spec::{Diagnostic, Severity, Spec};
use crate::status::load::STATUS_DIR;
use crate::status::model::{StatusError, to_toml};
use crate::status::record::{self, Change, Message, Outcome, RecordError};
use crate::status::render::status_md;
use crate::status::{Phase, Status};
use crate::time::Timestamp;

pub const STATUS_MD: &str = "planning/STATUS.md";

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
}

impl TickReport {
    /// Whether the tick carried out at least one action.
    pub fn acted(&self) -> bool {
        self.applied.iter().any(|a| a.deferred.is_none())
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
    #[error("{branch} here and on `{remote}` have diverged; converge does not rewrite either")]
    Diverged { branch: String, remote: String },
}

/// Brings `branch` up to date with `remote`: fetches it and fast-forwards the
/// local branch (and a clean checkout of it) when the remote is ahead. Returns
/// the remote's tip (the lease for the push) and whether the local branch moved.
fn sync_from_remote(
    repo: &Repo,
    remote: &str,
    branch: &str,
) -> Result<(Option<ObjectId>, bool), TickError> {
    let remote_tip = repo.fetch_branch(remote, branch)?;
    let Some(theirs) = remote_tip else {
        return Ok((None, false));
    };
    match repo.branch_tip(branch)? {
        None => {
            repo.create_ref(&format!("refs/heads/{branch}"), theirs, "converge: fetch")?;
            Ok((Some(theirs), true))
        }
        Some(ours) if ours == theirs => Ok((Some(theirs), false)),
        Some(ours) if repo.is_ancestor(ours, theirs)? => {
            repo.advance_branch(
                branch,
                ours,
                theirs,
                "converge: fast-forward from the remote",
            )?;
            Ok((Some(theirs), true))
        }
        Some(ours) if repo.is_ancestor(theirs, ours)? => Ok((Some(theirs), false)),
        Some(_) => Err(TickError::Diverged {
            branch: branch.to_owned(),
            remote: remote.to_owned(),
        }),
    }
}

/// Runs one tick. With `[reconcile].remote`, the base and status branches are
/// first fetched and fast-forwarded, and what the tick committed is pushed with
/// a lease on the fetched values: across machines, the push is the
/// compare-and-swap. A dry run does not fetch.
pub fn tick(repo: &Repo, options: &TickOptions<'_>) -> Result<TickReport, TickError> {
    if !options.dry_run {
        // A checkout left behind its branch by a crash is brought along first.
        repo.recover_checkouts()?;
    }
    let base = repo.base_source()?;
    let (remote, status_branch) = repo.remote_settings(base.commit)?;
    let remote = remote.filter(|_| !options.dry_run);
    let Some(remote) = remote else {
        return tick_local(repo, options, None, None);
    };
    let mut branches = vec![base.rev.clone()];
    if let Some(status) = status_branch.filter(|s| *s != base.rev && s != "main") {
        branches.push(status);
    }
    let mut leases = BTreeMap::new();
    let mut lines = Vec::new();
    for branch in &branches {
        let (tip, moved) = sync_from_remote(repo, &remote, branch)?;
        if moved {
            lines.push(format!("fast-forwarded {branch} from {remote}"));
        }
        leases.insert(branch.clone(), tip);
    }
    let me = reconciler_id(repo)?;
    // A tick that claimed nothing acts on what it read; one whose claims were
    // pushed reads status again (it changed).
    let prepared = match claim(repo, options, &me, &remote, &mut leases, &mut lines)? {
        Claimed::Nothing(prepared) => Some(*prepared),
        Claimed::Pushed => None,
        Claimed::Lost(report) => return Ok(*report),
    };
    let mut report = tick_local(repo, options, Some(&me), prepared)?;
    report.remote = lines;
    if report.status_branch != report.base_branch && !leases.contains_key(&report.status_branch) {
        let (tip, _) = sync_from_remote(repo, &remote, &report.status_branch)?;
        leases.insert(report.status_branch.clone(), tip);
    }
    for (branch, lease) in &leases {
        let Some(ours) = repo.branch_tip(branch)? else {
            continue;
        };
        if *lease == Some(ours) {
            continue;
        }
        match repo.push_with_lease(&remote, branch, ours, *lease)? {
            crate::git::Pushed::Ok => report.remote.push(format!(
                "pushed {branch} to {remote} ({})",
                &ours.to_string()[..7]
            )),
            crate::git::Pushed::Rejected { message } => {
                // Another reconciler pushed first. Take this tick's commits back
                // so that the next tick starts from the remote's state; its
                // side effects are adopted there (every action is idempotent).
                if let Some(theirs) = lease
                    && repo.is_ancestor(*theirs, ours)?
                {
                    repo.advance_branch(branch, ours, *theirs, "converge: lost a push race")?;
                }
                report.push_rejected = Some(format!(
                    "pushing {branch} to {remote} was rejected: another reconciler pushed first; the next tick recomputes ({message})"
                ));
                break;
            }
        }
    }
    Ok(report)
}

/// How long after a claimed attempt's deadline its claim lapses: the owner
/// reaps its own timed-out attempts at the deadline, so a claim still there
/// this much later belongs to a reconciler that is gone.
pub const CLAIM_GRACE: std::time::Duration = std::time::Duration::from_secs(600);

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
    let path = repo.common_dir().join("converge").join("reconciler-id");
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
enum Claimed {
    /// Nothing to claim: the tick goes on with what it read.
    Nothing(Box<Prepared>),
    /// Claims were pushed: status changed.
    Pushed,
    /// The claim lost a push race: nothing was started; the tick's report.
    Lost(Box<TickReport>),
}

/// Before a tick with a remote starts agents, it claims their tasks: a status
/// commit naming this reconciler, pushed with a lease. Only a reconciler whose
/// claim reached the remote starts the agent, so two machines never both start
/// one task. A claim that loses the push race starts nothing; the next tick
/// recomputes from the remote's state.
fn claim(
    repo: &Repo,
    options: &TickOptions<'_>,
    me: &str,
    remote: &str,
    leases: &mut BTreeMap<String, Option<ObjectId>>,
    lines: &mut Vec<String>,
) -> Result<Claimed, TickError> {
    let prepared = prepare(repo, options, Some(me))?;
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
        st.claim = Some(crate::status::Claim {
            by: me.to_owned(),
            attempt: *attempt,
            until: options.now.plus(timeout).plus(CLAIM_GRACE),
        });
        claimed.push((key.clone(), *attempt));
    }
    if claimed.is_empty() {
        return Ok(Claimed::Nothing(Box::new(prepared)));
    }
    let branch = prepared.status_branch.clone();
    let expected = match prepared.status_tip {
        Some(tip) => tip,
        None => {
            repo.create_ref(
                &format!("refs/heads/{branch}"),
                prepared.base.commit,
                "converge: create the status branch",
            )?;
            prepared.base.commit
        }
    };
    let mut changes = Vec::new();
    for (plan, plan_status) in &status.plans {
        if prepared.status.plans.get(plan) != Some(plan_status) {
            changes.push(Change {
                path: format!("{STATUS_DIR}/{plan}.toml"),
                content: Some(to_toml(plan, plan_status)?.into_bytes()),
            });
        }
    }
    let (plan, task, attempt) = match claimed.as_slice() {
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
    let message = Message {
        action: "claim".to_owned(),
        plan,
        task,
        attempt,
        spec: prepared.base.commit.to_string(),
        body: claimed
            .iter()
            .map(|c| format!("claim {c} for reconciler {me}"))
            .collect(),
        summary: (claimed.len() > 1).then(|| format!("claim {}", claimed.join(", "))),
    };
    let signer = prepared.spec.config.reconcile.signer(options.env);
    let commit = match record::record(repo, &branch, expected, &changes, &message, &signer)? {
        Outcome::Committed { commit, .. } => commit,
        Outcome::Unchanged => return Ok(Claimed::Nothing(Box::new(prepared))),
    };
    let lease = leases.get(&branch).copied().flatten();
    match repo.push_with_lease(remote, &branch, commit, lease)? {
        crate::git::Pushed::Ok => {
            lines.push(format!(
                "claimed {} on {remote} ({})",
                claimed.join(", "),
                &commit.to_string()[..7]
            ));
            leases.insert(branch, Some(commit));
            Ok(Claimed::Pushed)
        }
        crate::git::Pushed::Rejected { message } => {
            repo.advance_branch(&branch, commit, expected, "converge: lost a claim race")?;
            let Prepared {
                base,
                spec,
                diagnostics,
                status_branch,
                status,
                status_problems,
                observation,
                decision,
                ..
            } = prepared;
            Ok(Claimed::Lost(Box::new(TickReport {
                base_branch: base.rev.clone(),
                status_branch,
                spec_commit: base.commit,
                spec,
                observation,
                decision: Decision {
                    actions: Vec::new(),
                    ..decision.clone()
                },
                status,
                next: decision,
                applied: Vec::new(),
                failed: None,
                recorded: Recorded::Unchanged,
                diagnostics,
                status_problems,
                remote: std::mem::take(lines),
                recovered: Vec::new(),
                push_rejected: Some(format!(
                    "claiming {} on {remote} was rejected: another reconciler pushed first; nothing was started and the next tick recomputes ({message})",
                    claimed.join(", ")
                )),
            })))
        }
    }
}

/// What a tick reads and decides before it acts.
struct Prepared {
    base: crate::git::CommitSource,
    spec: Spec,
    diagnostics: Vec<Diagnostic>,
    status_branch: String,
    status_tip: Option<ObjectId>,
    status: Status,
    status_problems: Vec<String>,
    secret: Secret,
    observation: Observation,
    limits: Limits,
    decision: Decision,
}

fn prepare(
    repo: &Repo,
    options: &TickOptions<'_>,
    reconciler: Option<&str>,
) -> Result<Prepared, TickError> {
    let base = repo.base_source()?;
    let files = repo.read_planning(base.commit)?;
    let loaded = crate::spec::compile(&files);
    let Some(spec) = loaded.spec else {
        return Err(TickError::InvalidSpec {
            commit: base.commit.to_string(),
            diagnostics: loaded.diagnostics,
        });
    };
    let diagnostics = loaded.diagnostics;
    // The default status branch is the base branch, whatever it is called.
    let configured = &spec.config.reconcile.status_branch;
    let status_branch = if *configured == spec.config.reconcile.base_branch {
        base.rev.clone()
    } else {
        configured.clone()
    };
    let status_tip = repo.branch_tip(&status_branch)?;
    let status_read_at = status_tip.unwrap_or(base.commit);
    let (status, problems) = crate::status::load::load(repo, status_read_at)?;
    let status_problems = problems.iter().map(ToString::to_string).collect();
    let secret = Secret::load_or_create(repo.common_dir())?;
    let mut observation = observe::observe(repo, &status, base.commit, &secret)?;
    observation.reconciler = reconciler.map(str::to_owned);
    if spec.config.sandbox.enabled {
        observation.sandbox = Some(crate::act::sandbox::probe());
    }
    let limits = Limits::from(&spec.config.reconcile);
    let decision = decide::decide(&spec, &observation, &status, options.now, &limits);
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

/// One tick on the local branches.
/// `prepared`: what the tick already read and decided, if anything.
fn tick_local(
    repo: &Repo,
    options: &TickOptions<'_>,
    reconciler: Option<&str>,
    prepared: Option<Prepared>,
) -> Result<TickReport, TickError> {
    let Prepared {
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
    } = match prepared {
        Some(prepared) => prepared,
        None => prepare(repo, options, reconciler)?,
    };
    let base_branch = base.rev.clone();

    let mut new_status = status.clone();
    let mut applied = Vec::new();
    let mut failed = None;
    let redactor = crate::agent::Redactor::for_reconciler(&secret);
    let forge = crate::forge::local::LocalForge {
        repo,
        invariants: spec
            .config
            .merge
            .invariants
            .iter()
            .filter_map(|n| spec.config.invariants.get(n))
            .collect(),
        redactor: &redactor,
    };
    let mut ctx = ActCtx {
        repo,
        spec: &spec,
        secret: &secret,
        forge: &forge,
        converge: &options.converge,
        now: options.now,
        env: options.env,
        base_branch: base_branch.clone(),
        base_tip: base.commit,
        redactor: redactor.clone(),
        sandbox: observation.sandbox.clone(),
        worktree_root: crate::act::dispatch::worktree_root(
            repo.common_dir(),
            spec.config.reconcile.worktree_root.as_deref(),
        )?,
    };
    let backoff = &spec.config.reconcile.backoff;
    if !options.dry_run {
        for action in &decision.actions {
            let key = action.key().map(|k| (k.plan.as_str(), k.task.as_str()));
            // The executor reports what happened; the transition records it.
            let done = match crate::act::apply(&mut ctx, &new_status, action) {
                Ok(mut done) => {
                    // Failures of earlier actions on the task are over.
                    done.outcomes.push(crate::act::Outcome::ActionSucceeded);
                    done
                }
                // The failure is the task's, not the tick's (see act::policy):
                // the action changed nothing, the failure is recorded on the
                // task (a backoff, escalation when it repeats), and the other
                // actions go on.
                Err(e) => match crate::act::policy::failed(&ctx, &new_status, action, e) {
                    Ok(done) => done,
                    Err(stop) => {
                        // Someone else moved the base: nothing of this merge
                        // happened; record what came before and let the next
                        // tick recompute.
                        if let Some(key) = key {
                            crate::status::transition::apply_to(
                                &mut new_status,
                                key,
                                &stop.kept,
                                options.now,
                                backoff,
                            );
                        }
                        failed = Some(stop.reason);
                        break;
                    }
                },
            };
            if let Some(key) = key {
                crate::status::transition::apply_to(
                    &mut new_status,
                    key,
                    &done.outcomes,
                    options.now,
                    backoff,
                );
            }
            applied.push(done);
        }
    }
    let base_tip = ctx.base_tip;
    if !applied.is_empty() {
        crate::crash::point("after-act");
    }

    // What the next tick would do, for STATUS.md: re-observed after acting so
    // that a tick with nothing to do renders the same bytes.
    let acted = applied.iter().any(|a: &Applied| a.deferred.is_none());
    let (after_obs, after) = if acted {
        let obs = observe::observe(repo, &new_status, base_tip, &secret)?;
        let d = decide::decide(&spec, &obs, &new_status, options.now, &limits);
        (obs, d)
    } else {
        (observation.clone(), decision.clone())
    };
    sync(
        &mut new_status,
        &status,
        &spec,
        &after,
        &after_obs,
        &diagnostics,
        base.commit,
    );
    note_rejected_events(&mut new_status, &after_obs, options.now);

    // The files of the status commit.
    let status_tip_now = if status_branch == base_branch {
        Some(base_tip)
    } else {
        status_tip
    };
    let read_from = status_tip_now.unwrap_or(base_tip);
    let mut wanted: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
    for (plan, plan_status) in &new_status.plans {
        wanted.insert(
            format!("{STATUS_DIR}/{plan}.toml"),
            Some(to_toml(plan, plan_status)?.into_bytes()),
        );
    }
    for name in repo.list_dir_at(read_from, STATUS_DIR)? {
        if let Some(plan) = name.strip_suffix(".toml")
            && !new_status.plans.contains_key(plan)
        {
            wanted.insert(format!("{STATUS_DIR}/{name}"), None);
        }
    }
    // The dashboard shows what waits on a real limit (agents, the hourly
    // rate), not on this one tick's `actions_per_tick` budget.
    let dashboard = decide::decide(
        &spec,
        &after_obs,
        &new_status,
        options.now,
        &limits.for_dashboard(),
    );
    wanted.insert(
        STATUS_MD.to_owned(),
        Some(status_md(&spec, &new_status, &dashboard).into_bytes()),
    );
    for done in &applied {
        for (path, content) in &done.files {
            wanted.insert(path.clone(), content.clone());
        }
    }
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
    let dashboard_only = changes.iter().all(|c| c.path == STATUS_MD);
    if dashboard_only && repo.read_blob_at(read_from, STATUS_MD)?.is_some() {
        changes.clear();
        diff.clear();
    }
    let recorded = if options.dry_run {
        Recorded::DryRun { diff }
    } else if changes.is_empty() {
        Recorded::Unchanged
    } else {
        let expected = match status_tip_now {
            Some(tip) => tip,
            None => {
                // A dedicated status branch that does not exist yet starts at the base.
                repo.create_ref(
                    &format!("refs/heads/{status_branch}"),
                    base_tip,
                    "converge: create the status branch",
                )?;
                base_tip
            }
        };
        let message = message_of(&decision.actions, &applied, base.commit);
        let signer = spec.config.reconcile.signer(options.env);
        match record::record(repo, &status_branch, expected, &changes, &message, &signer) {
            Ok(Outcome::Committed { commit, .. }) => Recorded::Committed { commit },
            Ok(Outcome::Unchanged) => Recorded::Unchanged,
            Err(e @ RecordError::Deferred { .. }) => Recorded::Deferred {
                reason: format!(
                    "{e}; commit or stash them (`git stash push -- <path>`), set `[reconcile] status_branch` to a branch nobody has checked out, or run converge in a clone of its own; status is recorded on the next tick"
                ),
            },
            Err(e) => return Err(e.into()),
        }
    };
    Ok(TickReport {
        base_branch,
        status_branch,
        spec_commit: base.commit,
        spec,
        observation,
        decision,
        status: new_status,
        next: after,
        applied,
        failed,
        recorded,
        diagnostics,
        status_problems,
        remote: Vec::new(),
        push_rejected: None,
        recovered: Vec::new(),
    })
}

/// Brings status in line with the spec and what was observed: every task of a
/// valid plan has an entry; phases that are derived (waiting, blocked, merged,
/// awaiting approval) follow the decision; tasks and plans that are gone for
/// good are dropped; invalid plans carry their errors.
fn sync(
    status: &mut Status,
    before: &Status,
    spec: &Spec,
    decision: &Decision,
    obs: &Observation,
    diagnostics: &[Diagnostic],
    spec_commit: ObjectId,
) {
    for plan in spec.plans.values() {
        let plan_status = status.plans.entry(plan.id.clone()).or_default();
        plan_status.errors.clear();
        for task in &plan.tasks {
            let st = plan_status.tasks.entry(task.name.clone()).or_default();
            if st.attempt == 0 && st.phase != Phase::Escalated {
                st.generation = task.generation.clone();
            }
        }
    }
    for report in &decision.report {
        let derived = matches!(
            report.phase,
            Phase::Pending | Phase::Blocked | Phase::Merged | Phase::AwaitingApproval
        );
        if !derived || report.action.is_some() {
            continue;
        }
        let Some(st) = status
            .plans
            .get_mut(&report.key.plan)
            .and_then(|p| p.tasks.get_mut(&report.key.task))
        else {
            continue;
        };
        if st.phase != report.phase
            && !(report.phase == Phase::Pending && st.phase == Phase::Cancelled)
        {
            st.phase = report.phase;
        }
        // Work found merged in git (after a crash lost the merge's status, or a
        // person merged the branch) is recorded, so that cleaning up its
        // branch later cannot lose the proof.
        if report.phase == Phase::Merged && st.merged_as.is_none() {
            st.merged_as = obs.task(&report.key).and_then(|o| o.branch_head.clone());
        }
    }
    for (plan_id, plan_status) in &mut status.plans {
        if spec.invalid_plans.contains(plan_id) {
            let file = format!("planning/plans/{plan_id}.toml");
            plan_status.errors = diagnostics
                .iter()
                .filter(|d| d.file == file && d.severity == Severity::Error)
                .map(|d| match &d.location {
                    Some(l) => format!("{}:{}:{}: {}", d.file, l.line, l.column, d.message),
                    None => format!("{}: {}", d.file, d.message),
                })
                .collect();
            continue;
        }
        let plan = spec.plans.get(plan_id);
        plan_status.tasks.retain(|task, _| {
            let in_spec = plan.is_some_and(|p| p.task(task).is_some());
            let key = observe::TaskKey::new(plan_id.as_str(), task.as_str());
            let lingering = obs.task(&key).is_some_and(|o| {
                o.worktree
                    || o.branch_head.is_some()
                    || matches!(
                        o.run.as_ref().map(|r| &r.state),
                        Some(observe::RunState::Running { .. })
                    )
            });
            in_spec || lingering
        });
    }
    for plan in &spec.invalid_plans {
        let entry = status.plans.entry(plan.clone()).or_default();
        if entry.errors.is_empty() {
            entry.errors.push(format!(
                "planning/plans/{plan}.toml does not validate; `converge plan validate` lists why"
            ));
        }
    }
    status.plans.retain(|id, p| {
        spec.plans.contains_key(id) || spec.invalid_plans.contains(id) || !p.tasks.is_empty()
    });
    // A claim ends with its attempt: failed, escalated, merged or cancelled
    // attempts are free for any reconciler to take up again.
    for st in status.plans.values_mut().flat_map(|p| p.tasks.values_mut()) {
        let ended = matches!(
            st.phase,
            Phase::Pending
                | Phase::Failed
                | Phase::Escalated
                | Phase::Merged
                | Phase::Blocked
                | Phase::Cancelled
        );
        if ended && st.claim.as_ref().is_some_and(|c| c.attempt <= st.attempt) {
            st.claim = None;
        }
    }
    // `spec` says which planning commit a plan's status was computed from; it
    // moves only when something else about the plan changed.
    for (id, plan_status) in &mut status.plans {
        let previous = before.plans.get(id);
        let mut comparable = plan_status.clone();
        comparable.spec = previous.and_then(|p| p.spec.clone());
        if previous != Some(&comparable) {
            plan_status.spec = Some(spec_commit.to_string());
        } else {
            plan_status.spec = comparable.spec;
        }
    }
}

/// The condition a task carries while its current attempt's run directory holds
/// events whose token did not verify (forged, or meant for another attempt):
/// they were ignored, and a human should know someone tried.
pub const EVENTS_REJECTED: &str = "EventsRejected";

fn note_rejected_events(status: &mut Status, obs: &Observation, now: Timestamp) {
    for (plan_id, plan) in &mut status.plans {
        for (task, st) in &mut plan.tasks {
            let key = observe::TaskKey::new(plan_id.as_str(), task.as_str());
            let rejected = obs
                .task(&key)
                .and_then(|o| o.run.as_ref())
                .filter(|r| r.attempt == st.attempt && r.rejected_events > 0)
                .map(|r| r.rejected_events);
            // Run records outlive their attempt, so the condition stays until
            // the next attempt starts.
            let Some(count) = rejected else {
                st.conditions.retain(|c| c.kind != EVENTS_REJECTED);
                continue;
            };
            let message = format!(
                "{count} event(s) of attempt {} carried a token that does not verify for it and were ignored",
                st.attempt
            );
            match st.conditions.iter_mut().find(|c| c.kind == EVENTS_REJECTED) {
                Some(c) if c.message == message => {}
                Some(c) => c.message = message,
                None => st.conditions.push(crate::status::Condition {
                    kind: EVENTS_REJECTED.to_owned(),
                    status: true,
                    reason: "token-rejected".to_owned(),
                    message,
                    since: now,
                }),
            }
        }
    }
}

/// The commit message of a tick: the one action's subject, or a summary.
fn message_of(actions: &[Action], applied: &[Applied], spec: ObjectId) -> Message {
    let done: Vec<(&Action, &Applied)> = actions
        .iter()
        .zip(applied)
        .filter(|(_, a)| a.deferred.is_none() && a.failed.is_none())
        .collect();
    let body: Vec<String> = applied.iter().map(|a| a.line.clone()).collect();
    let summary = (done.len() > 1).then(|| {
        done.iter()
            .map(|(a, _)| match a {
                Action::Promote { item } => format!("promote queue/{item}"),
                other => match other.key() {
                    Some(k) => format!("{} {k}", other.kind().as_str()),
                    None => other.kind().as_str().to_owned(),
                },
            })
            .collect::<Vec<_>>()
            .join(", ")
    });
    let (action, plan, task, attempt) = match done.as_slice() {
        [(one, _)] => {
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
