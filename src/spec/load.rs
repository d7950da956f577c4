//! Gathering the files of `planning/` (from a directory or a git tree) and
//! compiling them into a [`Spec`].

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;

use super::approval;
use super::config::{self, CONFIG_PATH};
use super::diag::{self, Code, Diagnostic, Location};
use super::model::{Approval, Config, Plan, QUEUE_PLAN, QueueItem, Spec};
use super::names;
use super::plan;
use super::queue;
use super::toml_walk::SourceFile;

/// Files larger than this are refused without being parsed.
pub const MAX_FILE_SIZE: u64 = 1024 * 1024;

pub const PLANNING_DIR: &str = "planning";

/// The raw content of one file of `planning/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Bytes(Vec<u8>),
    /// Over [`MAX_FILE_SIZE`]; only the size was read.
    TooLarge(u64),
    /// A symbolic link; converge does not follow links in `planning/`.
    Symlink,
}

/// The files of `planning/` that converge reads, keyed by their path from the
/// repository root (`planning/plans/auth.toml`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanningFiles {
    /// Whether `planning/` exists at all.
    pub exists: bool,
    pub files: BTreeMap<String, Content>,
}

/// Whether a path below `planning/` (given relative to it, `/`-separated) is one
/// converge reads. Status, the dashboard and processed queue items are not input.
pub fn is_input(relative: &str) -> bool {
    let parts: Vec<&str> = relative.split('/').collect();
    match parts.as_slice() {
        ["converge.toml" | "goal.md" | "capabilities.md"] => true,
        ["plans", _] => true,
        ["queue", file] => *file != "README.md",
        ["queue", "templates", _] => true,
        ["queue", "done", _] => true,
        ["approvals", _, _] => true,
        _ => false,
    }
}

/// Whether a directory below `planning/` can contain input files.
pub fn may_contain_input(relative_dir: &str) -> bool {
    let parts: Vec<&str> = relative_dir.split('/').collect();
    matches!(
        parts.as_slice(),
        ["plans"]
            | ["queue"]
            | ["queue", "templates"]
            | ["queue", "done"]
            | ["approvals"]
            | ["approvals", _]
    )
}

impl PlanningFiles {
    /// An in-memory `planning/` from (repository path, text) pairs, for tools
    /// and tests that build specs without a filesystem.
    pub fn from_texts<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> PlanningFiles {
        PlanningFiles {
            exists: true,
            files: entries
                .into_iter()
                .map(|(path, text)| (path.to_owned(), Content::Bytes(text.as_bytes().to_vec())))
                .collect(),
        }
    }

    /// Reads `planning/` from a working tree. Never follows symbolic links.
    pub fn read_dir(repo_root: &Path) -> io::Result<PlanningFiles> {
        Self::read_planning_dir(&repo_root.join(PLANNING_DIR))
    }

    /// Reads a directory laid out like `planning/`, whatever its name.
    pub fn read_planning_dir(root: &Path) -> io::Result<PlanningFiles> {
        let root = root.to_owned();
        let mut out = PlanningFiles::default();
        match std::fs::symlink_metadata(&root) {
            Ok(meta) if meta.is_dir() => out.exists = true,
            Ok(_) => return Ok(out),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        }
        read_dir_into(&root, "", &mut out.files)?;
        Ok(out)
    }
}

fn read_dir_into(
    dir: &Path,
    relative: &str,
    out: &mut BTreeMap<String, Content>,
) -> io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let child = if relative.is_empty() {
            name.clone()
        } else {
            format!("{relative}/{name}")
        };
        let meta = entry.path().symlink_metadata()?;
        if meta.is_dir() {
            if may_contain_input(&child) {
                read_dir_into(&entry.path(), &child, out)?;
            }
            continue;
        }
        if !is_input(&child) {
            continue;
        }
        let key = format!("{PLANNING_DIR}/{child}");
        let content = if meta.file_type().is_symlink() {
            Content::Symlink
        } else if meta.len() > MAX_FILE_SIZE {
            Content::TooLarge(meta.len())
        } else {
            Content::Bytes(std::fs::read(entry.path())?)
        };
        out.insert(key, content);
    }
    Ok(())
}

/// The result of compiling `planning/`: the spec (absent when the configuration
/// itself is invalid) and every diagnostic, sorted.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub spec: Option<Spec>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Decodes a file, recording size, link and UTF-8 problems.
fn decode(path: &str, content: &Content, diags: &mut Vec<Diagnostic>) -> Option<SourceFile> {
    match content {
        Content::TooLarge(size) => {
            diags.push(
                Diagnostic::error(
                    Code::FileTooLarge,
                    path,
                    format!("the file is {size} bytes; planning files are limited to {MAX_FILE_SIZE} bytes (1 MiB)"),
                )
                .with_hint("split the plan into several plan files"),
            );
            None
        }
        Content::Symlink => {
            diags.push(
                Diagnostic::warning(
                    Code::IgnoredFile,
                    path,
                    "the file is a symbolic link, which converge does not follow",
                )
                .with_hint("replace the link with the file itself"),
            );
            None
        }
        Content::Bytes(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => Some(SourceFile {
                path: path.to_owned(),
                text: text.strip_prefix('\u{feff}').unwrap_or(text).to_owned(),
            }),
            Err(error) => {
                let valid = &bytes[..error.valid_up_to()];
                let prefix = String::from_utf8_lossy(valid);
                let location = Location::from_span(&prefix, prefix.len()..prefix.len());
                diags.push(
                    Diagnostic::error(
                        Code::InvalidUtf8,
                        path,
                        format!(
                            "the file is not valid UTF-8 (invalid byte 0x{:02x} at offset {})",
                            bytes[error.valid_up_to()],
                            error.valid_up_to()
                        ),
                    )
                    .at_location(location)
                    .with_hint("save the file as UTF-8"),
                );
                None
            }
        },
    }
}

/// The stem of `dir/<stem>.<ext>` when the path is directly in `dir` with that extension.
fn stem<'p>(path: &'p str, dir: &str, ext: &str) -> Option<&'p str> {
    path.strip_prefix(dir)?.strip_prefix('/')?.strip_suffix(ext)
}

/// Compiles everything under `planning/`: decode, configuration, goal, plans,
/// queue items, approvals, in that order (plans are checked against the
/// configuration, queue items against the plans).
pub fn compile(files: &PlanningFiles) -> Loaded {
    let mut diags = Vec::new();
    if !files.exists {
        diags.push(
            Diagnostic::error(
                Code::NoPlanning,
                "planning/",
                "there is no planning/ directory",
            )
            .with_hint("run `converge init` to create one"),
        );
        return Loaded {
            spec: None,
            diagnostics: diags,
        };
    }
    let mut sources: BTreeMap<&str, SourceFile> = BTreeMap::new();
    for (path, content) in &files.files {
        if let Some(source) = decode(path, content, &mut diags) {
            sources.insert(path.as_str(), source);
        }
    }
    let templates: Vec<String> = files
        .files
        .keys()
        .filter_map(|p| p.strip_prefix("planning/queue/templates/"))
        .filter(|name| name.ends_with(".md"))
        .map(str::to_owned)
        .collect();
    let compiled = compile_config(files, &sources, &templates, &mut diags);
    let config = compiled.config;
    let text_of = |path: &str| sources.get(path).map(|s| s.text.clone());
    let goal = text_of("planning/goal.md").unwrap_or_default();
    check_goal(files, &sources, &goal, &mut diags);
    let mut plans = read_plans(files, &sources, &config, &mut diags);
    let queue = read_queue(files, &sources, &config, &plans, &mut diags);
    if !queue.promoted.is_empty() {
        plans.valid.insert(
            QUEUE_PLAN.to_owned(),
            queue::plan_of(queue.promoted, &config),
        );
    }
    let approvals = read_approvals(files, &sources, &plans, &mut diags);
    diag::sort(&mut diags);
    let spec = compiled.valid.then(|| Spec {
        config,
        goal,
        capabilities: text_of("planning/capabilities.md").unwrap_or_default(),
        plans: plans.valid,
        invalid_plans: plans
            .invalid
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        queue: queue.items,
        approvals,
        templates,
    });
    Loaded {
        spec,
        diagnostics: diags,
    }
}

type Sources<'f> = BTreeMap<&'f str, SourceFile>;

/// `converge.toml`, or the defaults when there is none. A file that is there
/// but could not be decoded makes the configuration invalid.
fn compile_config(
    files: &PlanningFiles,
    sources: &Sources<'_>,
    templates: &[String],
    diags: &mut Vec<Diagnostic>,
) -> config::CompiledConfig {
    match sources.get(CONFIG_PATH) {
        Some(file) => config::compile(file, templates, diags),
        None if files.files.contains_key(CONFIG_PATH) => config::CompiledConfig {
            config: config::default_config(),
            valid: false,
        },
        None => config::CompiledConfig {
            config: config::default_config(),
            valid: true,
        },
    }
}

/// Warns when `goal.md` is missing or empty.
fn check_goal(
    files: &PlanningFiles,
    sources: &Sources<'_>,
    goal: &str,
    diags: &mut Vec<Diagnostic>,
) {
    if goal.trim().is_empty() && !files.files.contains_key("planning/goal.md") {
        diags.push(
            Diagnostic::warning(
                Code::MissingGoal,
                "planning/goal.md",
                "there is no goal.md; agents get no project context",
            )
            .with_hint("describe the vision in planning/goal.md; every agent reads it"),
        );
    } else if goal.trim().is_empty() && sources.contains_key("planning/goal.md") {
        diags.push(
            Diagnostic::warning(
                Code::MissingGoal,
                "planning/goal.md",
                "goal.md is empty; agents get no project context",
            )
            .with_hint("describe the vision in planning/goal.md; every agent reads it"),
        );
    }
}

/// The plans of `planning/plans/`: the valid ones by id, every id (for queue
/// items' dependencies), and the ids of invalid ones.
struct Plans {
    valid: BTreeMap<String, Plan>,
    all_ids: Vec<String>,
    invalid: Vec<String>,
}

fn read_plans(
    files: &PlanningFiles,
    sources: &Sources<'_>,
    config: &Config,
    diags: &mut Vec<Diagnostic>,
) -> Plans {
    // Plans compile independently of each other, in parallel when there are
    // several; results are merged in path order, so output does not depend on
    // scheduling.
    let plan_sources: Vec<(&str, &str, &SourceFile)> = sources
        .iter()
        .filter_map(|(path, file)| Some((*path, stem(path, "planning/plans", ".toml")?, file)))
        .collect();
    let mut compiled_plans = compile_plans(&plan_sources, config);
    let mut plans = Plans {
        valid: BTreeMap::new(),
        all_ids: Vec::new(),
        invalid: Vec::new(),
    };
    let mut plan_names: BTreeMap<String, String> = BTreeMap::new();
    for path in files
        .files
        .keys()
        .filter(|p| p.starts_with("planning/plans/"))
    {
        let Some(id) = stem(path, "planning/plans", ".toml") else {
            diags.push(
                Diagnostic::warning(
                    Code::IgnoredFile,
                    path.as_str(),
                    "not a `.toml` file, so not read as a plan",
                )
                .with_hint("plan files are named planning/plans/<id>.toml"),
            );
            continue;
        };
        plans.all_ids.push(id.to_owned());
        let id_ok = check_plan_id(path, id, diags);
        let Some(file) = sources.get(path.as_str()) else {
            plans.invalid.push(id.to_owned());
            continue;
        };
        let (compiled, mut plan_diags) = compiled_plans.remove(path.as_str()).unwrap_or_default();
        diags.append(&mut plan_diags);
        match compiled {
            Some(plan) if id_ok => {
                if let Some(other) = plan_names.get(&plan.name) {
                    let location =
                        Location::from_line_column(&file.text, plan_name_line(&file.text), 1);
                    diags.push(
                        Diagnostic::error(Code::DuplicatePlan, path.as_str(), format!("the plan name `{}` is also used by {other}", plan.name))
                            .at_location(location)
                            .with_hint("give each plan its own `name`; STATUS.md and reviews tell plans apart by it"),
                    );
                    plans.invalid.push(id.to_owned());
                    continue;
                }
                plan_names.insert(plan.name.clone(), path.clone());
                plans.valid.insert(id.to_owned(), plan);
            }
            _ => plans.invalid.push(id.to_owned()),
        }
    }
    plans
}

/// Whether a plan id (the file stem) is one converge accepts and not reserved.
fn check_plan_id(path: &str, id: &str, diags: &mut Vec<Diagnostic>) -> bool {
    if let Err(problem) = names::check(id) {
        diags.push(
            Diagnostic::error(
                Code::InvalidName,
                path,
                format!("plan id `{id}` (from the file name) {}", problem.reason),
            )
            .with_hint(format!(
                "rename the file to planning/plans/{}.toml",
                names::suggest(id)
            )),
        );
        false
    } else if id == QUEUE_PLAN {
        diags.push(
            Diagnostic::error(
                Code::ReservedName,
                path,
                "the plan id `queue` is reserved for promoted queue items",
            )
            .with_hint("rename the file, for example to planning/plans/queue-work.toml"),
        );
        false
    } else {
        true
    }
}

/// Queue items waiting to be promoted, and promoted ones (the tasks of the
/// implicit `queue` plan). Templates are checked and not kept.
struct Queue {
    items: BTreeMap<String, QueueItem>,
    promoted: Vec<QueueItem>,
}

fn read_queue(
    files: &PlanningFiles,
    sources: &Sources<'_>,
    config: &Config,
    plans: &Plans,
    diags: &mut Vec<Diagnostic>,
) -> Queue {
    let mut queue = Queue {
        items: BTreeMap::new(),
        promoted: Vec::new(),
    };
    let compile = |file: &SourceFile, name: &str, diags: &mut Vec<Diagnostic>| {
        queue::compile(file, name, config, &plans.valid, &plans.all_ids, diags)
    };
    for path in files.files.keys() {
        if let Some(name) = stem(path, "planning/queue/done", ".md") {
            // Promoted items are the tasks of the implicit `queue` plan.
            if let Some(file) = sources.get(path.as_str())
                && let Some(item) = compile(file, name, diags)
            {
                queue.promoted.push(item);
            }
            continue;
        }
        let (name, is_template) = if let Some(name) = stem(path, "planning/queue/templates", ".md")
        {
            (name, true)
        } else if let Some(name) = stem(path, "planning/queue", ".md") {
            (name, false)
        } else {
            if path.starts_with("planning/queue/") {
                diags.push(
                    Diagnostic::warning(
                        Code::IgnoredFile,
                        path.as_str(),
                        "not a `.md` file, so not read as a queue item",
                    )
                    .with_hint("queue items are named planning/queue/<name>.md"),
                );
            }
            continue;
        };
        let Some(file) = sources.get(path.as_str()) else {
            continue;
        };
        if let Some(item) = compile(file, name, diags)
            && !is_template
        {
            queue.items.insert(name.to_owned(), item);
        }
    }
    queue
}

fn read_approvals(
    files: &PlanningFiles,
    sources: &Sources<'_>,
    plans: &Plans,
    diags: &mut Vec<Diagnostic>,
) -> BTreeMap<(String, String), Approval> {
    let mut approvals = BTreeMap::new();
    for path in files.files.keys() {
        let Some(rest) = path.strip_prefix("planning/approvals/") else {
            continue;
        };
        let Some((plan_id, task)) = rest
            .split_once('/')
            .and_then(|(p, t)| Some((p, t.strip_suffix(".toml")?)))
        else {
            diags.push(
                Diagnostic::warning(Code::IgnoredFile, path.as_str(), "not read as an approval")
                    .with_hint("approvals are named planning/approvals/<plan>/<task>.toml"),
            );
            continue;
        };
        let Some(file) = sources.get(path.as_str()) else {
            continue;
        };
        let Some(approval) = approval::compile(file, plan_id, task, diags) else {
            continue;
        };
        let known_task = plans
            .valid
            .get(plan_id)
            .is_some_and(|p| p.task(task).is_some())
            || (plan_id == QUEUE_PLAN);
        if !known_task && !plans.invalid.iter().any(|p| p == plan_id) {
            diags.push(
                Diagnostic::warning(
                    Code::UnknownApprovalTarget,
                    path.as_str(),
                    format!(
                        "the approval is for `{plan_id}/{task}`, which is not a task of any plan"
                    ),
                )
                .with_hint("delete it if the task was removed, or fix the file name"),
            );
        }
        approvals.insert((plan_id.to_owned(), task.to_owned()), approval);
    }
    approvals
}

type CompiledPlan = (Option<Plan>, Vec<Diagnostic>);

/// Below this many plan files, threads cost more than they save.
const PARALLEL_PLANS: usize = 4;

fn compile_plans<'p>(
    plans: &[(&'p str, &str, &SourceFile)],
    config: &Config,
) -> BTreeMap<&'p str, CompiledPlan> {
    let compile_one = |(path, id, file): &(&'p str, &str, &SourceFile)| {
        let mut diags = Vec::new();
        let plan = plan::compile(file, id, config, &mut diags);
        (*path, (plan, diags))
    };
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(8);
    if plans.len() < PARALLEL_PLANS || workers < 2 {
        return plans.iter().map(compile_one).collect();
    }
    let chunk = plans.len().div_ceil(workers);
    std::thread::scope(|scope| {
        let handles: Vec<_> = plans
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(compile_one).collect::<Vec<_>>()))
            .collect();
        let mut out = BTreeMap::new();
        for handle in handles {
            // A panic in a worker is a bug; re-raise it rather than lose plans.
            let part = handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            out.extend(part);
        }
        out
    })
}

/// The line of the `name` key of `[plan]`, for messages about the plan as a whole.
fn plan_name_line(text: &str) -> usize {
    let mut in_plan = false;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            in_plan = trimmed == "[plan]";
        } else if in_plan && trimmed.starts_with("name") {
            return i + 1;
        }
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(entries: &[(&str, &str)]) -> PlanningFiles {
        PlanningFiles::from_texts(entries.iter().copied())
    }

    const PLAN: &str = "[plan]\nname = \"P\"\n[[tasks]]\nname = \"a\"\ndescription = \"A\"\nscope = \"narrow\"\ngate = \"auto\"\nallow_unchecked = true\n";

    #[test]
    fn input_paths() {
        assert!(is_input("plans/x.toml"));
        assert!(is_input("queue/x.md"));
        assert!(!is_input("queue/README.md"));
        assert!(!is_input("status/x.toml"));
        assert!(!is_input("STATUS.md"));
        // Promoted queue items are the tasks of the `queue` plan.
        assert!(is_input("queue/done/x.md"));
        assert!(may_contain_input("approvals/auth"));
        assert!(may_contain_input("queue/done"));
        assert!(!may_contain_input("status"));
    }

    #[test]
    fn valid_plans_survive_invalid_siblings() {
        let loaded = compile(&files(&[
            ("planning/goal.md", "Goal"),
            ("planning/plans/good.toml", PLAN),
            ("planning/plans/bad.toml", "[plan]\n"),
        ]));
        let spec = loaded.spec.expect("config is valid");
        assert!(spec.plans.contains_key("good"));
        assert_eq!(spec.invalid_plans, ["bad"]);
        assert!(
            loaded
                .diagnostics
                .iter()
                .any(|d| d.file == "planning/plans/bad.toml")
        );
    }

    #[test]
    fn duplicate_plan_names_are_refused() {
        let loaded = compile(&files(&[
            ("planning/goal.md", "Goal"),
            ("planning/plans/a.toml", PLAN),
            ("planning/plans/b.toml", PLAN),
        ]));
        let dup: Vec<_> = loaded
            .diagnostics
            .iter()
            .filter(|d| d.code == Code::DuplicatePlan)
            .collect();
        assert_eq!(dup.len(), 1);
        assert_eq!(dup[0].file, "planning/plans/b.toml");
        assert_eq!(dup[0].location.as_ref().map(|l| l.line), Some(2));
    }

    #[test]
    fn invalid_utf8_points_at_the_byte() {
        let mut f = files(&[("planning/goal.md", "Goal")]);
        f.files.insert(
            "planning/plans/x.toml".into(),
            Content::Bytes(b"[plan]\nname = \"\xff\"\n".to_vec()),
        );
        let loaded = compile(&f);
        let d = loaded
            .diagnostics
            .iter()
            .find(|d| d.code == Code::InvalidUtf8)
            .expect("reported");
        let loc = d.location.as_ref().expect("located");
        assert_eq!((loc.line, loc.column), (2, 9));
    }

    #[test]
    fn missing_planning_dir_suggests_init() {
        let loaded = compile(&PlanningFiles::default());
        assert!(loaded.spec.is_none());
        assert_eq!(loaded.diagnostics[0].code, Code::NoPlanning);
    }
}
