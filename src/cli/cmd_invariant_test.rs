//! `converge invariant test NAME`: run one invariant at the root of the
//! working tree, as the gate does, and report.

use super::cmd_invariant_list::shell_word;
use super::source::SourceArgs;
use super::source::{self, Default};
use super::{CliError, CliResult, Ctx, Kind, print};
use crate::check::exec::{self, Ending, RunSpec};
use crate::spec::{duration, suggest};

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The invariant to run.
    pub name: String,
    /// Read the invariant from planning/ at this commit instead of the working tree.
    #[arg(long, value_name = "REV")]
    pub rev: Option<String>,
    /// How many lines of output to show.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub lines: usize,
}

pub fn run(ctx: &Ctx, args: &TestArgs) -> CliResult {
    let source_args = SourceArgs {
        rev: args.rev.clone(),
        worktree: args.rev.is_none(),
    };
    let loaded = source::load(ctx, &source_args, Default::WorkTree)?;
    let (spec, loaded) = source::require_spec(loaded)?;
    let Some(invariant) = spec.config.invariants.get(&args.name) else {
        let hint = suggest::did_you_mean(
            &args.name,
            spec.config.invariants.keys().map(String::as_str),
        )
        .unwrap_or_else(|| "`converge invariant list` shows the defined invariants".into());
        return Err(CliError::bad_input(format!(
            "there is no invariant `{}` in {}",
            args.name, loaded.origin
        ))
        .hint(hint));
    };
    let command_line = std::iter::once(invariant.command.as_str())
        .chain(invariant.args.iter().map(String::as_str))
        .map(shell_word)
        .collect::<Vec<_>>()
        .join(" ");
    // At the root of the working tree, as the gate runs invariants at the root
    // of its checkout of a task's commit, whichever directory the command was
    // started in. The person's own command: their tree, environment, rights.
    let root = crate::git::Repo::discover(&ctx.cwd)
        .ok()
        .and_then(|repo| repo.workdir().ok().map(std::path::Path::to_owned))
        .unwrap_or_else(|| ctx.cwd.clone());
    eprintln!(
        "running invariant `{}` in {}: {command_line} (timeout {})",
        invariant.name,
        root.display(),
        duration::format(invariant.timeout)
    );
    let outcome = exec::run(&RunSpec {
        program: invariant.command.clone(),
        args: invariant.args.clone(),
        cwd: root,
        timeout: invariant.timeout,
        env: None,
    })
    .map_err(|e| {
        CliError::failure(format!("invariant `{}` could not run", invariant.name))
            .source(e)
            .hint(format!(
                "check that `{}` is installed and on PATH",
                invariant.command
            ))
    })?;
    let passed = outcome.ending == Ending::Exited(invariant.expected_exit_code);
    let ending = match &outcome.ending {
        Ending::Exited(code) => format!(
            "exit code {code} (expected {})",
            invariant.expected_exit_code
        ),
        Ending::Signaled(signal) => format!("killed by signal {signal}"),
        Ending::TimedOut => format!(
            "timed out after {}; its process group was killed",
            duration::format(invariant.timeout)
        ),
    };
    let verdict = match (passed, invariant.advisory) {
        (true, _) => "passed",
        (false, true) => "failed (advisory: reported, does not fail the gate)",
        (false, false) => "failed",
    };
    let mut out = format!(
        "invariant `{}` {verdict}\n  {ending}\n  duration {:.2}s\n",
        invariant.name,
        outcome.duration.as_secs_f64()
    );
    let lines = outcome.last_lines(args.lines);
    if lines.is_empty() {
        out.push_str("  no output\n");
    } else {
        let shown = if lines.len() < outcome.output_tail.lines().count()
            || outcome.output_bytes > outcome.output_tail.len() as u64
        {
            format!("last {} lines of output", lines.len())
        } else {
            "output".into()
        };
        out.push_str(&format!("  {shown}:\n"));
        for line in lines {
            out.push_str(&format!("  | {line}\n"));
        }
    }
    print(&out)?;
    if passed {
        Ok(())
    } else {
        Err(CliError::reported(Kind::Failure))
    }
}
