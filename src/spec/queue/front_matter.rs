//! YAML front matter: split from the markdown body, refused when it uses YAML
//! features plain data does not need, parsed under a budget, and read key by
//! key with locations, recording every problem.
//!
//! Front matter is plain data: anchors, aliases, merge keys and tags are refused
//! (they are how YAML "billion laughs" bombs and type confusion get in), and the
//! parser runs under a small budget.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value as Json;
use serde_saphyr::Spanned as YSpanned;

use super::super::diag::{Code, Diagnostic, Location};
use super::super::suggest;
use super::super::toml_walk::Ctx;

/// The front matter as ordered (key, value) pairs with locations.
pub(super) struct Entries(Vec<(YSpanned<String>, YSpanned<Json>)>);

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of keys to values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    out.push(entry);
                }
                Ok(Entries(out))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Entries, E> {
                Ok(Entries(Vec::new()))
            }
        }
        deserializer.deserialize_map(EntriesVisitor)
    }
}

/// Splits a file into its front matter entries and its body, recording why
/// when it cannot.
pub(super) fn parse<'t>(ctx: &mut Ctx<'_>, text: &'t str) -> Option<(Entries, &'t str)> {
    let (yaml, yaml_offset, body) = match split_front_matter(text) {
        Ok(parts) => parts,
        Err(reason) => {
            ctx.error(Code::FrontMatter, 0..0, reason).hint = Some(
                "start the file with a `---` line, the YAML keys (scope, gate, ...), a closing `---` line, then the description"
                    .into(),
            );
            return None;
        }
    };
    if let Some((at, what)) = disallowed_feature(yaml) {
        ctx.error(
            Code::YamlFeature,
            yaml_offset + at..yaml_offset + at + 1,
            format!("front matter may not use YAML {what}"),
        )
        .hint = Some("write plain values; quote a value that starts with `!`, `&` or `*`".into());
        return None;
    }
    match serde_saphyr::from_str_with_options(yaml, yaml_options()) {
        Ok(entries) => Some((entries, body)),
        Err(error) => {
            let (line, column) = error
                .location()
                .map_or((1, 1), |l| (l.line() as usize, l.column() as usize));
            let message = yaml_message(&error.to_string());
            let location = Location::from_line_column(text, line + 1, column);
            ctx.diags.push(
                Diagnostic::error(
                    Code::YamlSyntax,
                    ctx.file.path.clone(),
                    format!("invalid front matter: {message}"),
                )
                .at_location(location)
                .with_hint("front matter is YAML `key: value` lines between two `---` lines"),
            );
            None
        }
    }
}

/// Splits `---\n<yaml>\n---\n<body>`. Returns the YAML, its byte offset, and the body.
fn split_front_matter(text: &str) -> Result<(&str, usize, &str), &'static str> {
    let rest = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))
        .ok_or("the file does not start with `---` front matter")?;
    let offset = text.len() - rest.len();
    let mut position = 0;
    for line in rest.split_inclusive('\n') {
        if line.trim_end() == "---" {
            let yaml = &rest[..position];
            let body = &rest[position + line.len()..];
            return Ok((yaml, offset, body));
        }
        position += line.len();
    }
    Err("the front matter has no closing `---` line")
}

fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_anchors = 0;
    budget.max_aliases = 0;
    budget.max_events = 10_000;
    budget.max_depth = 16;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.merge_keys = serde_saphyr::MergeKeyPolicy::Error;
    options
}

/// Finds YAML features front matter does not allow, by scanning tokens outside
/// quoted scalars: tags (`!`), anchors (`&`), aliases (`*`) in value position,
/// and merge keys (`<<`).
fn disallowed_feature(yaml: &str) -> Option<(usize, &'static str)> {
    let mut offset = 0;
    for line in yaml.split_inclusive('\n') {
        let mut in_single = false;
        let mut in_double = false;
        let mut previous = ' ';
        for (i, c) in line.char_indices() {
            match c {
                '\'' if !in_double => in_single = !in_single,
                '"' if !in_single && previous != '\\' => in_double = !in_double,
                '#' if !in_single && !in_double && previous.is_whitespace() => break,
                '!' | '&' | '*' if !in_single && !in_double && token_start(previous) => {
                    let what = match c {
                        '!' => "tags (`!`)",
                        '&' => "anchors (`&`)",
                        _ => "aliases (`*`)",
                    };
                    return Some((offset + i, what));
                }
                '<' if !in_single
                    && !in_double
                    && line[i..].starts_with("<<")
                    && token_start(previous) =>
                {
                    return Some((offset + i, "merge keys (`<<`)"));
                }
                _ => {}
            }
            previous = c;
        }
        offset += line.len();
    }
    None
}

/// Whether a character can precede the start of a YAML node property or alias.
fn token_start(previous: char) -> bool {
    previous.is_whitespace() || matches!(previous, '[' | '{' | ',' | ':' | '-')
}

/// The parser's message without its own prefix and position (which counts lines
/// from the start of the front matter, not of the file).
pub(super) fn yaml_message(raw: &str) -> String {
    let first = raw.lines().next().unwrap_or("invalid YAML").trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let without_position = match first.strip_prefix("line ") {
        Some(rest) => rest.split_once(": ").map_or(first, |(_, message)| message),
        None => first,
    };
    without_position.to_owned()
}

/// The known keys of one file's front matter, read with locations; problems go
/// to the file's diagnostics.
pub(super) struct FrontMatter<'c, 's, 'v> {
    pub(super) ctx: &'c mut Ctx<'s>,
    pub(super) values: BTreeMap<&'v str, (&'v YSpanned<Json>, Location)>,
    /// Where problems of the front matter as a whole are reported.
    pub(super) header: Location,
}

impl<'c, 's, 'v> FrontMatter<'c, 's, 'v> {
    /// The entries whose keys are among `keys`; others are reported as unknown.
    pub(super) fn new(
        ctx: &'c mut Ctx<'s>,
        text: &str,
        entries: &'v Entries,
        keys: &[&str],
    ) -> Self {
        let at = |l: &serde_saphyr::Location| {
            Location::from_line_column(text, l.line() as usize + 1, l.column() as usize)
        };
        let mut values: BTreeMap<&str, (&YSpanned<Json>, Location)> = BTreeMap::new();
        for (key, value) in &entries.0 {
            let k = key.value.as_str();
            if !keys.contains(&k) {
                let hint = suggest::did_you_mean(k, keys.iter().copied())
                    .unwrap_or_else(|| format!("known keys are {}", suggest::one_of(keys)));
                ctx.diags.push(
                    Diagnostic::error(
                        Code::UnknownKey,
                        ctx.file.path.clone(),
                        format!("unknown key `{k}` in the front matter"),
                    )
                    .at_location(at(&key.referenced))
                    .with_hint(hint),
                );
                continue;
            }
            values.insert(k, (value, at(&value.referenced)));
        }
        FrontMatter {
            ctx,
            values,
            header: Location::from_line_column(text, 1, 1),
        }
    }
}

impl FrontMatter<'_, '_, '_> {
    pub(super) fn push(&mut self, code: Code, location: Location, message: String, hint: String) {
        let d = Diagnostic::error(code, self.ctx.file.path.clone(), message).at_location(location);
        self.ctx.diags.push(if hint.is_empty() {
            d
        } else {
            d.with_hint(hint)
        });
    }

    fn wrong_type(&mut self, key: &str, location: Location, expected: &str) {
        self.push(
            Code::WrongType,
            location,
            format!("`{key}` must be {expected}"),
            String::new(),
        );
    }

    pub(super) fn string(&mut self, key: &str) -> Option<(String, Location)> {
        let (value, location) = self.values.get(key).cloned()?;
        match &value.value {
            Json::String(s) => Some((s.clone(), location)),
            _ => {
                self.wrong_type(key, location, "a string");
                None
            }
        }
    }

    pub(super) fn required_enum(&mut self, key: &str, allowed: &[&str]) -> Option<String> {
        let Some((value, location)) = self.string(key) else {
            if !self.values.contains_key(key) {
                let header = self.header.clone();
                self.push(
                    Code::MissingField,
                    header,
                    format!("the front matter is missing the required key `{key}`"),
                    format!(
                        "add `{key}: {}`",
                        allowed.first().copied().unwrap_or_default()
                    ),
                );
            }
            return None;
        };
        if allowed.contains(&value.as_str()) {
            return Some(value);
        }
        let hint = suggest::did_you_mean(&value, allowed.iter().copied())
            .unwrap_or_else(|| format!("use {}", suggest::one_of(allowed)));
        self.push(
            Code::InvalidValue,
            location,
            format!(
                "`{key}` is `{value}`, which is not one of {}",
                suggest::one_of(allowed)
            ),
            hint,
        );
        None
    }

    pub(super) fn integer(&mut self, key: &str, min: i64, max: i64) -> Option<i64> {
        let (value, location) = self.values.get(key).cloned()?;
        match value.value.as_i64() {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(n) => {
                self.push(
                    Code::InvalidValue,
                    location,
                    format!("`{key}` is {n}, outside the allowed range {min}..={max}"),
                    String::new(),
                );
                None
            }
            None => {
                self.wrong_type(key, location, "an integer");
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, key: &str) -> Option<bool> {
        let (value, location) = self.values.get(key).cloned()?;
        match value.value {
            Json::Bool(b) => Some(b),
            _ => {
                self.wrong_type(key, location, "`true` or `false`");
                None
            }
        }
    }

    pub(super) fn string_list(&mut self, key: &str) -> Vec<(String, Location)> {
        let Some((value, location)) = self.values.get(key).cloned() else {
            return Vec::new();
        };
        let Json::Array(items) = &value.value else {
            self.wrong_type(key, location, "a list of strings, for example `[a, b]`");
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items {
            match item {
                Json::String(s) => out.push((s.clone(), location.clone())),
                _ => self.wrong_type(key, location.clone(), "a list of strings"),
            }
        }
        out
    }
}
