//! `planning/queue/<item>.md`: an ad-hoc task as YAML front matter plus a markdown
//! body that is its description (`front_matter.rs` reads the YAML), and the
//! implicit `queue` plan that promoted items join.

mod front_matter;

use std::collections::BTreeMap;

use super::config::{unknown_harness_hint, unknown_invariant_hint};
use super::diag::{Code, Diagnostic, Location};
use super::model::{Config, Gate, Plan, QUEUE_PLAN, QueueItem, Scope};
use super::names;
use super::paths;
use super::plan::{DEFAULT_RETRY_MAX, MAX_RETRY_MAX};
use super::suggest;
use super::toml_walk::{Ctx, SourceFile};
use front_matter::FrontMatter;

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
    "sim",
];

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
    check_name(ctx, name);
    let text = ctx.file.text.clone();
    let (entries, body) = front_matter::parse(ctx, &text)?;
    let mut fm = FrontMatter::new(ctx, &text, &entries, KEYS);
    let scope = fm
        .required_enum("scope", Scope::NAMES)
        .and_then(|s| Scope::parse(&s));
    let gate = fm
        .required_enum("gate", Gate::NAMES)
        .and_then(|g| Gate::parse(&g));
    let (invariants, unknown_invariants) = read_invariants(&mut fm, config);
    let allow_unchecked = fm.boolean("allow_unchecked").unwrap_or(false);
    if super::plan::merges_unchecked(
        gate,
        allow_unchecked,
        unknown_invariants,
        config,
        &invariants,
    ) {
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
    let scripted = fm.values.contains_key("sim");
    let harness = read_harness(&mut fm, config, scripted);
    let model = fm.string("model").map(|(m, _)| m);
    let timeout = read_timeout(&mut fm);
    let retry_max = fm
        .integer("retry_max", 0, MAX_RETRY_MAX)
        .map_or(DEFAULT_RETRY_MAX, |n| {
            u32::try_from(n).unwrap_or(DEFAULT_RETRY_MAX)
        });
    let item_paths = read_paths(&mut fm);
    let depends_on = read_depends_on(&mut fm, plans, all_plan_ids);
    let description = read_description(&mut fm, &text, body);
    let sim = read_sim(&mut fm);
    Some(QueueItem {
        name: name.to_owned(),
        file: fm.ctx.file.path.clone(),
        description,
        scope: scope?,
        gate: gate?,
        invariants,
        harness,
        model,
        timeout,
        retry_max,
        paths: item_paths,
        depends_on,
        allow_unchecked,
        sim,
    })
}

/// `sim`: what the built-in `sim` agent does for this item, as a plan task's
/// `[tasks.sim]` (docs/plan-format.md): `{files: [{path, content | append |
/// delete}], fail_attempts, message}`.
fn read_sim(fm: &mut FrontMatter<'_, '_, '_>) -> Option<super::model::Sim> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        path: String,
        content: Option<String>,
        append: Option<String>,
        #[serde(default)]
        delete: bool,
        on_fail: Option<String>,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Script {
        #[serde(default)]
        files: Vec<File>,
        #[serde(default)]
        fail_attempts: u32,
        message: Option<String>,
    }
    let (value, location) = fm.values.get("sim").cloned()?;
    let script: Script = match serde_json::from_value(value.value.clone()) {
        Ok(script) => script,
        Err(e) => {
            fm.push(
                Code::InvalidValue,
                location,
                format!("`sim` is not a valid script: {e}"),
                "for example `sim: {files: [{path: notes.md, append: \"a line\"}], fail_attempts: 0}`".into(),
            );
            return None;
        }
    };
    let mut files = Vec::new();
    for f in script.files {
        let escapes = f.path.is_empty()
            || f.path.starts_with('/')
            || f.path.contains('\\')
            || f.path.chars().any(char::is_control)
            || f.path.split('/').any(|s| s == ".." || s == ".git");
        if escapes {
            fm.push(
                Code::PathEscapes,
                location.clone(),
                format!("`{}` in `sim` must be a path inside the worktree", f.path),
                "write a path relative to the repository root, like `src/lib.rs`".into(),
            );
            continue;
        }
        let edit = match (f.content, f.append, f.delete) {
            (Some(c), None, false) => super::model::SimEdit::Content(c),
            (None, Some(a), false) => super::model::SimEdit::Append(a),
            (None, None, true) => super::model::SimEdit::Delete,
            _ => {
                fm.push(
                    Code::InvalidValue,
                    location.clone(),
                    format!(
                        "`{}` in `sim` needs exactly one of `content`, `append` or `delete: true`",
                        f.path
                    ),
                    "for example `{path: notes.md, append: \"a line\"}`".into(),
                );
                continue;
            }
        };
        files.push(super::model::SimFile {
            path: f.path,
            edit,
            on_fail: f.on_fail,
        });
    }
    Some(super::model::Sim {
        files,
        message: script.message,
        fail_attempts: script.fail_attempts,
        sleep: std::time::Duration::ZERO,
        exit_code: 0,
        done: true,
        commit: true,
    })
}

/// The item's name comes from its file name.
fn check_name(ctx: &mut Ctx<'_>, name: &str) {
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
}

/// The known invariants of `invariants`, and whether one was unknown.
fn read_invariants(fm: &mut FrontMatter<'_, '_, '_>, config: &Config) -> (Vec<String>, bool) {
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
    (invariants, unknown_invariants)
}

/// `harness`, and a warning when the item would run on the `sim` agent.
fn read_harness(
    fm: &mut FrontMatter<'_, '_, '_>,
    config: &Config,
    scripted: bool,
) -> Option<String> {
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
    // The `sim` agent acts only from a script (`sim:` here, a plan's
    // `[tasks.sim]`); without one, on `sim` the item would change nothing
    // and fail its gate on every attempt.
    let effective = harness
        .clone()
        .unwrap_or_else(|| config.reconcile.default_harness.clone());
    if !scripted
        && config
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
                "this item would run on the built-in `sim` agent ({how} `{effective}`), and has no `sim:` script: it would change nothing and fail every attempt"
            ),
        )
        .at_location(location)
        .with_hint("set `harness:` to an agent harness (`claude-code`, `codex`, `opencode` or one declared in converge.toml); or give the item a script: `sim: {files: [{path: notes.md, append: \"a line\"}]}`");
        fm.ctx.diags.push(d);
    }
    harness
}

fn read_timeout(fm: &mut FrontMatter<'_, '_, '_>) -> Option<std::time::Duration> {
    fm.string("timeout")
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
        })
}

fn read_paths(fm: &mut FrontMatter<'_, '_, '_>) -> Vec<String> {
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
    item_paths
}

fn read_depends_on(
    fm: &mut FrontMatter<'_, '_, '_>,
    plans: &BTreeMap<String, Plan>,
    all_plan_ids: &[String],
) -> Vec<(String, String)> {
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
    depends_on
}

/// The markdown body below the front matter, which must say something.
fn read_description(fm: &mut FrontMatter<'_, '_, '_>, text: &str, body: &str) -> String {
    let description = body.trim();
    if without_html_comments(description).trim().is_empty() {
        let line = text[..text.len() - body.len()].matches('\n').count() + 1;
        let location = Location::from_line_column(text, line, 1);
        fm.push(
            Code::MissingField,
            location,
            "the queue item has no description below its front matter".into(),
            "write what the agent should do, in markdown, after the closing `---`".into(),
        );
    }
    description.replace("\r\n", "\n")
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

/// The implicit `queue` plan: promoted items as tasks, always active. A
/// dependency on another plan's task is written `plan/task`.
pub(crate) fn plan_of(items: Vec<QueueItem>, config: &Config) -> Plan {
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
                sim: item.sim,
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
    use super::front_matter::yaml_message;
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
    fn a_sim_script_is_read_and_a_bad_one_located() {
        let (item, diags) = compile_text(
            "---\nscope: narrow\ngate: auto\nallow_unchecked: true\nsim: {files: [{path: a.md, content: \"A\\n\"}, {path: b.md, append: x}], fail_attempts: 2, message: m}\n---\n\nDo it.\n",
        );
        assert!(diags.is_empty(), "{diags:?}");
        let sim = item.expect("valid").sim.expect("a script");
        assert_eq!(sim.files.len(), 2);
        assert_eq!(
            sim.files[0].edit,
            crate::spec::SimEdit::Content("A\n".into())
        );
        assert_eq!((sim.fail_attempts, sim.message.as_deref()), (2, Some("m")));
        for (bad, why) in [
            (
                "sim: {files: [{path: ../x, content: \"y\"}]}",
                "inside the worktree",
            ),
            (
                "sim: {files: [{path: x, content: \"y\", delete: true}]}",
                "exactly one of",
            ),
            ("sim: {fail: 1}", "unknown field `fail`"),
        ] {
            let (item, diags) = compile_text(&format!(
                "---\nscope: narrow\ngate: auto\nallow_unchecked: true\n{bad}\n---\n\nDo it.\n"
            ));
            assert!(item.is_none(), "{bad}");
            let shown = diags.iter().map(ToString::to_string).collect::<String>();
            assert!(shown.contains("fix-typo.md:5:"), "{bad}: {shown}");
            assert!(shown.contains(why), "{bad}: {shown}");
        }
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
