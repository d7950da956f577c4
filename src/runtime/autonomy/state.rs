//! PURE: the autonomy loop's record, kept on the status branch as
//! `planning/status/autonomy/loop.toml` (a directory no plan's status file
//! can be), and how what the tick observed of the loop's items moves it.
//! Like task status it is a record, not the truth: which items merged or
//! escalated is read from task status on every step.

use serde::{Deserialize, Serialize};

use crate::status::{Phase, Status};
use crate::time::Timestamp;

/// Where the loop's record lives on the status branch.
pub const STATE_PATH: &str = "planning/status/autonomy/loop.toml";

/// How many history lines the record keeps (the newest).
pub const HISTORY: usize = 40;
/// How many proposal hashes duplicate detection compares with.
pub const RECENT: usize = 20;
/// A gap whose items escalated this many times is blocked.
pub const GAP_ESCALATIONS: u32 = 2;

/// Whether the loop runs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum LoopPhase {
    #[default]
    Running,
    /// Paused by a person or by a guard; `converge autonomy resume` resumes.
    Paused {
        /// The reason code (`autonomy-paused` for a person's pause).
        code: String,
        why: String,
        since: Timestamp,
    },
    /// A gap analysis said the goal is met.
    GoalMet { since: Timestamp, why: String },
}

/// What the loop spent and filed on one UTC day.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Counters {
    /// The UTC day, days since 1970-01-01.
    pub day: i64,
    pub items: u32,
    pub runs: u32,
    pub usd: f64,
    /// Tokens the planner attempts used.
    #[serde(default)]
    pub tokens: u64,
}

/// The kinds of planner attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunKind {
    GapAnalysis,
    CapabilityUpdate,
    Review,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::GapAnalysis => "gap-analysis",
            RunKind::CapabilityUpdate => "capability-update",
            RunKind::Review => "review",
        }
    }

    /// The planner task's name prefix (`<prefix>-<run>`).
    pub fn prefix(self) -> &'static str {
        match self {
            RunKind::GapAnalysis => "gap",
            RunKind::CapabilityUpdate => "capabilities",
            RunKind::Review => "review",
        }
    }
}

/// A planner attempt that was started and not read back yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inflight {
    /// The loop's run number (from 1 over its life).
    pub run: u32,
    /// capabilities.md's blob on the base when it started (a capability
    /// update is refused if a person changed the file meanwhile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<String>,
    pub kind: RunKind,
    pub started_at: Timestamp,
    /// A capability update: the merged item it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    /// A review: its lens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lens: Option<String>,
}

/// Where one of the loop's items is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ItemState {
    /// Queued or being worked.
    #[default]
    Open,
    Merged,
    Escalated,
    /// Removed or cancelled by a person.
    Closed,
}

/// An item the loop filed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// The queue item's name (task `queue/<name>`).
    pub name: String,
    pub title: String,
    /// The gap it closes ([`gap_id`] of its title).
    pub gap: String,
    /// The gap analysis that proposed it.
    pub run: u32,
    pub filed_at: Timestamp,
    #[serde(default)]
    pub state: ItemState,
    /// Whether its capability update ran (merged items only).
    #[serde(default)]
    pub capabilities_updated: bool,
}

/// A gap between the goal and the capabilities, as the loop's items name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    pub id: String,
    pub title: String,
    pub escalations: u32,
    /// Blocked after [`GAP_ESCALATIONS`] escalations: its proposals are
    /// refused until `converge autonomy unblock <id>`.
    #[serde(default)]
    pub blocked: bool,
    /// The items filed for it, oldest first.
    #[serde(default)]
    pub items: Vec<String>,
}

/// The last planner attempt read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRun {
    pub run: u32,
    pub kind: RunKind,
    pub ended_at: Timestamp,
    /// What came of it, for people.
    pub verdict: String,
}

/// One line of the loop's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub at: Timestamp,
    pub line: String,
}

/// The loop's recorded state.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LoopState {
    pub phase: LoopPhase,
    pub today: Counters,
    /// Planner attempts over the loop's life.
    pub runs: u32,
    /// Merged items of the loop so far.
    pub merges: u32,
    /// `merges` when the last review ran.
    pub merges_at_review: u32,
    /// Reviews written (their lenses take turns).
    pub reviews: u32,
    /// The loop's items that escalated in a row (a merge resets it).
    pub consecutive_escalations: u32,
    /// Planner attempts in a row that filed nothing usable (a duplicate, an
    /// invalid item, a blocked gap, no output); an accepted one resets it.
    pub consecutive_refusals: u32,
    /// Proposals refused as duplicates, over the loop's life.
    pub duplicates: u32,
    /// Proposals refused as invalid or for a blocked gap, over the loop's life.
    pub refused: u32,
    /// What the planner attempts cost over the loop's life, in USD.
    pub usd_total: f64,
    /// Hashes ([`super::proposal_hash`]) of recent proposals, newest last.
    pub recent: Vec<String>,
    /// The planner's harness is rate-limited until then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown_until: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inflight: Option<Inflight>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<LastRun>,
    pub items: Vec<Item>,
    pub gaps: Vec<Gap>,
    pub history: Vec<Line>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{STATE_PATH} is not a valid loop record: {message}")]
    Parse { message: String },
    #[error("cannot encode the loop record")]
    Encode(#[source] toml::ser::Error),
}

impl LoopState {
    pub fn from_toml(text: &str) -> Result<LoopState, StateError> {
        toml::from_str(text).map_err(|e| StateError::Parse {
            message: e.message().to_owned(),
        })
    }

    pub fn to_toml(&self) -> Result<String, StateError> {
        let body = toml::to_string(self).map_err(StateError::Encode)?;
        Ok(format!(
            "# The autonomy loop's record (docs/autonomy.md), written by converge.\n{body}"
        ))
    }

    /// Adds a history line (the newest [`HISTORY`] are kept).
    pub fn note(&mut self, at: Timestamp, line: impl Into<String>) {
        self.history.push(Line {
            at,
            line: line.into(),
        });
        if self.history.len() > HISTORY {
            let extra = self.history.len() - HISTORY;
            self.history.drain(..extra);
        }
    }

    /// Remembers a proposal's hash (the newest [`RECENT`] are kept).
    pub fn remember(&mut self, hash: String) {
        self.recent.push(hash);
        if self.recent.len() > RECENT {
            let extra = self.recent.len() - RECENT;
            self.recent.drain(..extra);
        }
    }

    pub fn gap(&self, id: &str) -> Option<&Gap> {
        self.gaps.iter().find(|g| g.id == id)
    }

    /// The titles of blocked gaps.
    pub fn blocked(&self) -> Vec<String> {
        self.gaps
            .iter()
            .filter(|g| g.blocked)
            .map(|g| g.title.clone())
            .collect()
    }

    /// Items of the loop queued or being worked.
    pub fn open_items(&self) -> usize {
        self.items
            .iter()
            .filter(|i| i.state == ItemState::Open)
            .count()
    }

    /// Merged items whose capability update has not run, oldest first.
    pub fn awaiting_capability_update(&self) -> Vec<String> {
        self.items
            .iter()
            .filter(|i| i.state == ItemState::Merged && !i.capabilities_updated)
            .map(|i| i.name.clone())
            .collect()
    }

    /// Records a new item for gap `title` proposed by run `run`.
    pub fn file(&mut self, name: &str, title: &str, run: u32, now: Timestamp) {
        let id = gap_id(title);
        self.items.push(Item {
            name: name.to_owned(),
            title: title.to_owned(),
            gap: id.clone(),
            run,
            filed_at: now,
            state: ItemState::Open,
            capabilities_updated: false,
        });
        match self.gaps.iter_mut().find(|g| g.id == id) {
            Some(gap) => gap.items.push(name.to_owned()),
            None => self.gaps.push(Gap {
                id,
                title: title.to_owned(),
                escalations: 0,
                blocked: false,
                items: vec![name.to_owned()],
            }),
        }
    }
}

/// A change the loop's items went through, for the step's commit and history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moved {
    Merged {
        item: String,
    },
    Escalated {
        item: String,
    },
    /// The gap's items escalated [`GAP_ESCALATIONS`] times: it is blocked.
    Blocked {
        gap: String,
        title: String,
    },
    Closed {
        item: String,
    },
}

/// Moves the loop's open items by what task status says of `queue/<name>`:
/// merged (a merge resets the escalation streak), escalated (counted against
/// its gap, which is blocked at [`GAP_ESCALATIONS`]), cancelled, or, never
/// promoted and no longer in the queue (`queued` says which items are,
/// queued or promoted), closed: a person removed it. An escalated item a
/// person retried is open again. A task blocked by a dependency is waiting,
/// not escalated.
pub fn absorb(
    state: &mut LoopState,
    status: &Status,
    queued: &dyn Fn(&str) -> bool,
    now: Timestamp,
) -> Vec<Moved> {
    let mut moved = Vec::new();
    for i in 0..state.items.len() {
        let item = &state.items[i];
        let phase = status
            .task(crate::spec::QUEUE_PLAN, &item.name)
            .map(|t| t.phase);
        let next = match phase {
            Some(Phase::Merged) => ItemState::Merged,
            Some(Phase::Escalated) => ItemState::Escalated,
            Some(Phase::Cancelled) => ItemState::Closed,
            Some(_) => ItemState::Open,
            // Not promoted yet: still queued, unless a person removed it.
            None if item.state == ItemState::Open && !queued(&item.name) => ItemState::Closed,
            None => item.state,
        };
        if next == item.state {
            continue;
        }
        let name = item.name.clone();
        let gap = item.gap.clone();
        state.items[i].state = next;
        match next {
            ItemState::Merged => {
                state.merges += 1;
                state.consecutive_escalations = 0;
                state.note(now, format!("queue/{name} merged"));
                moved.push(Moved::Merged { item: name });
            }
            ItemState::Escalated => {
                state.consecutive_escalations += 1;
                state.note(now, format!("queue/{name} escalated"));
                moved.push(Moved::Escalated { item: name });
                if let Some(g) = state.gaps.iter_mut().find(|g| g.id == gap) {
                    g.escalations += 1;
                    if g.escalations >= GAP_ESCALATIONS && !g.blocked {
                        g.blocked = true;
                        let (id, title) = (g.id.clone(), g.title.clone());
                        state.note(
                            now,
                            format!("gap {id} ({title}) blocked: its items escalated twice"),
                        );
                        moved.push(Moved::Blocked { gap: id, title });
                    }
                }
            }
            ItemState::Closed => {
                state.note(now, format!("queue/{name} closed by a person"));
                moved.push(Moved::Closed { item: name });
            }
            ItemState::Open => {
                state.note(now, format!("queue/{name} is being worked again"));
            }
        }
    }
    moved
}

/// A gap's identity: its title normalized and hashed (12 hex digits).
pub fn gap_id(title: &str) -> String {
    super::decide::proposal_hash(title, "")[..12].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{PlanStatus, TaskStatus};

    const NOW: Timestamp = Timestamp::from_unix(1_800_000_000);

    fn status(phases: &[(&str, Phase)]) -> Status {
        let mut plan = PlanStatus::default();
        for (name, phase) in phases {
            plan.tasks.insert(
                (*name).to_owned(),
                TaskStatus {
                    phase: *phase,
                    ..TaskStatus::default()
                },
            );
        }
        let mut status = Status::default();
        status.plans.insert("queue".into(), plan);
        status
    }

    #[test]
    fn the_record_round_trips_through_toml() {
        let mut st = LoopState::default();
        st.file("login-1", "Login", 1, NOW);
        st.inflight = Some(Inflight {
            run: 2,
            capabilities: None,
            kind: RunKind::Review,
            started_at: NOW,
            item: None,
            lens: Some("tests".into()),
        });
        st.phase = LoopPhase::Paused {
            code: "autonomy-escalations".into(),
            why: "x".into(),
            since: NOW,
        };
        st.note(NOW, "filed queue/login-1");
        let text = st.to_toml().expect("encode");
        assert_eq!(LoopState::from_toml(&text).expect("decode"), st);
        assert!(LoopState::from_toml("phase = 3").is_err());
        assert_eq!(
            LoopState::from_toml("").expect("empty"),
            LoopState::default()
        );
    }

    #[test]
    fn merges_reset_the_streak_and_two_escalations_block_a_gap() {
        let mut st = LoopState::default();
        st.file("export-1", "Export CSV", 1, NOW);
        st.file("login-2", "Login", 2, NOW);
        let moved = absorb(
            &mut st,
            &status(&[("export-1", Phase::Escalated), ("login-2", Phase::Merged)]),
            &|_| true,
            NOW,
        );
        assert_eq!(moved.len(), 2);
        assert_eq!(st.merges, 1);
        assert_eq!(st.awaiting_capability_update(), ["login-2"]);
        // The escalation came first in the items' order, then the merge reset it.
        assert_eq!(st.consecutive_escalations, 0);
        st.file("export-3", "export csv!", 3, NOW);
        let moved = absorb(
            &mut st,
            &status(&[("export-3", Phase::Escalated)]),
            &|_| true,
            NOW,
        );
        assert!(moved.contains(&Moved::Blocked {
            gap: gap_id("Export CSV"),
            title: "Export CSV".into()
        }));
        assert_eq!(st.blocked(), ["Export CSV"]);
        assert_eq!(
            st.gap(&gap_id("Export CSV")).map(|g| g.items.len()),
            Some(2)
        );
        assert_eq!(st.consecutive_escalations, 1);
        // Seen again unchanged: nothing moves.
        assert!(
            absorb(
                &mut st,
                &status(&[("export-3", Phase::Escalated)]),
                &|_| true,
                NOW
            )
            .is_empty()
        );
        // A person retried it: open again.
        absorb(
            &mut st,
            &status(&[("export-3", Phase::Pending)]),
            &|_| true,
            NOW,
        );
        assert_eq!(st.open_items(), 1);
        // Blocked by a dependency: waiting, not escalated.
        absorb(
            &mut st,
            &status(&[("export-3", Phase::Blocked)]),
            &|_| true,
            NOW,
        );
        assert_eq!(st.open_items(), 1);
        // A queued item a person deleted before it was promoted: closed.
        st.file("search-4", "Search", 4, NOW);
        let moved = absorb(&mut st, &status(&[]), &|name| name != "search-4", NOW);
        assert_eq!(
            moved,
            [Moved::Closed {
                item: "search-4".into()
            }]
        );
        assert_eq!(st.open_items(), 1);
    }

    #[test]
    fn history_and_recent_are_bounded() {
        let mut st = LoopState::default();
        for n in 0..100 {
            st.note(NOW, format!("line {n}"));
            st.remember(format!("h{n}"));
        }
        assert_eq!(st.history.len(), HISTORY);
        assert_eq!(st.history.last().map(|l| l.line.as_str()), Some("line 99"));
        assert_eq!(st.recent.len(), RECENT);
    }
}
