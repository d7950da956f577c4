//! PURE: the autonomy loop's view ([`AutonomyView`], rendered by
//! `crate::view::autonomy`) built from the configuration, the loop's record
//! and the decision the caller made at its `now` ([`super::next`]); no clock
//! here, so that an unchanged loop renders the same bytes. Reading the record
//! from git is `record::view_at`'s.

use super::decide::Next;
use super::state::{ItemState, LoopPhase, LoopState};
use crate::spec::Autonomy;
use crate::time::Timestamp;
pub use crate::view::autonomy::{AutonomyView, section, text};
use crate::view::autonomy::{DayView, GapView, ItemView, NextView, TotalsView};

/// How many history lines the views show.
const SHOWN: usize = 8;

/// The view of the loop's record `st` with `next` decided.
pub fn view(
    config: &Autonomy,
    usd_per_day: Option<f64>,
    st: &LoopState,
    next: &Next,
) -> AutonomyView {
    let (state, why, since) = match &st.phase {
        LoopPhase::Running => ("running", None, None),
        LoopPhase::Paused { code, why, since } => {
            ("paused", Some(format!("{why} ({code})")), Some(*since))
        }
        LoopPhase::GoalMet { since, why } => ("goal-met", Some(why.clone()), Some(*since)),
    };
    let blocked = blocked(st);
    AutonomyView {
        enabled: config.enabled,
        state: state.into(),
        why,
        since,
        next: next_view(next),
        running: st
            .inflight
            .as_ref()
            .map(|r| format!("{} {} since {}", r.kind.as_str(), r.run, r.started_at)),
        last: st
            .last
            .as_ref()
            .map(|l| format!("{}: {}", l.ended_at, l.verdict)),
        day: day(config, usd_per_day, st),
        totals: TotalsView {
            runs: st.runs,
            items: st.items.len(),
            merges: st.merges,
            duplicates: st.duplicates,
            refused: st.refused,
            usd: round(st.usd_total),
        },
        items: items(st),
        attention: attention(st, &blocked),
        blocked,
        history: st
            .history
            .iter()
            .rev()
            .take(SHOWN)
            .rev()
            .map(|l| format!("{} {}", l.at, l.line))
            .collect(),
    }
}

/// What the loop does next, or why it waits.
fn next_view(next: &Next) -> NextView {
    let starts = |what: &str, why: String| NextView {
        what: what.into(),
        code: None,
        why,
    };
    match next {
        Next::GapAnalysis => starts(
            "gap-analysis",
            "a gap analysis starts on the next tick".into(),
        ),
        Next::CapabilityUpdate { item } => starts(
            "capability-update",
            format!("queue/{item} merged: a capability update starts on the next tick"),
        ),
        Next::Review => starts("review", "a review starts on the next tick".into()),
        Next::Pause { code, why } => NextView {
            what: "pause".into(),
            code: Some((*code).into()),
            why: why.clone(),
        },
        Next::Wait(w) => NextView {
            what: "wait".into(),
            code: Some(w.code().into()),
            why: w.why(),
        },
    }
}

/// The gaps whose items escalated.
fn blocked(st: &LoopState) -> Vec<GapView> {
    st.gaps
        .iter()
        .filter(|g| g.blocked)
        .map(|g| GapView {
            id: g.id.clone(),
            title: g.title.clone(),
            items: g.items.iter().map(|i| format!("queue/{i}")).collect(),
        })
        .collect()
}

/// What a person should act on: a pause, and each blocked gap.
fn attention(st: &LoopState, blocked: &[GapView]) -> Vec<String> {
    let mut attention = Vec::new();
    if let LoopPhase::Paused { code, why, .. } = &st.phase {
        attention.push(format!(
            "the autonomy loop is paused ({code}): {why}. Look at its history (`converge autonomy status`), then `converge autonomy resume` resumes it."
        ));
    }
    for gap in blocked {
        attention.push(format!(
            "the autonomy loop's gap `{}` (\"{}\") is blocked: its items {} escalated. `converge retry {}` tries the last one again; `converge autonomy unblock {}` lets the loop propose it anew.",
            gap.id,
            gap.title,
            gap.items.join(", "),
            gap.items.last().cloned().unwrap_or_default(),
            gap.id
        ));
    }
    attention
}

/// The counters of the day the record was last written on.
fn day(config: &Autonomy, usd_per_day: Option<f64>, st: &LoopState) -> DayView {
    let day = Timestamp::from_unix(st.today.day * 86_400).to_string();
    DayView {
        day: day.get(..10).unwrap_or_default().to_owned(),
        runs: st.today.runs,
        max_runs: config.max_runs_per_day,
        items: st.today.items,
        max_items: config.max_items_per_day,
        usd: round(st.today.usd),
        usd_limit: usd_per_day.map(|u| round(u * config.budget_share)),
    }
}

fn items(st: &LoopState) -> Vec<ItemView> {
    st.items
        .iter()
        .map(|i| ItemView {
            task: format!("queue/{}", i.name),
            title: i.title.clone(),
            state: match i.state {
                ItemState::Open => "open",
                ItemState::Merged => "merged",
                ItemState::Escalated => "escalated",
                ItemState::Closed => "closed",
            }
            .into(),
        })
        .collect()
}

fn round(usd: f64) -> f64 {
    (usd * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::autonomy::decide::{Wait, next};

    const NOW: Timestamp = Timestamp::from_unix(1_800_000_000);

    #[test]
    fn a_paused_loop_and_a_blocked_gap_name_their_commands() {
        let config = Autonomy {
            enabled: true,
            ..Autonomy::default()
        };
        let mut st = LoopState::default();
        st.file("search-6", "Search", 6, NOW);
        st.gaps[0].blocked = true;
        st.phase = LoopPhase::Paused {
            code: "autonomy-escalations".into(),
            why: "3 in a row".into(),
            since: NOW,
        };
        st.today.day = NOW.unix() / 86_400;
        st.today.usd = 0.15;
        let n = next(&config, Some(4.0), 0.0, &st, NOW);
        assert_eq!(
            n,
            Next::Wait(Wait::Paused {
                why: "3 in a row".into()
            })
        );
        let v = view(&config, Some(4.0), &st, &n);
        assert_eq!(v.attention.len(), 2);
        assert!(v.attention[0].contains("`converge autonomy resume`"));
        assert!(v.attention[1].contains("`converge retry queue/search-6`"));
        assert!(v.attention[1].contains("`converge autonomy unblock "));
        let md = section(&v);
        assert!(
            md.contains("- State: paused: 3 in a row (autonomy-escalations).\n"),
            "{md}"
        );
        assert!(md.contains("$0.15 of $1.00"), "{md}");
        let text = text(&v);
        assert!(text.contains("  state: paused"), "{text}");
        assert!(
            text.contains("  next: paused: 3 in a row [autonomy-paused]"),
            "{text}"
        );
    }
}
