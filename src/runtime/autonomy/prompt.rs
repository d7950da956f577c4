//! PURE: what a planner attempt is told (docs/autonomy.md#planner-attempts).
//! The inputs are the brief's: the goal, capabilities.md, the loop's recent
//! history, the open plans and queue, and for a capability update the
//! merged item; the output protocol is the same for every harness.

use crate::rundir::records::{PLANNER_OUT, PlannerBrief};

/// At most this many bytes of goal.md or capabilities.md go into a prompt.
const CAP: usize = 16 * 1024;

/// The prompt of a planner attempt. `history`: the loop's recent lines;
/// `open`: open plans' and queued tasks' names with their phase.
pub fn prompt(brief: &PlannerBrief, history: &[String], open: &[String]) -> String {
    let (goal, _) = crate::harness::context::truncate(&brief.goal, CAP);
    let (capabilities, _) = crate::harness::context::truncate(&brief.capabilities, CAP);
    let mut out = format!(
        "You are the planner of converge's autonomy loop ({}, run {}).\n\
         You do not change the project: you read it and leave exactly the files asked for below in the directory `{PLANNER_OUT}/` of your working directory. converge validates them and commits what it accepts; anything else you change is discarded.\n\n\
         ## The goal (planning/goal.md)\n\n{}\n\n## What exists today (planning/capabilities.md)\n\n{}\n\n",
        brief.kind,
        brief.run,
        goal.trim(),
        capabilities.trim()
    );
    if !history.is_empty() {
        out.push_str("## The loop's recent history (oldest first)\n\n");
        for line in history {
            out.push_str(&format!("- {line}\n"));
        }
        out.push('\n');
    }
    if !open.is_empty() {
        out.push_str("## Open work (plans and queue)\n\n");
        for line in open {
            out.push_str(&format!("- {line}\n"));
        }
        out.push('\n');
    }
    if !brief.blocked.is_empty() {
        out.push_str("## Blocked gaps: do not propose these again\n\n");
        for gap in &brief.blocked {
            out.push_str(&format!("- {gap}\n"));
        }
        out.push('\n');
    }
    out.push_str("## Your task\n\n");
    match brief.kind.as_str() {
        "capability-update" => {
            let (title, description) = brief.merged.clone().unwrap_or_default();
            out.push_str(&format!(
                "This item was just merged:\n\n### {title}\n\n{}\n\n\
                 Read what it changed in the repository and write `{PLANNER_OUT}/capabilities.md`: the whole new planning/capabilities.md, one short factual line per capability, markdown, at most 64 KiB. Write no other file.\n",
                description.trim()
            ));
        }
        "review" => {
            let lens = brief.lens.as_deref().unwrap_or("architecture");
            out.push_str(&format!(
                "Review the repository through the **{lens}** lens and write `{PLANNER_OUT}/review.md`: one markdown document of findings, at most 64 KiB. If one finding needs work, you may also write `{PLANNER_OUT}/item.md`, a queue item as described below.\n\n"
            ));
            out.push_str(&item_format(brief));
        }
        _ => {
            out.push_str(&format!(
                "Compare the goal with what exists today. If the goal is met, write `{PLANNER_OUT}/goal-met.md` saying why, in a few lines. Otherwise write `{PLANNER_OUT}/item.md`: exactly one queue item, the single next most useful step towards the goal, small enough for one agent in one attempt. Do not propose what is open, what the history shows was refused as a duplicate, or a blocked gap.\n\n"
            ));
            out.push_str(&item_format(brief));
        }
    }
    out
}

fn item_format(brief: &PlannerBrief) -> String {
    let (gate, invariants) = if brief.invariants.is_empty() {
        ("human_review", String::new())
    } else {
        (
            "auto",
            format!("invariants: [{}]\n", brief.invariants.join(", ")),
        )
    };
    format!(
        "A queue item is YAML front matter and a markdown description whose first line is a `# ` title:\n\n\
         ```markdown\n---\nscope: narrow\ngate: {gate}\n{invariants}---\n\n# The title\n\nWhat to do, why, and how to tell it is done.\n```\n\n\
         `scope` is narrow, medium or broad; `gate` is auto (merged when its invariants pass) or human_review. The checks you may list in `invariants` are: {}. Do not set `harness`, `sim` or `allow_unchecked`: converge refuses such items.\n",
        if brief.invariants.is_empty() {
            "none are configured".to_owned()
        } else {
            brief.invariants.join(", ")
        }
    )
}

/// The title of a proposed item: the first `# ` heading of its description,
/// else its first non-empty line, without markdown heading marks.
pub fn title_of(item: &str) -> String {
    let body = match item.strip_prefix("---") {
        Some(rest) => rest.split_once("\n---").map_or(rest, |(_, body)| body),
        None => item,
    };
    let lines = || body.lines().map(str::trim).filter(|l| !l.is_empty());
    let line = lines()
        .find(|l| l.starts_with("# "))
        .or_else(|| lines().next())
        .unwrap_or_default();
    let title = line.trim_start_matches('#').trim();
    title.chars().take(120).collect()
}

/// The body of a proposed item (what follows its front matter).
pub fn body_of(item: &str) -> &str {
    match item.strip_prefix("---") {
        Some(rest) => rest.split_once("\n---").map_or(rest, |(_, body)| body),
        None => item,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brief(kind: &str) -> PlannerBrief {
        PlannerBrief {
            kind: kind.into(),
            run: 3,
            goal: "- Login\n- Export\n".into(),
            capabilities: "- Login\n".into(),
            merged: Some(("Login".into(), "Users sign in.".into())),
            item: None,
            lens: Some("security".into()),
            blocked: vec!["Export".into()],
            escalated: Vec::new(),
            previous: None,
            invariants: vec!["build".into(), "test".into()],
            sim: crate::spec::PlannerSim::default(),
        }
    }

    #[test]
    fn each_kind_is_told_its_inputs_and_its_one_output() {
        let p = prompt(
            &brief("gap-analysis"),
            &["filed queue/login-1".into()],
            &["queue/login-1 (merged)".into()],
        );
        for part in [
            "## The goal (planning/goal.md)\n\n- Login\n- Export",
            "## What exists today (planning/capabilities.md)\n\n- Login",
            "- filed queue/login-1",
            "## Blocked gaps: do not propose these again\n\n- Export",
            ".converge-planner/goal-met.md",
            ".converge-planner/item.md",
            "invariants: [build, test]",
        ] {
            assert!(p.contains(part), "{part} in\n{p}");
        }
        let p = prompt(&brief("capability-update"), &[], &[]);
        assert!(p.contains("### Login\n\nUsers sign in."), "{p}");
        assert!(p.contains(".converge-planner/capabilities.md") && !p.contains("item.md"));
        let p = prompt(&brief("review"), &[], &[]);
        assert!(p.contains("**security** lens") && p.contains("review.md"));
    }

    #[test]
    fn titles_come_from_the_first_heading() {
        assert_eq!(
            title_of("---\nscope: narrow\n---\n\nintro\n# Add login\n"),
            "Add login"
        );
        assert_eq!(title_of("---\ngate: auto\n---\n\nJust text\n"), "Just text");
        assert_eq!(title_of(""), "");
        assert_eq!(body_of("---\na: b\n---\n\nbody\n"), "\n\nbody\n");
    }
}
