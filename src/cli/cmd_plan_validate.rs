//! `converge plan validate [PATH...]`: every problem in planning files, at once.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::source::{self, Origin};
use super::{CliError, CliResult, Ctx, Kind, print};
use crate::git::Repo;
use crate::spec::load::{Content, MAX_FILE_SIZE};
use crate::spec::{self, Diagnostic, Loaded, PlanningFiles, diag};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Files or directories to check (default: planning/ of this repository).
    pub paths: Vec<PathBuf>,
    /// Check planning/ at this commit instead of the working tree.
    #[arg(long, value_name = "REV", conflicts_with = "paths")]
    pub rev: Option<String>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// One thing that was checked: a planning/ tree, or a single file.
struct Checked {
    what: String,
    loaded: Loaded,
    /// A whole planning/ tree (summaries count its plans), not a single file.
    tree: bool,
}

pub fn run(ctx: &Ctx, args: &ValidateArgs) -> CliResult {
    let mut checked = Vec::new();
    if let Some(rev) = &args.rev {
        let loaded = source::load(
            ctx,
            &source::SourceArgs {
                rev: Some(rev.clone()),
                worktree: false,
            },
            source::Default::Base,
        )?;
        checked.push(Checked {
            what: loaded.origin.to_string(),
            loaded: loaded.loaded,
            tree: true,
        });
    } else if args.paths.is_empty() {
        let root = worktree_root(&ctx.cwd)?;
        checked.push(check_tree(&root, Origin::WorkTree.to_string())?);
    } else {
        for path in &args.paths {
            checked.push(check_path(ctx, &ctx.cwd.join(path), path)?);
        }
    }
    report(&checked, args.format)
}

/// The repository root containing `dir`, or `dir` itself when it holds planning/
/// outside any repository.
fn worktree_root(dir: &Path) -> CliResult<PathBuf> {
    match Repo::discover(dir) {
        Ok(repo) => Ok(repo.workdir()?.to_owned()),
        Err(e) if dir.join("planning").is_dir() => {
            drop(e);
            Ok(dir.to_owned())
        }
        Err(e) => Err(e.into()),
    }
}

fn read_tree(root: &Path) -> CliResult<PlanningFiles> {
    PlanningFiles::read_dir(root).map_err(|e| {
        CliError::failure(format!("cannot read {}", root.join("planning").display())).source(e)
    })
}

fn check_tree(root: &Path, what: String) -> CliResult<Checked> {
    let files = read_tree(root)?;
    Ok(Checked {
        what,
        loaded: spec::compile(&files),
        tree: true,
    })
}

fn check_path(ctx: &Ctx, path: &Path, shown: &Path) -> CliResult<Checked> {
    let meta = std::fs::metadata(path).map_err(|e| {
        CliError::bad_input(format!("cannot read {}", shown.display()))
            .source(e)
            .hint("give a plan or queue file, or a directory that contains planning/")
    })?;
    if meta.is_dir() {
        if path.join("planning").is_dir() {
            return check_tree(path, format!("{}", shown.display()));
        }
        if path.join("converge.toml").is_file() || path.join("plans").is_dir() {
            let files = PlanningFiles::read_planning_dir(path).map_err(|e| {
                CliError::failure(format!("cannot read {}", shown.display())).source(e)
            })?;
            let mut loaded = spec::compile(&files);
            // Name the files where they really are, not where planning/ would put them.
            let shown_dir = shown.display().to_string();
            for d in &mut loaded.diagnostics {
                if let Some(rest) = d.file.strip_prefix("planning/") {
                    d.file = format!("{}/{rest}", shown_dir.trim_end_matches('/'));
                }
            }
            return Ok(Checked {
                what: shown_dir,
                loaded,
                tree: true,
            });
        }
        return Err(CliError::bad_input(format!("{} is not a planning directory and contains none", shown.display()))
            .hint("give the repository root, a planning/ directory (with converge.toml or plans/), or a single plan file"));
    }
    let absolute = std::fs::canonicalize(path)
        .map_err(|e| CliError::failure(format!("cannot resolve {}", shown.display())).source(e))?;
    // A file under some planning/ directory: check the whole tree, report that file.
    if let Some(root) = absolute
        .ancestors()
        .find(|a| a.file_name().is_some_and(|n| n == "planning"))
        .and_then(Path::parent)
    {
        let relative = absolute.strip_prefix(root).unwrap_or(&absolute);
        let relative = relative.to_string_lossy().replace('\\', "/");
        let files = read_tree(root)?;
        if files.files.contains_key(&relative) {
            let mut loaded = spec::compile(&files);
            loaded
                .diagnostics
                .retain(|d| d.file == relative || d.file == spec::config::CONFIG_PATH);
            return Ok(Checked {
                what: relative,
                loaded,
                tree: false,
            });
        }
    }
    check_standalone(ctx, &absolute, shown)
}

/// A plan or queue file outside planning/: checked as if it were in the
/// repository's planning/ (for its converge.toml), with messages naming the file.
fn check_standalone(ctx: &Ctx, absolute: &Path, shown: &Path) -> CliResult<Checked> {
    let stem = absolute
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let placed = match absolute.extension().and_then(|e| e.to_str()) {
        Some("toml") => format!("planning/plans/{stem}.toml"),
        Some("md") => format!("planning/queue/{stem}.md"),
        _ => {
            return Err(CliError::bad_input(format!(
                "{} is neither a plan (.toml) nor a queue item (.md)",
                shown.display()
            ))
            .hint("plans are TOML files, queue items are markdown files with YAML front matter"));
        }
    };
    let mut files = match worktree_root(&ctx.cwd) {
        Ok(root) => read_tree(&root)?,
        Err(_) => PlanningFiles::default(),
    };
    files.exists = true;
    files.files.retain(|p, _| {
        p == spec::config::CONFIG_PATH
            || p == "planning/goal.md"
            || p.starts_with("planning/queue/templates/")
    });
    files
        .files
        .entry("planning/goal.md".into())
        .or_insert_with(|| Content::Bytes(b"(checked standalone)".to_vec()));
    let meta = std::fs::metadata(absolute)
        .map_err(|e| CliError::failure(format!("cannot read {}", shown.display())).source(e))?;
    let content =
        if meta.len() > MAX_FILE_SIZE {
            Content::TooLarge(meta.len())
        } else {
            Content::Bytes(std::fs::read(absolute).map_err(|e| {
                CliError::failure(format!("cannot read {}", shown.display())).source(e)
            })?)
        };
    files.files.insert(placed.clone(), content);
    let mut loaded = spec::compile(&files);
    let shown_text = shown.display().to_string();
    for d in &mut loaded.diagnostics {
        if d.file == placed {
            d.file.clone_from(&shown_text);
        }
    }
    Ok(Checked {
        what: shown_text,
        loaded,
        tree: false,
    })
}

#[derive(Serialize)]
struct JsonReport<'a> {
    valid: bool,
    errors: usize,
    warnings: usize,
    checked: Vec<JsonChecked<'a>>,
    diagnostics: Vec<JsonDiagnostic<'a>>,
}

#[derive(Serialize)]
struct JsonChecked<'a> {
    source: &'a str,
    plans: usize,
    tasks: usize,
    queue_items: usize,
}

#[derive(Serialize)]
struct JsonDiagnostic<'a> {
    severity: spec::Severity,
    code: &'static str,
    file: &'a str,
    line: Option<usize>,
    column: Option<usize>,
    message: &'a str,
    hint: Option<&'a str>,
}

fn report(checked: &[Checked], format: OutputFormat) -> CliResult {
    let mut all: Vec<&Diagnostic> = checked.iter().flat_map(|c| &c.loaded.diagnostics).collect();
    all.dedup();
    let errors = all.iter().filter(|d| d.is_error()).count();
    let warnings = all.len() - errors;
    match format {
        OutputFormat::Json => {
            let report = JsonReport {
                valid: errors == 0,
                errors,
                warnings,
                checked: checked
                    .iter()
                    .map(|c| {
                        let spec = c.loaded.spec.as_ref();
                        JsonChecked {
                            source: &c.what,
                            plans: spec.map_or(0, |s| s.plans.len()),
                            tasks: spec
                                .map_or(0, |s| s.plans.values().map(|p| p.tasks.len()).sum()),
                            queue_items: spec.map_or(0, |s| s.queue.len()),
                        }
                    })
                    .collect(),
                diagnostics: all
                    .iter()
                    .map(|d| JsonDiagnostic {
                        severity: d.severity,
                        code: d.code.as_str(),
                        file: &d.file,
                        line: d.location.as_ref().map(|l| l.line),
                        column: d.location.as_ref().map(|l| l.column),
                        message: &d.message,
                        hint: d.hint.as_deref(),
                    })
                    .collect(),
            };
            let json = serde_json::to_string_pretty(&report)
                .map_err(|e| CliError::failure("cannot encode the report").source(e))?;
            print(&format!("{json}\n"))?;
        }
        OutputFormat::Text => {
            let mut out = String::new();
            for d in &all {
                out.push_str(&d.to_string());
                out.push('\n');
            }
            for c in checked {
                out.push_str(&summary(c));
            }
            print(&out)?;
        }
    }
    if errors > 0 {
        Err(CliError::reported(Kind::BadInput))
    } else {
        Ok(())
    }
}

fn summary(c: &Checked) -> String {
    let (errors, warnings) = diag::counts(&c.loaded.diagnostics);
    let mut counts = Vec::new();
    if let Some(spec) = c.loaded.spec.as_ref().filter(|_| c.tree) {
        let tasks: usize = spec.plans.values().map(|p| p.tasks.len()).sum();
        counts.push(plural(spec.plans.len(), "valid plan"));
        counts.push(plural(tasks, "task"));
        if !spec.queue.is_empty() {
            counts.push(plural(spec.queue.len(), "queue item"));
        }
    }
    let problems = match (errors, warnings) {
        (0, 0) => "no problems".to_owned(),
        (e, 0) => plural(e, "error"),
        (0, w) => plural(w, "warning"),
        (e, w) => format!("{}, {}", plural(e, "error"), plural(w, "warning")),
    };
    let verdict = if errors == 0 { "ok" } else { "invalid" };
    if counts.is_empty() {
        format!("{verdict}: {}: {problems}\n", c.what)
    } else {
        format!(
            "{verdict}: {}: {} — {problems}\n",
            c.what,
            counts.join(", ")
        )
    }
}

pub fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
