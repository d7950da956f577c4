//! The per-task rule chain: for one task of a valid plan, its phase as derived
//! this tick and either the action it needs or the reason it waits. The rules
//! are tried in order, the first that speaks decides:
//!
//! 1. [`held`]: an action of converge's own failed on it; it waits out a backoff.
//! 2. [`merged`]: its work is on the base branch.
//! 3. [`claimed`]: another reconciler owns the attempt.
//! 4. [`run`]: the attempt's run (running, vanished, finished).
//! 5. [`phase`]: by its phase in status: merge, retry, escalate, dispatch, wait.

use std::collections::BTreeMap;

use crate::model::CommitId;
use crate::model::TaskKey;
use crate::observe::{Availability, ChangeState, ForgeObs, Observation, RunObs, RunState, TaskObs};
use crate::spec::{Decision as Verdict, Gate, Plan, PlanState, Spec, Task};
use crate::status::{Phase, Status, TaskStatus};
use crate::time::Timestamp;

use super::limits::{budget_blocks_start, foreign_claim};
use super::{ACTION_FAILED, Action, Candidate, Reason};

/// One task of a valid plan, with what decide knows about it.
pub(super) struct Subject<'a> {
    pub spec: &'a Spec,
    pub plan: &'a Plan,
    pub task: &'a Task,
    pub key: &'a TaskKey,
    pub st: &'a TaskStatus,
    pub ob: &'a TaskObs,
    pub obs: &'a Observation,
    pub status: &'a Status,
    /// Harnesses cooling down after a rate limit, until when.
    pub cooling: &'a BTreeMap<&'a str, Timestamp>,
    pub now: Timestamp,
}

/// A [`Subject`] with what every rule derives from it.
pub(super) struct Ctx<'a> {
    pub(super) s: &'a Subject<'a>,
    /// The attempt decided about. A run record newer than status means the
    /// tick that started it crashed before recording: adopt it rather than
    /// start another.
    pub(super) attempt: u32,
    /// Whether the task's spec changed since its last attempt started.
    pub(super) edited: bool,
}

/// The task's phase and its action or the reason it waits.
pub(super) fn classify(s: &Subject<'_>) -> Candidate {
    let attempt =
        s.ob.run
            .as_ref()
            .map_or(s.st.attempt, |r| r.attempt.max(s.st.attempt));
    // A task that never started has no generation to be stale against, unless
    // it was escalated before its first attempt (its harness could not start).
    let started = s.st.attempt > 0 || s.st.phase == Phase::Escalated;
    let edited = started && s.st.generation != s.task.generation;
    let c = Ctx { s, attempt, edited };
    held(&c)
        .or_else(|| merged(&c))
        .or_else(|| claimed(&c))
        .or_else(|| run(&c))
        .unwrap_or_else(|| phase(&c))
}

impl Ctx<'_> {
    pub(super) fn act(&self, phase: Phase, action: Action, reason: Reason) -> Candidate {
        Candidate {
            key: self.s.key.clone(),
            phase,
            step: Ok(action),
            reason,
        }
    }

    pub(super) fn wait(&self, phase: Phase, reason: Reason) -> Candidate {
        Candidate {
            key: self.s.key.clone(),
            phase,
            step: Err(reason.clone()),
            reason,
        }
    }

    pub(super) fn reap(&self, reason: Reason) -> Candidate {
        self.act(
            Phase::Running,
            Action::Reap {
                key: self.s.key.clone(),
                attempt: self.attempt,
                reason: reason.clone(),
            },
            reason,
        )
    }

    /// Starts the next attempt (the first: `Dispatch`; a later one: `Retry`)
    /// unless the plan, the sandbox, a budget or the harness's cooldown holds
    /// it back.
    pub(super) fn start(&self, reason: Reason, first: bool) -> Candidate {
        let s = self.s;
        let phase = s.st.phase;
        if let Some(why) = plan_blocks_start(s.plan) {
            return self.wait(phase, why);
        }
        if let Some(why) = sandbox_blocks_start(s.spec, s.obs) {
            return self.wait(phase, why);
        }
        if let Some(why) =
            budget_blocks_start(s.spec, s.plan, s.status, &s.obs.planner_spend, s.now)
        {
            return self.wait(phase, why);
        }
        if let Some(until) = s.cooling.get(s.task.harness.as_str()) {
            return self.wait(
                phase,
                Reason::HarnessCooling {
                    harness: s.task.harness.clone(),
                    until: *until,
                },
            );
        }
        let key = s.key.clone();
        let attempt = self.attempt + 1;
        let action = if first {
            Action::Dispatch { key, attempt }
        } else {
            Action::Retry {
                key,
                attempt,
                reason: reason.clone(),
            }
        };
        self.act(phase, action, reason)
    }
}

/// Rule 1. An action of converge's own failed on this task: it waits out its
/// backoff (else, decide being deterministic, the same action would come
/// first again every tick and hold back everything of lower priority), and
/// failures in a row escalated it. An edit (`converge retry`) starts over.
fn held(c: &Ctx<'_>) -> Option<Candidate> {
    if c.edited {
        return None;
    }
    let (phase, why) = held_after_action_failure(c.s.st, c.s.now)?;
    Some(c.wait(phase, why))
}

/// Rule 2. Merged is read from git, not from status. The branch is cleaned up
/// only once status records the merge: until then it is the only proof (a
/// crash right after merging loses the tick's status).
fn merged(c: &Ctx<'_>) -> Option<Candidate> {
    let (ob, st) = (c.s.ob, c.s.st);
    if !ob.merged {
        return None;
    }
    if (ob.worktree || ob.branch_head.is_some()) && st.merged_as.is_some() {
        return Some(c.act(
            Phase::Merged,
            Action::Cleanup {
                key: c.s.key.clone(),
            },
            Reason::CleanupAfterMerge,
        ));
    }
    Some(c.wait(Phase::Merged, Reason::Merged))
}

/// Rule 3. Another reconciler owns the attempt: it runs, gates and merges it.
/// Its claim lapses at `until` while no gate has passed (the machine is
/// gone); a passed attempt's commits live only there, so only an edit
/// (`converge retry`) takes it over, unless they are on the forge: a passed
/// head converge pushed there (its pull request) is anyone's to carry on.
fn claimed(c: &Ctx<'_>) -> Option<Candidate> {
    let (st, now) = (c.s.st, c.s.now);
    let gated_phase = matches!(st.phase, Phase::Passed | Phase::AwaitingApproval);
    // Recorded as pushed, or an open pull request shows it (pushed by a
    // tick that was lost before recording it).
    let on_forge = st.head.is_some_and(|head| {
        st.change.as_ref().is_some_and(|ch| ch.pushed == head)
            || c.s
                .ob
                .change
                .as_ref()
                .is_some_and(|ch| ch.state == ChangeState::Open && ch.head == head)
    });
    if gated_phase && on_forge {
        return None;
    }
    let in_flight = matches!(st.phase, Phase::Running | Phase::Checking);
    let claim = foreign_claim(st, c.s.obs)
        .filter(|c| c.attempt > st.attempt || in_flight || gated_phase)?;
    let expired = now >= claim.until;
    // Gated by a reconciler that was gone before its work reached the
    // forge (its head is on no branch here, no pull request shows it, and
    // the forge answered): nobody has the work, so the attempt is reaped and
    // done again, as one whose agent a lost reconciler ran.
    let lost_work = gated_phase
        && matches!(c.s.obs.forge, ForgeObs::Observed { .. })
        && c.s.ob.branch_head.is_none_or(|b| Some(b) != st.head);
    if expired && (in_flight || lost_work) {
        return Some(c.reap(Reason::ClaimExpired {
            by: claim.by.clone(),
        }));
    }
    let released = (expired && !gated_phase) || (c.edited && !in_flight);
    if released {
        return None;
    }
    Some(c.wait(
        st.phase,
        Reason::ClaimedElsewhere {
            by: claim.by.clone(),
            until: claim.until,
        },
    ))
}

/// Rule 4. The attempt's run: past its deadline, vanished, finished, or
/// superseded by an edit. Status that says an agent runs without a run
/// record is reaped.
fn run(c: &Ctx<'_>) -> Option<Candidate> {
    let st = c.s.st;
    match c.s.ob.run.as_ref().filter(|r| r.attempt == c.attempt) {
        Some(run) => run_of_attempt(c, run),
        // Status says an agent runs, but there is no run record for it.
        None if matches!(st.phase, Phase::Running | Phase::Checking) => {
            Some(c.reap(Reason::AgentVanished))
        }
        None => None,
    }
}

fn run_of_attempt(c: &Ctx<'_>, run: &RunObs) -> Option<Candidate> {
    let (st, attempt) = (c.s.st, c.attempt);
    // Whether this run answers a spec that was edited since: by the
    // generation its lease names; without one, by status when status
    // knows this attempt (a run newer than status, adopted after a
    // crash, is not the status entry's to judge).
    let superseded = match run.generation.as_deref() {
        Some(generation) => generation != c.s.task.generation,
        None => c.edited && attempt == st.attempt,
    };
    let cancel = || {
        c.act(
            Phase::Running,
            Action::Cancel {
                key: c.s.key.clone(),
                attempt,
                reason: Reason::SpecChanged,
            },
            Reason::SpecChanged,
        )
    };
    match &run.state {
        RunState::Running { deadline } if c.s.now >= *deadline => Some(c.reap(Reason::Timeout)),
        RunState::Running { .. } if superseded => Some(cancel()),
        RunState::Running { deadline } => Some(c.wait(
            Phase::Running,
            Reason::Running {
                deadline: *deadline,
            },
        )),
        RunState::Vanished if !gated(st, attempt) => Some(c.reap(Reason::AgentVanished)),
        // An attempt at a spec that was edited since it started is
        // superseded: it is closed as cancelled (and the task starts
        // afresh), never gated nor offered for approval.
        RunState::Exited { .. } if !gated(st, attempt) && superseded => Some(cancel()),
        RunState::Exited { .. } if !gated(st, attempt) => Some(c.act(
            Phase::Checking,
            Action::Gate {
                key: c.s.key.clone(),
                attempt,
            },
            Reason::AgentFinished,
        )),
        _ => None,
    }
}

/// Rule 5. By the phase status records.
fn phase(c: &Ctx<'_>) -> Candidate {
    let st = c.s.st;
    match st.phase {
        Phase::Passed | Phase::AwaitingApproval => passed(c),
        Phase::Failed => failed(c),
        Phase::Escalated => {
            if c.edited {
                c.start(Reason::SpecChanged, false)
            } else {
                c.wait(Phase::Escalated, Reason::Escalated)
            }
        }
        // Status says merged; git shows no merge of converge's for it.
        Phase::Merged => unbacked(c),
        Phase::Running | Phase::Checking => {
            // The attempt's run exists but was already gated (a record raced):
            // nothing to do until status catches up.
            c.wait(st.phase, Reason::AgentFinished)
        }
        Phase::Pending | Phase::Blocked | Phase::Cancelled => pending(c),
    }
}

/// Passed its gate (or waiting for a human): merge once approved and the
/// dependencies are merged; a rejection starts the next attempt.
fn passed(c: &Ctx<'_>) -> Candidate {
    let (s, st) = (c.s, c.s.st);
    if c.edited {
        return c.start(Reason::SpecChanged, false);
    }
    // No head known (a damaged status, no branch): git's null id, at which
    // no branch is, so that a merge finds the head moved.
    let head = st
        .head
        .or(s.ob.branch_head)
        .unwrap_or(CommitId::from_bytes([0; 20]));
    let github = s.spec.config.forge.github().is_some();
    if github && let Some(next) = super::change::proposal(c, head) {
        return next;
    }
    let approval = s
        .spec
        .approvals
        .get(&(s.key.plan.clone(), s.key.task.clone()));
    let review = super::change::change_at(s, head).and_then(|ch| {
        ch.approved_by.clone().map(|by| Reason::ReviewApproved {
            number: ch.number,
            by,
        })
    });
    let reason = match s.task.gate {
        Gate::Auto => Reason::GatePassed,
        Gate::HumanReview | Gate::HumanApprove if approval.is_none() && review.is_some() => {
            review.unwrap_or(Reason::Approved)
        }
        Gate::HumanReview | Gate::HumanApprove => match approval {
            None => return c.wait(Phase::AwaitingApproval, Reason::AwaitingApproval),
            Some(a) if head != a.commit => {
                return c.wait(
                    Phase::AwaitingApproval,
                    Reason::ApprovalStale {
                        approved: a.commit.clone(),
                        head,
                    },
                );
            }
            Some(a) if a.decision == Verdict::Reject => return rejected(c, Reason::Rejected),
            Some(_) => Reason::Approved,
        },
    };
    let waiting = unmerged_dependencies(s.plan, s.task, s.obs);
    if !waiting.is_empty() {
        return c.wait(st.phase, Reason::WaitingOnDependency { tasks: waiting });
    }
    // `pause` is an emergency brake: attempts still finish and are
    // gated (the evidence is ready at resume), nothing merges.
    if let Some(why) = plan_blocks_start(s.plan) {
        return c.wait(st.phase, why);
    }
    if github
        && let Some(change) = &st.change
        && let Some(waiting) = change.waiting.as_ref().filter(|w| s.now < w.until)
    {
        return c.wait(
            st.phase,
            Reason::AwaitingChecks {
                number: change.number,
                why: waiting.why.clone(),
                until: waiting.until,
            },
        );
    }
    c.act(
        st.phase,
        Action::Merge {
            key: s.key.clone(),
            head,
        },
        reason,
    )
}

/// A rejection (a human's, or a review asking for changes): the next
/// attempt, unless it was the last `retry_max` allows (`retry_max` counts
/// retries after the first attempt, gator's meaning).
pub(super) fn rejected(c: &Ctx<'_>, why: Reason) -> Candidate {
    let s = c.s;
    if s.st.failures >= s.task.retry_max {
        return c.act(
            Phase::Failed,
            Action::Escalate {
                key: s.key.clone(),
                reason: why.clone(),
            },
            why,
        );
    }
    c.start(why, false)
}

/// Failed: escalate once the retries are used up, else retry after the backoff.
fn failed(c: &Ctx<'_>) -> Candidate {
    let (s, st) = (c.s, c.s.st);
    if c.edited {
        return c.start(Reason::SpecChanged, false);
    }
    // `retry_max` retries after the first attempt: `retry_max + 1`
    // failed attempts escalate.
    if st.failures > s.task.retry_max {
        return c.act(
            Phase::Failed,
            Action::Escalate {
                key: s.key.clone(),
                reason: Reason::AttemptsExhausted {
                    failures: st.failures,
                },
            },
            Reason::AttemptsExhausted {
                failures: st.failures,
            },
        );
    }
    if let Some(until) = st.next_eligible_at.filter(|t| s.now < *t) {
        return c.wait(Phase::Failed, Reason::Backoff { until });
    }
    let limited = st.attempts.iter().find(|a| a.number == c.attempt);
    if let Some(harness) = limited
        .filter(|a| a.cooldown_until.is_some())
        .and_then(|a| a.harness.clone())
    {
        return c.start(Reason::RateLimitOver { harness }, false);
    }
    c.start(
        Reason::FailedBefore {
            failures: st.failures,
        },
        false,
    )
}

/// Status claims the task merged and git does not back the claim (a status
/// file edited by hand, a base branch rewritten under a merge): the claim is
/// corrected (derive notes it) and the task goes on as a pending one.
fn unbacked(c: &Ctx<'_>) -> Candidate {
    // A merge the forge made (squash, rebase, a person's) carries none of
    // converge's trailers; only the forge confirms it. Until it can be asked,
    // status stands: no agent redoes merged work for want of an answer.
    if let Some(record) = &c.s.st.change
        && let Some(held) = super::change::forge_unanswered(&c.s.obs.forge)
    {
        return c.wait(
            Phase::Merged,
            Reason::ForgeCooling {
                why: format!(
                    "the merge of pull request #{} waits for GitHub to confirm it: {}",
                    record.number, held.0
                ),
                until: held.1,
            },
        );
    }
    let why = c.s.ob.unbacked.clone().unwrap_or_else(|| {
        "status records it as merged, but no merge commit of converge's for it is in the base branch"
            .to_owned()
    });
    let reason = Reason::StatusUnbacked { why };
    let mut candidate = start_when_free(c, reason.clone(), reason);
    if candidate.phase == Phase::Merged {
        candidate.phase = Phase::Pending;
    }
    candidate
}

/// Not started, blocked or cancelled: start once the dependencies are merged.
fn pending(c: &Ctx<'_>) -> Candidate {
    start_when_free(c, Reason::Ready, Reason::SpecChanged)
}

/// Starts the task (`first` on its first attempt, else `again`) once nothing
/// holds it back: a blocked or unmerged dependency, its plan's state.
fn start_when_free(c: &Ctx<'_>, first: Reason, again: Reason) -> Candidate {
    let s = c.s;
    if let Some(dep) = blocked_dependency(s.plan, s.task, s.obs, s.status) {
        return c.wait(Phase::Blocked, Reason::DependencyBlocked { task: dep });
    }
    let waiting = unmerged_dependencies(s.plan, s.task, s.obs);
    if !waiting.is_empty() {
        return c.wait(
            Phase::Pending,
            Reason::WaitingOnDependency { tasks: waiting },
        );
    }
    if let Some(why) = plan_blocks_start(s.plan) {
        return c.wait(Phase::Pending, why);
    }
    if c.attempt == 0 {
        c.start(first, true)
    } else {
        c.start(again, false)
    }
}

/// Why a task one of whose actions failed is not acted on now: it waits out
/// the backoff, or failures in a row escalated it.
pub(super) fn held_after_action_failure(
    st: &TaskStatus,
    now: Timestamp,
) -> Option<(Phase, Reason)> {
    if st.action_failures == 0 {
        return None;
    }
    if st.phase == Phase::Escalated {
        return Some((Phase::Escalated, Reason::Escalated));
    }
    let until = st.next_eligible_at.filter(|t| now < *t)?;
    let message = st
        .conditions
        .iter()
        .find(|c| c.kind == ACTION_FAILED)
        .map_or_else(|| "an action failed".to_owned(), |c| c.message.clone());
    Some((st.phase, Reason::ActionFailed { message, until }))
}

/// Whether the attempt's outcome was already recorded by a gate.
fn gated(st: &TaskStatus, attempt: u32) -> bool {
    st.attempt == attempt && !matches!(st.phase, Phase::Pending | Phase::Running | Phase::Checking)
}

/// `[sandbox] required`, and Landlock does not work here: no agent starts.
fn sandbox_blocks_start(spec: &Spec, obs: &Observation) -> Option<Reason> {
    let sandbox = &spec.config.sandbox;
    match &obs.sandbox {
        Some(Availability::Unavailable { reason }) if sandbox.enabled && sandbox.required => {
            Some(Reason::SandboxUnavailable {
                reason: reason.clone(),
            })
        }
        _ => None,
    }
}

pub(super) fn plan_blocks_start(plan: &Plan) -> Option<Reason> {
    match plan.state {
        PlanState::Active => None,
        PlanState::Draft => Some(Reason::PlanDraft),
        PlanState::Paused => Some(Reason::PlanPaused),
    }
}

/// The task a dependency names: a task of the same plan, or `plan/task` (queue
/// items may depend on any plan's task).
fn dependency_key(plan: &Plan, dep: &str) -> TaskKey {
    match dep.split_once('/') {
        Some((p, t)) => TaskKey::new(p, t),
        None => TaskKey::new(&plan.id, dep),
    }
}

/// Every dependency whose work is not merged yet.
fn unmerged_dependencies(plan: &Plan, task: &Task, obs: &Observation) -> Vec<String> {
    task.depends_on
        .iter()
        .filter(|dep| {
            !obs.task(&dependency_key(plan, dep))
                .is_some_and(|o| o.merged)
        })
        .cloned()
        .collect()
}

/// The first dependency that escalated or is itself blocked. (A dependency's
/// attempt that was cancelled because its spec changed restarts: not blocking.)
fn blocked_dependency(
    plan: &Plan,
    task: &Task,
    obs: &Observation,
    status: &Status,
) -> Option<String> {
    task.depends_on
        .iter()
        .find(|dep| {
            let key = dependency_key(plan, dep);
            let merged = obs.task(&key).is_some_and(|o| o.merged);
            let phase = status.task(&key.plan, &key.task).map(|s| s.phase);
            !merged && matches!(phase, Some(Phase::Escalated | Phase::Blocked))
        })
        .cloned()
}
