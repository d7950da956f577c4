//! The command line: adapters only. This file holds the top-level `Cli`, the
//! `Command` enum and the dispatch; each command's clap `Args` sit beside its
//! code in `cmd_<name>.rs`. Operations are `crate::intent`, JSON outputs are
//! `crate::view` values, and every error hint is in `error.rs`.

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use cmd_approve::ApproveArgs;
use cmd_completions::CompletionsArgs;
use cmd_demo::DemoArgs;
use cmd_doctor::DoctorArgs;
use cmd_enqueue::EnqueueArgs;
use cmd_gate::GateArgs;
use cmd_gc::GcArgs;
use cmd_history::HistoryArgs;
use cmd_init::InitArgs;
use cmd_invariant_add::AddArgs;
use cmd_invariant_list::ListArgs;
use cmd_invariant_test::TestArgs;
use cmd_log::LogArgs;
use cmd_pause::PlanArg;
use cmd_plan_graph::GraphArgs;
use cmd_plan_import::ImportArgs;
use cmd_plan_show::ShowArgs;
use cmd_plan_validate::{OutputFormat, ValidateArgs};
use cmd_reconcile::ReconcileArgs;
use cmd_report::ReportArgs;
use cmd_retry::TaskArg;
use cmd_status::StatusArgs;
use cmd_watch::WatchArgs;

pub mod cmd_agent;
pub mod cmd_approve;
pub mod cmd_autonomy;
pub mod cmd_completions;
pub mod cmd_confine;
pub mod cmd_demo;
pub mod cmd_demo_autonomy;
pub mod cmd_doctor;
pub mod cmd_enqueue;
pub mod cmd_gate;
pub mod cmd_gc;
pub mod cmd_history;
pub mod cmd_init;
pub mod cmd_invariant_add;
pub mod cmd_invariant_list;
pub mod cmd_invariant_test;
pub mod cmd_log;
pub mod cmd_pause;
pub mod cmd_plan_graph;
pub mod cmd_plan_import;
pub mod cmd_plan_show;
pub mod cmd_plan_validate;
pub mod cmd_reconcile;
pub mod cmd_report;
pub mod cmd_retry;
pub mod cmd_status;
pub mod cmd_watch;
pub mod error;
pub mod human;
pub mod logging;
pub mod source;
pub mod table;

pub use error::{CliError, CliResult, Kind, exit};

const AFTER_HELP: &str = "\
Examples:
  converge demo                   a whole run with simulated agents (no API key)
  converge init --commit          scaffold planning/ and commit it
  converge reconcile --once       one tick: observe, decide, act, record
  converge status                 what converge is doing and why
  converge plan validate          check planning/ in the working tree
  converge plan show              the tasks converge will act on
  converge plan graph auth --format mermaid

Exit codes: 0 ok, 1 failure, 2 bad input, 3 busy or deferred (docs/cli.md).";

/// converge: run fleets of coding agents from plan files committed in git.
///
/// People commit planning/ files (a goal, plans with a DAG of tasks, a queue,
/// configuration); converge compares that desired state with what exists and
/// takes one rate-limited action per tick, recording status as git commits.
#[derive(Debug, Parser)]
#[command(name = "converge", version, about, long_about, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// Run as if converge was started in DIR.
    #[arg(short = 'C', global = true, value_name = "DIR")]
    pub directory: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Scaffold planning/ in the current repository.
    #[command(
        after_help = "Examples:\n  converge init\n  converge init --commit\n  converge init --force   # overwrite existing template files"
    )]
    Init(InitArgs),
    /// Validate, show and graph plans.
    #[command(subcommand)]
    Plan(PlanCommand),
    /// List, test and add invariants (the checks converge runs on agents' work).
    #[command(subcommand)]
    Invariant(InvariantCommand),
    /// The autonomy loop: its state, and pause, resume and unblock.
    #[command(subcommand)]
    Autonomy(cmd_autonomy::AutonomyCommand),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  converge completions bash > ~/.local/share/bash-completion/completions/converge\n  converge completions zsh > ~/.zfunc/_converge\n  converge completions fish > ~/.config/fish/completions/converge.fish"
    )]
    Completions(CompletionsArgs),
    /// Run reconcile ticks: observe, decide, act, record.
    ///
    /// One tick by default: compare planning/ on the base branch with what exists,
    /// take at most `actions_per_tick` actions, and record status as one commit.
    #[command(
        after_help = "Examples:\n  converge reconcile --once            one tick (cron, CI)\n  converge reconcile --dry-run --explain\n  converge reconcile --until-idle      tick while there is something to do now\n  converge reconcile --wait            ...and wait for running agents and backoffs\n  converge reconcile --wait --fail-on escalated,awaiting-approval   in CI\n\nExit status: 0 ok (a failed action is recorded on its task), 1 the tick failed or --fail-on matched, 2 planning/ is invalid, 3 busy or deferred."
    )]
    Reconcile(ReconcileArgs),
    /// The daemon: tick on file events, wake times, a resync interval and SIGHUP.
    ///
    /// Each tick is the tick `reconcile --once` runs (it takes the same lock, so
    /// cron and a daemon never tick at once). Logs go to standard error.
    #[command(
        after_help = "Examples:\n  converge watch\n  CONVERGE_LOG=debug converge watch --log-format json\n  kill -HUP <pid>                      tick now\n\nSignals: SIGHUP ticks now; SIGTERM or SIGINT finish the current tick and exit 0 (agents keep running); a second one aborts at once (exit 128 + signal).\n\nExit status: 0 stopped by a signal, 1 the daemon could not run, 2 not a repository."
    )]
    Watch(WatchArgs),
    /// Run a whole demo: a throwaway repository, seven tasks, simulated agents.
    #[command(
        after_help = "Examples:\n  converge demo\n  converge demo --dir /tmp/greeter   # keep the repository somewhere known\n  converge demo --autonomy           # the autonomy loop: goal to capabilities"
    )]
    Demo(DemoArgs),
    /// The dashboard: every task, its phase, and what happens next.
    #[command(
        after_help = "Examples:\n  converge status\n  converge status auth\n  converge status --json"
    )]
    Status(StatusArgs),
    /// An attempt's agent output and events.
    #[command(
        after_help = "Examples:\n  converge log auth/login\n  converge log auth/login --attempt 1\n  converge log auth/login --follow"
    )]
    Log(LogArgs),
    /// The gate evidence of a task: each invariant's result, bound to a tree.
    #[command(
        after_help = "Examples:\n  converge gate auth/login\n\nExit status: 0 passed or not gated yet, 1 the last attempt failed (or the task escalated), 2 unknown task."
    )]
    Gate(GateArgs),
    /// Approve a task's reviewed commit (human_review / human_approve gates).
    #[command(
        after_help = "Examples:\n  converge approve auth/login\n  converge approve auth/login --commit 1a2b3c4 --reason \"looks right\""
    )]
    Approve(ApproveArgs),
    /// Reject a task's reviewed commit; the reason goes to the next attempt.
    #[command(
        after_help = "Examples:\n  converge reject auth/login --reason \"the form has no CSRF token\""
    )]
    Reject(ApproveArgs),
    /// Start a task afresh: bumps its `reset` in the plan file and commits it.
    #[command(after_help = "Examples:\n  converge retry auth/login")]
    Retry(TaskArg),
    /// Add a queue item: validates it and commits `planning/queue/NAME.md` on
    /// the base branch.
    #[command(
        after_help = "Examples:\n  converge enqueue fix-login item.md\n  converge enqueue fix-login - < item.md"
    )]
    Enqueue(EnqueueArgs),
    /// Pause a plan: nothing new starts; running attempts finish.
    #[command(after_help = "Examples:\n  converge pause auth")]
    Pause(PlanArg),
    /// Resume a paused plan.
    #[command(after_help = "Examples:\n  converge resume auth")]
    Resume(PlanArg),
    /// Consistency checks: orphans, stray processes, status against git, the
    /// secret, git and Landlock; `--fix` applies the safe fixes.
    #[command(
        after_help = "Examples:\n  converge doctor\n  converge doctor --fix\n\nExit status: 0 when no problem remains (warnings allowed), 1 otherwise."
    )]
    Doctor(DoctorArgs),
    /// Remove old run records and kept attempt heads beyond `[reconcile]
    /// keep_attempts`; never those of a running, current or unmerged attempt.
    #[command(
        after_help = "Examples:\n  converge gc --dry-run\n  converge gc\n\nExit status: 0 when done, 3 when a reconciler holds the lock."
    )]
    Gc(GcArgs),
    /// Tokens, cost and duration per task, attempt and harness, and the budgets.
    #[command(after_help = "Examples:\n  converge report\n  converge report auth --json")]
    Report(ReportArgs),
    /// The status commits, newest first, read back from their trailers.
    #[command(after_help = "Examples:\n  converge history\n  converge history auth --limit 20")]
    History(HistoryArgs),
    /// Agent mode: print the task of this attempt.
    #[command(after_help = "Only inside an attempt (CONVERGE_AGENT_TOKEN is set).")]
    Task,
    /// Agent mode: run the task's invariants in this worktree, leaving nothing behind.
    #[command(
        after_help = "Only inside an attempt (CONVERGE_AGENT_TOKEN is set). The invariants run at the worktree's root, as the gate runs them; what they change there is taken back afterwards (copies in $CONVERGE_RUN_DIR/check/).\n\nExample:\n  converge check"
    )]
    Check,
    /// Agent mode: report progress.
    #[command(
        after_help = "Only inside an attempt (CONVERGE_AGENT_TOKEN is set).\n\nExample:\n  converge progress \"tests written, fixing the parser\""
    )]
    Progress {
        /// What the agent is doing.
        message: String,
    },
    /// Agent mode: the attempt is finished; converge checks it next.
    #[command(
        after_help = "Only inside an attempt (CONVERGE_AGENT_TOKEN is set).\n\nExample:\n  converge done"
    )]
    Done,
    /// Internal: supervises one agent run; started by converge itself.
    #[command(name = "__supervise", hide = true)]
    Supervise { run_dir: PathBuf },
    /// Internal: the built-in simulated agent.
    #[command(name = "__sim", hide = true)]
    Sim,
    /// Internal: contains the agent's processes (a PID namespace with an init
    /// of converge's own), restricts itself with a run's Landlock policy, then
    /// becomes the agent; started by a run's supervisor.
    #[command(name = "__sandbox", hide = true)]
    Sandbox {
        /// The init stage (PID 1 of the attempt's namespace).
        #[arg(long, conflicts_with = "exec")]
        init: bool,
        /// The last stage: restrict, then execute the agent.
        #[arg(long)]
        exec: bool,
        run_dir: PathBuf,
        #[arg(last = true, required = true)]
        agent: Vec<String>,
    },
    /// Internal: restricts itself with the Landlock policy of a gate's
    /// invariants (a JSON file converge wrote), then becomes the invariant.
    #[command(name = "__invariant", hide = true)]
    ConfinedInvariant {
        policy: PathBuf,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Check planning files and report every problem at once.
    ///
    /// Without PATH, checks planning/ in the working tree (or at --rev). A PATH may
    /// be a directory that contains planning/, a file under planning/, or a plan or
    /// queue file elsewhere (checked against the repository's converge.toml).
    #[command(
        after_help = "Examples:\n  converge plan validate\n  converge plan validate planning/plans/auth.toml\n  converge plan validate --rev main --format json\n  converge plan validate examples/auth\n\nExit status: 0 when there are no errors (warnings allowed), 2 otherwise."
    )]
    Validate(ValidateArgs),
    /// Show the tasks of a plan: scope, gate, dependencies, invariants, harness.
    #[command(
        after_help = "Examples:\n  converge plan show\n  converge plan show auth\n  converge plan show auth --worktree"
    )]
    Show(ShowArgs),
    /// Print the task graph as Graphviz DOT or Mermaid.
    #[command(
        after_help = "Examples:\n  converge plan graph auth | dot -Tsvg > auth.svg\n  converge plan graph --format mermaid"
    )]
    Graph(GraphArgs),
    /// Convert a gator plan file into planning/plans/<id>.toml, as a draft.
    ///
    /// Keeps comments and layout; removes gator's write-backs (`[plan] id`, each
    /// task's `status`); renames gator's harness names (`codex-cli`, `open-code`);
    /// writes `state = "draft"`; lists the invariants the plan uses that
    /// converge.toml lacks. The id is the file stem unless --id is given.
    #[command(
        after_help = "Examples:\n  converge plan import ~/gator/plans/auth.toml\n  converge plan import plan.toml --id auth\n  converge invariant add --preset rust   # the invariants gator plans use\n\nExit status: 0 when the plan was written (problems to fix are listed), 2 when nothing was written."
    )]
    Import(ImportArgs),
}

#[derive(Debug, Subcommand)]
pub enum InvariantCommand {
    /// List the invariants defined in converge.toml.
    #[command(
        after_help = "Examples:\n  converge invariant list\n  converge invariant list --worktree"
    )]
    List(ListArgs),
    /// Run an invariant at the root of the working tree, as the gate does, and report its result.
    #[command(
        after_help = "Examples:\n  converge invariant test build\n  converge invariant test test --rev main\n\nExit status: 0 when it passes, 1 when it fails or times out."
    )]
    Test(TestArgs),
    /// Add an invariant to planning/converge.toml, keeping its comments.
    #[command(
        after_help = "Examples:\n  converge invariant add test --kind test_suite --command cargo --args test,--workspace\n  converge invariant add lint --kind lint --command npm --advisory -- run lint\n  converge invariant add --preset rust\n\nPresets (the same checks as gator's):\n  rust    rust_build, rust_test, rust_clippy, rust_fmt_check\n  node    node_test, node_build, node_lint\n  python  python_test, python_ruff, python_typecheck\n  go      go_build, go_test, go_vet"
    )]
    Add(AddArgs),
}

impl Cli {
    /// Whether the command was asked for JSON output; its errors are then
    /// printed as JSON too (see [`CliError::to_json`]).
    pub fn wants_json(&self) -> bool {
        match &self.command {
            Command::Status(a) => a.json,
            Command::Autonomy(cmd_autonomy::AutonomyCommand::Status(a)) => a.json,
            Command::Doctor(a) => a.json,
            Command::Report(a) => a.json,
            Command::Reconcile(a) => a.json,
            Command::Plan(PlanCommand::Validate(a)) => a.format == OutputFormat::Json,
            _ => false,
        }
    }
}

/// What every command gets: where it runs and where it writes.
#[derive(Debug)]
pub struct Ctx {
    pub cwd: PathBuf,
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> CliResult {
    let cwd = std::env::current_dir()
        .map_err(|e| CliError::failure("cannot determine the current directory").source(e))?;
    let cwd = match cli.directory {
        Some(dir) => {
            let dir = cwd.join(dir);
            if !dir.is_dir() {
                return Err(CliError::bad_input(format!(
                    "-C {}: not a directory",
                    dir.display()
                )));
            }
            dir
        }
        None => cwd,
    };
    let ctx = Ctx { cwd };
    if !matches!(cli.command, Command::Watch(_)) {
        logging::init_if_asked();
    }
    let agent_mode = crate::agent::AgentEnv::active(&|n| std::env::var(n).ok());
    let agent_command = matches!(
        cli.command,
        Command::Task
            | Command::Check
            | Command::Progress { .. }
            | Command::Done
            | Command::Sim
            | Command::Supervise { .. }
            | Command::Sandbox { .. }
            | Command::Completions(_)
    );
    if agent_mode && !agent_command {
        return Err(CliError::bad_input(
            "inside an attempt (CONVERGE_AGENT_TOKEN is set) converge offers only `task`, `check`, `progress` and `done`",
        )
        .hint("`converge task` prints your task; `converge done` finishes the attempt"));
    }
    match &cli.command {
        Command::Init(args) => cmd_init::run(&ctx, args),
        Command::Plan(PlanCommand::Validate(args)) => cmd_plan_validate::run(&ctx, args),
        Command::Plan(PlanCommand::Show(args)) => cmd_plan_show::run(&ctx, args),
        Command::Plan(PlanCommand::Graph(args)) => cmd_plan_graph::run(&ctx, args),
        Command::Plan(PlanCommand::Import(args)) => cmd_plan_import::run(&ctx, args),
        Command::Invariant(InvariantCommand::List(args)) => cmd_invariant_list::run(&ctx, args),
        Command::Invariant(InvariantCommand::Test(args)) => cmd_invariant_test::run(&ctx, args),
        Command::Invariant(InvariantCommand::Add(args)) => cmd_invariant_add::run(&ctx, args),
        Command::Autonomy(command) => cmd_autonomy::run(&ctx, command),
        Command::Completions(args) => cmd_completions::run(args),
        Command::Reconcile(args) => cmd_reconcile::run(&ctx, args),
        Command::Watch(args) => cmd_watch::run(&ctx, args),
        Command::Demo(args) => cmd_demo::run(&ctx, args),
        Command::Status(args) => cmd_status::run(&ctx, args),
        Command::Log(args) => cmd_log::run(&ctx, args),
        Command::Gate(args) => cmd_gate::run(&ctx, args),
        Command::Approve(args) => cmd_approve::run(&ctx, args, true),
        Command::Reject(args) => cmd_approve::run(&ctx, args, false),
        Command::Retry(args) => cmd_retry::run(&ctx, args),
        Command::Enqueue(args) => cmd_enqueue::run(&ctx, args),
        Command::Pause(args) => cmd_pause::run(&ctx, args, true),
        Command::Resume(args) => cmd_pause::run(&ctx, args, false),
        Command::History(args) => cmd_history::run(&ctx, args),
        Command::Report(args) => cmd_report::run(&ctx, args),
        Command::Doctor(args) => cmd_doctor::run(&ctx, args),
        Command::Gc(args) => cmd_gc::run(&ctx, args),
        Command::Task => cmd_agent::task(),
        Command::Check => cmd_agent::check(&ctx),
        Command::Progress { message } => cmd_agent::progress(message),
        Command::Done => cmd_agent::done(),
        Command::Sim => cmd_agent::sim(&ctx),
        Command::Sandbox {
            init,
            exec,
            run_dir,
            agent,
        } => cmd_agent::sandbox(&ctx.cwd.join(run_dir), agent, (*init, *exec)),
        Command::ConfinedInvariant { policy, command } => {
            cmd_confine::invariant(&ctx.cwd.join(policy), command)
        }
        Command::Supervise { run_dir } => crate::act::run::supervise(&ctx.cwd.join(run_dir))
            .map_err(|e| {
                CliError::failure("the run supervisor could not record the run").source(e)
            }),
    }
}

/// Writes to stdout; a closed pipe (`converge ... | head`) is not an error.
pub fn print(text: &str) -> CliResult {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::failure("cannot write to standard output").source(e)),
    }
}

/// Prints a view as JSON: pretty (`status`, `report`, `doctor`) or on one line.
pub fn print_json(view: &impl serde::Serialize, pretty: bool) -> CliResult {
    let value = crate::view::to_json(view)
        .map_err(|e| CliError::failure("cannot encode the output as JSON").source(e))?;
    if pretty {
        print(&format!("{value:#}\n"))
    } else {
        print(&format!("{value}\n"))
    }
}

/// What an intent is decided against: the base branch as the dry tick read it.
pub fn base_of(report: &crate::runtime::Snapshot) -> crate::intent::Base<'_> {
    crate::intent::Base {
        branch: &report.base_branch,
        commit: report.spec_commit,
        spec: &report.spec,
        status: &report.status,
    }
}
