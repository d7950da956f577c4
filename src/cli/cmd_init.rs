//! `converge init [--force] [--commit]`: write planning-template/ into the repository.

use std::path::Path;

use toml_edit::{Array, DocumentMut};

use super::source;
use super::{CliError, CliResult, Ctx, print};
use crate::observe::Availability;
use crate::rundir::atomic::write_atomically;

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Overwrite template files that already exist.
    #[arg(long)]
    pub force: bool,
    /// Commit the new files on the checked-out branch.
    #[arg(long)]
    pub commit: bool,
}

/// The template, embedded at build time: (path in the repository, content).
pub const TEMPLATE: &[(&str, &str)] = &[
    (
        "planning/goal.md",
        include_str!("../../planning-template/goal.md"),
    ),
    (
        "planning/capabilities.md",
        include_str!("../../planning-template/capabilities.md"),
    ),
    (
        "planning/converge.toml",
        include_str!("../../planning-template/converge.toml"),
    ),
    (
        "planning/plans/example.toml",
        include_str!("../../planning-template/plans/example.toml"),
    ),
    (
        "planning/queue/README.md",
        include_str!("../../planning-template/queue/README.md"),
    ),
];

/// The template's converge.toml with the sandbox off, for a machine without
/// Landlock.
fn sandbox_off(config: &str) -> String {
    config.replace(
        SANDBOX_ON,
        "enabled = false                   # Landlock is not available here (`converge doctor` says why); true confines agents to their worktree",
    )
}

/// The template's line that turns the sandbox on.
const SANDBOX_ON: &str = "enabled = true                    # agents may write only their worktree (Linux Landlock; docs/agent-protocol.md)";

/// A kind of project and the commands its `build` and `test` invariants run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Project {
    pub name: &'static str,
    pub marker: &'static str,
    pub build: (&'static str, &'static [&'static str]),
    pub test: (&'static str, &'static [&'static str]),
}

/// Recognized projects, by the file at the repository root that marks them.
pub const PROJECTS: &[Project] = &[
    Project {
        name: "Rust",
        marker: "Cargo.toml",
        build: ("cargo", &["build", "--all-targets"]),
        test: ("cargo", &["test"]),
    },
    Project {
        name: "Go",
        marker: "go.mod",
        build: ("go", &["build", "./..."]),
        test: ("go", &["test", "./..."]),
    },
    Project {
        name: "Node.js",
        marker: "package.json",
        build: ("npm", &["run", "build", "--if-present"]),
        test: ("npm", &["test"]),
    },
    Project {
        name: "Python",
        marker: "pyproject.toml",
        build: ("python3", &["-m", "compileall", "-q", "."]),
        test: ("python3", &["-m", "pytest"]),
    },
];

pub fn detect(root: &Path) -> Option<&'static Project> {
    PROJECTS.iter().find(|p| root.join(p.marker).is_file())
}

/// The template's converge.toml with `build` and `test` adapted to the project.
fn configure(template: &str, project: &Project) -> CliResult<String> {
    let mut doc: DocumentMut = template.parse().map_err(|e: toml_edit::TomlError| {
        CliError::failure("the built-in template is not valid TOML").source(e)
    })?;
    for (name, (command, args)) in [("build", project.build), ("test", project.test)] {
        let Some(table) = doc
            .get_mut("invariants")
            .and_then(|i| i.get_mut(name))
            .and_then(|t| t.as_table_mut())
        else {
            continue;
        };
        // Keep the trailing comments of the template lines, at the column
        // where the template has them.
        for key in ["command", "args"] {
            let old = table.get(key).and_then(|v| v.as_value()).cloned();
            let new = if key == "command" {
                toml_edit::Value::from(command)
            } else {
                let mut list = Array::new();
                for arg in args {
                    list.push(*arg);
                }
                toml_edit::Value::Array(list)
            };
            table.insert(key, toml_edit::Item::Value(new));
            let (Some(old), Some(v)) = (old, table.get_mut(key).and_then(|v| v.as_value_mut()))
            else {
                continue;
            };
            *v.decor_mut() = aligned(key, &old, v);
        }
    }
    Ok(doc.to_string())
}

/// The decor of `old` (the template's value of `key`) for `new`, with its
/// trailing comment moved to stay at the column the template put it in.
fn aligned(key: &str, old: &toml_edit::Value, new: &toml_edit::Value) -> toml_edit::Decor {
    let mut decor = old.decor().clone();
    let bare = |v: &toml_edit::Value| {
        let mut v = v.clone();
        v.decor_mut().clear();
        v.to_string().trim().len()
    };
    let suffix = decor
        .suffix()
        .and_then(|s| s.as_str())
        .unwrap_or_default()
        .to_owned();
    let comment = suffix.trim_start();
    if comment.starts_with('#') {
        let column = key.len() + 3 + bare(old) + (suffix.len() - comment.len());
        let pad = column.saturating_sub(key.len() + 3 + bare(new)).max(1);
        decor.set_suffix(format!("{}{comment}", " ".repeat(pad)));
    }
    decor
}

pub fn run(ctx: &Ctx, args: &InitArgs) -> CliResult {
    let repo = source::open_repo(ctx)?;
    let root = repo.workdir()?.to_owned();
    let project = detect(&root);
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    // The sandbox is on where Landlock works; elsewhere the template says
    // why it is off (with it on, every attempt would run unconfined, flagged).
    let landlock = crate::act::sandbox::probe();
    for (path, content) in TEMPLATE {
        let content = match (*path, project) {
            ("planning/converge.toml", Some(project)) => configure(content, project)?,
            _ => (*content).to_owned(),
        };
        let content = match (&landlock, *path) {
            (Availability::Unavailable { .. }, "planning/converge.toml") => sandbox_off(&content),
            _ => content,
        };
        files.push(((*path).to_owned(), content.into_bytes()));
    }
    let existing: Vec<&str> = files
        .iter()
        .map(|(p, _)| p.as_str())
        .filter(|p| root.join(p).symlink_metadata().is_ok())
        .collect();
    if !existing.is_empty() && !args.force {
        return Err(CliError::bad_input(format!(
            "planning/ already has {}: {}",
            if existing.len() == 1 {
                "this file"
            } else {
                "these files"
            },
            existing.join(", ")
        ))
        .hint("nothing was written; pass --force to overwrite them with the template"));
    }
    if args.commit {
        // Refuse before writing anything if the commit could not be made.
        if repo.head_branch()?.is_none() {
            return Err(CliError::from(crate::git::GitError::DetachedHead));
        }
    }
    let mut out = String::new();
    if let Availability::Unavailable { reason } = &landlock {
        out.push_str(&format!(
            "the sandbox is off in planning/converge.toml: {reason}; agents would run unconfined\n"
        ));
    }
    if let Some(project) = project {
        out.push_str(&format!(
            "detected a {} project ({}): the build and test invariants run `{} {}` and `{} {}`\n",
            project.name,
            project.marker,
            project.build.0,
            project.build.1.join(" "),
            project.test.0,
            project.test.1.join(" ")
        ));
    }
    for (path, bytes) in &files {
        let target = root.join(path);
        let overwritten = target.exists();
        write_atomically(&target, bytes)
            .map_err(|e| CliError::failure(format!("cannot write {path}")).source(e))?;
        out.push_str(&format!(
            "{} {path}\n",
            if overwritten { "overwrote" } else { "wrote" }
        ));
    }
    if args.commit {
        let commit = repo.commit_files(
            &files,
            "converge: init planning/\n\nScaffolded by `converge init`.\n",
        )?;
        let branch = repo.head_branch()?.unwrap_or_default();
        out.push_str(&format!(
            "committed {} files as {} on {branch}\n",
            files.len(),
            commit.to_hex_with_len(7)
        ));
    }
    out.push_str(
        "\nnext:\n  edit planning/goal.md and planning/plans/example.toml\n  converge plan validate\n  set `state = \"active\"` in a plan and commit it for converge to start work\n",
    );
    print(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_turns_the_sandbox_on_and_init_can_turn_it_off() {
        let template = TEMPLATE[2].1;
        let on: toml::Table = template.parse().expect("valid toml");
        assert_eq!(on["sandbox"]["enabled"].as_bool(), Some(true));
        let text = sandbox_off(template);
        let off: toml::Table = text.parse().expect("valid toml");
        assert_eq!(off["sandbox"]["enabled"].as_bool(), Some(false));
        assert!(text.contains("Landlock is not available here"), "{text}");
    }

    #[test]
    fn configured_template_keeps_comments_and_sets_commands() {
        let rust = &PROJECTS[0];
        let text = configure(TEMPLATE[2].1, rust).expect("configures");
        let doc: toml::Table = text.parse().expect("valid toml");
        let build = &doc["invariants"]["build"];
        assert_eq!(build["command"].as_str(), Some("cargo"));
        assert_eq!(build["args"].as_array().map(Vec::len), Some(2));
        assert!(
            text.contains("command = \"cargo\"                 # the program"),
            "{text}"
        );
        assert!(text.contains("# converge configuration."));
    }

    #[test]
    fn every_project_kind_keeps_the_comments_in_their_column() {
        for project in PROJECTS {
            let text = configure(TEMPLATE[2].1, project).expect("configures");
            let line = |prefix: &str| {
                text.lines()
                    .find(|l| l.starts_with(prefix))
                    .unwrap_or_else(|| panic!("{prefix} in {text}"))
                    .to_owned()
            };
            let comment = |l: &str| l.find(" #").map(|i| i + 1);
            let kind = comment(&line("kind = \"typecheck\"")).expect("kind's comment");
            for prefix in ["command = ", "args = "] {
                let l = line(prefix);
                let at = comment(&l).unwrap_or_else(|| panic!("{prefix}: no comment in {text}"));
                // At the template's column, or one space after a longer value.
                let one_space_after = at > kind && !l[..at - 1].ends_with(' ');
                assert!(
                    at == kind || one_space_after,
                    "{l:?}: comment at {at}, not {kind}"
                );
            }
        }
    }
}
