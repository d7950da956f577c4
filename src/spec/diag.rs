//! Diagnostics: every problem found in `planning/`, with a stable code, the file,
//! line and column, a source excerpt with a caret, and a hint.
//!
//! Diagnostics carry their own excerpt so that they can be rendered or serialized
//! without keeping the source text around.

use std::fmt;
use std::ops::Range;

use serde::Serialize;

/// How bad a diagnostic is. Errors make the file (and the plan it belongs to) invalid;
/// warnings are reported but do not change the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// Stable diagnostic codes. Each is documented in `docs/diagnostics.md`; the text of a
/// message may improve over time, the code does not change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(into = "&'static str")]
pub enum Code {
    /// `planning/` does not exist at the place that was read.
    NoPlanning,
    /// A file is larger than the 1 MiB limit.
    FileTooLarge,
    /// A file is not valid UTF-8.
    InvalidUtf8,
    /// TOML that does not parse.
    TomlSyntax,
    /// YAML front matter that does not parse.
    YamlSyntax,
    /// A queue item without `---` front matter, or with an unterminated block.
    FrontMatter,
    /// YAML anchors, aliases, merge keys or tags, which front matter does not allow.
    YamlFeature,
    /// A key that the format does not know.
    UnknownKey,
    /// A required key is absent.
    MissingField,
    /// A value of the wrong TOML/YAML type.
    WrongType,
    /// A value of the right type but not an allowed one (enum, range, format).
    InvalidValue,
    /// A name that is not safe as a branch name and path segment.
    InvalidName,
    /// A name that converge reserves for itself.
    ReservedName,
    /// Two tasks with the same name in one plan.
    DuplicateTask,
    /// Two plans that cannot be told apart.
    DuplicatePlan,
    /// A dependency listed twice.
    DuplicateDependency,
    /// A dependency on a task that does not exist.
    UnknownDependency,
    /// A task that depends on itself.
    SelfDependency,
    /// Dependencies that form a cycle.
    DependencyCycle,
    /// A reference to an invariant not defined in `converge.toml`.
    UnknownInvariant,
    /// A reference to a harness not defined in `converge.toml` and not built in.
    UnknownHarness,
    /// A duration such as `30m` that does not parse.
    InvalidDuration,
    /// A `paths` glob that does not parse.
    InvalidGlob,
    /// A `paths` entry that escapes the repository.
    PathEscapes,
    /// A `paths` entry inside a path that agents may never change.
    ProtectedPath,
    /// A plan with no tasks.
    EmptyPlan,
    /// A crontab line that does not parse.
    InvalidCron,
    /// An approval that refers to a plan or task that does not exist.
    UnknownApprovalTarget,
    /// A file in `planning/` that converge does not read (wrong extension, a symlink).
    IgnoredFile,
    /// `goal.md` is missing or empty.
    MissingGoal,
    /// A setting converge accepts in its format but does not implement yet.
    NotSupported,
    /// A setting of gator's plan or invariant format that converge reads
    /// differently or does not use.
    GatorCompat,
    /// A queue item that would run on the built-in `sim` agent, which has no
    /// script for queue items and would change nothing.
    SimWithoutScript,
    /// An `auto` task (or queue item) that no blocking invariant checks: its
    /// own or `[merge]`'s; `allow_unchecked = true` opts out.
    UncheckedTask,
    /// `[serve] listen` on an address other hosts can reach: the endpoints
    /// have no authentication.
    ExposedEndpoint,
}

impl Code {
    /// Every code, in documentation order.
    pub const ALL: &'static [Code] = &[
        Code::NoPlanning,
        Code::FileTooLarge,
        Code::InvalidUtf8,
        Code::TomlSyntax,
        Code::YamlSyntax,
        Code::FrontMatter,
        Code::YamlFeature,
        Code::UnknownKey,
        Code::MissingField,
        Code::WrongType,
        Code::InvalidValue,
        Code::InvalidName,
        Code::ReservedName,
        Code::DuplicateTask,
        Code::DuplicatePlan,
        Code::DuplicateDependency,
        Code::UnknownDependency,
        Code::SelfDependency,
        Code::DependencyCycle,
        Code::UnknownInvariant,
        Code::UnknownHarness,
        Code::InvalidDuration,
        Code::InvalidGlob,
        Code::PathEscapes,
        Code::ProtectedPath,
        Code::EmptyPlan,
        Code::InvalidCron,
        Code::UnknownApprovalTarget,
        Code::IgnoredFile,
        Code::MissingGoal,
        Code::NotSupported,
        Code::GatorCompat,
        Code::SimWithoutScript,
        Code::UncheckedTask,
        Code::ExposedEndpoint,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::NoPlanning => "no-planning",
            Code::FileTooLarge => "file-too-large",
            Code::InvalidUtf8 => "invalid-utf8",
            Code::TomlSyntax => "toml-syntax",
            Code::YamlSyntax => "yaml-syntax",
            Code::FrontMatter => "front-matter",
            Code::YamlFeature => "yaml-feature",
            Code::UnknownKey => "unknown-key",
            Code::MissingField => "missing-field",
            Code::WrongType => "wrong-type",
            Code::InvalidValue => "invalid-value",
            Code::InvalidName => "invalid-name",
            Code::ReservedName => "reserved-name",
            Code::DuplicateTask => "duplicate-task",
            Code::DuplicatePlan => "duplicate-plan",
            Code::DuplicateDependency => "duplicate-dependency",
            Code::UnknownDependency => "unknown-dependency",
            Code::SelfDependency => "self-dependency",
            Code::DependencyCycle => "dependency-cycle",
            Code::UnknownInvariant => "unknown-invariant",
            Code::UnknownHarness => "unknown-harness",
            Code::InvalidDuration => "invalid-duration",
            Code::InvalidGlob => "invalid-glob",
            Code::PathEscapes => "path-escapes",
            Code::ProtectedPath => "protected-path",
            Code::EmptyPlan => "empty-plan",
            Code::InvalidCron => "invalid-cron",
            Code::UnknownApprovalTarget => "unknown-approval-target",
            Code::IgnoredFile => "ignored-file",
            Code::MissingGoal => "missing-goal",
            Code::NotSupported => "not-supported",
            Code::GatorCompat => "gator-compat",
            Code::SimWithoutScript => "sim-without-script",
            Code::UncheckedTask => "unchecked-task",
            Code::ExposedEndpoint => "exposed-endpoint",
        }
    }
}

impl From<Code> for &'static str {
    fn from(code: Code) -> Self {
        code.as_str()
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where in a file a diagnostic points, resolved to human coordinates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// The whole source line the location is on (without the newline).
    #[serde(skip)]
    pub line_text: String,
    /// How many characters of `line_text` the caret underlines (at least 1).
    #[serde(skip)]
    pub width: usize,
}

/// The start offset of every line of a text, for resolving many offsets to lines
/// in O(log n) each instead of rescanning the text every time.
#[derive(Debug, Clone)]
pub struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(text: &str) -> Self {
        let mut starts = Vec::with_capacity(text.len() / 32 + 1);
        starts.push(0);
        starts.extend(memchr::memchr_iter(b'\n', text.as_bytes()).map(|i| i + 1));
        LineIndex { starts }
    }

    /// The 1-based line of a byte offset.
    pub fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&start| start <= offset)
    }

    fn line_start(&self, line: usize) -> usize {
        self.starts[line - 1]
    }
}

impl Location {
    /// Resolves a byte range of `text` to line, column and excerpt. Offsets past the end
    /// or inside a multi-byte character are clamped, so any range is safe.
    pub fn from_span(text: &str, span: Range<usize>) -> Location {
        Self::from_span_indexed(text, &LineIndex::new(text), span)
    }

    /// [`Location::from_span`] with a prebuilt index of `text`'s lines.
    pub fn from_span_indexed(text: &str, index: &LineIndex, span: Range<usize>) -> Location {
        let start = clamp_to_char_boundary(text, span.start);
        let end = clamp_to_char_boundary(text, span.end.max(start));
        let line = index.line(start);
        let line_start = index.line_start(line);
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let line_text = text[line_start..line_end].trim_end_matches('\r');
        let column = text[line_start..start].chars().count() + 1;
        let visible_end = end.min(line_end);
        let width = text[start..visible_end].chars().count().max(1);
        Location {
            line,
            column,
            line_text: line_text.to_owned(),
            width,
        }
    }

    /// A location given directly as 1-based line and column (YAML parsers report these).
    pub fn from_line_column(text: &str, line: usize, column: usize) -> Location {
        let line = line.max(1);
        let column = column.max(1);
        let line_text = text
            .lines()
            .nth(line - 1)
            .unwrap_or_default()
            .trim_end_matches('\r');
        Location {
            line,
            column,
            line_text: line_text.to_owned(),
            width: 1,
        }
    }
}

fn clamp_to_char_boundary(text: &str, mut offset: usize) -> usize {
    offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: Code,
    /// Path relative to the repository root, with `/` separators.
    pub file: String,
    pub location: Option<Location>,
    pub message: String,
    /// What to do about it, when converge can tell.
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn error(code: Code, file: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            file: file.into(),
            location: None,
            message: message.into(),
            hint: None,
        }
    }

    pub fn warning(code: Code, file: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, file, message)
        }
    }

    #[must_use]
    pub fn at(mut self, text: &str, span: Range<usize>) -> Self {
        self.location = Some(Location::from_span(text, span));
        self
    }

    #[must_use]
    pub fn at_location(mut self, location: Location) -> Self {
        self.location = Some(location);
        self
    }

    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    #[must_use]
    pub fn maybe_hint(mut self, hint: Option<String>) -> Self {
        if hint.is_some() {
            self.hint = hint;
        }
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Sort key: by file, then position, then code, so output is stable.
    fn sort_key(&self) -> (&str, usize, usize, Code, &str) {
        let (line, column) = self
            .location
            .as_ref()
            .map_or((0, 0), |l| (l.line, l.column));
        (&self.file, line, column, self.code, &self.message)
    }
}

/// Sorts diagnostics into a stable, readable order and removes exact duplicates.
pub fn sort(diagnostics: &mut Vec<Diagnostic>) {
    diagnostics.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    diagnostics.dedup();
}

impl fmt::Display for Diagnostic {
    /// Renders as:
    ///
    /// ```text
    /// planning/plans/auth.toml:12:1: error[unknown-key]: unknown key `depnds_on` in task `a`
    ///    |
    /// 12 | depnds_on = []
    ///    | ^^^^^^^^^
    ///    = hint: did you mean `depends_on`?
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match &self.location {
            Some(loc) => write!(f, "{}:{}:{}: ", self.file, loc.line, loc.column)?,
            None => write!(f, "{}: ", self.file)?,
        }
        writeln!(f, "{severity}[{}]: {}", self.code, self.message)?;
        let gutter = self
            .location
            .as_ref()
            .map_or(1, |l| l.line.to_string().len());
        let pad = " ".repeat(gutter);
        if let Some(loc) = &self.location {
            let shown = printable(&loc.line_text);
            let caret_offset: usize = printable_width(&loc.line_text, loc.column - 1);
            let caret_width: usize = {
                let chars: Vec<char> = loc.line_text.chars().collect();
                let from = (loc.column - 1).min(chars.len());
                let to = (from + loc.width).min(chars.len());
                chars[from..to]
                    .iter()
                    .map(|c| printable(&c.to_string()).chars().count())
                    .sum::<usize>()
                    .max(1)
            };
            writeln!(f, "{pad} |")?;
            writeln!(f, "{} | {shown}", loc.line)?;
            writeln!(
                f,
                "{pad} | {}{}",
                " ".repeat(caret_offset),
                "^".repeat(caret_width)
            )?;
        }
        if let Some(hint) = &self.hint {
            writeln!(f, "{pad} = hint: {hint}")?;
        }
        Ok(())
    }
}

/// Makes a source line safe to print: tabs become spaces and control characters
/// (including bidi overrides) become `\u{..}` escapes, so an excerpt cannot
/// rewrite the terminal or hide text.
fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\t' => out.push_str("    "),
            c if c.is_control() || is_bidi_control(c) => {
                out.push_str(&c.escape_unicode().to_string());
            }
            c => out.push(c),
        }
    }
    out
}

fn printable_width(s: &str, chars: usize) -> usize {
    s.chars()
        .take(chars)
        .map(|c| printable(&c.to_string()).chars().count())
        .sum()
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
}

/// Counts of errors and warnings, for summaries.
pub fn counts(diagnostics: &[Diagnostic]) -> (usize, usize) {
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    (errors, diagnostics.len() - errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_resolves_lines_and_character_columns() {
        let text = "a = 1\nnäme = 2\n";
        let offset = text.find("= 2").expect("present");
        let loc = Location::from_span(text, offset..offset + 1);
        assert_eq!((loc.line, loc.column), (2, 6));
        assert_eq!(loc.line_text, "näme = 2");
    }

    #[test]
    fn line_index_agrees_with_scanning() {
        let text = "a\nbb\n\nccc\n";
        let index = LineIndex::new(text);
        for offset in 0..=text.len() {
            let scanned = text[..offset].matches('\n').count() + 1;
            assert_eq!(index.line(offset), scanned, "offset {offset}");
        }
    }

    #[test]
    fn location_clamps_out_of_range_spans() {
        let text = "é";
        let loc = Location::from_span(text, 1..99);
        assert_eq!((loc.line, loc.column, loc.width), (1, 1, 1));
    }

    #[test]
    fn renders_excerpt_with_caret_and_hint() {
        let text = "[plan]\ndepnds_on = []\n";
        let d = Diagnostic::error(Code::UnknownKey, "planning/plans/x.toml", "unknown key")
            .at(text, 7..16)
            .with_hint("did you mean `depends_on`?");
        assert_eq!(
            d.to_string(),
            "planning/plans/x.toml:2:1: error[unknown-key]: unknown key\n  |\n2 | depnds_on = []\n  | ^^^^^^^^^\n  = hint: did you mean `depends_on`?\n"
        );
    }

    #[test]
    fn control_characters_are_escaped_in_excerpts() {
        assert_eq!(printable("a\u{202E}b\u{1b}"), "a\\u{202e}b\\u{1b}");
    }
}

#[cfg(test)]
mod docs_tests {
    use super::Code;

    #[test]
    fn every_code_is_documented() {
        let doc = include_str!("../../docs/diagnostics.md");
        for code in Code::ALL {
            assert!(
                doc.contains(&format!("| `{code}` |")),
                "docs/diagnostics.md does not document `{code}`"
            );
        }
    }
}
