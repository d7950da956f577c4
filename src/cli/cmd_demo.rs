//! `converge demo`: a whole run on a throwaway repository, with simulated
//! agents and real invariant commands. No network, no API key.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::cmd_reconcile::{converge_exe, loop_error};
use super::{CliError, CliResult, Ctx, print};
use crate::git::Repo;
use crate::runtime::{self, LoopOptions, Recorded, TickReport, Until};
use crate::status::{Phase, Status};
use crate::time::Timestamp;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Build the demo repository here (a new or empty directory) instead of a
    /// temporary one.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Run the autonomy loop instead: from a goal to capabilities, with sim
    /// planners on an accelerated clock (docs/autonomy.md).
    #[arg(long)]
    pub autonomy: bool,
}

const PLAN: &str = "greeter";
/// Where the demo's status commits go (what `converge init` writes).
const STATUS_BRANCH: &str = "converge-status";
const REVIEWED: &str = "docs";

/// The demo project: a tiny shell program, a plan of seven tasks, and the
/// invariants that check them.
fn files() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "README.md",
            "# greeter\n\nA tiny program built by simulated agents under converge.\n",
        ),
        (
            "planning/goal.md",
            "Build `greeter`: a small shell program that greets people, with tests and docs.\n",
        ),
        (
            "planning/capabilities.md",
            "Nothing yet: the repository holds only a README.\n",
        ),
        ("planning/converge.toml", CONFIG),
        ("planning/plans/greeter.toml", GREETER),
    ]
}

const CONFIG: &str = r#"# The demo's configuration: simulated agents, fast backoff, real checks.
[reconcile]
status_branch = "converge-status"
default_harness = "sim"
actions_per_tick = 2
max_agents = 3
task_timeout = "2m"
backoff = { base = "1s", factor = 2, max = "10s" }

[invariants.syntax]
kind = "lint"
command = "sh"
args = ["-c", "for f in $(find . -name '*.sh' -not -path './.git/*'); do sh -n \"$f\" || exit 1; done"]
timeout = "30s"

[invariants.tests]
kind = "test_suite"
command = "sh"
args = ["tests/run.sh"]
timeout = "30s"

[invariants.greets]
kind = "custom"
command = "sh"
args = ["bin/greet.sh", "converge"]
timeout = "30s"

[merge]
invariants = ["syntax"]
"#;

const GREETER: &str = r##"[plan]
name = "Greeter"
state = "active"

[[tasks]]
name = "config"
description = "Add the greeting the program uses to config/greeting.txt."
scope = "narrow"
gate = "auto"
paths = ["config/**"]
[tasks.sim]
files = [{ path = "config/greeting.txt", content = "Hello\n" }]
message = "Add the greeting"

[[tasks]]
name = "lib"
description = "Write src/greet.sh: a function `greet NAME` that prints the configured greeting."
scope = "medium"
gate = "auto"
depends_on = ["config"]
invariants = ["syntax"]
paths = ["src/**"]
[tasks.sim]
files = [{ path = "src/greet.sh", content = "greet() {\n  printf '%s, %s!\\n' \"$(cat config/greeting.txt)\" \"$1\"\n}\n" }]
message = "Add greet()"

[[tasks]]
name = "cli"
description = "Write bin/greet.sh: greet the name given as the first argument."
scope = "narrow"
gate = "auto"
depends_on = ["lib"]
invariants = ["syntax", "greets"]
paths = ["bin/**"]
[tasks.sim]
files = [{ path = "bin/greet.sh", content = ". ./src/greet.sh\ngreet \"${1:?usage: greet.sh NAME}\"\n" }]
message = "Add the command line"

[[tasks]]
name = "tests"
description = "Write tests/run.sh, which checks what greet prints."
scope = "narrow"
gate = "auto"
depends_on = ["lib"]
invariants = ["tests"]
paths = ["tests/**"]
[tasks.sim]
# The first attempt writes a test that fails; converge retries with the failure in the prompt.
fail_attempts = 1
files = [{ path = "tests/run.sh", content = ". ./src/greet.sh\nout=$(greet World)\n[ \"$out\" = \"Hello, World!\" ] || { echo \"expected 'Hello, World!', got '$out'\"; exit 1; }\necho 'tests passed'\n", on_fail = ". ./src/greet.sh\nout=$(greet World)\n[ \"$out\" = \"Hi, World!\" ] || { echo \"expected 'Hi, World!', got '$out'\"; exit 1; }\n" }]
message = "Add tests"

[[tasks]]
name = "changelog"
description = "Start CHANGELOG.md."
scope = "narrow"
gate = "auto"
paths = ["CHANGELOG.md"]
[tasks.sim]
files = [{ path = "CHANGELOG.md", content = "# Changelog\n\n## 0.1.0\n\n- greet NAME\n" }]
commit = false

[[tasks]]
name = "docs"
description = "Document the command in README.md. A human reviews this one."
scope = "narrow"
gate = "human_review"
depends_on = ["cli"]
paths = ["README.md"]
[tasks.sim]
files = [{ path = "README.md", append = "\n## Usage\n\n    sh bin/greet.sh NAME\n" }]
message = "Document usage"

[[tasks]]
name = "release"
description = "Write VERSION once everything is in."
scope = "narrow"
gate = "auto"
depends_on = ["tests", "docs", "changelog"]
invariants = ["tests", "greets"]
paths = ["VERSION"]
[tasks.sim]
files = [{ path = "VERSION", content = "0.1.0\n" }]
message = "Release 0.1.0"
"##;

pub fn run(_ctx: &Ctx, args: &DemoArgs) -> CliResult {
    let started = Instant::now();
    let dir = demo_dir(args)?;
    if args.autonomy {
        return super::cmd_demo_autonomy::run(&dir);
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::failure(format!("cannot create {}", dir.display())).source(e))?;
    let mut repo = create_repo(&dir)?;
    repo.cache_objects();
    print(&format!(
        "converge demo in {}\nplan `{PLAN}`: 7 tasks run by simulated agents, checked by real commands (sh)\n\n",
        dir.display()
    ))?;

    let converge = converge_exe()?;
    let env = |name: &str| std::env::var(name).ok();
    let clock = Timestamp::now;
    let cache = runtime::Cache::default();
    let options = LoopOptions {
        until: Until::Settled,
        dry_run: false,
        converge: converge.clone(),
        env: &env,
        lock_wait: Duration::from_secs(30),
        max_ticks: 500,
        clock: &clock,
        cache: &cache,
    };
    let mut approved = false;
    let mut last_status = None;
    for _round in 0..10 {
        if let Some(status) = reconcile_until_settled(&repo, &options, started)? {
            last_status = Some(status);
        }
        let awaiting = last_status
            .as_ref()
            .and_then(|s| s.task(PLAN, REVIEWED))
            .is_some_and(|t| t.phase == Phase::AwaitingApproval);
        if awaiting && !approved {
            approved = true;
            approve_review(&converge, &dir, started)?;
            continue;
        }
        break;
    }
    summary(&repo, &dir, last_status.as_ref(), started)
}

/// Where the demo repository goes: `--dir` (new or empty), else a fresh
/// temporary directory.
fn demo_dir(args: &DemoArgs) -> CliResult<PathBuf> {
    let Some(dir) = &args.dir else {
        return Ok(std::env::temp_dir().join(format!(
            "converge-demo-{}-{}",
            std::process::id(),
            Timestamp::now().unix()
        )));
    };
    if dir.exists()
        && std::fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(
            CliError::bad_input(format!("{} is not empty", dir.display()))
                .hint("give `--dir` a new or empty directory"),
        );
    }
    Ok(dir.clone())
}

/// Ticks until nothing more happens, printing each tick's lines (and a
/// progress bar on a terminal); returns the status after the last tick.
fn reconcile_until_settled(
    repo: &Repo,
    options: &LoopOptions<'_>,
    started: Instant,
) -> CliResult<Option<Status>> {
    let bar = std::io::stderr().is_terminal();
    let total = 7usize;
    let mut last_status = None;
    let mut out_err = Ok(());
    runtime::reconcile(repo, options, &mut |report| {
        let text = tick_lines(report, started.elapsed().as_secs_f64());
        if bar {
            let merged = report.status.plans.get(PLAN).map_or(0, |p| {
                p.tasks
                    .values()
                    .filter(|t| t.phase == Phase::Merged)
                    .count()
            });
            eprint!("\r\x1b[2K");
            if out_err.is_ok() {
                out_err = print(&text);
            }
            eprint!("{}", progress_bar(merged, total));
        } else if out_err.is_ok() {
            out_err = print(&text);
        }
        last_status = Some(report.status.clone());
    })
    .map_err(loop_error)?;
    if bar {
        eprint!("\r\x1b[2K");
    }
    out_err?;
    Ok(last_status)
}

/// A tick's lines: what it did, its error, its status commit.
fn tick_lines(report: &TickReport, elapsed: f64) -> String {
    let mut text = String::new();
    for done in &report.applied {
        text.push_str(&format!("[{elapsed:5.1}s] {}\n", done.line));
    }
    if let Some(f) = &report.failed {
        text.push_str(&format!("[{elapsed:5.1}s] error: {f}\n"));
    }
    if let Recorded::Committed { commit } = &report.recorded {
        text.push_str(&format!(
            "         status commit {}\n",
            &commit.to_string()[..7]
        ));
    }
    text
}

/// Plays the reviewer of the human-reviewed task: `converge approve` it.
fn approve_review(converge: &Path, dir: &Path, started: Instant) -> CliResult {
    print(&format!(
        "\n[{:5.1}s] demo: `{PLAN}/{REVIEWED}` waits for a human review (gate = \"human_review\").\n         The demo plays the reviewer and approves the reviewed commit:\n         $ converge approve {PLAN}/{REVIEWED} --reason \"usage section reads well\"\n",
        started.elapsed().as_secs_f64()
    ))?;
    let output = std::process::Command::new(converge)
        .arg("-C")
        .arg(dir)
        .args([
            "approve",
            &format!("{PLAN}/{REVIEWED}"),
            "--reason",
            "usage section reads well",
        ])
        .env_remove(crate::agent::mode::TOKEN_ENV)
        .output()
        .map_err(|e| CliError::failure("cannot run `converge approve`").source(e))?;
    let said = String::from_utf8_lossy(&output.stdout);
    for line in said.lines() {
        print(&format!("         {line}\n"))?;
    }
    if !output.status.success() {
        return Err(CliError::failure(format!(
            "`converge approve` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    print("\n")
}

fn progress_bar(done: usize, total: usize) -> String {
    let width = 28;
    let filled = done * width / total.max(1);
    format!(
        "[{}{}] {done}/{total} merged",
        "#".repeat(filled),
        "-".repeat(width - filled)
    )
}

fn create_repo(dir: &Path) -> CliResult<Repo> {
    create_repo_with(dir, &files(), "Start greeter, with a converge plan")
}

/// A new repository at `dir` on `main` with the demo's identity and one
/// commit of `files`.
pub(super) fn create_repo_with(
    dir: &Path,
    files: &[(&str, &str)],
    message: &str,
) -> CliResult<Repo> {
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::failure(format!("cannot create {}", dir.display())).source(e))?;
    let repo = Repo::init(dir, "main")?;
    let config = repo.common_dir().join("config");
    let mut text = std::fs::read_to_string(&config).unwrap_or_default();
    text.push_str("[user]\n\tname = converge demo\n\temail = demo@converge.invalid\n");
    std::fs::write(&config, text)
        .map_err(|e| CliError::failure(format!("cannot write {}", config.display())).source(e))?;
    let repo = Repo::discover(dir)?;
    let files: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|(p, c)| ((*p).to_owned(), c.as_bytes().to_vec()))
        .collect();
    for (path, bytes) in &files {
        let full: PathBuf = dir.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                CliError::failure(format!("cannot create {}", parent.display())).source(e)
            })?;
        }
        std::fs::write(&full, bytes)
            .map_err(|e| CliError::failure(format!("cannot write {}", full.display())).source(e))?;
    }
    repo.commit_files(&files, message)?;
    Ok(repo)
}

fn summary(repo: &Repo, dir: &Path, status: Option<&Status>, started: Instant) -> CliResult {
    let mut rows = Vec::new();
    let mut merged = 0;
    if let Some(plan) = status.and_then(|s| s.plans.get(PLAN)) {
        for (name, t) in &plan.tasks {
            merged += usize::from(t.phase == Phase::Merged);
            rows.push(vec![
                format!("{PLAN}/{name}"),
                t.phase.as_str().to_owned(),
                t.attempt.to_string(),
                t.last_failure.as_ref().map_or_else(
                    || "-".to_owned(),
                    |f| format!("attempt {}: {}", f.attempt, f.reason),
                ),
                t.merged_as.map_or_else(|| "-".to_owned(), |m| m.short()),
            ]);
        }
    }
    let mut out = format!(
        "\nconverged in {:.1}s: {merged} of {} tasks merged\n\n",
        started.elapsed().as_secs_f64(),
        rows.len()
    );
    out.push_str(&super::table::render(
        &["TASK", "PHASE", "ATTEMPTS", "LAST FAILURE", "MERGED AS"],
        &rows,
    ));
    let tip = repo
        .branch_tip("main")?
        .ok_or_else(|| CliError::failure("the demo repository lost its main branch"))?;
    out.push_str(&main_log(repo, tip)?);
    // Status commits go to their own branch, so main's history is the work.
    let status_commits = match repo.branch_tip(STATUS_BRANCH)? {
        Some(status_tip) => repo
            .log(status_tip, 10_000)?
            .iter()
            .filter(|(_, _, m)| m.contains("\nConverge-Action: "))
            .count(),
        None => 0,
    };
    out.push_str(&format!(
        "\n{status_commits} status commits on {STATUS_BRANCH}: git log --oneline {STATUS_BRANCH}\n"
    ));
    out.push_str(&format!(
        "\nexplore it: cd {} && git log --stat --first-parent main && git show {STATUS_BRANCH}:planning/STATUS.md\n",
        dir.display()
    ));
    print(&out)?;
    if merged == rows.len() && !rows.is_empty() {
        Ok(())
    } else {
        Err(CliError::failure("the demo did not converge")
            .hint(format!("`converge -C {} status` says why", dir.display())))
    }
}

/// main's first-parent history as `git log --oneline --first-parent main`
/// prints it, under a heading: how both demos end.
pub(super) fn main_log(repo: &Repo, tip: gix::ObjectId) -> Result<String, CliError> {
    let mut out = String::from("\ngit log --oneline --first-parent main:\n");
    for (id, _, message) in repo.log(tip, 200)? {
        out.push_str(&format!(
            "  {} {}\n",
            &id.to_string()[..7],
            message.lines().next().unwrap_or("")
        ));
    }
    Ok(out)
}
