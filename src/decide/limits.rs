//! The limits a tick runs under and what counts against them: `actions_per_tick`,
//! `max_agents` (agents running here and the live claims of other reconcilers),
//! `dispatches_per_hour`, the token and cost budgets, and the cooldowns of
//! harnesses that hit a rate limit. All counted from status and the
//! observation; no IO.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::model::TaskKey;
use crate::observe::{ForgeObs, Observation};
use crate::spec::{Plan, Reconcile, Spec};
use crate::status::{Claim, Phase, Status, TaskStatus};
use crate::time::Timestamp;

use super::{Action, Reason};

/// The limits a tick runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub actions_per_tick: u32,
    pub max_agents: u32,
    pub dispatches_per_hour: u32,
}

impl From<&Reconcile> for Limits {
    fn from(r: &Reconcile) -> Self {
        Limits {
            actions_per_tick: r.actions_per_tick,
            max_agents: r.max_agents,
            dispatches_per_hour: r.dispatches_per_hour,
        }
    }
}

impl Limits {
    /// The limits the dashboard (STATUS.md, `converge status`) is decided
    /// under: without the one-tick `actions_per_tick` budget, so that a task
    /// shows the limit it really waits for.
    pub fn for_dashboard(self) -> Self {
        Limits {
            actions_per_tick: u32::MAX,
            ..self
        }
    }
}

pub(super) const HOUR: Duration = Duration::from_secs(3600);

/// What this tick has taken of its limits so far: the actions picked, the
/// agents running or starting, the starts in the last hour.
pub(super) struct Meter<'a> {
    limits: &'a Limits,
    now: Timestamp,
    taken: usize,
    agents: u32,
    started_last_hour: u32,
    /// Start times in the last hour, oldest first; this tick's starts join them.
    recent: Vec<Timestamp>,
}

impl<'a> Meter<'a> {
    /// The limits with what already runs counted: agents here, live claims of
    /// other reconcilers, and the attempts started in the last hour.
    pub(super) fn new(
        limits: &'a Limits,
        status: &Status,
        obs: &Observation,
        now: Timestamp,
    ) -> Self {
        let running =
            u32::try_from(obs.running()).unwrap_or(u32::MAX) + claimed_elsewhere(status, obs, now);
        let recent = starts_since(status, now.minus(HOUR));
        Meter {
            limits,
            now,
            taken: 0,
            agents: running,
            started_last_hour: u32::try_from(recent.len()).unwrap_or(u32::MAX),
            recent,
        }
    }

    /// Whether `action` fits under the limits now, or the limit it waits for.
    pub(super) fn admits(&self, action: &Action) -> Result<(), Reason> {
        let limits = self.limits;
        if self.taken >= limits.actions_per_tick as usize {
            Err(Reason::ActionsPerTick)
        } else if action.starts_agent() && self.agents >= limits.max_agents {
            Err(Reason::MaxAgents {
                running: self.agents,
            })
        } else if action.starts_agent() && self.started_last_hour >= limits.dispatches_per_hour {
            // A slot frees when enough of the starts are an hour old that
            // fewer than the limit remain.
            let over = (self.started_last_hour - limits.dispatches_per_hour) as usize;
            let next_at = self.recent.get(over).map_or(self.now, |t| t.plus(HOUR));
            Err(Reason::DispatchRateLimited {
                last_hour: self.started_last_hour,
                limit: limits.dispatches_per_hour,
                next_at,
            })
        } else {
            Ok(())
        }
    }

    /// Counts `action`, which was admitted, against the limits.
    pub(super) fn take(&mut self, action: &Action) {
        self.taken += 1;
        if action.starts_agent() {
            self.agents += 1;
            self.started_last_hour += 1;
            self.recent.push(self.now);
        }
    }
}

/// The forge's limits on changes (`[forge] max_open_prs`, `prs_per_hour`):
/// a change opens only under both, and no first attempt starts while
/// `max_open_prs` changes are open (its work would have nowhere to go).
pub(super) struct ChangeMeter {
    max_open: u32,
    per_hour: u32,
    open: u32,
    /// When the changes opened in the last hour were opened, oldest first.
    recent: Vec<Timestamp>,
    now: Timestamp,
    /// The change merged this tick: one merge per base branch per tick
    /// (the base moves, and GitHub recomputes every other pull request's
    /// mergeability and checks against it).
    merging: Option<u64>,
}

impl ChangeMeter {
    pub(super) fn new(
        spec: &Spec,
        status: &Status,
        obs: &Observation,
        now: Timestamp,
    ) -> Option<Self> {
        let github = spec.config.forge.github()?;
        let records = || {
            status
                .plans
                .values()
                .flat_map(|p| p.tasks.values())
                .filter_map(|t| t.change.as_ref().map(|c| (t, c)))
        };
        let open = match &obs.forge {
            ForgeObs::Observed { open } => *open,
            // Not asked: the changes status knows of and did not see merge.
            _ => u32::try_from(records().filter(|(t, _)| t.phase != Phase::Merged).count())
                .unwrap_or(u32::MAX),
        };
        let since = now.minus(HOUR);
        let mut recent: Vec<Timestamp> = records()
            .map(|(_, c)| c.opened_at)
            .filter(|t| *t > since)
            .collect();
        recent.sort();
        Some(ChangeMeter {
            max_open: github.max_open_prs,
            per_hour: github.prs_per_hour,
            open,
            recent,
            now,
            merging: None,
        })
    }

    pub(super) fn admits(&self, action: &Action) -> Result<(), Reason> {
        if let (Action::Merge { .. }, Some(first)) = (action, self.merging) {
            return Err(Reason::MergeQueued { first });
        }
        let opens = matches!(action, Action::Propose { opens: true, .. });
        if (opens || matches!(action, Action::Dispatch { .. })) && self.open >= self.max_open {
            return Err(Reason::ChangeLimit {
                open: self.open,
                max: self.max_open,
            });
        }
        let last_hour = u32::try_from(self.recent.len()).unwrap_or(u32::MAX);
        if opens && last_hour >= self.per_hour {
            let over = (last_hour - self.per_hour) as usize;
            let next_at = self.recent.get(over).map_or(self.now, |t| t.plus(HOUR));
            return Err(Reason::ChangeRateLimited {
                last_hour,
                limit: self.per_hour,
                next_at,
            });
        }
        Ok(())
    }

    pub(super) fn take(&mut self, action: &Action, status: &Status) {
        if let Action::Merge { key, .. } = action {
            self.merging = Some(change_number(status, key).unwrap_or_default());
        }
        if matches!(action, Action::Propose { opens: true, .. }) {
            self.open += 1;
            self.recent.push(self.now);
        }
    }
}

/// The number of the task's change, as status records it.
pub(super) fn change_number(status: &Status, key: &TaskKey) -> Option<u64> {
    status
        .plans
        .get(&key.plan)?
        .tasks
        .get(&key.task)?
        .change
        .as_ref()
        .map(|c| c.number)
}

/// A claim on the task by another reconciler, when reconcilers share a remote.
pub(super) fn foreign_claim<'a>(st: &'a TaskStatus, obs: &Observation) -> Option<&'a Claim> {
    let me = obs.reconciler.as_ref()?;
    st.claim.as_ref().filter(|c| c.by != *me)
}

/// Agents other reconcilers run or are about to start: their live claims on
/// tasks that are not past their gate. They count against `max_agents`.
fn claimed_elsewhere(status: &Status, obs: &Observation, now: Timestamp) -> u32 {
    let count = status
        .plans
        .values()
        .flat_map(|p| p.tasks.values())
        .filter(|st| {
            foreign_claim(st, obs).is_some_and(|c| {
                now < c.until
                    && (matches!(st.phase, Phase::Running | Phase::Checking)
                        || c.attempt > st.attempt)
            })
        })
        .count();
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// The start times of the attempts started after `since`, oldest first.
pub(super) fn starts_since(status: &Status, since: Timestamp) -> Vec<Timestamp> {
    let mut starts: Vec<Timestamp> = status
        .plans
        .values()
        .flat_map(|p| p.tasks.values())
        .flat_map(|t| &t.attempts)
        .map(|a| a.started_at)
        .filter(|t| *t > since)
        .collect();
    starts.sort();
    starts
}

const DAY: i64 = 24 * 60 * 60;

/// What the attempts recorded in status spent, for the budgets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spending {
    /// Tokens of all attempts of the plan asked about.
    pub plan_tokens: u64,
    /// Tokens and cost of all attempts (every plan) started this UTC day.
    pub today_tokens: u64,
    pub today_usd: f64,
    /// When this UTC day began, and when the next begins.
    pub day_start: Timestamp,
    pub next_day: Timestamp,
}

/// Counts `plan`'s tokens and today's (UTC) tokens and cost across all plans.
pub fn spending(status: &Status, plan: Option<&str>, now: Timestamp) -> Spending {
    let day_start = Timestamp::from_unix(now.unix() - now.unix().rem_euclid(DAY));
    let mut out = Spending {
        plan_tokens: 0,
        today_tokens: 0,
        today_usd: 0.0,
        day_start,
        next_day: Timestamp::from_unix(day_start.unix() + DAY),
    };
    for (id, p) in &status.plans {
        for a in p.tasks.values().flat_map(|t| &t.attempts) {
            let tokens = a.tokens_in + a.tokens_out;
            if plan == Some(id.as_str()) {
                out.plan_tokens += tokens;
            }
            if a.started_at >= day_start {
                out.today_tokens += tokens;
                out.today_usd += a.cost_usd;
            }
        }
    }
    out
}

/// A spent budget: the plan's `token_budget` (tokens of all its attempts), or
/// `[budget]` per UTC day (tokens or USD of the attempts started that day,
/// across all plans). Counted from the attempt records in status.
pub(super) fn budget_blocks_start(
    spec: &Spec,
    plan: &Plan,
    status: &Status,
    planner: &crate::observe::PlannerSpend,
    now: Timestamp,
) -> Option<Reason> {
    let budget = &spec.config.budget;
    if plan.token_budget.is_none()
        && budget.tokens_per_day.is_none()
        && budget.usd_per_day.is_none()
    {
        return None;
    }
    let mut spent = spending(status, Some(&plan.id), now);
    // The autonomy loop's planner attempts count against the daily budgets.
    if planner.day * DAY == spent.day_start.unix() {
        spent.today_usd += planner.usd();
        spent.today_tokens += planner.tokens;
    }
    if let Some(limit) = plan.token_budget.filter(|l| spent.plan_tokens >= *l) {
        return Some(Reason::BudgetSpent {
            budget: "plan's `token_budget`".to_owned(),
            used: format!("{} of {limit} tokens", spent.plan_tokens),
            until: None,
        });
    }
    if let Some(limit) = budget.tokens_per_day.filter(|l| spent.today_tokens >= *l) {
        return Some(Reason::BudgetSpent {
            budget: "daily token budget (`[budget] tokens_per_day`)".into(),
            used: format!("{} of {limit} tokens today", spent.today_tokens),
            until: Some(spent.next_day),
        });
    }
    if let Some(limit) = budget.usd_per_day.filter(|l| spent.today_usd >= *l) {
        return Some(Reason::BudgetSpent {
            budget: "daily cost budget (`[budget] usd_per_day`)".into(),
            used: format!("${:.2} of ${limit:.2} today", spent.today_usd),
            until: Some(spent.next_day),
        });
    }
    None
}

/// Harnesses cooling down after a rate limit or usage window, until when: the
/// latest `cooldown_until` of their attempts that is still ahead.
pub(super) fn cooldowns(status: &Status, now: Timestamp) -> BTreeMap<&str, Timestamp> {
    let mut out: BTreeMap<&str, Timestamp> = BTreeMap::new();
    for a in status
        .plans
        .values()
        .flat_map(|p| p.tasks.values())
        .flat_map(|t| &t.attempts)
    {
        if let (Some(until), Some(harness)) = (a.cooldown_until, a.harness.as_deref())
            && until > now
        {
            let slot = out.entry(harness).or_insert(until);
            *slot = (*slot).max(until);
        }
    }
    out
}
