//! The autonomy loop as people see it: `converge autonomy status` (text and
//! `--json`) and STATUS.md's "Autonomy" section and Attention entries. The
//! value is built from the loop's record by `runtime::autonomy::view`; its
//! renderings are here.

use std::fmt::Write as _;

use serde::Serialize;

use crate::time::Timestamp;

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
        let _ = writeln!(out, "- {}: {text}{code}.", super::capitalize(&label));
    }
    out.push('\n');
    out
}
