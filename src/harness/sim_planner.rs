//! The built-in `sim` planner: what the `sim` harness does in a planner
//! attempt of the autonomy loop (docs/autonomy.md#the-sim-planner). It reads
//! the goal's bullet points and proposes the first one capabilities.md does
//! not list yet (and that is not blocked), one per gap analysis, or says the
//! goal is met; a capability update adds the merged item's title to
//! capabilities.md; a review writes a short document. `[autonomy.sim]` makes
//! it misbehave on purpose: duplicates, an invalid item, rate limits, items
//! whose agents always fail.
//!
//! It reports its cost and rate limits as Claude Code's `stream-json` does
//! (a `result` line), so that the loop reads them through the same parser as
//! a real planner's.

use std::path::Path;

use crate::rundir::records::{PLANNER_OUT, PlannerBrief};

/// The goal's bullet points (`- ` or `* ` lines), in order.
pub fn goals(goal: &str) -> Vec<String> {
    goal.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            l.strip_prefix("- ").or_else(|| l.strip_prefix("* "))
        })
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Whether capabilities.md lists `title` (case aside).
pub fn covered(capabilities: &str, title: &str) -> bool {
    let title = title.to_lowercase();
    capabilities
        .lines()
        .any(|l| l.to_lowercase().contains(&title))
}

/// What the sim planner writes: (file name under [`PLANNER_OUT`], content).
/// `None`: the attempt ends in a rate limit.
pub fn output(brief: &PlannerBrief) -> Option<Vec<(&'static str, String)>> {
    let sim = &brief.sim;
    if sim.rate_limited_runs.contains(&brief.run) {
        return None;
    }
    Some(match brief.kind.as_str() {
        "capability-update" => {
            let (title, _) = brief.merged.clone().unwrap_or_default();
            let mut text: String = brief
                .capabilities
                .lines()
                .filter(|l| !l.contains("(nothing yet)"))
                .map(|l| format!("{l}\n"))
                .collect();
            if !covered(&text, &title) {
                if !text.is_empty() && !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str(&format!("- {title}\n"));
            }
            vec![("capabilities.md", text)]
        }
        "review" => {
            let lens = brief.lens.clone().unwrap_or_else(|| "architecture".into());
            let listed = brief
                .capabilities
                .lines()
                .filter(|l| l.trim_start().starts_with("- "))
                .count();
            vec![(
                "review.md",
                format!(
                    "# Review: {lens}\n\nRun {}: {listed} capabilities read through the {lens} lens; nothing to file.\n",
                    brief.run
                ),
            )]
        }
        _ => gap_analysis(brief),
    })
}

fn gap_analysis(brief: &PlannerBrief) -> Vec<(&'static str, String)> {
    let sim = &brief.sim;
    if sim.duplicate_runs.contains(&brief.run)
        && let Some(previous) = &brief.previous
    {
        return vec![("item.md", previous.clone())];
    }
    let gap = goals(&brief.goal).into_iter().find(|g| {
        !covered(&brief.capabilities, g) && !brief.blocked.iter().any(|b| b.eq_ignore_ascii_case(g))
    });
    let Some(title) = gap else {
        let why = if brief.blocked.is_empty() {
            "Every bullet point of goal.md is in capabilities.md.\n".to_owned()
        } else {
            format!(
                "Every bullet point of goal.md is in capabilities.md but the blocked ones: {}.\n",
                brief.blocked.join(", ")
            )
        };
        return vec![("goal-met.md", why)];
    };
    if sim.invalid_runs.contains(&brief.run) {
        // No `gate`: the queue-item compiler refuses it.
        return vec![(
            "item.md",
            format!("---\nscope: narrow\n---\n\n# {title}\n\nA proposal missing a required key.\n"),
        )];
    }
    let first_of_gap = !brief
        .escalated
        .iter()
        .any(|e| e.eq_ignore_ascii_case(&title));
    let fails = sim.failing.iter().any(|f| f.eq_ignore_ascii_case(&title))
        || (first_of_gap
            && sim
                .fail_first
                .iter()
                .any(|f| f.eq_ignore_ascii_case(&title)));
    let fail = if fails { ", fail_attempts: 1000" } else { "" };
    // Checked by every invariant there is; with none, a person reviews it
    // (the loop refuses items that opt out of every check).
    let (gate, invariants) = if brief.invariants.is_empty() {
        ("human_review", String::new())
    } else {
        (
            "auto",
            format!("invariants: [{}]\n", brief.invariants.join(", ")),
        )
    };
    let path = format!("features/{}.md", crate::spec::names::suggest(&title));
    vec![(
        "item.md",
        format!(
            "---\nscope: narrow\ngate: {gate}\n{invariants}harness: sim\nsim: {{files: [{{path: \"{path}\", content: \"{title}\\n\"}}]{fail}}}\n---\n\n# {title}\n\nThe goal lists \"{title}\" and capabilities.md does not: add {path} describing it (gap analysis {}).\n",
            brief.run
        ),
    )]
}

/// Claude Code's final `result` line for an attempt that cost `usd`, or for
/// one refused with a rate limit.
pub fn result_line(usd: f64, rate_limited: bool) -> String {
    if rate_limited {
        r#"{"type":"result","subtype":"success","is_error":true,"api_error_status":429,"result":"API Error: 429 rate_limit_error: simulated rate limit (sim planner)","usage":{"input_tokens":0,"output_tokens":0}}"#.to_owned()
    } else {
        format!(
            r#"{{"type":"result","subtype":"success","is_error":false,"result":"done","total_cost_usd":{usd},"usage":{{"input_tokens":1200,"output_tokens":300}}}}"#
        )
    }
}

/// Runs the sim planner in `worktree`: writes its output and prints its
/// result line. Returns whether it finished (false: rate-limited).
pub fn run(worktree: &Path, brief: &PlannerBrief) -> std::io::Result<bool> {
    let Some(files) = output(brief) else {
        println!("{}", result_line(0.0, true));
        return Ok(false);
    };
    let out = worktree.join(PLANNER_OUT);
    std::fs::create_dir_all(&out)?;
    for (name, text) in files {
        std::fs::write(out.join(name), text)?;
        println!("sim planner: wrote {PLANNER_OUT}/{name}");
    }
    println!("{}", result_line(brief.sim.usd_per_run, false));
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brief(kind: &str, run: u32) -> PlannerBrief {
        PlannerBrief {
            kind: kind.into(),
            run,
            goal: "# Goal\n\n- Login\n- Export CSV\n* Search\n".into(),
            capabilities: "# Capabilities\n\n- (nothing yet)\n- login\n".into(),
            merged: None,
            item: None,
            lens: None,
            blocked: Vec::new(),
            escalated: Vec::new(),
            previous: Some("previous text".into()),
            invariants: vec!["build".into()],
            sim: crate::spec::PlannerSim::default(),
        }
    }

    #[test]
    fn a_gap_analysis_proposes_the_first_missing_goal_then_says_it_is_met() {
        let files = output(&brief("gap-analysis", 1)).expect("files");
        assert_eq!(files[0].0, "item.md");
        assert!(files[0].1.contains("# Export CSV"), "{}", files[0].1);
        assert!(files[0].1.contains("features/export-csv.md"));
        let mut b = brief("gap-analysis", 2);
        b.blocked = vec!["export csv".into()];
        let files = output(&b).expect("files");
        assert!(files[0].1.contains("# Search"));
        b.capabilities.push_str("- Search\n");
        assert_eq!(output(&b).expect("files")[0].0, "goal-met.md");
    }

    #[test]
    fn the_script_makes_it_misbehave() {
        let mut b = brief("gap-analysis", 3);
        b.sim.duplicate_runs = vec![3];
        assert_eq!(output(&b).expect("files")[0].1, "previous text");
        b.sim.invalid_runs = vec![4];
        b.run = 4;
        assert!(!output(&b).expect("files")[0].1.contains("gate"));
        b.sim.rate_limited_runs = vec![4];
        assert!(output(&b).is_none());
        b.run = 5;
        b.sim.failing = vec!["Export CSV".into()];
        assert!(
            output(&b).expect("files")[0]
                .1
                .contains("fail_attempts: 1000")
        );
    }

    #[test]
    fn a_capability_update_adds_the_merged_title_once() {
        let mut b = brief("capability-update", 2);
        b.merged = Some(("Export CSV".into(), "d".into()));
        let files = output(&b).expect("files");
        assert_eq!(files[0].0, "capabilities.md");
        assert_eq!(files[0].1, "# Capabilities\n\n- login\n- Export CSV\n");
        b.capabilities = files[0].1.clone();
        assert_eq!(output(&b).expect("files")[0].1, files[0].1);
    }

    #[test]
    fn its_result_lines_parse_as_claude_codes() {
        use crate::harness::stream::{ErrorKind, summarize};
        let now = crate::time::Timestamp::from_unix(1_800_000_000);
        let s = summarize(
            crate::spec::HarnessKind::ClaudeCode,
            now,
            &result_line(0.25, false),
        );
        assert_eq!(s.cost_usd, Some(0.25));
        assert!(s.error.is_none());
        let s = summarize(
            crate::spec::HarnessKind::ClaudeCode,
            now,
            &result_line(0.0, true),
        );
        assert_eq!(s.error.map(|e| e.kind), Some(ErrorKind::RateLimit));
        assert_eq!(
            crate::spec::names::suggest("Export CSV, quickly!"),
            "export-csv-quickly"
        );
    }
}
