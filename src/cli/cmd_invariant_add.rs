//! `converge invariant add NAME ...`: edit planning/converge.toml in place.
//!
//! The edit keeps comments and formatting (toml_edit), is validated before it is
//! written, and is written atomically, so a refused edit changes nothing on disk.

use std::path::Path;

use toml_edit::{Array, DocumentMut, Item, Table, value};

use super::source;
use super::{AddArgs, CliError, CliResult, Ctx, print};
use crate::act::files::write_atomically;
use crate::spec::{self, config, duration, names};

/// One invariant to write into converge.toml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInvariant {
    pub name: String,
    pub kind: String,
    pub command: String,
    pub args: Vec<String>,
    pub description: Option<String>,
    /// As given: a duration (`5m`) or a number of seconds (`300`).
    pub timeout: Option<String>,
    pub expected_exit_code: Option<u8>,
    pub advisory: bool,
}

/// One check of a preset: name, kind, description, program, arguments.
pub type PresetCheck = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
);

/// The usual checks of each kind of project: the same names, commands and
/// arguments as gator's presets, so that gator plans find what they reference.
pub const PRESETS: &[(&str, &[PresetCheck])] = &[
    (
        "rust",
        &[
            (
                "rust_build",
                "typecheck",
                "Build the workspace",
                "cargo",
                &["build", "--workspace"],
            ),
            (
                "rust_test",
                "test_suite",
                "Run all tests",
                "cargo",
                &["test", "--workspace"],
            ),
            (
                "rust_clippy",
                "lint",
                "Lint with clippy",
                "cargo",
                &["clippy", "--workspace", "--", "-D", "warnings"],
            ),
            (
                "rust_fmt_check",
                "lint",
                "Check code formatting",
                "cargo",
                &["fmt", "--all", "--", "--check"],
            ),
        ],
    ),
    (
        "node",
        &[
            (
                "node_test",
                "test_suite",
                "Run test suite",
                "npm",
                &["test"],
            ),
            (
                "node_build",
                "typecheck",
                "Build the project",
                "npm",
                &["run", "build"],
            ),
            ("node_lint", "lint", "Run linter", "npm", &["run", "lint"]),
        ],
    ),
    (
        "python",
        &[
            ("python_test", "test_suite", "Run pytest", "pytest", &[]),
            (
                "python_ruff",
                "lint",
                "Lint with ruff",
                "ruff",
                &["check", "."],
            ),
            (
                "python_typecheck",
                "typecheck",
                "Type check with mypy",
                "mypy",
                &["."],
            ),
        ],
    ),
    (
        "go",
        &[
            (
                "go_build",
                "typecheck",
                "Build all packages",
                "go",
                &["build", "./..."],
            ),
            (
                "go_test",
                "test_suite",
                "Run all tests",
                "go",
                &["test", "./..."],
            ),
            ("go_vet", "lint", "Static analysis", "go", &["vet", "./..."]),
        ],
    ),
];

/// The invariants of a preset, with the options that apply to each.
pub fn preset(name: &str, args: &AddArgs) -> Option<Vec<NewInvariant>> {
    let (_, checks) = PRESETS.iter().find(|(p, _)| *p == name)?;
    Some(
        checks
            .iter()
            .map(|(name, kind, description, command, argv)| NewInvariant {
                name: (*name).to_owned(),
                kind: (*kind).to_owned(),
                command: (*command).to_owned(),
                args: argv.iter().map(|a| (*a).to_owned()).collect(),
                description: Some((*description).to_owned()),
                timeout: args.timeout.clone(),
                expected_exit_code: args.expected_exit_code,
                advisory: args.advisory,
            })
            .collect(),
    )
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
        let existed = has_invariant(&text, &new.name);
        if existed && !args.force && args.preset.is_some() {
            report.push_str(&format!(
                "kept invariant `{}` (it exists; --force replaces it)\n",
                new.name
            ));
            continue;
        }
        text = edit(&text, new, args.force)?;
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

fn has_invariant(text: &str, name: &str) -> bool {
    text.parse::<DocumentMut>()
        .ok()
        .and_then(|doc| doc.get("invariants").and_then(|i| i.get(name)).map(|_| ()))
        .is_some()
}

/// Returns the new text of converge.toml with the invariant added (or replaced,
/// with `force`).
pub fn edit(original: &str, new: &NewInvariant, force: bool) -> CliResult<String> {
    let mut doc: DocumentMut = original.parse().map_err(|e: toml_edit::TomlError| {
        CliError::bad_input(format!("{} is not valid TOML", config::CONFIG_PATH))
            .source(e)
            .hint("`converge plan validate` shows where")
    })?;
    let mut table = Table::new();
    if let Some(description) = &new.description {
        table.insert("description", value(description.as_str()));
    }
    table.insert("kind", value(new.kind.as_str()));
    table.insert("command", value(new.command.as_str()));
    let mut list = Array::new();
    for arg in &new.args {
        list.push(arg.as_str());
    }
    table.insert("args", value(list));
    if let Some(timeout) = &new.timeout {
        match timeout.trim().parse::<i64>() {
            Ok(seconds) => table.insert("timeout", value(seconds)),
            Err(_) => table.insert("timeout", value(timeout.as_str())),
        };
    }
    if let Some(code) = new.expected_exit_code {
        table.insert("expected_exit_code", value(i64::from(code)));
    }
    if new.advisory {
        table.insert("advisory", value(true));
    }
    let root = doc.as_table_mut();
    if !root.contains_key("invariants") {
        let mut parent = Table::new();
        parent.set_implicit(true);
        root.insert("invariants", Item::Table(parent));
    }
    let Some(invariants) = root.get_mut("invariants").and_then(Item::as_table_mut) else {
        return Err(
            CliError::bad_input("`invariants` in converge.toml is not a table")
                .hint("invariants are written as `[invariants.<name>]` tables"),
        );
    };
    let existing = invariants.get(&new.name).and_then(Item::as_table);
    let existing_position = existing.and_then(Table::position);
    // A replaced table keeps the comments above it.
    if let Some(decor) = existing.map(|t| t.decor().clone()) {
        *table.decor_mut() = decor;
    }
    if invariants.contains_key(&new.name) && !force {
        return Err(
            CliError::bad_input(format!("invariant `{}` already exists", new.name))
                .hint("pass --force to replace it, or choose another name"),
        );
    }
    // Place the new table right after the last invariant (ties keep insertion order),
    // or where the replaced one was.
    let last_position = invariants
        .iter()
        .filter_map(|(_, item)| item.as_table().and_then(Table::position))
        .max();
    if let Some(position) = existing_position.or(last_position) {
        table.set_position(Some(position));
    }
    invariants.insert(&new.name, Item::Table(table));
    Ok(doc.to_string())
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
