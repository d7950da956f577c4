//! `converge invariant add NAME ...`: edit planning/converge.toml in place.
//!
//! The edit (`spec::edit::add_invariant`) keeps comments and formatting, is
//! validated before it is written, and is written atomically, so a refused edit changes nothing on disk.

use std::path::Path;

use super::source;
use super::{CliError, CliResult, Ctx, print};
use crate::rundir::atomic::write_atomically;
use crate::spec::edit::{self, NewInvariant};
use crate::spec::{self, config, duration, names};

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// The invariant's name ([a-z0-9][a-z0-9_-]*).
    #[arg(required_unless_present = "preset", conflicts_with = "preset")]
    pub name: Option<String>,
    /// What kind of check it is.
    #[arg(long, value_parser = ["test_suite", "typecheck", "lint", "coverage", "custom"], required_unless_present = "preset", conflicts_with = "preset")]
    pub kind: Option<String>,
    /// The program to run (directly, never through a shell).
    #[arg(long, required_unless_present = "preset", conflicts_with = "preset")]
    pub command: Option<String>,
    /// Arguments, comma-separated as gator writes them (`--args test,--workspace`);
    /// repeatable. Arguments that contain a comma go after `--`.
    #[arg(
        long = "args",
        value_name = "ARGS",
        allow_hyphen_values = true,
        value_delimiter = ',',
        conflicts_with = "preset"
    )]
    pub args: Vec<String>,
    /// Arguments taken as they are, after the other arguments.
    #[arg(last = true, value_name = "ARG", conflicts_with = "preset")]
    pub rest: Vec<String>,
    /// What it checks, in words (shown by `converge invariant list`).
    #[arg(long, value_name = "TEXT", conflicts_with = "preset")]
    pub description: Option<String>,
    /// Add the usual checks of a kind of project (gator's presets), e.g.
    /// `rust_build`, `rust_test`, `rust_clippy`, `rust_fmt_check` for rust.
    #[arg(long, value_parser = ["rust", "node", "python", "go"])]
    pub preset: Option<String>,
    /// How long it may run: a duration (`5m`) or a number of seconds (`300`).
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// The exit code that means success.
    #[arg(long, value_name = "CODE")]
    pub expected_exit_code: Option<u8>,
    /// Report failures without failing the gate.
    #[arg(long)]
    pub advisory: bool,
    /// Replace an invariant of the same name.
    #[arg(long)]
    pub force: bool,
}

/// The invariants of a preset, with the options that apply to each.
pub fn preset(name: &str, args: &AddArgs) -> Option<Vec<NewInvariant>> {
    let mut checks = edit::preset(name)?;
    for check in &mut checks {
        check.timeout = args.timeout.clone();
        check.expected_exit_code = args.expected_exit_code;
        check.advisory = args.advisory;
    }
    Some(checks)
}

/// The one invariant described by the options.
fn from_args(args: &AddArgs) -> CliResult<NewInvariant> {
    let (Some(name), Some(kind), Some(command)) = (&args.name, &args.kind, &args.command) else {
        return Err(CliError::bad_input("give NAME, --kind and --command, or --preset")
            .hint("for example `converge invariant add test --kind test_suite --command cargo --args test`"));
    };
    if let Err(problem) = names::check(name) {
        return Err(
            CliError::bad_input(format!("invariant name `{name}` {}", problem.reason))
                .hint(problem.hint),
        );
    }
    if command.trim().is_empty() {
        return Err(CliError::bad_input("--command must not be empty")
            .hint("give the program to run, e.g. `--command cargo`"));
    }
    Ok(NewInvariant {
        name: name.clone(),
        kind: kind.clone(),
        command: command.clone(),
        args: args.args.iter().chain(&args.rest).cloned().collect(),
        description: args.description.clone(),
        timeout: args.timeout.clone(),
        expected_exit_code: args.expected_exit_code,
        advisory: args.advisory,
    })
}

/// A timeout as written on the command line: a duration, or whole seconds.
fn check_timeout(timeout: &str) -> CliResult {
    if timeout.trim().parse::<u64>().is_ok_and(|n| n > 0) {
        return Ok(());
    }
    match duration::parse(timeout) {
        Ok(d) if !d.is_zero() => Ok(()),
        Ok(_) => Err(CliError::bad_input("--timeout must be longer than zero")
            .hint("for example `--timeout 5m` or `--timeout 300` (seconds)")),
        Err(reason) => Err(CliError::bad_input(format!(
            "--timeout `{timeout}` is not a duration: {reason}"
        ))
        .hint(duration::HINT)),
    }
}

pub fn run(ctx: &Ctx, args: &AddArgs) -> CliResult {
    let repo = source::open_repo(ctx)?;
    let root = repo.workdir()?.to_owned();
    let path = root.join(config::CONFIG_PATH);
    let original = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(
                CliError::bad_input(format!("there is no {}", config::CONFIG_PATH))
                    .hint("run `converge init` first"),
            );
        }
        Err(e) => {
            return Err(
                CliError::failure(format!("cannot read {}", config::CONFIG_PATH)).source(e),
            );
        }
    };
    if let Some(timeout) = &args.timeout {
        check_timeout(timeout)?;
    }
    let wanted = match &args.preset {
        Some(name) => preset(name, args).ok_or_else(|| {
            CliError::bad_input(format!("there is no preset `{name}`"))
                .hint("presets are rust, node, python and go")
        })?,
        None => vec![from_args(args)?],
    };
    let mut text = original.clone();
    let mut report = String::new();
    for new in &wanted {
        let existed = edit::has_invariant(&text, &new.name);
        if existed && !args.force && args.preset.is_some() {
            report.push_str(&format!(
                "kept invariant `{}` (it exists; --force replaces it)\n",
                new.name
            ));
            continue;
        }
        text = edit::add_invariant(&text, new, args.force)?;
        let verb = if existed { "replaced" } else { "added" };
        report.push_str(&format!(
            "{verb} invariant `{}` in {}\n",
            new.name,
            config::CONFIG_PATH
        ));
    }
    check(&root, &text)?;
    if text != original {
        write_atomically(&path, text.as_bytes()).map_err(|e| {
            CliError::failure(format!("cannot write {}", config::CONFIG_PATH)).source(e)
        })?;
    }
    let first = &wanted[0].name;
    let names: Vec<String> = wanted.iter().map(|n| format!("\"{}\"", n.name)).collect();
    report.push_str(&format!(
        "next: `converge invariant test {first}` to try it, then reference it from tasks as `invariants = [{}]`\n",
        names.join(", ")
    ));
    print(&report)
}

/// Refuses the edit when the resulting configuration would not validate.
fn check(root: &Path, edited: &str) -> CliResult {
    let mut files = spec::PlanningFiles::read_dir(root)
        .map_err(|e| CliError::failure("cannot read planning/").source(e))?;
    files.files.insert(
        config::CONFIG_PATH.into(),
        spec::load::Content::Bytes(edited.as_bytes().to_vec()),
    );
    let loaded = spec::compile(&files);
    let errors: Vec<_> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.is_error() && d.file == config::CONFIG_PATH)
        .cloned()
        .collect();
    if errors.is_empty() {
        return Ok(());
    }
    source::eprint_diagnostics(&errors);
    Err(CliError::bad_input(format!(
        "{} would not be valid after this edit; nothing was written",
        config::CONFIG_PATH
    ))
    .hint("fix the errors above first (`converge plan validate`)"))
}
