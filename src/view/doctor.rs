//! `converge doctor`: the findings of the consistency checks, and their text.

use serde::Serialize;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FindingLevel {
    Ok,
    Warning,
    Problem,
}

impl FindingLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingLevel::Ok => "ok",
            FindingLevel::Warning => "warning",
            FindingLevel::Problem => "problem",
        }
    }
}

/// One finding; `doctor --json` prints a list of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FindingView {
    pub check: String,
    pub level: FindingLevel,
    pub message: String,
    /// What a person can do, when `--fix` cannot.
    pub hint: Option<String>,
    /// Whether `converge doctor --fix` fixes it.
    pub fixable: bool,
}

/// The findings for people: one line each (with its hint and fix), then the
/// counts.
pub fn render(findings: &[FindingView]) -> String {
    let mut out = String::new();
    for f in findings {
        out.push_str(&format!(
            "{:<8} {:<10} {}\n",
            f.level.as_str(),
            f.check,
            f.message
        ));
        if let Some(hint) = &f.hint {
            out.push_str(&format!("{:<19} hint: {hint}\n", ""));
        }
        if f.fixable {
            out.push_str(&format!("{:<19} fix: `converge doctor --fix`\n", ""));
        }
    }
    let count = |level| findings.iter().filter(|f| f.level == level).count();
    out.push_str(&format!(
        "\n{} problem(s), {} warning(s)\n",
        count(FindingLevel::Problem),
        count(FindingLevel::Warning)
    ));
    out
}
