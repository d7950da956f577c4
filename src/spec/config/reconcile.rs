//! `[reconcile]`: branches, limits, timing, identity and where worktrees live.

use super::super::diag::Code;
use super::super::model::{Backoff, Identity, Reconcile};
use super::super::toml_walk::{Ctx, Table};
use super::to_u32;

const RECONCILE_KEYS: &[&str] = &[
    "base_branch",
    "status_branch",
    "remote",
    "actions_per_tick",
    "interval",
    "max_agents",
    "dispatches_per_hour",
    "task_timeout",
    "claim_grace",
    "backoff",
    "default_harness",
    "committer",
    "worktree_root",
    "keep_attempts",
];
const BACKOFF_KEYS: &[&str] = &["base", "factor", "max"];

pub(super) fn read(ctx: &mut Ctx<'_>, root: &Table<'_, '_>, out: &mut Reconcile) {
    let Some(t) = root.table(ctx, "reconcile", "[reconcile]", RECONCILE_KEYS) else {
        return;
    };
    read_branches(ctx, &t, out);
    read_remote(ctx, &t, out);
    read_limits(ctx, &t, out);
    read_timing(ctx, &t, out);
    if let Some(h) = t.string(ctx, "default_harness") {
        out.default_harness = h.into_inner();
    }
    read_committer(ctx, &t, out);
    read_worktree_root(ctx, &t, out);
    t.finish(ctx);
}

/// `base_branch` and `status_branch`; a status branch that was not given
/// follows the base branch.
fn read_branches(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, out: &mut Reconcile) {
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
    if t.get("status_branch").is_none() {
        out.status_branch = out.base_branch.clone();
    }
}

fn read_remote(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, out: &mut Reconcile) {
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
}

/// The counted limits: actions per tick, agents, kept attempts, dispatches.
fn read_limits(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, out: &mut Reconcile) {
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
}

/// The shortest resync interval of `converge watch`: a shorter one would keep
/// the daemon busy without reacting any faster (file events trigger ticks).
const MIN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// `interval` (the resync interval of `converge watch`), `task_timeout`,
/// `claim_grace` and `backoff`.
fn read_timing(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, out: &mut Reconcile) {
    if let Some(d) = t.duration(ctx, "interval") {
        if *d.get_ref() < MIN_INTERVAL {
            ctx.error(
                Code::InvalidValue,
                d.span(),
                "`interval` in [reconcile] must be at least 1s",
            )
            .hint = Some(
                "for example `interval = \"5m\"`: file events already trigger ticks; the interval only resyncs"
                    .into(),
            );
        } else {
            out.interval = d.into_inner();
        }
    }
    if let Some(d) = t.positive_duration(ctx, "task_timeout", "30m") {
        out.task_timeout = d;
    }
    if let Some(d) = t.positive_duration(ctx, "claim_grace", "10m") {
        out.claim_grace = d;
    }
    if let Some(b) = t.table(ctx, "backoff", "[reconcile].backoff", BACKOFF_KEYS) {
        out.backoff = backoff(ctx, &b);
        b.finish(ctx);
    }
}

fn read_committer(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, out: &mut Reconcile) {
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
}

fn read_worktree_root(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, out: &mut Reconcile) {
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
}

/// Refuses a worktree root written relative to the checkout that is the
/// checkout itself or lies inside its `planning/` or `.git/` (absolute roots
/// are checked against the repository when the tick resolves them).
pub(super) fn check_worktree_root(text: &str) -> Result<(), String> {
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
fn parse_identity(text: &str) -> Result<Identity, String> {
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

fn backoff(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Backoff {
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
                super::super::duration::format(backoff.max),
                super::super::duration::format(backoff.base)
            ),
        )
        .hint = Some("make `max` at least as long as `base`".into());
    }
    backoff
}

/// The rules of `git check-ref-format --branch` that matter for names people type.
pub(crate) fn check_branch_name(name: &str) -> Result<(), String> {
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
