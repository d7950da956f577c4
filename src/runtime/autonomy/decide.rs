//! PURE: what the autonomy loop does next. No IO and no clock: the caller
//! hands in the loop's recorded state (kept in git, with what task status
//! said of its items absorbed: `state::absorb`) and `now`.

use sha2::{Digest, Sha256};

use crate::model::LoopCode;
use crate::spec::Autonomy;
use crate::time::Timestamp;

pub use super::state::{Counters, LoopPhase, LoopState};

/// Why no planner run is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    Disabled,
    Paused {
        why: String,
    },
    GoalMet,
    /// A per-day cap is reached; the loop waits for the next UTC day.
    Cap {
        what: &'static str,
        until: Timestamp,
    },
    /// An item of the loop is open: the next gap analysis waits for it.
    ItemOpen {
        open: usize,
    },
    /// A planner attempt is running; its result is read when it ends.
    PlannerRunning {
        run: u32,
    },
    /// The planner's harness reported a rate limit.
    Cooldown {
        until: Timestamp,
    },
}

impl Wait {
    /// The reason code (docs/autonomy.md).
    pub fn code(&self) -> &'static str {
        match self {
            Wait::Disabled => LoopCode::Disabled,
            Wait::Paused { .. } => LoopCode::Paused,
            Wait::GoalMet => LoopCode::GoalMet,
            Wait::Cap { .. } => LoopCode::Cap,
            Wait::ItemOpen { .. } => LoopCode::ItemOpen,
            Wait::PlannerRunning { .. } => LoopCode::PlannerRunning,
            Wait::Cooldown { .. } => LoopCode::Cooldown,
        }
        .as_str()
    }

    /// Why, for people.
    pub fn why(&self) -> String {
        match self {
            Wait::Disabled => "`[autonomy] enabled` is not true".into(),
            Wait::Paused { why } => format!("paused: {why}"),
            Wait::GoalMet => "a gap analysis said the goal is met".into(),
            Wait::Cap { what, until } => {
                format!("`{what}` is reached for today; the loop goes on at {until}")
            }
            Wait::ItemOpen { open } => format!(
                "{open} of the loop's items {} queued or being worked; the next gap analysis waits for {}",
                if *open == 1 { "is" } else { "are" },
                if *open == 1 { "it" } else { "them" }
            ),
            Wait::PlannerRunning { run } => format!("planner attempt {run} is running"),
            Wait::Cooldown { until } => {
                format!("the planner's harness is rate-limited until {until}")
            }
        }
    }
}

/// The loop's next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    GapAnalysis,
    CapabilityUpdate {
        item: String,
    },
    Review,
    /// A guard tripped: the loop pauses itself (an Attention entry names
    /// `converge autonomy resume`).
    Pause {
        code: &'static str,
        why: String,
    },
    Wait(Wait),
}

impl Next {
    /// The reason code of a wait or a pause; `None` for a planner run.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Next::Wait(w) => Some(w.code()),
            Next::Pause { code, .. } => Some(code),
            _ => None,
        }
    }
}

const DAY: i64 = 24 * 60 * 60;

/// The loop's counters for the day of `now` (a new day starts at zero).
pub fn counters_on(state: &LoopState, now: Timestamp) -> Counters {
    let day = now.unix().div_euclid(DAY);
    if state.today.day == day {
        state.today.clone()
    } else {
        Counters {
            day,
            ..Counters::default()
        }
    }
}

/// What the loop does next. `usd_per_day` is `[budget] usd_per_day`;
/// `tasks_usd` what the tasks' attempts spent on `now`'s UTC day.
pub fn next(
    config: &Autonomy,
    usd_per_day: Option<f64>,
    tasks_usd: f64,
    state: &LoopState,
    now: Timestamp,
) -> Next {
    if !config.enabled {
        return Next::Wait(Wait::Disabled);
    }
    if let Some(run) = &state.inflight {
        return Next::Wait(Wait::PlannerRunning { run: run.run });
    }
    match &state.phase {
        LoopPhase::Paused { why, .. } => return Next::Wait(Wait::Paused { why: why.clone() }),
        LoopPhase::GoalMet { .. } if config.stop_when_goal_met => {
            return Next::Wait(Wait::GoalMet);
        }
        _ => {}
    }
    if state.consecutive_escalations >= config.max_consecutive_escalations {
        return Next::Pause {
            code: LoopCode::Escalations.as_str(),
            why: format!(
                "{} of the loop's items escalated in a row (`max_consecutive_escalations` = {})",
                state.consecutive_escalations, config.max_consecutive_escalations
            ),
        };
    }
    if state.consecutive_refusals >= config.max_consecutive_escalations {
        return Next::Pause {
            code: LoopCode::Refusals.as_str(),
            why: format!(
                "{} planner attempts in a row filed nothing usable (duplicates, invalid items, blocked gaps or no output; `max_consecutive_escalations` = {})",
                state.consecutive_refusals, config.max_consecutive_escalations
            ),
        };
    }
    if let Some(until) = state.cooldown_until.filter(|u| *u > now) {
        return Next::Wait(Wait::Cooldown { until });
    }
    let today = counters_on(state, now);
    let until = Timestamp::from_unix((today.day + 1) * DAY);
    if today.runs >= config.max_runs_per_day {
        return Next::Wait(Wait::Cap {
            what: "max_runs_per_day",
            until,
        });
    }
    if let Some(limit) = usd_per_day
        && today.usd + tasks_usd >= limit
    {
        return Next::Wait(Wait::Cap {
            what: "usd_per_day",
            until,
        });
    }
    if let Some(limit) = usd_per_day.map(|usd| usd * config.budget_share)
        && today.usd >= limit
    {
        return Next::Wait(Wait::Cap {
            what: "budget_share",
            until,
        });
    }
    if let Some(item) = state.awaiting_capability_update().first() {
        return Next::CapabilityUpdate { item: item.clone() };
    }
    if config.review_every > 0 && state.merges >= state.merges_at_review + config.review_every {
        return Next::Review;
    }
    let open = state.open_items();
    if open > 0 {
        return Next::Wait(Wait::ItemOpen { open });
    }
    if matches!(state.phase, LoopPhase::GoalMet { .. }) {
        // Goal met but the loop keeps going (`stop_when_goal_met = false`).
        return Next::GapAnalysis;
    }
    if today.items >= config.max_items_per_day {
        return Next::Wait(Wait::Cap {
            what: "max_items_per_day",
            until,
        });
    }
    Next::GapAnalysis
}

/// A proposal's identity for duplicate detection: its title and body
/// lowercased, with punctuation dropped and whitespace collapsed, hashed.
/// Proposals that differ only in case, spacing or punctuation are equal.
pub fn proposal_hash(title: &str, body: &str) -> String {
    let normalize = |text: &str| -> String {
        text.chars()
            .map(|c| {
                if c.is_alphanumeric() {
                    c.to_lowercase().next().unwrap_or(c)
                } else {
                    ' '
                }
            })
            .collect::<String>()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut hasher = Sha256::new();
    hasher.update(normalize(title).as_bytes());
    hasher.update([0]);
    hasher.update(normalize(body).as_bytes());
    hasher
        .finalize()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> Autonomy {
        Autonomy {
            enabled: true,
            max_items_per_day: 2,
            max_runs_per_day: 5,
            review_every: 2,
            budget_share: 0.5,
            max_consecutive_escalations: 2,
            ..Autonomy::default()
        }
    }

    const NOW: Timestamp = Timestamp::from_unix(20_000 * DAY + 3600);

    fn state() -> LoopState {
        LoopState {
            today: Counters {
                day: 20_000,
                ..Counters::default()
            },
            ..LoopState::default()
        }
    }

    #[test]
    fn a_gap_analysis_runs_when_nothing_of_the_loop_is_open() {
        assert_eq!(next(&on(), None, 0.0, &state(), NOW), Next::GapAnalysis);
        let mut open = state();
        open.file("login-1", "Login", 1, NOW);
        let waits = next(&on(), None, 0.0, &open, NOW);
        assert_eq!(waits, Next::Wait(Wait::ItemOpen { open: 1 }));
        assert_eq!(
            next(&Autonomy::default(), None, 0.0, &state(), NOW),
            Next::Wait(Wait::Disabled)
        );
        let mut running = state();
        running.inflight = Some(super::super::state::Inflight {
            run: 4,
            capabilities: None,
            kind: super::super::state::RunKind::GapAnalysis,
            started_at: NOW,
            item: None,
            lens: None,
        });
        assert_eq!(
            next(&on(), None, 0.0, &running, NOW),
            Next::Wait(Wait::PlannerRunning { run: 4 })
        );
    }

    #[test]
    fn a_merge_brings_a_capability_update_then_a_review_every_n() {
        let mut st = state();
        st.file("login", "Login", 1, NOW);
        st.items[0].state = super::super::state::ItemState::Merged;
        st.merges = 2;
        assert_eq!(
            next(&on(), None, 0.0, &st, NOW),
            Next::CapabilityUpdate {
                item: "login".into()
            }
        );
        st.items[0].capabilities_updated = true;
        assert_eq!(next(&on(), None, 0.0, &st, NOW), Next::Review);
        st.merges_at_review = 2;
        assert_eq!(next(&on(), None, 0.0, &st, NOW), Next::GapAnalysis);
    }

    #[test]
    fn guards_pause_or_wait_and_caps_reset_the_next_day() {
        let mut st = state();
        st.consecutive_escalations = 2;
        assert!(matches!(
            next(&on(), None, 0.0, &st, NOW),
            Next::Pause {
                code: "autonomy-escalations",
                ..
            }
        ));
        let mut st = state();
        st.consecutive_refusals = 2;
        assert!(matches!(
            next(&on(), None, 0.0, &st, NOW),
            Next::Pause {
                code: "autonomy-refusals",
                ..
            }
        ));
        let mut st = state();
        st.cooldown_until = Some(NOW.plus(std::time::Duration::from_secs(60)));
        assert_eq!(
            next(&on(), None, 0.0, &st, NOW).code(),
            Some("autonomy-cooldown")
        );
        st.cooldown_until = Some(NOW);
        assert_eq!(next(&on(), None, 0.0, &st, NOW), Next::GapAnalysis);
        let mut st = state();
        st.today.items = 2;
        let capped = next(&on(), None, 0.0, &st, NOW);
        assert_eq!(
            capped,
            Next::Wait(Wait::Cap {
                what: "max_items_per_day",
                until: Timestamp::from_unix(20_001 * DAY)
            })
        );
        // The next day the count starts over.
        let tomorrow = NOW.plus(std::time::Duration::from_secs(DAY as u64));
        assert_eq!(next(&on(), None, 0.0, &st, tomorrow), Next::GapAnalysis);
        let mut st = state();
        st.today.usd = 5.0;
        assert!(matches!(
            next(&on(), Some(10.0), 0.0, &st, NOW),
            Next::Wait(Wait::Cap {
                what: "budget_share",
                ..
            })
        ));
        assert_eq!(next(&on(), Some(10.1), 0.0, &st, NOW), Next::GapAnalysis);
        // The tasks' spend and the planners' together stop it at the budget.
        assert_eq!(
            next(&on(), Some(10.1), 5.1, &st, NOW).code(),
            Some("autonomy-cap")
        );
        st.phase = LoopPhase::Paused {
            code: "autonomy-paused".into(),
            why: "x".into(),
            since: NOW,
        };
        assert_eq!(
            next(&on(), None, 0.0, &st, NOW),
            Next::Wait(Wait::Paused { why: "x".into() })
        );
        st.phase = LoopPhase::GoalMet {
            since: NOW,
            why: "done".into(),
        };
        assert_eq!(next(&on(), None, 0.0, &st, NOW), Next::Wait(Wait::GoalMet));
    }

    #[test]
    fn near_duplicate_proposals_hash_alike() {
        let a = proposal_hash("Add login", "Users sign in with a password.");
        let b = proposal_hash("  add   LOGIN!", "users sign in, with a password");
        let c = proposal_hash("Add logout", "Users sign in with a password.");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 24);
    }
}
