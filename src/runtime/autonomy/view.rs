//! PURE: the autonomy loop as people see it: `converge autonomy status`
//! (text and `--json`) and STATUS.md's "Autonomy" section and Attention
//! entries. Built from the configuration, the loop's record and the decision
//! the caller made at its `now` ([`super::next`]); no clock here, so that an
//! unchanged loop renders the same bytes.

use std::fmt::Write as _;

use serde::Serialize;

use super::decide::Next;
use super::state::{ItemState, LoopPhase, LoopState};
use crate::spec::Autonomy;
use crate::time::Timestamp;

/// How many history lines the views show.
const SHOWN: usize = 8;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AutonomyView {
    pub enabled: bool,
    /// `running`, `paused` or `goal-met`.
    pub state: String,
    /// Why it is paused or done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    pub next: NextView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
    pub day: DayView,
    pub totals: TotalsView,
    pub items: Vec<ItemView>,
    pub blocked: Vec<GapView>,
    /// What a person should act on, each with the command that acts on it.
    pub attention: Vec<String>,
    /// The newest history lines, oldest first.
    pub history: Vec<String>,
}

/// What the loop does next, or why it waits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NextView {
    /// `gap-analysis`, `capability-update`, `review`, `pause` or `wait`.
    pub what: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub why: String,
}

/// The counters of the day the record was last written on, against the caps.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DayView {
    /// The UTC day, as `YYYY-MM-DD`.
    pub day: String,
    pub runs: u32,
    pub max_runs: u32,
    pub items: u32,
    pub max_items: u32,
    pub usd: f64,
    /// `budget_share` × `[budget] usd_per_day`, when there is a budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usd_limit: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TotalsView {
    pub runs: u32,
    pub items: usize,
    pub merges: u32,
    pub duplicates: u32,
    pub refused: u32,
    pub usd: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemView {
    pub task: String,
    pub title: String,
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GapView {
    pub id: String,
    pub title: String,
    pub items: Vec<String>,
}

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
    let next = match next {
        Next::GapAnalysis => NextView {
            what: "gap-analysis".into(),
            code: None,
            why: "a gap analysis starts on the next tick".into(),
        },
        Next::CapabilityUpdate { item } => NextView {
            what: "capability-update".into(),
            code: None,
            why: format!("queue/{item} merged: a capability update starts on the next tick"),
        },
        Next::Review => NextView {
            what: "review".into(),
            code: None,
            why: "a review starts on the next tick".into(),
        },
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
    };
    let mut attention = Vec::new();
    if let LoopPhase::Paused { code, why, .. } = &st.phase {
        attention.push(format!(
            "the autonomy loop is paused ({code}): {why}. Look at its history (`converge autonomy status`), then `converge autonomy resume` resumes it."
        ));
    }
    let blocked: Vec<GapView> = st
        .gaps
        .iter()
        .filter(|g| g.blocked)
        .map(|g| GapView {
            id: g.id.clone(),
            title: g.title.clone(),
            items: g.items.iter().map(|i| format!("queue/{i}")).collect(),
        })
        .collect();
    for gap in &blocked {
        attention.push(format!(
            "the autonomy loop's gap `{}` (\"{}\") is blocked: its items {} escalated. `converge retry {}` tries the last one again; `converge autonomy unblock {}` lets the loop propose it anew.",
            gap.id,
            gap.title,
            gap.items.join(", "),
            gap.items.last().cloned().unwrap_or_default(),
            gap.id
        ));
    }
    let day = st.today.day * 86_400;
    let day = Timestamp::from_unix(day).to_string();
    AutonomyView {
        enabled: config.enabled,
        state: state.into(),
        why,
        since,
        next,
        running: st
            .inflight
            .as_ref()
            .map(|r| format!("{} {} since {}", r.kind.as_str(), r.run, r.started_at)),
        last: st
            .last
            .as_ref()
            .map(|l| format!("{}: {}", l.ended_at, l.verdict)),
        day: DayView {
            day: day.get(..10).unwrap_or_default().to_owned(),
            runs: st.today.runs,
            max_runs: config.max_runs_per_day,
            items: st.today.items,
            max_items: config.max_items_per_day,
            usd: round(st.today.usd),
            usd_limit: usd_per_day.map(|u| round(u * config.budget_share)),
        },
        totals: TotalsView {
            runs: st.runs,
            items: st.items.len(),
            merges: st.merges,
            duplicates: st.duplicates,
            refused: st.refused,
            usd: round(st.usd_total),
        },
        items: st
            .items
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
            .collect(),
        blocked,
        attention,
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

fn round(usd: f64) -> f64 {
    (usd * 10_000.0).round() / 10_000.0
}

fn spend(d: &DayView) -> String {
    match d.usd_limit {
        Some(limit) => format!("${:.2} of ${limit:.2}", d.usd),
        None => format!("${:.2} (no `[budget] usd_per_day`)", d.usd),
    }
}

/// The facts both renderings give, as (label, text, code), in order.
fn facts(v: &AutonomyView) -> Vec<(String, String, Option<String>)> {
    let state = if v.enabled {
        v.state.as_str()
    } else {
        "disabled"
    };
    let mut out = vec![(
        "state".to_owned(),
        match &v.why {
            Some(why) => format!("{state}: {why}"),
            None => state.to_owned(),
        },
        None,
    )];
    out.push(("next".into(), v.next.why.clone(), v.next.code.clone()));
    if let Some(running) = &v.running {
        out.push(("running".into(), running.clone(), None));
    }
    if let Some(last) = &v.last {
        out.push(("last planner run".into(), last.clone(), None));
    }
    let d = &v.day;
    out.push((
        d.day.clone(),
        format!(
            "{} of {} planner runs, {} of {} items, {}",
            d.runs,
            d.max_runs,
            d.items,
            d.max_items,
            spend(d)
        ),
        None,
    ));
    let t = &v.totals;
    out.push((
        "in all".into(),
        format!(
            "{} planner runs, {} items filed, {} merged, {} duplicates and {} invalid proposals refused, ${:.2}",
            t.runs, t.items, t.merges, t.duplicates, t.refused, t.usd
        ),
        None,
    ));
    out
}

/// `converge autonomy status`.
pub fn text(v: &AutonomyView) -> String {
    let mut out = String::from(
        "autonomy loop
",
    );
    for (label, text, code) in facts(v) {
        let code = code.map_or_else(String::new, |c| format!(" [{c}]"));
        let _ = writeln!(out, "  {label}: {text}{code}");
    }
    for line in &v.attention {
        let _ = writeln!(out, "attention: {line}");
    }
    if !v.history.is_empty() {
        let _ = writeln!(out, "history:");
        for line in &v.history {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

/// STATUS.md's "Autonomy" section.
pub fn section(v: &AutonomyView) -> String {
    let mut out = String::from("## Autonomy\n\nThe gap-analysis loop; see docs/autonomy.md.\n\n");
    for (label, text, code) in facts(v) {
        let code = code.map_or_else(String::new, |c| format!(" (`{c}`)"));
        let _ = writeln!(out, "- {}: {text}{code}.", capitalize(&label));
    }
    out.push('\n');
    out
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map_or_else(String::new, |c| c.to_uppercase().chain(chars).collect())
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
