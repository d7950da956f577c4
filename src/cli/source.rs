//! Choosing which `planning/` a command reads, loading it, and reporting problems.

use std::fmt;
use std::path::PathBuf;

use super::{CliError, CliResult, Ctx, Kind};
use crate::git::Repo;
use crate::spec::{self, Code, Diagnostic, Loaded, PlanningFiles, Spec};

/// Where to read planning/ from.
#[derive(Debug, clap::Args, Clone, Default)]
pub struct SourceArgs {
    /// Read planning/ from this commit, branch or tag.
    #[arg(long, value_name = "REV", conflicts_with = "worktree")]
    pub rev: Option<String>,
    /// Read planning/ from the working tree, including uncommitted edits.
    #[arg(long)]
    pub worktree: bool,
}

/// Where a spec was read from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    WorkTree,
    Commit { rev: String, short: String },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::WorkTree => f.write_str("planning/ in the working tree"),
            Origin::Commit { rev, short } if rev.starts_with(short.as_str()) => {
                write!(f, "planning/ at {short}")
            }
            Origin::Commit { rev, short } => write!(f, "planning/ at {rev} ({short})"),
        }
    }
}

/// What a command reads when neither `--rev` nor `--worktree` is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Default {
    /// The working tree: for commands that help while editing.
    WorkTree,
    /// The tip of the base branch: for commands that show what converge acts on.
    Base,
}

#[derive(Debug)]
pub struct LoadedSpec {
    pub loaded: Loaded,
    pub origin: Origin,
    /// The root of the working tree.
    pub root: PathBuf,
}

pub fn open_repo(ctx: &Ctx) -> CliResult<Repo> {
    Ok(Repo::discover(&ctx.cwd)?)
}

/// Reads and compiles planning/ from the place the arguments choose.
pub fn load(ctx: &Ctx, args: &SourceArgs, default: Default) -> CliResult<LoadedSpec> {
    let repo = open_repo(ctx)?;
    let root = repo.workdir()?.to_owned();
    let use_worktree = args.worktree || (args.rev.is_none() && default == Default::WorkTree);
    let (files, origin) = if use_worktree {
        let files = PlanningFiles::read_dir(&root).map_err(|e| {
            CliError::failure(format!("cannot read {}", root.join("planning").display())).source(e)
        })?;
        (files, Origin::WorkTree)
    } else {
        let (rev, commit) = match &args.rev {
            Some(rev) => (rev.clone(), repo.resolve_commit(rev)?),
            None => {
                let source = spec::base::base_source(&repo)?;
                (source.rev, source.commit)
            }
        };
        let files = spec::base::read_planning(&repo, commit)?;
        let short = commit.to_hex_with_len(7).to_string();
        (files, Origin::Commit { rev, short })
    };
    if !files.exists
        && let Origin::Commit { .. } = &origin
    {
        let hint = if root.join("planning").is_dir() {
            "planning/ exists in the working tree but is not committed: commit it (`git add planning && git commit`), or pass --worktree"
        } else {
            "run `converge init --commit` to create and commit it"
        };
        return Err(
            CliError::bad_input(format!("there is no planning/ directory in {origin}")).hint(hint),
        );
    }
    Ok(LoadedSpec {
        loaded: spec::compile(&files),
        origin,
        root,
    })
}

/// Prints diagnostics to stderr (for commands whose output is something else).
pub fn eprint_diagnostics(diagnostics: &[Diagnostic]) {
    for d in diagnostics {
        eprintln!("{d}");
    }
}

/// The spec, or the diagnostics and an exit-2 error when the configuration is invalid.
pub fn require_spec(loaded: LoadedSpec) -> CliResult<(Spec, LoadedSpec)> {
    match loaded.loaded.spec.clone() {
        Some(spec) => Ok((spec, loaded)),
        None => {
            eprint_diagnostics(&loaded.loaded.diagnostics);
            if loaded
                .loaded
                .diagnostics
                .iter()
                .any(|d| d.code == Code::NoPlanning)
            {
                return Err(CliError::reported(Kind::BadInput));
            }
            Err(
                CliError::bad_input(format!("{} is not valid", loaded.origin))
                    .hint("fix the errors above; `converge plan validate` lists them all"),
            )
        }
    }
}

/// The plans a command should act on: one by id, or all valid ones. Invalid plans
/// are reported on stderr; asking for an invalid or unknown plan is an error.
pub fn select_plans<'s>(
    spec: &'s Spec,
    loaded: &LoadedSpec,
    plan: Option<&str>,
) -> CliResult<Vec<&'s spec::Plan>> {
    let errors_of = |id: &str| -> Vec<Diagnostic> {
        let file = format!("planning/plans/{id}.toml");
        loaded
            .loaded
            .diagnostics
            .iter()
            .filter(|d| d.file == file)
            .cloned()
            .collect()
    };
    match plan {
        Some(id) => {
            if let Some(plan) = spec.plans.get(id) {
                return Ok(vec![plan]);
            }
            if spec.invalid_plans.iter().any(|p| p == id) {
                eprint_diagnostics(&errors_of(id));
                return Err(CliError::bad_input(format!("plan `{id}` has errors"))
                    .hint("fix the errors above"));
            }
            let known: Vec<&str> = spec.plans.keys().map(String::as_str).collect();
            let hint =
                spec::suggest::did_you_mean(id, known.iter().copied()).unwrap_or_else(|| {
                    if known.is_empty() {
                        "there are no plans yet; add one as planning/plans/<id>.toml".into()
                    } else {
                        format!(
                            "plans in {}: {}",
                            loaded.origin,
                            spec::suggest::one_of(&known)
                        )
                    }
                });
            Err(
                CliError::bad_input(format!("there is no plan `{id}` in {}", loaded.origin))
                    .hint(hint),
            )
        }
        None => {
            for id in &spec.invalid_plans {
                let mut text = format!(
                    "warning: plan `{id}` has errors and is not shown; `converge plan validate` explains each:\n"
                );
                for line in plan_errors(&loaded.loaded.diagnostics, id) {
                    text.push_str(&format!("  {line}\n"));
                }
                eprint!("{text}");
            }
            Ok(spec.plans.values().collect())
        }
    }
}

/// Every error of plan `id`, one line each (`file:line:col: code: message`), so
/// that a summary lists all of them (every unknown dependency, not the first).
pub fn plan_errors(diagnostics: &[Diagnostic], id: &str) -> Vec<String> {
    let file = format!("planning/plans/{id}.toml");
    diagnostics
        .iter()
        .filter(|d| d.file == file && d.is_error())
        .map(|d| match &d.location {
            Some(at) => format!(
                "{}:{}:{}: {}: {}",
                d.file, at.line, at.column, d.code, d.message
            ),
            None => format!("{}: {}: {}", d.file, d.code, d.message),
        })
        .collect()
}
