//! Edits of planning files that keep their comments and layout (toml_edit),
//! and the encoding of a human decision. Pure: text in, text out; the callers
//! (`crate::intent`, `converge invariant add`) read, validate and write.

use toml_edit::{Array, DocumentMut, Item, Table, value};

use super::config;
use crate::time::Timestamp;

#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("cannot edit {file}")]
    Unparsable {
        file: String,
        #[source]
        source: toml_edit::TomlError,
    },
    #[error("{file} has no [[tasks]]")]
    NoTasks { file: String },
    #[error("{file} has no task `{task}`")]
    NoTask { file: String, task: String },
    #[error("{file} has no [plan] table")]
    NoPlanTable { file: String },
    #[error("{} is not valid TOML", config::CONFIG_PATH)]
    ConfigNotToml {
        #[source]
        source: toml_edit::TomlError,
    },
    #[error("`invariants` in converge.toml is not a table")]
    InvariantsNotTable,
    #[error("invariant `{name}` already exists")]
    InvariantExists { name: String },
    #[error("cannot encode the approval")]
    Encode(#[source] toml::ser::Error),
}

fn parse(text: &str, file: &str) -> Result<DocumentMut, EditError> {
    text.parse().map_err(|source| EditError::Unparsable {
        file: file.to_owned(),
        source,
    })
}

/// Bumps the `reset` of task `task` in the plan file `file` (its text), which
/// changes the task's generation: the reconciler starts it afresh. Returns the
/// new text and the new `reset`.
pub fn bump_reset(text: &str, file: &str, task: &str) -> Result<(String, i64), EditError> {
    let mut doc = parse(text, file)?;
    let tasks = doc
        .get_mut("tasks")
        .and_then(Item::as_array_of_tables_mut)
        .ok_or_else(|| EditError::NoTasks {
            file: file.to_owned(),
        })?;
    let entry = tasks
        .iter_mut()
        .find(|t| t.get("name").and_then(Item::as_str) == Some(task))
        .ok_or_else(|| EditError::NoTask {
            file: file.to_owned(),
            task: task.to_owned(),
        })?;
    let reset = entry.get("reset").and_then(Item::as_integer).unwrap_or(0) + 1;
    entry.insert("reset", value(reset));
    Ok((doc.to_string(), reset))
}

/// Sets `[plan] state` of the plan file `file` (its text).
pub fn set_plan_state(text: &str, file: &str, state: &str) -> Result<String, EditError> {
    let mut doc = parse(text, file)?;
    let header = doc
        .get_mut("plan")
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| EditError::NoPlanTable {
            file: file.to_owned(),
        })?;
    header.insert("state", value(state));
    Ok(doc.to_string())
}

/// A human decision on a reviewed commit, as written to
/// `planning/approvals/<plan>/<task>.toml` (read back by `spec::approval`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRecord {
    pub approve: bool,
    /// The full id of the reviewed commit.
    pub commit: String,
    /// Why; blank reasons are left out.
    pub reason: Option<String>,
    /// `Name <email>` of whoever decided.
    pub by: String,
    pub at: Timestamp,
}

/// The path of a task's approval file.
pub fn approval_path(plan: &str, task: &str) -> String {
    format!("planning/approvals/{plan}/{task}.toml")
}

/// The text of an approval file.
pub fn encode_approval(record: &ApprovalRecord) -> Result<String, EditError> {
    let mut table = toml::Table::new();
    let decision = if record.approve { "approve" } else { "reject" };
    table.insert("decision".into(), toml::Value::String(decision.into()));
    table.insert("commit".into(), toml::Value::String(record.commit.clone()));
    if let Some(reason) = record.reason.as_deref().filter(|r| !r.trim().is_empty()) {
        table.insert(
            "reason".into(),
            toml::Value::String(reason.trim().to_owned()),
        );
    }
    table.insert("by".into(), toml::Value::String(record.by.clone()));
    table.insert("at".into(), toml::Value::String(record.at.to_string()));
    toml::to_string(&table).map_err(EditError::Encode)
}

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

/// The invariants of a preset, without options (no timeout, exit code 0,
/// blocking).
pub fn preset(name: &str) -> Option<Vec<NewInvariant>> {
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
                timeout: None,
                expected_exit_code: None,
                advisory: false,
            })
            .collect(),
    )
}

/// Whether converge.toml's text defines the invariant.
pub fn has_invariant(text: &str, name: &str) -> bool {
    text.parse::<DocumentMut>()
        .ok()
        .and_then(|doc| doc.get("invariants").and_then(|i| i.get(name)).map(|_| ()))
        .is_some()
}

/// Returns the new text of converge.toml with the invariant added (or replaced,
/// with `force`).
pub fn add_invariant(original: &str, new: &NewInvariant, force: bool) -> Result<String, EditError> {
    let mut doc: DocumentMut = original
        .parse()
        .map_err(|source| EditError::ConfigNotToml { source })?;
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
        return Err(EditError::InvariantsNotTable);
    };
    let existing = invariants.get(&new.name).and_then(Item::as_table);
    let existing_position = existing.and_then(Table::position);
    // A replaced table keeps the comments above it.
    if let Some(decor) = existing.map(|t| t.decor().clone()) {
        *table.decor_mut() = decor;
    }
    if invariants.contains_key(&new.name) && !force {
        return Err(EditError::InvariantExists {
            name: new.name.clone(),
        });
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

#[cfg(test)]
mod tests {
    use super::*;

    const PLAN: &str = "# the plan\n[plan]\nname = \"A\" # keep\nstate = \"active\"\n\n[[tasks]]\nname = \"one\"\n\n[[tasks]]\nname = \"two\"\nreset = 2 # bumped by retry\n";

    #[test]
    fn bump_reset_counts_up_and_keeps_comments() {
        let (text, reset) = bump_reset(PLAN, "planning/plans/a.toml", "one").expect("ok");
        assert_eq!(reset, 1);
        assert!(text.contains("name = \"one\"\nreset = 1\n"), "{text}");
        let (text, reset) = bump_reset(&text, "planning/plans/a.toml", "two").expect("ok");
        assert_eq!(reset, 3);
        // The value is replaced, with its own decor (as before the move).
        assert!(text.contains("name = \"two\"\nreset = 3\n"), "{text}");
        assert!(text.starts_with("# the plan\n[plan]\nname = \"A\" # keep\n"));
        let err = bump_reset(PLAN, "planning/plans/a.toml", "three").expect_err("refused");
        assert_eq!(err.to_string(), "planning/plans/a.toml has no task `three`");
    }

    #[test]
    fn set_plan_state_changes_only_the_state() {
        let text = set_plan_state(PLAN, "p.toml", "paused").expect("ok");
        assert_eq!(
            text,
            PLAN.replace("state = \"active\"", "state = \"paused\"")
        );
        let err =
            set_plan_state("[[tasks]]\nname = \"x\"\n", "p.toml", "paused").expect_err("refused");
        assert_eq!(err.to_string(), "p.toml has no [plan] table");
        assert!(matches!(
            set_plan_state("[plan", "p.toml", "paused"),
            Err(EditError::Unparsable { .. })
        ));
    }

    #[test]
    fn an_encoded_approval_reads_back() {
        let record = ApprovalRecord {
            approve: false,
            commit: "a".repeat(40),
            reason: Some("  no CSRF token \n".into()),
            by: "Ann <ann@example.com>".into(),
            at: Timestamp::from_unix(1_800_000_000),
        };
        let text = encode_approval(&record).expect("ok");
        let value: toml::Table = toml::from_str(&text).expect("ok");
        assert_eq!(value["decision"].as_str(), Some("reject"));
        assert_eq!(value["reason"].as_str(), Some("no CSRF token"));
        assert_eq!(value["commit"].as_str(), Some("a".repeat(40).as_str()));
        let blank = ApprovalRecord {
            reason: Some("  ".into()),
            ..record
        };
        assert!(!encode_approval(&blank).expect("ok").contains("reason"));
        assert_eq!(
            approval_path("auth", "login"),
            "planning/approvals/auth/login.toml"
        );
    }

    #[test]
    fn an_added_invariant_is_refused_twice_unless_forced() {
        let config = "# config\n[invariants.build]\nkind = \"typecheck\"\ncommand = \"cargo\"\n";
        let new = &preset("rust").expect("ok")[1];
        let text = add_invariant(config, new, false).expect("ok");
        assert!(text.starts_with(config), "{text}");
        assert!(has_invariant(&text, "rust_test"));
        assert!(matches!(
            add_invariant(&text, new, false),
            Err(EditError::InvariantExists { .. })
        ));
        assert_eq!(add_invariant(&text, new, true).expect("ok"), text);
    }
}
