//! `planning/converge.toml`: limits, invariants, harnesses, forge, schedules, sandbox.

use std::collections::BTreeMap;
use std::str::FromStr;

use toml::de::DeValue;

use super::diag::Code;
use super::model::{
    BUILTIN_HARNESSES, Backoff, Budget, Config, Forge, Harness, HarnessKind, Identity, Invariant,
    InvariantKind, Merge, ModelPrice, Reconcile, Sandbox, Schedule, Scope,
};
use super::suggest;
use super::toml_walk::{Ctx, SourceFile, Table};

pub const CONFIG_PATH: &str = "planning/converge.toml";

const ROOT_KEYS: &[&str] = &[
    "reconcile",
    "invariants",
    "merge",
    "harness",
    "forge",
    "schedule",
    "sandbox",
    "budget",
    "prices",
];
const RECONCILE_KEYS: &[&str] = &[
    "base_branch",
    "status_branch",
    "remote",
    "actions_per_tick",
    "interval",
    "max_agents",
    "dispatches_per_hour",
    "task_timeout",
    "backoff",
    "default_harness",
    "committer",
    "worktree_root",
    "keep_attempts",
];
const BACKOFF_KEYS: &[&str] = &["base", "factor", "max"];
const INVARIANT_KEYS: &[&str] = &[
    "kind",
    "command",
    "args",
    "timeout",
    "expected_exit_code",
    "advisory",
    "description",
    "threshold",
    "scope",
];
/// The longest invariant timeout written as a number of seconds (gator's form): a week.
const MAX_TIMEOUT_SECS: i64 = 7 * 24 * 3600;
/// gator's harness names, and the built-in harness each means.
pub const HARNESS_ALIASES: &[(&str, &str)] = &[("codex-cli", "codex"), ("open-code", "opencode")];
const MERGE_KEYS: &[&str] = &["invariants"];
const HARNESS_KEYS: &[&str] = &["kind", "command", "args", "models"];
const FORGE_KEYS: &[&str] = &["kind", "repo"];
const SCHEDULE_KEYS: &[&str] = &["cron", "queue"];
const SANDBOX_KEYS: &[&str] = &["enabled", "required", "env_allow"];
const BUDGET_KEYS: &[&str] = &["tokens_per_day", "usd_per_day"];
const PRICE_KEYS: &[&str] = &["input", "output"];

/// The default timeout of an invariant that names none.
pub const DEFAULT_INVARIANT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// The configuration and whether it was free of errors. A configuration with
/// errors still yields best-effort values so that plans can be checked against it
/// and every problem is reported in one run.
#[derive(Debug)]
pub struct CompiledConfig {
    pub config: Config,
    pub valid: bool,
}

/// The configuration used when `planning/converge.toml` does not exist.
pub fn default_config() -> Config {
    let mut harnesses = BTreeMap::new();
    for (name, kind) in BUILTIN_HARNESSES {
        harnesses.insert((*name).to_owned(), Harness::builtin(name, *kind));
    }
    Config {
        reconcile: Reconcile::default(),
        invariants: BTreeMap::new(),
        merge: Merge::default(),
        harnesses,
        forge: Forge::Local,
        schedules: Vec::new(),
        sandbox: Sandbox::default(),
        budget: Budget::default(),
        prices: BTreeMap::new(),
        invariant_descriptions: BTreeMap::new(),
    }
}

/// Compiles `converge.toml`. `templates` are the file names under
/// `planning/queue/templates/`, which schedules refer to.
pub fn compile(
    file: &SourceFile,
    templates: &[String],
    ctx_out: &mut Vec<super::Diagnostic>,
) -> CompiledConfig {
    let mut ctx = Ctx::new(file);
    let mut config = default_config();
    if let Some(root) = ctx.parse() {
        let root = Table::new(root.get_ref(), root.span(), "converge.toml", ROOT_KEYS);
        read_reconcile(&mut ctx, &root, &mut config.reconcile);
        (config.invariants, config.invariant_descriptions) = read_invariants(&mut ctx, &root);
        read_harnesses(&mut ctx, &root, &mut config.harnesses);
        config.merge = read_merge(&mut ctx, &root, &config.invariants);
        if let Some(forge) = read_forge(&mut ctx, &root) {
            config.forge = forge;
        }
        config.schedules = read_schedules(&mut ctx, &root, templates);
        if let Some(sandbox) = read_sandbox(&mut ctx, &root) {
            config.sandbox = sandbox;
        }
        if let Some(budget) = read_budget(&mut ctx, &root) {
            config.budget = budget;
        }
        config.prices = read_prices(&mut ctx, &root);
        check_default_harness(&mut ctx, &root, &mut config);
        root.finish(&mut ctx);
    }
    let valid = !ctx.has_errors();
    ctx_out.append(&mut ctx.diags);
    CompiledConfig { config, valid }
}

fn read_reconcile(ctx: &mut Ctx<'_>, root: &Table<'_, '_>, out: &mut Reconcile) {
    let Some(t) = root.table(ctx, "reconcile", "[reconcile]", RECONCILE_KEYS) else {
        return;
    };
    for key in ["base_branch", "status_branch"] {
        if let Some(branch) = t.string(ctx, key) {
            match check_branch_name(branch.get_ref()) {
                Ok(()) => {
                    let value = branch.into_inner();
                    if key == "base_branch" {
                        out.base_branch = value;
                    } else {
                        out.status_branch = value;
                    }
                }
                Err(reason) => {
                    ctx.error(
                        Code::InvalidValue,
                        branch.span(),
                        format!("`{key}` in [reconcile] is not a valid branch name: {reason}"),
                    )
                    .hint = Some("write the short branch name, for example `main`".into());
                }
            }
        }
    }
    // A status branch that was not given follows the base branch.
    if t.get("status_branch").is_none() {
        out.status_branch = out.base_branch.clone();
    }
    if let Some(remote) = t.string(ctx, "remote") {
        if remote.get_ref().is_empty()
            || remote.get_ref().starts_with('-')
            || remote.get_ref().contains(char::is_whitespace)
        {
            ctx.error(
                Code::InvalidValue,
                remote.span(),
                "`remote` in [reconcile] must be the name of a git remote",
            )
            .hint = Some("for example `remote = \"origin\"`; leave it out to work locally".into());
        } else {
            out.remote = Some(remote.into_inner());
        }
    }
    if let Some(n) = t.integer_in(ctx, "actions_per_tick", 1, 1000) {
        out.actions_per_tick = to_u32(*n.get_ref());
    }
    if let Some(n) = t.integer_in(ctx, "max_agents", 0, 10_000) {
        out.max_agents = to_u32(*n.get_ref());
    }
    if let Some(n) = t.integer_in(ctx, "keep_attempts", 1, 100_000) {
        out.keep_attempts = to_u32(*n.get_ref());
    }
    if let Some(n) = t.integer_in(ctx, "dispatches_per_hour", 0, 1_000_000) {
        out.dispatches_per_hour = to_u32(*n.get_ref());
    }
    if let Some(span) = t.key_span("interval") {
        not_supported(
            ctx,
            span,
            "`interval` in [reconcile] is not supported yet: there is no `converge watch` to tick on it",
            "remove the `interval` line; converge runs nothing while it is set. Run `converge reconcile --once` from cron or CI instead (`--wait` ticks until everything settles)",
        );
    }
    if let Some(d) = t.duration(ctx, "interval") {
        if d.get_ref().is_zero() {
            ctx.error(
                Code::InvalidValue,
                d.span(),
                "`interval` in [reconcile] must be longer than zero",
            )
            .hint = Some("for example `interval = \"30s\"`".into());
        } else {
            out.interval = d.into_inner();
        }
    }
    if let Some(d) = t.duration(ctx, "task_timeout") {
        if d.get_ref().is_zero() {
            ctx.error(
                Code::InvalidValue,
                d.span(),
                "`task_timeout` in [reconcile] must be longer than zero",
            )
            .hint = Some("for example `task_timeout = \"30m\"`".into());
        } else {
            out.task_timeout = d.into_inner();
        }
    }
    if let Some(b) = t.table(ctx, "backoff", "[reconcile].backoff", BACKOFF_KEYS) {
        out.backoff = read_backoff(ctx, &b);
        b.finish(ctx);
    }
    if let Some(h) = t.string(ctx, "default_harness") {
        out.default_harness = h.into_inner();
    }
    if let Some(c) = t.string(ctx, "committer") {
        match parse_identity(c.get_ref()) {
            Ok(identity) => out.committer = Some(identity),
            Err(reason) => {
                ctx.error(
                    Code::InvalidValue,
                    c.span(),
                    format!("`committer` in [reconcile] is not `Name <email>`: {reason}"),
                )
                .hint = Some(
                    "for example `committer = \"converge <converge@localhost>\"`; leave it out for that default"
                        .into(),
                );
            }
        }
    }
    if let Some(root) = t.string(ctx, "worktree_root") {
        match check_worktree_root(root.get_ref()) {
            Ok(()) => out.worktree_root = Some(root.into_inner()),
            Err(reason) => {
                ctx.error(
                    Code::InvalidValue,
                    root.span(),
                    format!("`worktree_root` in [reconcile] {reason}"),
                )
                .hint = Some(
                    "name a directory outside .git/ and planning/, relative to the checkout or absolute, for example `worktree_root = \"../worktrees\"`; leave it out for `.converge/worktrees`"
                        .into(),
                );
            }
        }
    }
    t.finish(ctx);
}

/// Refuses a worktree root written relative to the checkout that is the
/// checkout itself or lies inside its `planning/` or `.git/` (absolute roots
/// are checked against the repository when the tick resolves them).
fn check_worktree_root(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("is empty".into());
    }
    if text.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    let path = std::path::Path::new(text);
    if path.is_absolute() {
        return Ok(());
    }
    // Resolve `.` and `..` lexically, relative to the checkout.
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    let mut above = false;
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                if parts.pop().is_none() {
                    above = true;
                    break;
                }
            }
            other => parts.push(other.as_os_str()),
        }
    }
    if above {
        // Outside the checkout: a sibling directory, for example.
        return Ok(());
    }
    match parts.first().and_then(|p| p.to_str()) {
        None => Err("is the checkout itself: worktrees would mix with the project's files".into()),
        Some("planning") => Err("is inside planning/, which agents must not change".into()),
        Some(".git") => Err("is inside .git/, where agent CLIs refuse to edit files".into()),
        Some(_) => Ok(()),
    }
}

/// Reads `Name <email>` as git writes an identity.
pub fn parse_identity(text: &str) -> Result<Identity, String> {
    if text.contains(['\n', '\r', '\0']) {
        return Err("it spans more than one line".into());
    }
    let Some((name, rest)) = text.split_once('<') else {
        return Err("the email in `<...>` is missing".into());
    };
    let Some(email) = rest.strip_suffix('>') else {
        return Err("it must end with the email in `<...>`".into());
    };
    let name = name.trim();
    if name.is_empty() {
        return Err("the name before `<` is empty".into());
    }
    if email.trim().is_empty() || email.contains(['<', '>']) || email != email.trim() {
        return Err("the email between `<` and `>` is empty or malformed".into());
    }
    if name.contains(['<', '>']) {
        return Err("the name contains `<` or `>`".into());
    }
    Ok(Identity {
        name: name.to_owned(),
        email: email.to_owned(),
    })
}

fn read_backoff(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Backoff {
    let mut backoff = Backoff::default();
    if let Some(d) = t.duration(ctx, "base") {
        backoff.base = d.into_inner();
    }
    if let Some(d) = t.duration(ctx, "max") {
        backoff.max = d.into_inner();
    }
    if let Some(f) = t.number(ctx, "factor") {
        if *f.get_ref() < 1.0 || *f.get_ref() > 100.0 {
            ctx.error(
                Code::InvalidValue,
                f.span(),
                format!(
                    "`factor` in {} is {}, outside the allowed range 1..=100",
                    t.what,
                    f.get_ref()
                ),
            )
            .hint = Some("use 1 for a constant delay or 2 to double it after each failure".into());
        } else {
            backoff.factor = f.into_inner();
        }
    }
    if backoff.max < backoff.base {
        ctx.error(
            Code::InvalidValue,
            t.span(),
            format!(
                "backoff `max` ({}) is shorter than `base` ({})",
                super::duration::format(backoff.max),
                super::duration::format(backoff.base)
            ),
        )
        .hint = Some("make `max` at least as long as `base`".into());
    }
    backoff
}

type Invariants = (BTreeMap<String, Invariant>, BTreeMap<String, String>);

fn read_invariants(ctx: &mut Ctx<'_>, root: &Table<'_, '_>) -> Invariants {
    let mut out = BTreeMap::new();
    let mut descriptions = BTreeMap::new();
    for (name, t) in root.named_subtables(
        ctx,
        "invariants",
        "invariant",
        "`kind` and `command`",
        INVARIANT_KEYS,
    ) {
        let kind = t.required_enumeration(ctx, "kind", InvariantKind::NAMES);
        let command = t.required_string(ctx, "command", "\"cargo\"");
        let args = t.string_array(ctx, "args");
        let timeout = invariant_timeout(ctx, &t, name);
        let exit = t.integer_in(ctx, "expected_exit_code", 0, 255);
        let advisory = t.boolean(ctx, "advisory");
        if let Some(d) = t.string(ctx, "description") {
            descriptions.insert(name.to_owned(), d.into_inner());
        }
        gator_invariant_fields(ctx, &t, name);
        t.finish(ctx);
        let (Some(kind), Some(command)) = (kind, command) else {
            continue;
        };
        out.insert(
            name.to_owned(),
            Invariant {
                name: name.to_owned(),
                kind: InvariantKind::parse(kind.get_ref()).unwrap_or(InvariantKind::Custom),
                command: command.into_inner(),
                args: args
                    .map(|a| a.into_inner().into_iter().map(|s| s.into_inner()).collect())
                    .unwrap_or_default(),
                timeout: timeout.unwrap_or(DEFAULT_INVARIANT_TIMEOUT),
                expected_exit_code: exit.map_or(0, |e| i32::try_from(*e.get_ref()).unwrap_or(0)),
                advisory: advisory.is_some_and(|a| *a.get_ref()),
            },
        );
    }
    (out, descriptions)
}

/// An invariant's `timeout`: a duration (`"5m"`) or, as gator writes it, a whole
/// number of seconds (`300`).
fn invariant_timeout(
    ctx: &mut Ctx<'_>,
    t: &Table<'_, '_>,
    name: &str,
) -> Option<std::time::Duration> {
    let seconds = t
        .get("timeout")
        .is_some_and(|v| matches!(v.get_ref(), DeValue::Integer(_)));
    let timeout = if seconds {
        let n = t.integer_in(ctx, "timeout", 0, MAX_TIMEOUT_SECS)?;
        toml::Spanned::new(
            n.span(),
            std::time::Duration::from_secs(u64::try_from(*n.get_ref()).unwrap_or(0)),
        )
    } else {
        t.duration(ctx, "timeout")?
    };
    if timeout.get_ref().is_zero() {
        ctx.error(
            Code::InvalidValue,
            timeout.span(),
            format!("`timeout` of invariant `{name}` must be longer than zero"),
        )
        .hint = Some("for example `timeout = \"5m\"` or `timeout = 300` (seconds)".into());
        return None;
    }
    Some(timeout.into_inner())
}

/// gator's `threshold` and `scope`: read and checked, and reported as not used,
/// because converge does nothing with them (neither does gator's gate: it stores
/// them and decides on the exit code alone).
fn gator_invariant_fields(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, name: &str) {
    if let Some(threshold) = t.number(ctx, "threshold") {
        ctx.warning(
            Code::GatorCompat,
            threshold.span(),
            format!("converge does not use `threshold` of invariant `{name}`: an invariant passes or fails on its exit code"),
        )
        .hint = Some(
            "make the command fail below the threshold itself (for example `cargo llvm-cov --fail-under-lines 80`), then remove `threshold`".into(),
        );
    }
    if let Some(scope) = t.enumeration(ctx, "scope", &["project", "global"]) {
        ctx.warning(
            Code::GatorCompat,
            scope.span(),
            format!("converge does not use `scope` of invariant `{name}`: the invariants of converge.toml belong to this repository and any task of it may use them"),
        )
        .hint = Some("remove `scope`".into());
    }
}

fn read_merge(
    ctx: &mut Ctx<'_>,
    root: &Table<'_, '_>,
    invariants: &BTreeMap<String, Invariant>,
) -> Merge {
    let Some(t) = root.table(ctx, "merge", "[merge]", MERGE_KEYS) else {
        return Merge::default();
    };
    let mut merge = Merge::default();
    if let Some(list) = t.string_array(ctx, "invariants") {
        for name in list.into_inner() {
            if invariants.contains_key(name.get_ref()) {
                merge.invariants.push(name.into_inner());
            } else if super::names::check(name.get_ref()).is_err()
                && root
                    .get("invariants")
                    .and_then(|i| i.get_ref().as_table())
                    .is_some_and(|t| t.contains_key(name.get_ref().as_str()))
            {
                // Its `[invariants.NAME]` table was refused for that name
                // already: one bad name, one error.
            } else {
                unknown_invariant(ctx, &name, invariants);
            }
        }
    }
    t.finish(ctx);
    merge
}

/// What to do about a reference to an undefined invariant.
pub fn unknown_invariant_hint(name: &str, invariants: &BTreeMap<String, Invariant>) -> String {
    suggest::did_you_mean(name, invariants.keys().map(String::as_str)).unwrap_or_else(|| {
        // Suggest only what converge accepts: an invalid name cannot be defined.
        match super::names::check(name) {
            Ok(()) => format!("define it in planning/converge.toml as `[invariants.{name}]`, or run `converge invariant add {name} ...`"),
            Err(problem) => {
                let valid = super::names::suggest(name);
                format!(
                    "`{name}` is not a name converge accepts ({}); name it `{valid}` here and define `[invariants.{valid}]` in planning/converge.toml (or run `converge invariant add {valid} ...`)",
                    problem.reason
                )
            }
        }
    })
}

/// Reports a reference to an invariant that is not defined.
pub fn unknown_invariant(
    ctx: &mut Ctx<'_>,
    name: &toml::Spanned<String>,
    invariants: &BTreeMap<String, Invariant>,
) {
    let hint = unknown_invariant_hint(name.get_ref(), invariants);
    ctx.error(
        Code::UnknownInvariant,
        name.span(),
        format!("unknown invariant `{}`", name.get_ref()),
    )
    .hint = Some(hint);
}

fn read_harnesses(ctx: &mut Ctx<'_>, root: &Table<'_, '_>, out: &mut BTreeMap<String, Harness>) {
    for (name, t) in root.named_subtables(ctx, "harness", "harness", "`kind`", HARNESS_KEYS) {
        let kind = t.required_enumeration(ctx, "kind", HarnessKind::NAMES);
        let command = t.string(ctx, "command");
        let args = t.string_array(ctx, "args");
        let mut models = BTreeMap::new();
        if let Some(m) = t.named_tables(ctx, "models") {
            for (scope_key, model) in m.iter() {
                let scope_name: &str = scope_key.get_ref();
                let Some(scope) = Scope::parse(scope_name) else {
                    let hint = suggest::did_you_mean(scope_name, Scope::NAMES.iter().copied())
                        .unwrap_or_else(|| {
                            format!(
                                "the keys of `models` are scopes: {}",
                                suggest::one_of(Scope::NAMES)
                            )
                        });
                    ctx.error(
                        Code::UnknownKey,
                        scope_key.span(),
                        format!("unknown scope `{scope_name}` in `models` of harness `{name}`"),
                    )
                    .hint = Some(hint);
                    continue;
                };
                match model.get_ref() {
                    DeValue::String(s) if !s.trim().is_empty() => {
                        models.insert(scope, s.to_string());
                    }
                    _ => {
                        ctx.error(
                            Code::WrongType,
                            model.span(),
                            format!("the model for `{scope_name}` in harness `{name}` must be a non-empty string"),
                        )
                        .hint = Some(format!("for example `{scope_name} = \"sonnet\"`"));
                    }
                }
            }
        }
        let kind = kind.and_then(|k| HarnessKind::parse(k.get_ref()));
        if kind == Some(HarnessKind::Command) && command.is_none() {
            ctx.error(
                Code::MissingField,
                t.span().start..t.span().start,
                format!("harness `{name}` of kind `command` is missing the required key `command`"),
            )
            .hint = Some(
                "add `command = \"./scripts/agent.sh\"` and `args = [\"{prompt_file}\"]`".into(),
            );
        }
        if let Some(command) = &command
            && command.get_ref().trim().is_empty()
        {
            ctx.error(
                Code::InvalidValue,
                command.span(),
                format!("`command` of harness `{name}` must not be empty"),
            );
        }
        t.finish(ctx);
        if let Some(kind) = kind {
            out.insert(
                name.to_owned(),
                Harness {
                    name: name.to_owned(),
                    kind,
                    command: command.map(|c| c.into_inner()),
                    args: args
                        .map(|a| a.into_inner().into_iter().map(|s| s.into_inner()).collect())
                        .unwrap_or_default(),
                    models,
                    declared: true,
                },
            );
        }
    }
}

fn check_default_harness(ctx: &mut Ctx<'_>, root: &Table<'_, '_>, config: &mut Config) {
    let name = &config.reconcile.default_harness;
    if config.harnesses.contains_key(name) {
        return;
    }
    let Some(reconcile) = root.get("reconcile") else {
        return;
    };
    let span = match reconcile.get_ref() {
        DeValue::Table(t) => t
            .get("default_harness")
            .map_or(reconcile.span(), toml::Spanned::span),
        _ => return,
    };
    let name = toml::Spanned::new(span, name.clone());
    if let Some(resolved) = resolve_harness(ctx, &name, &config.harnesses) {
        config.reconcile.default_harness = resolved;
    }
}

/// The harness a name written in a plan or in `[reconcile]` means: a harness of
/// converge.toml or a built-in one, or gator's name for a built-in one
/// (`codex-cli`, `open-code`), which works with a warning saying what converge
/// calls it. Anything else is reported as unknown.
pub fn resolve_harness(
    ctx: &mut Ctx<'_>,
    name: &toml::Spanned<String>,
    harnesses: &BTreeMap<String, Harness>,
) -> Option<String> {
    let written = name.get_ref();
    if harnesses.contains_key(written) {
        return Some(written.clone());
    }
    if let Some((_, target)) = HARNESS_ALIASES.iter().find(|(alias, _)| alias == written)
        && harnesses.contains_key(*target)
    {
        ctx.warning(
            Code::GatorCompat,
            name.span(),
            format!("harness `{written}` is gator's name for converge's `{target}`"),
        )
        .hint = Some(format!("write `\"{target}\"`"));
        return Some((*target).to_owned());
    }
    unknown_harness(ctx, name.span(), written, harnesses);
    None
}

/// Reports a reference to a harness that is neither declared nor built in.
pub fn unknown_harness(
    ctx: &mut Ctx<'_>,
    span: std::ops::Range<usize>,
    name: &str,
    harnesses: &BTreeMap<String, Harness>,
) {
    ctx.error(
        Code::UnknownHarness,
        span,
        format!("unknown harness `{name}`"),
    )
    .hint = Some(unknown_harness_hint(name, harnesses));
}

/// What to do about a reference to an unknown harness.
pub fn unknown_harness_hint(name: &str, harnesses: &BTreeMap<String, Harness>) -> String {
    suggest::did_you_mean(name, harnesses.keys().map(String::as_str)).unwrap_or_else(|| {
        format!(
            "built-in harnesses are {}; declare others as `[harness.{name}]` in planning/converge.toml",
            suggest::one_of(&BUILTIN_HARNESSES.iter().map(|(n, _)| *n).collect::<Vec<_>>())
        )
    })
}

fn read_forge(ctx: &mut Ctx<'_>, root: &Table<'_, '_>) -> Option<Forge> {
    let t = root.table(ctx, "forge", "[forge]", FORGE_KEYS)?;
    let kind = t.str(ctx, "kind");
    let repo = t.string(ctx, "repo");
    t.finish(ctx);
    if let Some(other) = kind
        .as_ref()
        .filter(|k| !matches!(*k.get_ref(), "local" | "github"))
    {
        // Not "did you mean `github`", which is refused too.
        ctx.error(
            Code::InvalidValue,
            other.span(),
            format!(
                "`kind` in [forge] is `{}`; the only forge converge has is `local`",
                other.get_ref()
            ),
        )
        .hint = Some(
            "remove the [forge] table (or write `kind = \"local\"`) to merge into the base branch here".into(),
        );
        return None;
    }
    match kind.as_ref().map(|k| *k.get_ref()) {
        Some("github") => {
            if let Some(kind) = &kind {
                not_supported(
                    ctx,
                    kind.span(),
                    "the `github` forge is not supported yet: converge would merge into the local base branch instead of opening pull requests",
                    "remove the [forge] table (or write `kind = \"local\"`); converge runs nothing while it is set",
                );
            }
            let Some(repo) = repo else {
                ctx.error(
                    Code::MissingField,
                    t.span().start..t.span().start,
                    "[forge] of kind `github` is missing the required key `repo`",
                )
                .hint = Some("add `repo = \"owner/name\"`".into());
                return None;
            };
            let valid = repo.get_ref().split_once('/').is_some_and(|(owner, name)| {
                valid_github_segment(owner) && valid_github_segment(name)
            });
            if !valid {
                ctx.error(
                    Code::InvalidValue,
                    repo.span(),
                    format!(
                        "`repo` in [forge] is `{}`, not `owner/name`",
                        repo.get_ref()
                    ),
                )
                .hint = Some("for example `repo = \"acme/widgets\"`".into());
                return None;
            }
            Some(Forge::Github {
                repo: repo.into_inner(),
            })
        }
        Some(_) => {
            if let Some(repo) = repo {
                ctx.warning(
                    Code::UnknownKey,
                    repo.span(),
                    "`repo` in [forge] is ignored by the local forge",
                )
                .hint = Some("set `kind = \"github\"` to use it, or remove it".into());
            }
            Some(Forge::Local)
        }
        None => None,
    }
}

/// A setting converge reads but does not implement yet: an error, so that
/// nothing runs as if it were honoured (reconcile refuses an invalid
/// `converge.toml`). The value is still checked below, for the day the
/// refusal is lifted; `hint` says what to remove.
fn not_supported(ctx: &mut Ctx<'_>, span: std::ops::Range<usize>, message: &str, hint: &str) {
    ctx.error(Code::NotSupported, span, message).hint = Some(hint.to_owned());
}

fn valid_github_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s != "."
        && s != ".."
}

fn read_schedules(ctx: &mut Ctx<'_>, root: &Table<'_, '_>, templates: &[String]) -> Vec<Schedule> {
    let mut out = Vec::new();
    let Some(items) = root.array_of_tables(ctx, "schedule") else {
        return out;
    };
    for (index, (span, table)) in items.into_iter().enumerate() {
        not_supported(
            ctx,
            span.clone(),
            "[[schedule]] is not supported yet: schedules do not fire",
            "remove this [[schedule]] table and its keys; converge runs nothing while it is set. To run a task now, commit it as planning/queue/<name>.md",
        );
        let t = Table::new(
            table,
            span,
            format!("[[schedule]] #{}", index + 1),
            SCHEDULE_KEYS,
        );
        let cron = t.required_string(ctx, "cron", "\"0 9 * * MON\"");
        let queue = t.required_string(ctx, "queue", "\"weekly-review.md\"");
        t.finish(ctx);
        let cron_ok = cron.as_ref().is_some_and(|c| check_cron(ctx, c));
        let queue_ok = queue
            .as_ref()
            .is_some_and(|q| check_template(ctx, q, templates));
        if let (Some(cron), Some(queue), true, true) = (cron, queue, cron_ok, queue_ok) {
            out.push(Schedule {
                cron: cron.into_inner(),
                queue: queue.into_inner(),
            });
        }
    }
    out
}

/// Checks a standard 5-field crontab line (minute hour day-of-month month day-of-week).
pub fn validate_cron(expr: &str) -> Result<(), String> {
    let fields = expr.split_whitespace().count();
    if fields != 5 {
        return Err(format!(
            "a crontab line has 5 fields (minute hour day-of-month month day-of-week), this one has {fields}"
        ));
    }
    croner::Cron::from_str(expr).map(|_| ()).map_err(|e| {
        // croner's messages are capitalized sentences; fit them to ours.
        let text = e.to_string();
        let text = text.trim_end_matches('.');
        let text = text.strip_prefix("Component error: ").unwrap_or(text);
        text.to_lowercase()
    })
}

fn check_cron(ctx: &mut Ctx<'_>, cron: &toml::Spanned<String>) -> bool {
    match validate_cron(cron.get_ref()) {
        Ok(()) => true,
        Err(reason) => {
            ctx.error(
                Code::InvalidCron,
                cron.span(),
                format!("`{}` is not a valid schedule: {reason}", cron.get_ref()),
            )
            .hint =
                Some("for example `cron = \"0 9 * * MON\"` (09:00 every Monday, in UTC)".into());
            false
        }
    }
}

fn check_template(ctx: &mut Ctx<'_>, queue: &toml::Spanned<String>, templates: &[String]) -> bool {
    let name = queue.get_ref();
    if name.contains('/') || name.contains('\\') || name.starts_with('.') || !name.ends_with(".md")
    {
        ctx.error(
            Code::InvalidValue,
            queue.span(),
            format!("`queue` is `{name}`; it must be the file name of a template in planning/queue/templates/"),
        )
        .hint = Some("for example `queue = \"weekly-review.md\"`".into());
        return false;
    }
    if templates.iter().any(|t| t == name) {
        return true;
    }
    let hint = suggest::did_you_mean(name, templates.iter().map(String::as_str))
        .unwrap_or_else(|| format!("create planning/queue/templates/{name}"));
    ctx.error(
        Code::InvalidValue,
        queue.span(),
        format!("the schedule's template planning/queue/templates/{name} does not exist"),
    )
    .hint = Some(hint);
    false
}

/// `[prices]`: `"model-or-prefix" = { input = 3.0, output = 15.0 }`, USD per
/// million tokens.
fn read_prices(ctx: &mut Ctx<'_>, root: &Table<'_, '_>) -> BTreeMap<String, ModelPrice> {
    let mut out = BTreeMap::new();
    let Some(table) = root.named_tables(ctx, "prices") else {
        return out;
    };
    for (key, value) in table.iter() {
        let model: &str = key.get_ref();
        let DeValue::Table(t) = value.get_ref() else {
            ctx.error(
                Code::WrongType,
                value.span(),
                format!("the price of `{model}` in [prices] must be a table"),
            )
            .hint = Some(format!(
                "write `\"{model}\" = {{ input = 3.0, output = 15.0 }}` (USD per million tokens)"
            ));
            continue;
        };
        let t = Table::new(
            t,
            value.span(),
            format!("the price of `{model}`"),
            PRICE_KEYS,
        );
        let mut price = ModelPrice::new(0.0, 0.0);
        let mut complete = true;
        for (field, slot) in [("input", &mut price.input), ("output", &mut price.output)] {
            match t.number(ctx, field) {
                Some(n) if n.get_ref().is_finite() && *n.get_ref() >= 0.0 => *slot = n.into_inner(),
                Some(n) => {
                    ctx.error(
                        Code::InvalidValue,
                        n.span(),
                        format!("`{field}` of the price of `{model}` must be 0 or more"),
                    );
                    complete = false;
                }
                None => {
                    ctx.error(
                        Code::MissingField,
                        value.span(),
                        format!("the price of `{model}` in [prices] is missing `{field}`"),
                    )
                    .hint = Some("both `input` and `output` are USD per million tokens".into());
                    complete = false;
                }
            }
        }
        t.finish(ctx);
        if complete && !model.trim().is_empty() {
            out.insert(model.to_owned(), price);
        }
    }
    out
}

fn read_budget(ctx: &mut Ctx<'_>, root: &Table<'_, '_>) -> Option<Budget> {
    let t = root.table(ctx, "budget", "[budget]", BUDGET_KEYS)?;
    let mut budget = Budget::default();
    if let Some(n) = t.integer_in(ctx, "tokens_per_day", 1, i64::MAX) {
        budget.tokens_per_day = u64::try_from(n.into_inner()).ok();
    }
    if let Some(usd) = t.number(ctx, "usd_per_day") {
        let span = usd.span();
        let usd = usd.into_inner();
        if usd > 0.0 {
            budget.usd_per_day = Some(usd);
        } else {
            ctx.error(
                Code::InvalidValue,
                span,
                format!("`usd_per_day` in [budget] must be more than 0, not {usd}"),
            );
        }
    }
    t.finish(ctx);
    Some(budget)
}

fn read_sandbox(ctx: &mut Ctx<'_>, root: &Table<'_, '_>) -> Option<Sandbox> {
    let t = root.table(ctx, "sandbox", "[sandbox]", SANDBOX_KEYS)?;
    let mut sandbox = Sandbox::default();
    if let Some(b) = t.boolean(ctx, "enabled") {
        sandbox.enabled = b.into_inner();
    }
    if let Some(b) = t.boolean(ctx, "required") {
        sandbox.required = b.into_inner();
    }
    if let Some(list) = t.string_array(ctx, "env_allow") {
        sandbox.env_allow.clear();
        for name in list.into_inner() {
            let valid = !name.get_ref().is_empty()
                && name
                    .get_ref()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.get_ref().starts_with(|c: char| c.is_ascii_digit());
            if valid {
                sandbox.env_allow.push(name.into_inner());
            } else {
                ctx.error(
                    Code::InvalidValue,
                    name.span(),
                    format!(
                        "`{}` in `env_allow` is not an environment variable name",
                        name.get_ref()
                    ),
                )
                .hint = Some(
                    "names are letters, digits and `_`, for example `ANTHROPIC_API_KEY`".into(),
                );
            }
        }
    }
    t.finish(ctx);
    Some(sandbox)
}

/// The rules of `git check-ref-format --branch` that matter for names people type.
pub fn check_branch_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".into());
    }
    if name.starts_with('-') {
        return Err("it starts with `-`".into());
    }
    if name.starts_with("refs/") {
        return Err("give the short name, without `refs/heads/`".into());
    }
    if name.contains("..") || name.contains("@{") || name.contains("//") {
        return Err("it contains `..`, `@{` or `//`".into());
    }
    if name.ends_with('/')
        || name.ends_with('.')
        || name.ends_with(".lock")
        || name.starts_with('/')
    {
        return Err("it starts or ends with `/`, or ends with `.` or `.lock`".into());
    }
    if name == "@" {
        return Err("`@` alone is not a branch".into());
    }
    if let Some(c) = name.chars().find(|c| {
        c.is_ascii_control()
            || c.is_whitespace()
            || matches!(c, '~' | '^' | ':' | '?' | '*' | '[' | '\\')
    }) {
        return Err(format!("it contains `{}`", c.escape_default()));
    }
    if name.split('/').any(|part| part.starts_with('.')) {
        return Err("a component starts with `.`".into());
    }
    Ok(())
}

fn to_u32(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::diag::Severity;

    fn compile_text(text: &str) -> (CompiledConfig, Vec<super::super::Diagnostic>) {
        let file = SourceFile {
            path: CONFIG_PATH.into(),
            text: text.into(),
        };
        let mut diags = Vec::new();
        let c = compile(&file, &["weekly.md".to_owned()], &mut diags);
        (c, diags)
    }

    #[test]
    fn a_bad_invariant_name_is_one_error_and_hints_name_what_converge_accepts() {
        let text = "[invariants.\"Rust Build\"]\nkind = \"custom\"\ncommand = \"cargo\"\n\n[merge]\ninvariants = [\"Rust Build\"]\n";
        let (c, diags) = compile_text(text);
        assert!(!c.valid);
        let codes: Vec<String> = diags.iter().map(|d| d.code.to_string()).collect();
        assert_eq!(codes, ["invalid-name"], "{diags:?}");

        let hint = unknown_invariant_hint("Lint Check", &BTreeMap::new());
        assert!(
            hint.contains("name it `lint-check`") && !hint.contains("[invariants.Lint Check]"),
            "{hint}"
        );
        assert!(unknown_invariant_hint("lint", &BTreeMap::new()).contains("`[invariants.lint]`"));
    }

    #[test]
    fn empty_file_gives_defaults() {
        let (c, diags) = compile_text("");
        assert!(c.valid && diags.is_empty());
        assert_eq!(c.config, default_config());
    }

    #[test]
    fn status_branch_follows_base_branch() {
        let (c, _) = compile_text("[reconcile]\nbase_branch = \"trunk\"\n");
        assert_eq!(c.config.reconcile.status_branch, "trunk");
    }

    #[test]
    fn reads_every_section() {
        let text = r#"
[reconcile]
max_agents = 2
backoff = { base = "10s", factor = 3, max = "1h" }
default_harness = "agent"
[invariants.test]
kind = "test_suite"
command = "cargo"
args = ["test"]
timeout = "5m"
[merge]
invariants = ["test"]
[harness.agent]
kind = "command"
command = "./agent.sh"
args = ["{prompt_file}"]
models = { narrow = "small" }
[forge]
kind = "local"
[sandbox]
enabled = true
env_allow = ["PATH"]
"#;
        let (c, diags) = compile_text(text);
        assert!(diags.is_empty(), "{diags:?}");
        let config = c.config;
        assert_eq!(config.reconcile.max_agents, 2);
        assert_eq!(config.reconcile.backoff.factor, 3.0);
        assert_eq!(config.invariants["test"].timeout.as_secs(), 300);
        assert_eq!(config.merge.invariants, ["test"]);
        assert_eq!(config.harnesses["agent"].models[&Scope::Narrow], "small");
        assert!(config.harnesses.contains_key("sim"));
        assert_eq!(config.forge, Forge::Local);
        assert!(config.sandbox.enabled);
    }

    #[test]
    fn settings_not_implemented_yet_are_refused_where_they_are() {
        let text = r#"[reconcile]
interval = "30s"
[forge]
kind = "github"
repo = "acme/widgets"
[[schedule]]
cron = "0 9 * * MON"
queue = "weekly.md"
"#;
        let (c, diags) = compile_text(text);
        assert!(!c.valid);
        let found: Vec<(&str, usize, usize)> = diags
            .iter()
            .map(|d| {
                let l = d.location.as_ref().expect("located");
                (d.code.as_str(), l.line, l.column)
            })
            .collect();
        assert_eq!(
            found,
            [
                ("not-supported", 2, 1),
                ("not-supported", 4, 8),
                ("not-supported", 6, 1)
            ],
            "{diags:?}"
        );
        assert!(diags.iter().all(|d| {
            d.message.contains("not supported yet")
                && d.hint.as_deref().is_some_and(|h| h.starts_with("remove "))
        }));
        // The local forge, and no schedule or interval, are accepted.
        let (c, diags) = compile_text("[forge]\nkind = \"local\"\n");
        assert!(c.valid && diags.is_empty(), "{diags:?}");
        // Any other forge is unknown, and not suggested as `github`.
        let (c, diags) = compile_text("[forge]\nkind = \"gitlab\"\n");
        assert!(!c.valid);
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert_eq!(diags[0].code.as_str(), "invalid-value");
        assert!(
            diags[0]
                .message
                .contains("only forge converge has is `local`")
        );
        assert!(!diags[0].hint.as_deref().unwrap_or("").contains("github"));
    }

    #[test]
    fn reports_every_problem() {
        let text = r#"
[reconcile]
max_agnts = 2
actions_per_tick = 0
interval = "soon"
[invariants.Build]
kind = "typecheck"
command = "cargo"
[invariants.test]
kind = "tests"
[merge]
invariants = ["tset"]
[harness.x]
kind = "command"
[[schedule]]
cron = "0 9 * *"
queue = "weekly.md"
"#;
        let (c, diags) = compile_text(text);
        assert!(!c.valid);
        let codes: Vec<_> = diags.iter().map(|d| d.code.as_str()).collect();
        for expected in [
            "unknown-key",
            "invalid-value",
            "invalid-duration",
            "invalid-name",
            "missing-field",
            "unknown-invariant",
            "invalid-cron",
        ] {
            assert!(
                codes.contains(&expected),
                "{expected} missing from {codes:?}"
            );
        }
    }

    #[test]
    fn prices_are_read_and_bad_ones_are_located() {
        let (c, diags) = compile_text(
            "[prices]\n\"gpt-5-codex\" = { input = 1.25, output = 10 }\n\"fake/m\" = { input = 0, output = 0 }\n",
        );
        assert!(c.valid && diags.is_empty(), "{diags:?}");
        assert_eq!(c.config.prices["gpt-5-codex"], ModelPrice::new(1.25, 10.0));
        assert_eq!(c.config.prices["fake/m"], ModelPrice::new(0.0, 0.0));
        let (c, diags) = compile_text(
            "[prices]\n\"a\" = { input = -1, output = 2 }\n\"b\" = { input = 1 }\n\"c\" = 3\n\"d\" = { input = 1, output = 1, cached = 0 }\n",
        );
        assert!(!c.valid);
        let found: Vec<(&str, usize)> = diags
            .iter()
            .map(|d| (d.code.as_str(), d.location.as_ref().map_or(0, |l| l.line)))
            .collect();
        assert_eq!(
            found,
            [
                ("invalid-value", 2),
                ("missing-field", 3),
                ("wrong-type", 4),
                ("unknown-key", 5)
            ],
            "{diags:?}"
        );
        // Only the complete price is kept (the unknown key is reported).
        assert_eq!(c.config.prices.keys().collect::<Vec<_>>(), ["d"]);
    }

    #[test]
    fn committer_is_name_and_email() {
        let (c, diags) = compile_text("[reconcile]\ncommitter = \" Tidy Bot <bot@example.com>\"\n");
        assert!(diags.is_empty(), "{diags:?}");
        let identity = c.config.reconcile.committer.expect("set");
        assert_eq!(
            (identity.name.as_str(), identity.email.as_str()),
            ("Tidy Bot", "bot@example.com")
        );
        for bad in [
            "Tidy Bot",
            "<bot@example.com>",
            "Bot <>",
            "Bot <a> b",
            "Bot <a<b>",
        ] {
            let (c, diags) = compile_text(&format!("[reconcile]\ncommitter = \"{bad}\"\n"));
            assert!(!c.valid, "{bad}");
            assert_eq!(diags.len(), 1, "{bad}: {diags:?}");
            assert!(
                diags[0].message.contains("not `Name <email>`"),
                "{bad}: {diags:?}"
            );
        }
    }

    #[test]
    fn configured_committer_wins_over_the_environment_which_wins_over_the_default() {
        use crate::git::Signer;
        let env = |name: &str| match name {
            "GIT_COMMITTER_NAME" => Some("CI".to_owned()),
            _ => None,
        };
        let none = |_: &str| None;
        let converge = |name: &str, email: &str| Signer::Converge {
            name: name.into(),
            email: email.into(),
        };
        let mut reconcile = Reconcile::default();
        assert_eq!(
            reconcile.signer(&none),
            converge("converge", "converge@localhost")
        );
        assert_eq!(reconcile.signer(&env), converge("CI", "converge@localhost"));
        reconcile.committer = Some(Identity {
            name: "Bot".into(),
            email: "bot@example.com".into(),
        });
        assert_eq!(reconcile.signer(&env), converge("Bot", "bot@example.com"));
    }

    #[test]
    fn worktree_root_outside_planning_and_the_git_dir() {
        for ok in [
            "wt",
            "build/wt",
            "../sibling",
            "/abs/wt",
            "./.converge/trees",
            "planning-wt",
        ] {
            assert_eq!(check_worktree_root(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            ".",
            "a/..",
            "planning",
            "./planning/wt",
            "x/../planning/wt",
            ".git/wt",
        ] {
            assert!(check_worktree_root(bad).is_err(), "{bad}");
        }
        let (c, diags) = compile_text("[reconcile]\nworktree_root = \"planning/wt\"\n");
        assert!(!c.valid);
        assert_eq!(c.config.reconcile.worktree_root, None);
        assert!(diags[0].message.contains("inside planning/"), "{diags:?}");
    }

    #[test]
    fn keep_attempts_is_at_least_one() {
        assert_eq!(default_config().reconcile.keep_attempts, 5);
        let (c, _) = compile_text("[reconcile]\nkeep_attempts = 2\n");
        assert_eq!(c.config.reconcile.keep_attempts, 2);
        let (c, diags) = compile_text("[reconcile]\nkeep_attempts = 0\n");
        assert!(!c.valid);
        assert!(diags[0].message.contains("`keep_attempts`"), "{diags:?}");
        assert_eq!(
            diags[0].location.as_ref().map(|l| l.line),
            Some(2),
            "{diags:?}"
        );
    }

    #[test]
    fn branch_names() {
        assert!(check_branch_name("main").is_ok());
        assert!(check_branch_name("release/1.0").is_ok());
        for bad in [
            "",
            "-x",
            "a..b",
            "a b",
            "x.lock",
            "refs/heads/main",
            "a~1",
            ".hidden",
        ] {
            assert!(check_branch_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cron_needs_five_fields() {
        assert!(validate_cron("0 9 * * MON").is_ok());
        assert!(validate_cron("*/5 * * * *").is_ok());
        assert!(validate_cron("0 0 9 * * MON").is_err());
        assert!(validate_cron("61 * * * *").is_err());
    }

    #[test]
    fn gator_invariant_fields_are_read_or_reported() {
        let (c, diags) = compile_text(
            "[invariants.rust_build]\ndescription = \"Build the workspace\"\nkind = \"typecheck\"\ncommand = \"cargo\"\ntimeout = 300\nthreshold = 80.0\nscope = \"project\"\n",
        );
        assert!(c.valid, "{diags:?}");
        let inv = &c.config.invariants["rust_build"];
        assert_eq!(inv.timeout.as_secs(), 300);
        assert_eq!(
            c.config.invariant_descriptions["rust_build"],
            "Build the workspace"
        );
        let found: Vec<(&str, usize, Severity)> = diags
            .iter()
            .map(|d| {
                (
                    d.code.as_str(),
                    d.location.as_ref().map_or(0, |l| l.line),
                    d.severity,
                )
            })
            .collect();
        assert_eq!(
            found,
            [
                ("gator-compat", 6, Severity::Warning),
                ("gator-compat", 7, Severity::Warning)
            ]
        );
        assert!(diags[0].message.contains("does not use `threshold`"));
        // Wrong values are still errors.
        let (c, diags) = compile_text(
            "[invariants.a]\nkind = \"lint\"\ncommand = \"x\"\ntimeout = 0\nscope = \"planet\"\n",
        );
        assert!(!c.valid);
        let codes: Vec<_> = diags.iter().map(|d| d.code.as_str()).collect();
        assert_eq!(codes, ["invalid-value", "invalid-value"], "{diags:?}");
    }

    #[test]
    fn gator_harness_names_are_aliases_with_a_warning() {
        let (c, diags) = compile_text("[reconcile]\ndefault_harness = \"codex-cli\"\n");
        assert!(c.valid, "{diags:?}");
        assert_eq!(c.config.reconcile.default_harness, "codex");
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].code, Code::GatorCompat);
        assert_eq!(diags[0].hint.as_deref(), Some("write `\"codex\"`"));
        // A declared harness of that name is used as declared, without a warning.
        let (c, diags) = compile_text(
            "[reconcile]\ndefault_harness = \"open-code\"\n[harness.open-code]\nkind = \"command\"\ncommand = \"oc\"\n",
        );
        assert!(c.valid && diags.is_empty(), "{diags:?}");
        assert_eq!(c.config.reconcile.default_harness, "open-code");
    }
}
