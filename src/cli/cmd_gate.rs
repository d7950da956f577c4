//! `converge gate PLAN/TASK`: the evidence of the task's last gate.

use super::human::{known_task_named, short, snapshot};
use super::source::open_repo;
use super::{CliResult, Ctx, print};

#[derive(Debug, clap::Args)]
pub struct GateArgs {
    /// PLAN/TASK
    pub task: String,
}

pub fn run(ctx: &Ctx, args: &GateArgs) -> CliResult {
    let repo = open_repo(ctx)?;
    let report = snapshot(&repo)?;
    let key = known_task_named(&report, &args.task)?;
    let st = report
        .status
        .task(&key.plan, &key.task)
        .cloned()
        .unwrap_or_default();
    let mut out = format!(
        "{key}: {} (attempt {}, {} failure(s))\n",
        st.phase.as_str(),
        st.attempt,
        st.failures
    );
    if let Some(head) = &st.head {
        out.push_str(&format!("head {}\n", &head.short()));
    }
    if st.gate.is_empty() {
        out.push_str("no gate evidence for this attempt\n");
    }
    for (name, ev) in &st.gate {
        let verdict = match (ev.passed, ev.advisory) {
            (true, _) => "passed",
            (false, true) => "failed (advisory)",
            (false, false) => "FAILED",
        };
        let name = match name.strip_prefix(crate::act::MERGE_EVIDENCE) {
            Some(merge) => format!("{merge} ([merge], on the merge result)"),
            None => name.clone(),
        };
        out.push_str(&format!(
            "\n{verdict}: {name} (exit {}, {} ms, tree {}, log sha256 {})\n",
            ev.exit_code
                .map_or_else(|| "-".to_owned(), |c| c.to_string()),
            ev.duration_ms,
            short(&ev.tree),
            short(&ev.log_digest)
        ));
        for line in ev.output_tail.lines() {
            out.push_str(&format!("  | {line}\n"));
        }
    }
    if let Some(f) = &st.last_failure {
        out.push_str(&format!(
            "\nlast failure (attempt {}): {} [{}]\n",
            f.attempt, f.message, f.reason
        ));
        if let Some(tail) = &f.output_tail {
            for line in tail.lines() {
                out.push_str(&format!("  | {line}\n"));
            }
        }
    }
    print(&out)?;
    // For scripts and CI jobs: the last attempt failed its gate (or failed
    // otherwise and is retried or escalated).
    let failed = matches!(
        st.phase,
        crate::status::Phase::Failed | crate::status::Phase::Escalated
    ) || st.gate.values().any(|e| !e.passed && !e.advisory);
    if failed {
        return Err(super::CliError::reported(super::Kind::Failure));
    }
    Ok(())
}
