//! `planning/queue/<item>.md`: an ad-hoc task as YAML front matter plus a markdown
//! body that is its description.
//!
//! Front matter is plain data: anchors, aliases, merge keys and tags are refused
//! (they are how YAML "billion laughs" bombs and type confusion get in), and the
//! parser runs under a small budget.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value as Json;
use serde_saphyr::Spanned as YSpanned;

use super::config::{unknown_harness_hint, unknown_invariant_hint};
use super::diag::{Code, Diagnostic, Location};
use super::model::{Config, Gate, Plan, QUEUE_PLAN, QueueItem, Scope};
use super::names;
use super::paths;
use super::plan::{DEFAULT_RETRY_MAX, MAX_RETRY_MAX};
use super::suggest;
use super::toml_walk::{Ctx, SourceFile};

const KEYS: &[&str] = &[
    "scope",
    "gate",
    "invariants",
    "harness",
    "model",
    "timeout",
    "retry_max",
    "paths",
    "depends_on",
    "allow_unchecked",
];

/// The front matter as ordered (key, value) pairs with locations.
struct Entries(Vec<(YSpanned<String>, YSpanned<Json>)>);

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

/// Compiles a queue item. `plans` are the valid plans, for `depends_on`.
pub fn compile(
    file: &SourceFile,
    name: &str,
    config: &Config,
    plans: &BTreeMap<String, Plan>,
    all_plan_ids: &[String],
    out: &mut Vec<Diagnostic>,
) -> Option<QueueItem> {
    let mut ctx = Ctx::new(file);
    let item = compile_inner(&mut ctx, name, config, plans, all_plan_ids);
    let valid = !ctx.has_errors();
    out.append(&mut ctx.diags);
    item.filter(|_| valid)
}

fn compile_inner(
    ctx: &mut Ctx<'_>,
    name: &str,
    config: &Config,
    plans: &BTreeMap<String, Plan>,
    all_plan_ids: &[String],
) -> Option<QueueItem> {
    if let Err(problem) = names::check(name) {
        ctx.error(
            Code::InvalidName,
            0..0,
            format!(
                "queue item name `{name}` (from the file name) {}",
                problem.reason
            ),
        )
        .hint = Some(format!(
            "rename the file to planning/queue/{}.md",
            names::suggest(name)
        ));
    }
    let text = ctx.file.text.clone();
    let (yaml, yaml_offset, body) = match split_front_matter(&text) {
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
    let entries: Entries = match serde_saphyr::from_str_with_options(yaml, yaml_options()) {
        Ok(entries) => entries,
        Err(error) => {
            let (line, column) = error
                .location()
                .map_or((1, 1), |l| (l.line() as usize, l.column() as usize));
            let message = yaml_message(&error.to_string());
            let location = Location::from_line_column(&text, line + 1, column);
            ctx.diags.push(
                Diagnostic::error(
                    Code::YamlSyntax,
                    ctx.file.path.clone(),
                    format!("invalid front matter: {message}"),
                )
                .at_location(location)
                .with_hint("front matter is YAML `key: value` lines between two `---` lines"),
            );
            return None;
        }
    };
    let at = |l: &serde_saphyr::Location| {
        Location::from_line_column(&text, l.line() as usize + 1, l.column() as usize)
    };
    let mut values: BTreeMap<&str, (&YSpanned<Json>, Location)> = BTreeMap::new();
    for (key, value) in &entries.0 {
        let k = key.value.as_str();
        if !KEYS.contains(&k) {
            let hint = suggest::did_you_mean(k, KEYS.iter().copied())
                .unwrap_or_else(|| format!("known keys are {}", suggest::one_of(KEYS)));
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
    let mut fm = FrontMatter {
        ctx,
        values,
        header: Location::from_line_column(&text, 1, 1),
    };
    let scope = fm
        .required_enum("scope", Scope::NAMES)
        .and_then(|s| Scope::parse(&s));
    let gate = fm
        .required_enum("gate", Gate::NAMES)
        .and_then(|g| Gate::parse(&g));
    let mut invariants = Vec::new();
    let mut unknown_invariants = false;
    for (inv, location) in fm.string_list("invariants") {
        if config.invariants.contains_key(&inv) {
            invariants.push(inv);
        } else {
            unknown_invariants = true;
            let hint = unknown_invariant_hint(&inv, &config.invariants);
            fm.push(
                Code::UnknownInvariant,
                location,
                format!("unknown invariant `{inv}`"),
                hint,
            );
        }
    }
    let allow_unchecked = fm.boolean("allow_unchecked").unwrap_or(false);
    if gate == Some(Gate::Auto)
        && !allow_unchecked
        && !unknown_invariants
        && !super::plan::checked(config, &invariants)
    {
        let location = fm
            .values
            .get("gate")
            .map_or_else(|| fm.header.clone(), |(_, l)| l.clone());
        fm.push(
            Code::UncheckedTask,
            location,
            "this item has `gate: auto` but no invariant checks it: work would merge with nothing run on it".into(),
            "add `invariants: [build]` naming checks from converge.toml, list checks in `[merge] invariants`, use `gate: human_review`, or set `allow_unchecked: true` to merge it unchecked on purpose".into(),
        );
    }
    let harness = fm.string("harness").and_then(|(h, location)| {
        if config.harnesses.contains_key(&h) {
            Some(h)
        } else {
            let hint = unknown_harness_hint(&h, &config.harnesses);
            fm.push(
                Code::UnknownHarness,
                location,
                format!("unknown harness `{h}`"),
                hint,
            );
            None
        }
    });
    // The `sim` agent only acts from a plan's `[tasks.sim]` table; a queue
    // item has none, so on `sim` it would change nothing and fail its gate on
    // every attempt.
    let effective = harness
        .clone()
        .unwrap_or_else(|| config.reconcile.default_harness.clone());
    if config
        .harnesses
        .get(&effective)
        .is_some_and(|h| h.kind == super::model::HarnessKind::Sim)
    {
        let (location, how) = match fm.values.get("harness") {
            Some((_, location)) => (location.clone(), "it names"),
            None => (fm.header.clone(), "`[reconcile] default_harness` is"),
        };
        let d = Diagnostic::warning(
            Code::SimWithoutScript,
            fm.ctx.file.path.clone(),
            format!(
                "this item would run on the built-in `sim` agent ({how} `{effective}`), which has no script for queue items: it would change nothing and fail every attempt"
            ),
        )
        .at_location(location)
        .with_hint("set `harness:` to an agent harness (`claude-code`, `codex`, `opencode` or one declared in converge.toml); `sim` scripts live in a plan's `[tasks.sim]`");
        fm.ctx.diags.push(d);
    }
    let model = fm.string("model").map(|(m, _)| m);
    let timeout = fm
        .string("timeout")
        .and_then(|(t, location)| match super::duration::parse(&t) {
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                fm.push(
                    Code::InvalidValue,
                    location,
                    "`timeout` must be longer than zero".into(),
                    "for example `timeout: 30m`".into(),
                );
                None
            }
            Err(reason) => {
                fm.push(
                    Code::InvalidDuration,
                    location,
                    format!("`timeout` is not a duration: {reason}"),
                    super::duration::HINT.into(),
                );
                None
            }
        });
    let retry_max = fm
        .integer("retry_max", 0, MAX_RETRY_MAX)
        .map_or(DEFAULT_RETRY_MAX, |n| {
            u32::try_from(n).unwrap_or(DEFAULT_RETRY_MAX)
        });
    let mut item_paths = Vec::new();
    for (p, location) in fm.string_list("paths") {
        match paths::problem(&p) {
            None => item_paths.push(p),
            Some(problem) => fm.push(
                problem.code,
                location,
                format!("`{p}` in `paths` {}", problem.reason),
                problem.hint.into(),
            ),
        }
    }
    let mut depends_on = Vec::new();
    for (dep, location) in fm.string_list("depends_on") {
        match resolve_dependency(&dep, plans, all_plan_ids) {
            Ok(pair) => depends_on.push(pair),
            Err(hint) => fm.push(
                Code::UnknownDependency,
                location,
                format!("queue item depends on `{dep}`, which is not a plan task"),
                hint,
            ),
        }
    }
    let description = body.trim();
    if without_html_comments(description).trim().is_empty() {
        let line = text[..text.len() - body.len()].matches('\n').count() + 1;
        let location = Location::from_line_column(&text, line, 1);
        fm.push(
            Code::MissingField,
            location,
            "the queue item has no description below its front matter".into(),
            "write what the agent should do, in markdown, after the closing `---`".into(),
        );
    }
    Some(QueueItem {
        name: name.to_owned(),
        file: fm.ctx.file.path.clone(),
        description: description.replace("\r\n", "\n"),
        scope: scope?,
        gate: gate?,
        invariants,
        harness,
        model,
        timeout,
        retry_max,
        paths: item_paths,
        depends_on,
    })
}

/// The parser's message without its own prefix and position (which counts lines
/// from the start of the front matter, not of the file).
fn yaml_message(raw: &str) -> String {
    let first = raw.lines().next().unwrap_or("invalid YAML").trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let without_position = match first.strip_prefix("line ") {
        Some(rest) => rest.split_once(": ").map_or(first, |(_, message)| message),
        None => first,
    };
    without_position.to_owned()
}

/// Markdown text without `<!-- ... -->` comments, which render as nothing.
fn without_html_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("<!--") {
        out.push_str(&rest[..start]);
        match rest[start..].find("-->") {
            Some(end) => rest = &rest[start + end + 3..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

fn resolve_dependency(
    dep: &str,
    plans: &BTreeMap<String, Plan>,
    all_plan_ids: &[String],
) -> Result<(String, String), String> {
    let Some((plan_id, task)) = dep.split_once('/') else {
        return Err("write dependencies as `plan/task`, for example `auth/define-types`".into());
    };
    let Some(plan) = plans.get(plan_id) else {
        if all_plan_ids.iter().any(|p| p == plan_id) {
            return Err(format!("plan `{plan_id}` has errors; fix them first"));
        }
        return Err(
            suggest::did_you_mean(plan_id, plans.keys().map(String::as_str))
                .unwrap_or_else(|| format!("there is no planning/plans/{plan_id}.toml")),
        );
    };
    if plan.task(task).is_none() {
        return Err(
            suggest::did_you_mean(task, plan.tasks.iter().map(|t| t.name.as_str()))
                .map(|s| format!("{s} (in plan `{plan_id}`)"))
                .unwrap_or_else(|| format!("plan `{plan_id}` has no task `{task}`")),
        );
    }
    Ok((plan_id.to_owned(), task.to_owned()))
}

struct FrontMatter<'c, 's, 'v> {
    ctx: &'c mut Ctx<'s>,
    values: BTreeMap<&'v str, (&'v YSpanned<Json>, Location)>,
    header: Location,
}

impl FrontMatter<'_, '_, '_> {
    fn push(&mut self, code: Code, location: Location, message: String, hint: String) {
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

    fn string(&mut self, key: &str) -> Option<(String, Location)> {
        let (value, location) = self.values.get(key).cloned()?;
        match &value.value {
            Json::String(s) => Some((s.clone(), location)),
            _ => {
                self.wrong_type(key, location, "a string");
                None
            }
        }
    }

    fn required_enum(&mut self, key: &str, allowed: &[&str]) -> Option<String> {
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

    fn integer(&mut self, key: &str, min: i64, max: i64) -> Option<i64> {
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

    fn boolean(&mut self, key: &str) -> Option<bool> {
        let (value, location) = self.values.get(key).cloned()?;
        match value.value {
            Json::Bool(b) => Some(b),
            _ => {
                self.wrong_type(key, location, "`true` or `false`");
                None
            }
        }
    }

    fn string_list(&mut self, key: &str) -> Vec<(String, Location)> {
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

/// The implicit `queue` plan: promoted items as tasks, always active. A
/// dependency on another plan's task is written `plan/task`.
pub fn plan_of(items: Vec<QueueItem>, config: &Config) -> Plan {
    let tasks = items
        .into_iter()
        .map(|item| {
            let mut task = super::model::Task {
                name: item.name,
                description: item.description,
                scope: item.scope,
                gate: item.gate,
                depends_on: item
                    .depends_on
                    .into_iter()
                    .map(|(plan, task)| format!("{plan}/{task}"))
                    .collect(),
                invariants: item.invariants,
                retry_max: item.retry_max,
                harness: item
                    .harness
                    .unwrap_or_else(|| config.reconcile.default_harness.clone()),
                model: item.model,
                timeout: item.timeout,
                paths: item.paths,
                reset: 0,
                sim: None,
                generation: String::new(),
                line: 1,
            };
            task.generation = super::generation::of(&task);
            task
        })
        .collect();
    Plan {
        id: QUEUE_PLAN.to_owned(),
        file: "planning/queue/done".to_owned(),
        name: "Queue".to_owned(),
        base_branch: config.reconcile.base_branch.clone(),
        state: super::model::PlanState::Active,
        token_budget: None,
        default_harness: None,
        isolation: super::model::Isolation::Worktree,
        tasks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::config::default_config;

    fn compile_text(text: &str) -> (Option<QueueItem>, Vec<Diagnostic>) {
        let file = SourceFile {
            path: "planning/queue/fix-typo.md".into(),
            text: text.into(),
        };
        let mut diags = Vec::new();
        let item = compile(
            &file,
            "fix-typo",
            &default_config(),
            &BTreeMap::new(),
            &[],
            &mut diags,
        );
        (item, diags)
    }

    #[test]
    fn reads_front_matter_and_body() {
        let (item, diags) = compile_text(
            "---\nscope: narrow\ngate: auto\nallow_unchecked: true\ntimeout: 10m\n---\n\nFix the typo in README.\n",
        );
        assert!(diags.is_empty(), "{diags:?}");
        let item = item.expect("valid");
        assert_eq!(item.scope, Scope::Narrow);
        assert_eq!(item.description, "Fix the typo in README.");
        assert_eq!(item.timeout, Some(std::time::Duration::from_secs(600)));
    }

    #[test]
    fn reports_unknown_keys_at_their_line() {
        let (item, diags) = compile_text(
            "---\nscope: narrow\ngate: auto\nscop: x\nallow_unchecked: true\n---\nbody\n",
        );
        assert!(item.is_none());
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert_eq!(diags[0].code, Code::UnknownKey);
        assert_eq!(diags[0].location.as_ref().map(|l| l.line), Some(4));
        assert_eq!(diags[0].hint.as_deref(), Some("did you mean `scope`?"));
    }

    #[test]
    fn refuses_anchors_aliases_and_tags() {
        for (yaml, what) in [
            ("a: &x [1]\nb: *x\n", "anchors"),
            ("scope: !!str narrow\n", "tags"),
            ("scope: *x\n", "aliases"),
            ("<<: {a: 1}\n", "merge keys"),
        ] {
            let (item, diags) = compile_text(&format!("---\n{yaml}---\nbody\n"));
            assert!(item.is_none());
            assert_eq!(diags[0].code, Code::YamlFeature, "{yaml}");
            assert!(
                diags[0].message.contains(what),
                "{yaml}: {}",
                diags[0].message
            );
        }
    }

    #[test]
    fn quoted_markers_are_plain_text() {
        let (item, diags) = compile_text(
            "---\nscope: narrow\ngate: auto\nallow_unchecked: true\nmodel: \"*star\"\n---\nbody\n",
        );
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(item.expect("valid").model.as_deref(), Some("*star"));
    }

    #[test]
    fn yaml_messages_lose_their_relative_position() {
        assert_eq!(
            yaml_message("error: line 2 column 7: unclosed bracket '['\nmore"),
            "unclosed bracket '['"
        );
        assert_eq!(yaml_message("something else"), "something else");
    }

    #[test]
    fn a_body_of_only_comments_is_empty() {
        let (item, diags) = compile_text(
            "---\nscope: narrow\ngate: auto\nallow_unchecked: true\n---\n<!-- describe the task -->\n",
        );
        assert!(item.is_none());
        assert_eq!(diags[0].code, Code::MissingField);
        assert_eq!(without_html_comments("a<!-- x -->b<!-- y"), "ab");
    }

    #[test]
    fn missing_front_matter_is_explained() {
        let (_, diags) = compile_text("just text\n");
        assert_eq!(diags[0].code, Code::FrontMatter);
        let (_, diags) = compile_text("---\nscope: narrow\n");
        assert_eq!(diags[0].code, Code::FrontMatter);
    }
}
