//! `GET /`: the dashboard, one server-rendered HTML page with inline CSS, no
//! script and no external asset; it reloads itself every 10 s (a meta
//! refresh). What needs a person comes first (escalated, failed, blocked,
//! awaiting approval), then each plan's tasks with phase and reason, the
//! agents at work with their latest progress, the recent ticks and the
//! budgets. Every text that comes from the repository (task names, reasons,
//! messages, progress) is escaped.

use std::fmt::Write;

use serde_json::Value;

use crate::daemon::board::{Board, TickResult};
use crate::model::short;

/// Phases a person should look at, most urgent first.
const ATTENTION: &[&str] = &["escalated", "failed", "blocked", "awaiting_approval"];

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.25em .6em;border-bottom:1px solid #eee;vertical-align:top}\
th{font-weight:600;background:#f6f6f6}.muted{color:#777}code{font-size:.95em}\
.phase{display:inline-block;padding:0 .5em;border-radius:.7em;background:#e8e8e8;font-size:.9em}\
.escalated,.failed{background:#f8d0d0}.blocked{background:#f3e0c0}.awaiting_approval{background:#fff0b0}\
.running,.checking{background:#cfe3ff}.merged,.passed{background:#d3f0d3}\
.attention{border-left:4px solid #c33;padding-left:.6em}";

/// The page.
pub fn render(board: &Board) -> String {
    let mut out = String::with_capacity(8192);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta http-equiv=\"refresh\" content=\"10\">");
    out.push_str("<title>converge</title><style>");
    out.push_str(STYLE);
    out.push_str("</style></head><body>\n");
    let empty = Vec::new();
    let state = board.state.as_ref();
    let tasks = state.and_then(|s| s["tasks"].as_array()).unwrap_or(&empty);
    match state {
        Some(s) => {
            let _ = writeln!(
                out,
                "<h1>converge: {}</h1><p class=\"muted\">planning/ at <code>{}</code>, read {}</p>",
                esc(text(&s["base_branch"])),
                esc(short(text(&s["spec_commit"]))),
                esc(&board.state_at.map(|t| t.to_string()).unwrap_or_default()),
            );
        }
        None => out.push_str(
            "<h1>converge</h1><p class=\"muted\">No state yet: the first tick has not succeeded (see the recent ticks).</p>\n",
        ),
    }
    attention(&mut out, tasks, state);
    plans(&mut out, tasks);
    running(&mut out, board);
    ticks(&mut out, board);
    budgets(&mut out, board);
    out.push_str("</body></html>\n");
    out
}

fn attention(out: &mut String, tasks: &[Value], state: Option<&Value>) {
    out.push_str("<section class=\"attention\" id=\"attention\"><h2>Needs attention</h2>\n");
    let invalid: Vec<&str> = state
        .and_then(|s| s["invalid_plans"].as_array())
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut urgent: Vec<&Value> = tasks
        .iter()
        .filter(|t| ATTENTION.contains(&text(&t["phase"])))
        .collect();
    urgent.sort_by_key(|t| ATTENTION.iter().position(|p| *p == text(&t["phase"])));
    if urgent.is_empty() && invalid.is_empty() {
        out.push_str("<p class=\"muted\">Nothing needs a person.</p></section>\n");
        return;
    }
    for plan in invalid {
        let _ = writeln!(
            out,
            "<p>Plan <b>{}</b> is invalid and set aside: <code>converge plan validate</code> says why.</p>",
            esc(plan)
        );
    }
    if !urgent.is_empty() {
        out.push_str(
            "<table><tr><th>task</th><th>phase</th><th>reason</th><th>last failure</th></tr>\n",
        );
        for t in urgent {
            let failure = &t["last_failure"];
            let failure = if failure.is_object() {
                format!(
                    "{}: {}",
                    text(&failure["reason"]),
                    text(&failure["message"])
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(text(&t["task"])),
                phase(text(&t["phase"])),
                reason(t),
                esc(&failure)
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str("</section>\n");
}

fn plans(out: &mut String, tasks: &[Value]) {
    out.push_str("<section id=\"plans\"><h2>Plans and tasks</h2>\n");
    if tasks.is_empty() {
        out.push_str("<p class=\"muted\">No tasks.</p></section>\n");
        return;
    }
    let mut current: Option<&str> = None;
    for t in tasks {
        let name = text(&t["task"]);
        let (plan, task) = name.split_once('/').unwrap_or(("", name));
        if current != Some(plan) {
            if current.is_some() {
                out.push_str("</table>\n");
            }
            current = Some(plan);
            let _ = writeln!(out, "<h3>{}</h3>", esc(plan));
            out.push_str("<table><tr><th>task</th><th>phase</th><th>attempt</th><th>next</th><th>reason</th></tr>\n");
        }
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(task),
            phase(text(&t["phase"])),
            t["attempt"].as_u64().unwrap_or(0),
            esc(t["next_action"].as_str().unwrap_or("")),
            reason(t)
        );
    }
    out.push_str("</table></section>\n");
}

fn running(out: &mut String, board: &Board) {
    out.push_str("<section id=\"agents\"><h2>Agents at work</h2>\n");
    if board.running.is_empty() {
        out.push_str("<p class=\"muted\">None.</p></section>\n");
        return;
    }
    out.push_str("<table><tr><th>task</th><th>attempt</th><th>harness</th><th>latest progress</th><th>deadline</th></tr>\n");
    for a in &board.running {
        let progress = match &a.progress {
            Some((message, Some(at))) => format!("{message} ({at})"),
            Some((message, None)) => message.clone(),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&a.task),
            a.attempt,
            esc(a.harness.as_deref().unwrap_or("-")),
            esc(&progress),
            a.deadline
        );
    }
    out.push_str("</table></section>\n");
}

fn ticks(out: &mut String, board: &Board) {
    out.push_str("<section id=\"ticks\"><h2>Recent ticks</h2>\n");
    out.push_str("<table><tr><th>#</th><th>ended</th><th>causes</th><th>duration</th><th>actions</th><th>result</th></tr>\n");
    for t in &board.ticks {
        let result = match (&t.result, &t.error) {
            (TickResult::Failed, Some(e)) => format!("failed: {e}"),
            (r, _) => r.as_str().to_owned(),
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} ms</td><td>{}</td><td>{}</td></tr>",
            t.number,
            t.at,
            esc(&t.causes),
            t.duration_ms,
            t.actions,
            esc(&result)
        );
    }
    out.push_str("</table></section>\n");
}

fn budgets(out: &mut String, board: &Board) {
    let g = &board.gauges;
    out.push_str("<section id=\"budgets\"><h2>Budgets and spending</h2>\n");
    let _ = writeln!(
        out,
        "<p>{} tokens in, {} out, ${:.2} over every recorded attempt.</p>",
        g.tokens_in, g.tokens_out, g.cost_usd
    );
    if board.budgets.is_empty() {
        out.push_str(
            "<p class=\"muted\">No budget is set (<code>[budget]</code> in converge.toml).</p>\n",
        );
    }
    for line in &board.budgets {
        let _ = writeln!(out, "<p>{}</p>", esc(line));
    }
    out.push_str("</section>\n");
}

fn phase(p: &str) -> String {
    let class = if p.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
        p
    } else {
        ""
    };
    format!("<span class=\"phase {class}\">{}</span>", esc(p))
}

fn reason(t: &Value) -> String {
    format!(
        "<code>{}</code> {}",
        esc(text(&t["reason"])),
        esc(text(&t["message"]))
    )
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::board::{RunningAgent, TickLine};
    use crate::time::Timestamp;

    fn board(tasks: &Value) -> Board {
        Board {
            state: Some(serde_json::json!({
                "base_branch": "main",
                "spec_commit": "0123456789abcdef",
                "invalid_plans": ["<bad>"],
                "tasks": tasks.clone(),
            })),
            ..Board::default()
        }
    }

    #[test]
    fn text_from_the_repository_is_escaped_everywhere() {
        let mut b = board(&serde_json::json!([{
            "task": "p/<script>alert(1)</script>",
            "phase": "escalated\"><img src=x>",
            "attempt": 2,
            "reason": "escalated",
            "message": "it said <b>&</b>",
            "next_action": null,
            "last_failure": null,
        }, {
            "task": "p/x",
            "phase": "escalated",
            "attempt": 1,
            "reason": "escalated",
            "message": "m",
            "next_action": null,
            "last_failure": {"reason": "no-done", "message": "'quoted'"},
        }]));
        b.running.push(RunningAgent {
            task: "p/<i>t</i>".into(),
            attempt: 1,
            harness: Some("<h>".into()),
            deadline: Timestamp::from_unix(0),
            progress: Some(("<marquee>".into(), None)),
        });
        b.ticks.push_front(TickLine {
            number: 1,
            at: Timestamp::from_unix(0),
            causes: "start".into(),
            duration_ms: 3,
            actions: 0,
            result: TickResult::Failed,
            error: Some("<oops>".into()),
        });
        b.budgets.push("<budget>".into());
        let page = render(&b);
        for raw in [
            "<script>",
            "<img",
            "<b>&</b>",
            "'quoted'",
            "<i>t",
            "<h>",
            "<marquee>",
            "<oops>",
            "<budget>",
            "<bad>",
        ] {
            assert!(!page.contains(raw), "{raw} unescaped in:\n{page}");
        }
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("&#39;quoted&#39;"));
        assert!(!page.contains("<script"), "no script at all");
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "no external asset"
        );
    }

    #[test]
    fn what_needs_a_person_comes_before_the_plans() {
        let b = board(&serde_json::json!([
            {"task": "p/ok", "phase": "merged", "attempt": 1, "reason": "merged", "message": "merged", "next_action": null, "last_failure": null},
            {"task": "p/stuck", "phase": "escalated", "attempt": 3, "reason": "escalated", "message": "a human decides", "next_action": null, "last_failure": null},
        ]));
        let page = render(&b);
        let attention = page.find("id=\"attention\"").expect("attention");
        let plans = page.find("id=\"plans\"").expect("plans");
        let stuck = page.find("stuck").expect("stuck");
        assert!(attention < stuck && stuck < plans, "{page}");
        assert!(page.contains("<span class=\"phase escalated\">escalated</span>"));
    }
}
