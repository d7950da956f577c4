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
    if let Err(problem) = names::check(&args.name) {
        return Err(CliError::bad_input(format!(
            "invariant name `{}` {}",
            args.name, problem.reason
        ))
        .hint(problem.hint));
    }
    if let Some(timeout) = &args.timeout {
        duration::parse(timeout).map_err(|reason| {
            CliError::bad_input(format!("--timeout `{timeout}` is not a duration: {reason}"))
                .hint(duration::HINT)
        })?;
    }
    if args.command.trim().is_empty() {
        return Err(CliError::bad_input("--command must not be empty")
            .hint("give the program to run, e.g. `--command cargo`"));
    }
    let edited = edit(&original, args)?;
    check(&root, &edited)?;
    write_atomically(&path, edited.as_bytes()).map_err(|e| {
        CliError::failure(format!("cannot write {}", config::CONFIG_PATH)).source(e)
    })?;
    let verb = if args.force && original != edited && has_invariant(&original, &args.name) {
        "replaced"
    } else {
        "added"
    };
    print(&format!(
        "{verb} invariant `{}` in {}\nnext: `converge invariant test {}` to try it, then reference it from tasks as `invariants = [\"{}\"]`\n",
        args.name,
        config::CONFIG_PATH,
        args.name,
        args.name
    ))
}

fn has_invariant(text: &str, name: &str) -> bool {
    text.parse::<DocumentMut>()
        .ok()
        .and_then(|doc| doc.get("invariants").and_then(|i| i.get(name)).map(|_| ()))
        .is_some()
}

/// Returns the new text of converge.toml with the invariant added.
pub fn edit(original: &str, args: &AddArgs) -> CliResult<String> {
    let mut doc: DocumentMut = original.parse().map_err(|e: toml_edit::TomlError| {
        CliError::bad_input(format!("{} is not valid TOML", config::CONFIG_PATH))
            .source(e)
            .hint("`converge plan validate` shows where")
    })?;
    let mut table = Table::new();
    table.insert("kind", value(args.kind.as_str()));
    table.insert("command", value(args.command.as_str()));
    let mut list = Array::new();
    for arg in &args.args {
        list.push(arg.as_str());
    }
    table.insert("args", value(list));
    if let Some(timeout) = &args.timeout {
        table.insert("timeout", value(timeout.as_str()));
    }
    if let Some(code) = args.expected_exit_code {
        table.insert("expected_exit_code", value(i64::from(code)));
    }
    if args.advisory {
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
    let existing_position = invariants
        .get(&args.name)
        .and_then(Item::as_table)
        .and_then(Table::position);
    if invariants.contains_key(&args.name) && !args.force {
        return Err(
            CliError::bad_input(format!("invariant `{}` already exists", args.name))
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
    invariants.insert(&args.name, Item::Table(table));
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
