//! `converge demo --autonomy`: the autonomy loop offline (docs/autonomy.md):
//! a goal of four bullet points, sim planner and sim agents, and a clock
//! that runs 720 times faster than the wall clock (a real second is twelve
//! simulated minutes), so that a day of the loop (gap analysis → item →
//! dev task merged → capability update → next gap ... → goal met) passes in
//! well under a minute, printed as it happens and ending with its history.

use std::path::Path;
use std::time::{Duration, Instant};

use super::cmd_reconcile::{converge_exe, loop_error};
use super::{CliError, CliResult, print};
use crate::git::Repo;
use crate::runtime::{self, LoopOptions, TickReport, Until};
use crate::time::Timestamp;

/// How much faster the demo's clock runs than the wall clock.
pub const SPEEDUP: u32 = 720;

const GOAL: &str = "# Goal

`greeter`: a small shell program that greets people. Each bullet point is one
capability; the autonomy loop closes the gap between this list and
planning/capabilities.md, one queue item at a time.

- Greeting configuration
- Greet function
- Command line
- Usage documentation
";

const CONFIG: &str = r#"# The autonomy demo: the loop proposes, sim agents work, a real check gates.
[reconcile]
status_branch = "converge-status"
default_harness = "sim"
actions_per_tick = 3
task_timeout = "12h"
backoff = { base = "1m", factor = 2, max = "10m" }

[budget]
usd_per_day = 2.0

[invariants.features]
kind = "lint"
command = "sh"
args = ["-c", "for f in features/*.md; do test -s \"$f\" || exit 1; done"]
timeout = "30s"

[autonomy]
enabled = true
harness = "sim"
review_every = 2
max_items_per_day = 10

[autonomy.sim]
usd_per_run = 0.04
"#;

fn files() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "README.md",
            "# greeter\n\nBuilt by converge's autonomy loop from planning/goal.md.\n",
        ),
        ("planning/goal.md", GOAL),
        (
            "planning/capabilities.md",
            "# Capabilities\n\n- (nothing yet)\n",
        ),
        ("planning/converge.toml", CONFIG),
    ]
}

/// Runs the autonomy demo in `dir` (new or empty).
pub fn run(dir: &Path) -> CliResult {
    let started = Instant::now();
    let repo = create_repo(dir)?;
    print(&format!(
        "converge demo --autonomy in {}\ngoal: 4 bullet points; sim planner and sim agents; the clock runs {SPEEDUP}x (1 s = 12 simulated minutes)\n\n",
        dir.display()
    ))?;
    let converge = converge_exe()?;
    let env = |name: &str| std::env::var(name).ok();
    let epoch = Timestamp::now();
    let clock = move || {
        let simulated = started.elapsed().as_secs_f64() * f64::from(SPEEDUP);
        epoch.plus(Duration::from_secs(simulated as u64))
    };
    let cache = runtime::Cache::default();
    let options = LoopOptions {
        until: Until::Settled,
        dry_run: false,
        converge,
        env: &env,
        lock_wait: Duration::from_secs(30),
        max_ticks: 2_000,
        clock: &clock,
        cache: &cache,
    };
    let mut out_err = Ok(());
    runtime::reconcile(&repo, &options, &mut |report| {
        if out_err.is_ok() {
            out_err = print(&lines(report, started));
        }
    })
    .map_err(loop_error)?;
    out_err?;
    ending(&repo, dir, started)
}

fn lines(report: &TickReport, started: Instant) -> String {
    let simulated = started.elapsed().as_secs_f64() * f64::from(SPEEDUP);
    let stamp = format!(
        "[{:5.1}s | sim {:02}:{:02}]",
        started.elapsed().as_secs_f64(),
        (simulated / 3600.0) as u64,
        ((simulated / 60.0) as u64) % 60
    );
    let mut text = String::new();
    for line in &report.autonomy.lines {
        text.push_str(&format!("{stamp} {line}\n"));
    }
    for done in &report.applied {
        text.push_str(&format!("{stamp} {}\n", done.line));
    }
    if let Some(f) = &report.failed {
        text.push_str(&format!("{stamp} error: {f}\n"));
    }
    text
}

fn create_repo(dir: &Path) -> CliResult<Repo> {
    super::cmd_demo::create_repo_with(
        dir,
        &files(),
        "Start greeter, with a goal for the autonomy loop",
    )
}

/// The loop's state and history, capabilities.md, and main's history.
fn ending(repo: &Repo, dir: &Path, started: Instant) -> CliResult {
    let tip = repo
        .branch_tip("main")?
        .ok_or_else(|| CliError::failure("the demo repository lost its main branch"))?;
    let status_tip = repo.branch_tip("converge-status")?.unwrap_or(tip);
    let (st, _) = runtime::autonomy::record::load(repo, status_tip)?;
    let mut out = format!(
        "\nthe loop ran {} planner attempts in {:.1}s ({:.1} simulated hours): {} items filed, {} merged, ${:.2} spent\n\nhistory of the loop:\n",
        st.runs,
        started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64() * f64::from(SPEEDUP) / 3600.0,
        st.items.len(),
        st.merges,
        st.usd_total
    );
    for line in &st.history {
        out.push_str(&format!("  {} {}\n", line.at, line.line));
    }
    let capabilities = repo
        .read_blob_at(tip, "planning/capabilities.md")?
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    out.push_str("\nplanning/capabilities.md, as the loop left it:\n");
    for line in capabilities.lines() {
        out.push_str(&format!("  {line}\n"));
    }
    out.push_str(&super::cmd_demo::main_log(repo, tip)?);
    out.push_str(&format!(
        "\nexplore it: cd {} && converge autonomy status && git show converge-status:planning/STATUS.md\n",
        dir.display()
    ));
    print(&out)?;
    let met = matches!(st.phase, runtime::autonomy::LoopPhase::GoalMet { .. });
    if met {
        Ok(())
    } else {
        Err(
            CliError::failure("the autonomy demo did not reach its goal").hint(format!(
                "`converge -C {} autonomy status` says why",
                dir.display()
            )),
        )
    }
}
