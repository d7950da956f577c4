//! A reader over a fully spanned TOML tree that records every problem instead of
//! stopping at the first one (serde's `deny_unknown_fields` would stop at one).

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diag::{Code, Diagnostic, LineIndex, Location};
use super::suggest;

/// One file of `planning/`, decoded as UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Path relative to the repository root, `/`-separated.
    pub path: String,
    pub text: String,
}

/// Collects diagnostics for one file.
#[derive(Debug)]
pub(crate) struct Ctx<'s> {
    pub file: &'s SourceFile,
    pub diags: Vec<Diagnostic>,
    lines: std::cell::OnceCell<LineIndex>,
}

impl<'s> Ctx<'s> {
    pub fn new(file: &'s SourceFile) -> Self {
        Ctx {
            file,
            diags: Vec::new(),
            lines: std::cell::OnceCell::new(),
        }
    }

    fn lines(&self) -> &LineIndex {
        self.lines.get_or_init(|| LineIndex::new(&self.file.text))
    }

    /// The location of a byte range of this file.
    pub fn locate(&self, span: Range<usize>) -> Location {
        Location::from_span_indexed(&self.file.text, self.lines(), span)
    }

    /// The 1-based line of a byte offset of this file.
    pub fn line_of(&self, offset: usize) -> usize {
        self.lines().line(offset)
    }

    pub fn error(
        &mut self,
        code: Code,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        let d =
            Diagnostic::error(code, self.file.path.clone(), message).at_location(self.locate(span));
        self.diags.push(d);
        let last = self.diags.len() - 1;
        &mut self.diags[last]
    }

    pub fn warning(
        &mut self,
        code: Code,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        let d = Diagnostic::warning(code, self.file.path.clone(), message)
            .at_location(self.locate(span));
        self.diags.push(d);
        let last = self.diags.len() - 1;
        &mut self.diags[last]
    }

    pub fn has_errors(&self) -> bool {
        self.diags.iter().any(Diagnostic::is_error)
    }

    /// Parses the file as TOML. Syntax errors are all recorded; a file with syntax
    /// errors yields `None` so that follow-on errors do not bury the real one.
    pub fn parse(&mut self) -> Option<Spanned<DeTable<'s>>> {
        let (table, errors) = DeTable::parse_recoverable(&self.file.text);
        if errors.is_empty() {
            return Some(table);
        }
        for error in errors {
            let span = error.span().unwrap_or(0..0);
            let message = error.message().trim().to_owned();
            let message = message.lines().next().unwrap_or("invalid TOML").to_owned();
            self.error(Code::TomlSyntax, span, format!("invalid TOML: {message}"))
                .hint = Some(toml_hint(&message));
        }
        None
    }
}

fn toml_hint(message: &str) -> String {
    if message.contains("duplicate key") {
        "each key may appear once per table; remove or rename one".into()
    } else if message.contains("string") || message.contains("quote") {
        "strings need matching quotes; use \"\"\"...\"\"\" for text over several lines".into()
    } else {
        "see docs/plan-format.md for the file format".into()
    }
}

/// A TOML value with its span.
pub type Value<'i> = Spanned<DeValue<'i>>;

/// A table being read. Every key that is read is checked against `known`; at
/// [`Table::finish`] the keys that were never known are reported.
#[derive(Debug)]
pub(crate) struct Table<'t, 'i> {
    table: &'t DeTable<'i>,
    span: Range<usize>,
    /// How messages name this table: "[reconcile]", "task `x`".
    pub what: String,
    known: &'static [&'static str],
}

impl<'t, 'i> Table<'t, 'i> {
    pub fn new(
        table: &'t DeTable<'i>,
        span: Range<usize>,
        what: impl Into<String>,
        known: &'static [&'static str],
    ) -> Self {
        Table {
            table,
            span,
            what: what.into(),
            known,
        }
    }

    pub fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    /// Where a missing key is reported: the start of the table.
    fn header_span(&self) -> Range<usize> {
        self.span.start..self.span.start
    }

    pub fn get(&self, key: &str) -> Option<&'t Value<'i>> {
        debug_assert!(self.known.contains(&key), "{key} is not declared as known");
        self.table.get(key)
    }

    /// The span of a key, for messages about the key itself.
    pub fn key_span(&self, key: &str) -> Option<Range<usize>> {
        self.table.get_key_value(key).map(|(k, _)| k.span())
    }

    fn wrong_type(&self, ctx: &mut Ctx<'_>, key: &str, value: &Value<'_>, expected: &str) {
        ctx.error(
            Code::WrongType,
            value.span(),
            format!(
                "`{key}` in {} must be {expected}, found {}",
                self.what,
                article(value.get_ref().type_str())
            ),
        );
    }

    fn missing(&self, ctx: &mut Ctx<'_>, key: &str, example: &str) {
        ctx.error(
            Code::MissingField,
            self.header_span(),
            format!("{} is missing the required key `{key}`", self.what),
        )
        .hint = Some(format!("add `{key} = {example}`"));
    }

    pub fn string(&self, ctx: &mut Ctx<'_>, key: &str) -> Option<Spanned<String>> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::String(s) => Some(Spanned::new(value.span(), s.to_string())),
            _ => {
                self.wrong_type(ctx, key, value, "a string");
                None
            }
        }
    }

    /// A required, non-empty string.
    pub fn required_string(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
        example: &str,
    ) -> Option<Spanned<String>> {
        if self.get(key).is_none() {
            self.missing(ctx, key, example);
            return None;
        }
        let s = self.string(ctx, key)?;
        if s.get_ref().trim().is_empty() {
            ctx.error(
                Code::InvalidValue,
                s.span(),
                format!("`{key}` in {} must not be empty", self.what),
            )
            .hint = Some(format!("write `{key} = {example}`"));
            return None;
        }
        Some(s)
    }

    pub fn integer(&self, ctx: &mut Ctx<'_>, key: &str) -> Option<Spanned<i64>> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some(Spanned::new(value.span(), n)),
                Err(_) => {
                    ctx.error(
                        Code::InvalidValue,
                        value.span(),
                        format!("`{key}` in {} is out of range", self.what),
                    );
                    None
                }
            },
            _ => {
                self.wrong_type(ctx, key, value, "an integer");
                None
            }
        }
    }

    /// An integer within `min..=max`, reported with the allowed range when outside it.
    pub fn integer_in(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
        min: i64,
        max: i64,
    ) -> Option<Spanned<i64>> {
        let n = self.integer(ctx, key)?;
        if (min..=max).contains(n.get_ref()) {
            return Some(n);
        }
        ctx.error(
            Code::InvalidValue,
            n.span(),
            format!(
                "`{key}` in {} is {}, outside the allowed range {min}..={max}",
                self.what,
                n.get_ref()
            ),
        );
        None
    }

    /// A number (integer or float).
    pub fn number(&self, ctx: &mut Ctx<'_>, key: &str) -> Option<Spanned<f64>> {
        let value = self.get(key)?;
        let parsed = match value.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .map(|n| n as f64),
            DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
            _ => {
                self.wrong_type(ctx, key, value, "a number");
                return None;
            }
        };
        match parsed {
            Some(n) if n.is_finite() => Some(Spanned::new(value.span(), n)),
            _ => {
                ctx.error(
                    Code::InvalidValue,
                    value.span(),
                    format!("`{key}` in {} must be a finite number", self.what),
                );
                None
            }
        }
    }

    pub fn boolean(&self, ctx: &mut Ctx<'_>, key: &str) -> Option<Spanned<bool>> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::Boolean(b) => Some(Spanned::new(value.span(), *b)),
            _ => {
                self.wrong_type(ctx, key, value, "`true` or `false`");
                None
            }
        }
    }

    /// An array of strings. Non-string elements are reported one by one and skipped.
    pub fn string_array(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
    ) -> Option<Spanned<Vec<Spanned<String>>>> {
        let value = self.get(key)?;
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(ctx, key, value, "an array of strings");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(s) => out.push(Spanned::new(item.span(), s.to_string())),
                other => {
                    ctx.error(
                        Code::WrongType,
                        item.span(),
                        format!(
                            "`{key}` in {} must contain only strings, found {}",
                            self.what,
                            article(other.type_str())
                        ),
                    );
                }
            }
        }
        Some(Spanned::new(value.span(), out))
    }

    /// An array of integers within `min..=max`. Other elements are reported
    /// one by one and skipped.
    pub fn integer_array(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
        min: i64,
        max: i64,
    ) -> Option<Spanned<Vec<Spanned<i64>>>> {
        let value = self.get(key)?;
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(ctx, key, value, "an array of integers");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items.iter() {
            let n = match item.get_ref() {
                DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
                _ => None,
            };
            match n {
                Some(n) if (min..=max).contains(&n) => out.push(Spanned::new(item.span(), n)),
                _ => {
                    ctx.error(
                        Code::InvalidValue,
                        item.span(),
                        format!(
                            "`{key}` in {} must contain only integers in {min}..={max}",
                            self.what
                        ),
                    );
                }
            }
        }
        Some(Spanned::new(value.span(), out))
    }

    /// A string borrowed from the parsed document (no allocation).
    pub fn str(&self, ctx: &mut Ctx<'_>, key: &str) -> Option<Spanned<&'t str>> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::String(s) => Some(Spanned::new(value.span(), s.as_ref())),
            _ => {
                self.wrong_type(ctx, key, value, "a string");
                None
            }
        }
    }

    /// One of a fixed set of string values.
    pub fn enumeration(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
        allowed: &[&str],
    ) -> Option<Spanned<&'t str>> {
        let s = self.str(ctx, key)?;
        if allowed.contains(s.get_ref()) {
            return Some(s);
        }
        let hint = suggest::did_you_mean(s.get_ref(), allowed.iter().copied())
            .unwrap_or_else(|| format!("use {}", suggest::one_of(allowed)));
        ctx.error(
            Code::InvalidValue,
            s.span(),
            format!(
                "`{key}` in {} is `{}`, which is not one of {}",
                self.what,
                s.get_ref(),
                suggest::one_of(allowed)
            ),
        )
        .hint = Some(hint);
        None
    }

    pub fn required_enumeration(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
        allowed: &[&str],
    ) -> Option<Spanned<&'t str>> {
        if self.get(key).is_none() {
            self.missing(
                ctx,
                key,
                &format!("\"{}\"", allowed.first().copied().unwrap_or_default()),
            );
            return None;
        }
        self.enumeration(ctx, key, allowed)
    }

    /// A duration string such as `30m`.
    pub fn duration(&self, ctx: &mut Ctx<'_>, key: &str) -> Option<Spanned<std::time::Duration>> {
        let s = self.string(ctx, key)?;
        match super::duration::parse(s.get_ref()) {
            Ok(d) => Some(Spanned::new(s.span(), d)),
            Err(reason) => {
                ctx.error(
                    Code::InvalidDuration,
                    s.span(),
                    format!("`{key}` in {} is not a duration: {reason}", self.what),
                )
                .hint = Some(super::duration::HINT.into());
                None
            }
        }
    }

    /// A duration longer than zero; `example` is a valid value for the hint.
    pub fn positive_duration(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
        example: &str,
    ) -> Option<std::time::Duration> {
        let d = self.duration(ctx, key)?;
        if d.get_ref().is_zero() {
            ctx.error(
                Code::InvalidValue,
                d.span(),
                format!("`{key}` in {} must be longer than zero", self.what),
            )
            .hint = Some(format!("for example `{key} = \"{example}\"`"));
            return None;
        }
        Some(d.into_inner())
    }

    /// A sub-table (`[a.b]` or an inline table).
    pub fn table(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
        what: impl Into<String>,
        known: &'static [&'static str],
    ) -> Option<Table<'t, 'i>> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::Table(t) => Some(Table::new(t, value.span(), what, known)),
            _ => {
                self.wrong_type(ctx, key, value, "a table");
                None
            }
        }
    }

    /// The raw table value under `key`, for tables whose keys are user-chosen names.
    pub fn named_tables(&self, ctx: &mut Ctx<'_>, key: &str) -> Option<&'t DeTable<'i>> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.wrong_type(ctx, key, value, "a table");
                None
            }
        }
    }

    /// The tables under `key` whose keys are user-chosen names
    /// (`[invariants.<name>]`): each name is checked (see [`super::names`]) and
    /// must hold a table; problems are recorded and those entries skipped.
    /// `noun` names one entry in messages; `needs` says what its table holds.
    pub fn named_subtables(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
        noun: &str,
        needs: &str,
        known: &'static [&'static str],
    ) -> Vec<(&'t str, Table<'t, 'i>)> {
        let Some(table) = self.named_tables(ctx, key) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(table.len());
        for (entry_key, value) in table.iter() {
            let name: &'t str = entry_key.get_ref();
            if let Err(problem) = super::names::check(name) {
                ctx.error(
                    Code::InvalidName,
                    entry_key.span(),
                    format!("{noun} name `{name}` {}", problem.reason),
                )
                .hint = Some(problem.hint);
                continue;
            }
            let DeValue::Table(t) = value.get_ref() else {
                ctx.error(
                    Code::WrongType,
                    value.span(),
                    format!("`{key}.{name}` must be a table"),
                )
                .hint = Some(format!("write `[{key}.{name}]` with {needs} below it"));
                continue;
            };
            out.push((
                name,
                Table::new(t, entry_key.span(), format!("{noun} `{name}`"), known),
            ));
        }
        out
    }

    /// An array of tables (`[[tasks]]`). Elements that are not tables are reported.
    pub fn array_of_tables(
        &self,
        ctx: &mut Ctx<'_>,
        key: &str,
    ) -> Option<Vec<(Range<usize>, &'t DeTable<'i>)>> {
        let value = self.get(key)?;
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(
                ctx,
                key,
                value,
                &format!("an array of tables (`[[{key}]]`)"),
            );
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items.iter() {
            match item.get_ref() {
                DeValue::Table(t) => out.push((item.span(), t)),
                other => {
                    ctx.error(
                        Code::WrongType,
                        item.span(),
                        format!(
                            "`{key}` must contain only tables, found {}",
                            article(other.type_str())
                        ),
                    );
                }
            }
        }
        Some(out)
    }

    /// Reports every key that is not in `known`, with a suggestion.
    pub fn finish(&self, ctx: &mut Ctx<'_>) {
        self.finish_with_hints(ctx, &[]);
    }

    /// Like [`Table::finish`], with tailored hints for known mistakes: `(key, hint)`.
    pub fn finish_with_hints(&self, ctx: &mut Ctx<'_>, special: &[(&str, &str)]) {
        for (key, _) in self.table.iter() {
            let name: &str = key.get_ref();
            if self.known.contains(&name) {
                continue;
            }
            let tailored = special
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, h)| (*h).to_owned());
            let hint = tailored
                .or_else(|| suggest::did_you_mean(name, self.known.iter().copied()))
                .unwrap_or_else(|| format!("known keys are {}", suggest::one_of(self.known)));
            ctx.error(
                Code::UnknownKey,
                key.span(),
                format!("unknown key `{name}` in {}", self.what),
            )
            .hint = Some(hint);
        }
    }
}

fn article(type_name: &str) -> String {
    match type_name {
        "integer" | "array" => format!("an {type_name}"),
        other => format!("a {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> SourceFile {
        SourceFile {
            path: "x.toml".into(),
            text: text.into(),
        }
    }

    #[test]
    fn reports_all_syntax_errors_with_positions() {
        let f = file("a = \nb = [1,\n");
        let mut ctx = Ctx::new(&f);
        assert!(ctx.parse().is_none());
        assert!(!ctx.diags.is_empty());
        assert!(
            ctx.diags
                .iter()
                .all(|d| d.code == Code::TomlSyntax && d.location.is_some())
        );
    }

    #[test]
    fn unknown_keys_get_suggestions() {
        let f = file("nmae = 1\nzzz = 2\n");
        let mut ctx = Ctx::new(&f);
        let root = ctx.parse().expect("valid toml");
        let t = Table::new(root.get_ref(), root.span(), "the file", &["name"]);
        t.finish(&mut ctx);
        assert_eq!(ctx.diags.len(), 2);
        assert_eq!(ctx.diags[0].hint.as_deref(), Some("did you mean `name`?"));
        assert_eq!(ctx.diags[1].hint.as_deref(), Some("known keys are `name`"));
    }

    #[test]
    fn wrong_types_name_what_was_found() {
        let f = file("n = \"x\"\nb = 3\nl = [1, \"a\"]\n");
        let mut ctx = Ctx::new(&f);
        let root = ctx.parse().expect("valid toml");
        let t = Table::new(root.get_ref(), root.span(), "[x]", &["n", "b", "l"]);
        assert!(t.integer(&mut ctx, "n").is_none());
        assert!(t.boolean(&mut ctx, "b").is_none());
        let l = t.string_array(&mut ctx, "l").expect("array");
        assert_eq!(l.get_ref().len(), 1);
        let messages: Vec<_> = ctx.diags.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "`n` in [x] must be an integer, found a string",
                "`b` in [x] must be `true` or `false`, found an integer",
                "`l` in [x] must contain only strings, found an integer",
            ]
        );
    }
}
