//! PURE: what the autonomy loop does next. No IO and no clock: the caller
//! hands in the loop's recorded state (kept in git), what it observed (open,
//! merged and escalated items of the loop) and `now`.

use sha2::{Digest, Sha256};

use crate::spec::Autonomy;
use crate::time::Timestamp;

/// Whether the loop runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LoopPhase {
    #[default]
    Running,
    /// Paused by a person or by a guard; `converge autonomy resume` resumes.
    Paused { why: String },
    /// A gap analysis said the goal is met.
    GoalMet,
}

/// What the loop spent and filed on one UTC day.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Counters {
    /// The UTC day, days since 1970-01-01.
    pub day: i64,
    pub items: u32,
    pub runs: u32,
    pub usd: f64,
}

/// The loop's recorded state (on the status branch).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoopState {
    pub phase: LoopPhase,
    pub today: Counters,
    /// Merged items of the loop so far.
    pub merges: u32,
    /// `merges` when the last review ran.
    pub merges_at_review: u32,
    /// The loop's items that escalated in a row (a merge resets it).
    pub consecutive_escalations: u32,
    /// Hashes ([`proposal_hash`]) of recent proposals, newest last.
    pub recent: Vec<String>,
    /// Proposals refused as duplicates.
    pub duplicates: u32,
}

/// What the caller observed of the loop's items.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Seen {
    /// Items of the loop queued or being worked (not merged, not escalated).
    pub open: usize,
    /// Merged items whose capability update has not run, oldest first.
    pub awaiting_capability_update: Vec<String>,
}

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
}

impl Wait {
    /// The reason code (docs/autonomy.md).
    pub fn code(&self) -> &'static str {
        match self {
            Wait::Disabled => "autonomy-disabled",
            Wait::Paused { .. } => "autonomy-paused",
            Wait::GoalMet => "autonomy-goal-met",
            Wait::Cap { .. } => "autonomy-cap",
            Wait::ItemOpen { .. } => "autonomy-item-open",
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

/// What the loop does next. `usd_per_day` is `[budget] usd_per_day`.
pub fn next(
    config: &Autonomy,
    usd_per_day: Option<f64>,
    state: &LoopState,
    seen: &Seen,
    now: Timestamp,
) -> Next {
    if !config.enabled {
        return Next::Wait(Wait::Disabled);
    }
    match &state.phase {
        LoopPhase::Paused { why } => return Next::Wait(Wait::Paused { why: why.clone() }),
        LoopPhase::GoalMet if config.stop_when_goal_met => return Next::Wait(Wait::GoalMet),
        _ => {}
    }
    if state.consecutive_escalations >= config.max_consecutive_escalations {
        return Next::Pause {
            code: "autonomy-escalations",
            why: format!(
                "{} of the loop's items escalated in a row (`max_consecutive_escalations` = {})",
                state.consecutive_escalations, config.max_consecutive_escalations
            ),
        };
    }
    let today = counters_on(state, now);
    let until = Timestamp::from_unix((today.day + 1) * DAY);
    if today.runs >= config.max_runs_per_day {
        return Next::Wait(Wait::Cap {
            what: "max_runs_per_day",
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
    if let Some(item) = seen.awaiting_capability_update.first() {
        return Next::CapabilityUpdate { item: item.clone() };
    }
    if config.review_every > 0 && state.merges >= state.merges_at_review + config.review_every {
        return Next::Review;
    }
    if seen.open > 0 {
        return Next::Wait(Wait::ItemOpen { open: seen.open });
    }
    if matches!(state.phase, LoopPhase::GoalMet) {
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
        let seen = Seen::default();
        assert_eq!(next(&on(), None, &state(), &seen, NOW), Next::GapAnalysis);
        let open = Seen {
            open: 1,
            ..Seen::default()
        };
        let waits = next(&on(), None, &state(), &open, NOW);
        assert_eq!(waits, Next::Wait(Wait::ItemOpen { open: 1 }));
        assert_eq!(
            next(&Autonomy::default(), None, &state(), &seen, NOW),
            Next::Wait(Wait::Disabled)
        );
    }

    #[test]
    fn a_merge_brings_a_capability_update_then_a_review_every_n() {
        let mut st = state();
        st.merges = 2;
        let seen = Seen {
            open: 0,
            awaiting_capability_update: vec!["queue/login".into()],
        };
        assert_eq!(
            next(&on(), None, &st, &seen, NOW),
            Next::CapabilityUpdate {
                item: "queue/login".into()
            }
        );
        assert_eq!(next(&on(), None, &st, &Seen::default(), NOW), Next::Review);
        st.merges_at_review = 2;
        assert_eq!(
            next(&on(), None, &st, &Seen::default(), NOW),
            Next::GapAnalysis
        );
    }

    #[test]
    fn guards_pause_or_wait_and_caps_reset_the_next_day() {
        let mut st = state();
        st.consecutive_escalations = 2;
        assert!(matches!(
            next(&on(), None, &st, &Seen::default(), NOW),
            Next::Pause {
                code: "autonomy-escalations",
                ..
            }
        ));
        let mut st = state();
        st.today.items = 2;
        let capped = next(&on(), None, &st, &Seen::default(), NOW);
        assert_eq!(
            capped,
            Next::Wait(Wait::Cap {
                what: "max_items_per_day",
                until: Timestamp::from_unix(20_001 * DAY)
            })
        );
        // The next day the count starts over.
        let tomorrow = NOW.plus(std::time::Duration::from_secs(DAY as u64));
        assert_eq!(
            next(&on(), None, &st, &Seen::default(), tomorrow),
            Next::GapAnalysis
        );
        let mut st = state();
        st.today.usd = 5.0;
        assert!(matches!(
            next(&on(), Some(10.0), &st, &Seen::default(), NOW),
            Next::Wait(Wait::Cap {
                what: "budget_share",
                ..
            })
        ));
        assert_eq!(
            next(&on(), Some(10.1), &st, &Seen::default(), NOW),
            Next::GapAnalysis
        );
        st.phase = LoopPhase::Paused { why: "x".into() };
        assert_eq!(
            next(&on(), None, &st, &Seen::default(), NOW),
            Next::Wait(Wait::Paused { why: "x".into() })
        );
        st.phase = LoopPhase::GoalMet;
        assert_eq!(
            next(&on(), None, &st, &Seen::default(), NOW),
            Next::Wait(Wait::GoalMet)
        );
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
