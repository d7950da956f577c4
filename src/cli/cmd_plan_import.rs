//! `converge plan import FILE`: a gator plan file as a converge plan.
//!
//! The file is converted in place with toml_edit, so its comments and layout stay:
//! gator's write-backs (`[plan] id`, each task's `status`) are removed, gator's
//! harness names become converge's, and `state = "draft"` is written so that
//! nothing is dispatched until a person activates the plan. The result goes to
//! `planning/plans/<id>.toml` (never over an existing file without `--force`) and
//! is checked against the repository's converge.toml; invariants the plan
//! references that converge.toml lacks are listed with the command that adds them.

use std::collections::BTreeSet;

use toml_edit::{DocumentMut, Item, Value, value};

use super::source;
use super::{CliError, CliResult, Ctx, print};
use crate::rundir::atomic::write_atomically;
use crate::spec::config::{self, HARNESS_ALIASES};
use crate::spec::edit::PRESETS;
use crate::spec::toml_walk::SourceFile;
use crate::spec::{self, Code, names};

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The gator plan file.
    pub file: std::path::PathBuf,
    /// The plan id, i.e. the file name under planning/plans/ (default: FILE's stem).
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// Replace planning/plans/<id>.toml if it exists.
    #[arg(long)]
    pub force: bool,
}

pub fn run(ctx: &Ctx, args: &ImportArgs) -> CliResult {
    let repo = source::open_repo(ctx)?;
    let root = repo.workdir()?.to_owned();
    let from = ctx.cwd.join(&args.file);
    let text = std::fs::read_to_string(&from).map_err(|e| {
        CliError::bad_input(format!("cannot read {}", args.file.display())).source(e)
    })?;
    let id = plan_id(args)?;
    let relative = format!("planning/plans/{id}.toml");
    let dest = root.join(&relative);
    if dest.exists() && !args.force {
        return Err(
            CliError::bad_input(format!("{relative} exists; nothing was written"))
                .hint("pass --force to replace it, or --id to import the plan under another id"),
        );
    }
    let mut doc: DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        CliError::bad_input(format!("{} is not valid TOML", args.file.display()))
            .source(e)
            .hint("fix the syntax, or check it with `converge plan validate FILE`")
    })?;
    let mut notes = convert(&mut doc);
    let converted = doc.to_string();

    let missing = missing_invariants(&root, &doc);
    let mut files = spec::PlanningFiles::read_dir(&root)
        .map_err(|e| CliError::failure("cannot read planning/").source(e))?;
    // The plan is checked as it will be once written, planning/ or not.
    files.exists = true;
    files.files.insert(
        relative.clone(),
        spec::load::Content::Bytes(converted.as_bytes().to_vec()),
    );
    let loaded = spec::compile(&files);
    let problems: Vec<_> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.file == relative && d.code != Code::UnknownInvariant)
        .cloned()
        .collect();

    write_atomically(&dest, converted.as_bytes())
        .map_err(|e| CliError::failure(format!("cannot write {relative}")).source(e))?;

    let mut out = format!(
        "imported {} as {relative} (state = \"draft\")\n",
        args.file.display()
    );
    if args.id.is_none() && id != stem(args) {
        notes.insert(
            0,
            format!("the plan id is `{id}` (from the file name, made a valid name)"),
        );
    }
    for note in &notes {
        out.push_str(&format!("  {note}\n"));
    }
    if !root.join(config::CONFIG_PATH).exists() {
        out.push_str(&format!(
            "there is no {} yet: `converge init` writes one (the invariants below go there)\n",
            config::CONFIG_PATH
        ));
    }
    if !missing.is_empty() {
        let list: Vec<&str> = missing.iter().map(String::as_str).collect();
        out.push_str(&format!(
            "missing invariants: {} (the plan uses them; {} does not define them)\n",
            list.join(", "),
            config::CONFIG_PATH
        ));
        let presets: Vec<&str> = PRESETS
            .iter()
            .filter(|(_, checks)| checks.iter().any(|c| missing.contains(c.0)))
            .map(|(p, _)| *p)
            .collect();
        for p in &presets {
            out.push_str(&format!(
                "  `converge invariant add --preset {p}` adds gator's usual {p} checks\n"
            ));
        }
        out.push_str(
            "  add others with `converge invariant add NAME --kind KIND --command PROGRAM --args A,B`\n",
        );
    }
    let errors = problems.iter().filter(|d| d.is_error()).count();
    if !problems.is_empty() {
        source::eprint_diagnostics(&problems);
    }
    if errors > 0 {
        out.push_str(&format!(
            "the plan has {errors} error{} to fix before it can run (on standard error; `converge plan validate` shows them again)\n",
            if errors == 1 { "" } else { "s" }
        ));
    }
    out.push_str(&format!(
        "next: `converge plan validate`, then set `state = \"active\"` in {relative} and commit planning/\n"
    ));
    print(&out)
}

/// The file stem of the imported file.
fn stem(args: &ImportArgs) -> String {
    args.file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The id the plan gets: `--id`, or the file stem made a valid name.
fn plan_id(args: &ImportArgs) -> CliResult<String> {
    let id = match &args.id {
        Some(id) => {
            if let Err(problem) = names::check(id) {
                return Err(
                    CliError::bad_input(format!("plan id `{id}` {}", problem.reason))
                        .hint(problem.hint),
                );
            }
            id.clone()
        }
        None => {
            let stem = stem(args);
            if names::check(&stem).is_ok() {
                stem
            } else {
                names::suggest(&stem)
            }
        }
    };
    if id == spec::QUEUE_PLAN {
        return Err(CliError::bad_input(
            "the plan id `queue` is reserved for promoted queue items",
        )
        .hint("pass --id with another name"));
    }
    Ok(id)
}

/// Rewrites gator's plan as converge's; returns what was changed, in words.
fn convert(doc: &mut DocumentMut) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(plan) = doc.get_mut("plan").and_then(Item::as_table_like_mut) {
        if plan.remove("id").is_some() {
            notes.push("removed `id` from [plan]: gator's database id; converge names a plan by its file name".to_owned());
        }
        if let Some(note) = rename_harness(plan.get_mut("default_harness"), "[plan]") {
            notes.push(note);
        }
        plan.insert("state", value("draft"));
        notes.push(
            "wrote `state = \"draft\"`: nothing is dispatched until you set `state = \"active\"`"
                .to_owned(),
        );
    }
    let mut statuses = 0;
    if let Some(tasks) = doc.get_mut("tasks").and_then(Item::as_array_of_tables_mut) {
        for task in tasks.iter_mut() {
            let name = task
                .get("name")
                .and_then(Item::as_str)
                .unwrap_or("?")
                .to_owned();
            if task.remove("status").is_some() {
                statuses += 1;
            }
            if let Some(note) = rename_harness(task.get_mut("harness"), &format!("task `{name}`")) {
                notes.push(note);
            }
        }
    }
    if statuses > 0 {
        notes.push(format!(
            "removed `status` from {statuses} task{}: gator's record of progress; converge keeps status in planning/status/",
            if statuses == 1 { "" } else { "s" }
        ));
    }
    notes
}

/// Replaces gator's name of a built-in harness by converge's, keeping decoration.
fn rename_harness(item: Option<&mut Item>, what: &str) -> Option<String> {
    let item = item?;
    let written = item.as_str()?.to_owned();
    let (_, target) = HARNESS_ALIASES.iter().find(|(a, _)| *a == written)?;
    let decor = item.as_value().map(|v| v.decor().clone());
    let mut new = Value::from(*target);
    if let Some(decor) = decor {
        *new.decor_mut() = decor;
    }
    *item = Item::Value(new);
    Some(format!(
        "harness `{written}` in {what} is now `{target}` (converge's name)"
    ))
}

/// The invariants the plan references that converge.toml does not define.
fn missing_invariants(root: &std::path::Path, doc: &DocumentMut) -> BTreeSet<String> {
    let text = std::fs::read_to_string(root.join(config::CONFIG_PATH)).unwrap_or_default();
    let file = SourceFile {
        path: config::CONFIG_PATH.into(),
        text,
    };
    let mut ignored = Vec::new();
    let defined = config::compile(&file, &[], &mut ignored).config.invariants;
    let mut missing = BTreeSet::new();
    let Some(tasks) = doc.get("tasks").and_then(Item::as_array_of_tables) else {
        return missing;
    };
    for task in tasks {
        let Some(list) = task.get("invariants").and_then(Item::as_array) else {
            continue;
        };
        for name in list.iter().filter_map(|v| v.as_str()) {
            if !defined.contains_key(name) {
                missing.insert(name.to_owned());
            }
        }
    }
    missing
}
