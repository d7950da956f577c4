//! What an attempt's prompt says about the project beyond its own task
//! (issue #17, item 4): `planning/capabilities.md` as "what exists today",
//! capped in size (and saying so when cut), and what the task's dependencies
//! merged: the subjects of their commits and the diffstat of their merge.
//! Pure: act gathers the merges from git ([`crate::act`]'s `context.rs`).

/// At most this many bytes of `capabilities.md` go into a prompt.
pub const CAPABILITIES_CAP: usize = 8 * 1024;
/// At most this many subjects and files are listed per dependency.
pub const LIST_CAP: usize = 20;

/// One file of a merge's diffstat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStat {
    pub path: String,
    pub added: usize,
    pub removed: usize,
}

/// What one dependency merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencyMerge {
    /// `plan/task`.
    pub task: String,
    /// The merge commit, abbreviated.
    pub merge: String,
    /// The subjects of the task's own commits, newest first.
    pub subjects: Vec<String>,
    /// The files the merge changed in the base branch.
    pub files: Vec<FileStat>,
}

/// Everything beyond the task that goes into its prompt.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// `planning/capabilities.md` of the spec commit.
    pub capabilities: &'a str,
    pub dependencies: &'a [DependencyMerge],
}

/// `text` cut to at most `cap` bytes at a line end (or a character boundary
/// when the first line is longer), and whether it was cut.
pub fn truncate(text: &str, cap: usize) -> (&str, bool) {
    if text.len() <= cap {
        return (text, false);
    }
    let mut end = cap;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = &text[..end];
    match cut.rfind('\n') {
        Some(nl) if nl > 0 => (&text[..nl + 1], true),
        _ => (cut, true),
    }
}

/// The "What exists today" section; empty when capabilities.md is.
pub fn capabilities_section(capabilities: &str) -> String {
    let text = capabilities.trim();
    if text.is_empty() {
        return String::new();
    }
    let (shown, cut) = truncate(text, CAPABILITIES_CAP);
    let mut out = String::from(
        "## What exists today\n\nFrom `planning/capabilities.md`, which converge keeps up to date after merges:\n\n",
    );
    out.push_str(shown.trim_end());
    out.push('\n');
    if cut {
        out.push_str(&format!(
            "\n(truncated: capabilities.md is {} bytes; the first {} are shown)\n",
            text.len(),
            shown.len()
        ));
    }
    out.push('\n');
    out
}

/// The "What your dependencies merged" section; empty without merged
/// dependencies.
pub fn dependencies_section(deps: &[DependencyMerge]) -> String {
    if deps.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "## What your dependencies merged\n\nThis work is in the base branch your attempt started from:\n\n",
    );
    for dep in deps {
        let added: usize = dep.files.iter().map(|f| f.added).sum();
        let removed: usize = dep.files.iter().map(|f| f.removed).sum();
        out.push_str(&format!(
            "### `{}` (merge {}): {} file{} changed, +{added} -{removed}\n\n",
            dep.task,
            dep.merge,
            dep.files.len(),
            if dep.files.len() == 1 { "" } else { "s" }
        ));
        for subject in dep.subjects.iter().take(LIST_CAP) {
            out.push_str(&format!("- {subject}\n"));
        }
        more(&mut out, dep.subjects.len(), "commits");
        if !dep.subjects.is_empty() {
            out.push('\n');
        }
        for f in dep.files.iter().take(LIST_CAP) {
            out.push_str(&format!("    {} | +{} -{}\n", f.path, f.added, f.removed));
        }
        more(&mut out, dep.files.len(), "files");
        out.push('\n');
    }
    out
}

fn more(out: &mut String, len: usize, what: &str) {
    if len > LIST_CAP {
        out.push_str(&format!("    … and {} more {what}\n", len - LIST_CAP));
    }
}

/// Lines added and removed from `old` to `new` (a line diff).
pub fn line_counts(old: &str, new: &str) -> (usize, usize) {
    let diff = similar::TextDiff::from_lines(old, new);
    let (mut added, mut removed) = (0, 0);
    for change in diff.iter_all_changes() {
        match change.tag() {
            similar::ChangeTag::Insert => added += 1,
            similar::ChangeTag::Delete => removed += 1,
            similar::ChangeTag::Equal => {}
        }
    }
    (added, removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_cut_at_a_line_and_the_cut_is_said() {
        let long: String = (0..2000).map(|i| format!("- capability {i}\n")).collect();
        let section = capabilities_section(&long);
        assert!(section.starts_with("## What exists today"));
        assert!(section.len() < CAPABILITIES_CAP + 400, "{}", section.len());
        assert!(section.contains(&format!(
            "(truncated: capabilities.md is {} bytes",
            long.trim().len()
        )));
        // Whole lines only.
        let body = section.split("(truncated").next().expect("body");
        assert!(body.trim_end().ends_with(|c: char| c.is_ascii_digit()));
        let short = capabilities_section("- login\n");
        assert!(short.contains("- login") && !short.contains("truncated"));
        assert_eq!(capabilities_section("  \n"), "");
    }

    #[test]
    fn truncation_respects_characters() {
        let text = "é".repeat(10);
        let (cut, was) = truncate(&text, 5);
        assert!(was);
        assert_eq!(cut, "éé");
    }

    #[test]
    fn dependencies_list_subjects_and_diffstat() {
        let deps = [DependencyMerge {
            task: "auth/schema".into(),
            merge: "abc1234".into(),
            subjects: vec!["add the users table".into()],
            files: vec![
                FileStat {
                    path: "db/schema.sql".into(),
                    added: 12,
                    removed: 1,
                },
                FileStat {
                    path: "README".into(),
                    added: 1,
                    removed: 0,
                },
            ],
        }];
        let text = dependencies_section(&deps);
        assert!(text.contains("### `auth/schema` (merge abc1234): 2 files changed, +13 -1"));
        assert!(text.contains("- add the users table"));
        assert!(text.contains("db/schema.sql | +12 -1"));
        assert_eq!(dependencies_section(&[]), "");
        assert_eq!(line_counts("a\nb\n", "a\nc\nd\n"), (2, 1));
    }
}
