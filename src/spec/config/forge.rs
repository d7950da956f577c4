//! `[forge]`: where passed work goes. `local` (the default) merges into the
//! base branch here; `github` opens a pull request per task and merges it on
//! GitHub when the repository's rules allow (docs/github.md).

use std::time::Duration;

use super::super::diag::Code;
use super::super::model::{Forge, Github, MergeMethod, Reconcile};
use super::super::toml_walk::{Ctx, Table};
use super::to_u32;

const FORGE_KEYS: &[&str] = &[
    "kind",
    "repo",
    "api_url",
    "remote",
    "merge_method",
    "max_open_prs",
    "prs_per_hour",
    "labels",
    "checks_timeout",
    "dashboard",
    "dashboard_title",
];

/// The keys only the GitHub forge reads.
const GITHUB_ONLY: &[&str] = &[
    "repo",
    "api_url",
    "remote",
    "merge_method",
    "max_open_prs",
    "prs_per_hour",
    "labels",
    "checks_timeout",
    "dashboard",
    "dashboard_title",
];

pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// The dashboard issue's title unless `dashboard_title` says otherwise.
pub const DEFAULT_DASHBOARD_TITLE: &str = "converge dashboard";

/// GitHub's longest issue title.
const MAX_TITLE: usize = 256;

pub(super) fn read(
    ctx: &mut Ctx<'_>,
    root: &Table<'_, '_>,
    reconcile: &Reconcile,
) -> Option<Forge> {
    let t = root.table(ctx, "forge", "[forge]", FORGE_KEYS)?;
    let kind = t.enumeration(ctx, "kind", &["local", "github"]);
    let forge = match kind.as_ref().map(|k| *k.get_ref()) {
        Some("github") => github(ctx, &t, reconcile),
        Some(_) => {
            for key in GITHUB_ONLY {
                if let Some(span) = t.key_span(key) {
                    ctx.warning(
                        Code::UnknownKey,
                        span,
                        format!("`{key}` in [forge] is ignored by the local forge"),
                    )
                    .hint = Some("set `kind = \"github\"` to use it, or remove it".into());
                }
            }
            Some(Forge::Local)
        }
        None => {
            if t.get("kind").is_none() {
                ctx.error(
                    Code::MissingField,
                    t.span().start..t.span().start,
                    "[forge] is missing the required key `kind`",
                )
                .hint = Some(
                    "add `kind = \"github\"` (pull requests) or `kind = \"local\"` (merge here)"
                        .into(),
                );
            }
            None
        }
    };
    t.finish(ctx);
    forge
}

fn github(ctx: &mut Ctx<'_>, t: &Table<'_, '_>, reconcile: &Reconcile) -> Option<Forge> {
    let repo = t.required_string(ctx, "repo", "\"owner/name\"");
    let api_url = t.string(ctx, "api_url");
    let remote = t.string(ctx, "remote");
    let method = t.enumeration(ctx, "merge_method", &["merge", "squash", "rebase"]);
    let max_open = t.integer_in(ctx, "max_open_prs", 1, 1000);
    let per_hour = t.integer_in(ctx, "prs_per_hour", 1, 1000);
    let labels = t.string_array(ctx, "labels");
    let timeout = t.positive_duration(ctx, "checks_timeout", "30m");
    let dashboard = dashboard(ctx, t);
    let repo = repo?;
    let valid = repo
        .get_ref()
        .split_once('/')
        .is_some_and(|(owner, name)| valid_github_segment(owner) && valid_github_segment(name));
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
    if let Some(url) = &api_url {
        let u = url.get_ref();
        if !(u.starts_with("https://") || u.starts_with("http://"))
            || u.contains(char::is_whitespace)
        {
            ctx.error(
                Code::InvalidValue,
                url.span(),
                format!("`api_url` in [forge] is `{u}`, not an http(s) URL"),
            )
            .hint = Some(format!(
                "leave it out for GitHub.com ({DEFAULT_API_URL}); for GitHub Enterprise Server write `api_url = \"https://HOST/api/v3\"`"
            ));
            return None;
        }
    }
    // Merges happen on GitHub: every tick must fetch the base branch from
    // there, and push status where the next run (another CI job) finds it.
    let Some(reconcile_remote) = reconcile.remote.clone() else {
        ctx.error(
            Code::MissingField,
            t.key_span("kind").unwrap_or(t.span()),
            "the github forge needs `remote` in [reconcile]: pull requests merge on GitHub, so converge fetches the base branch from there on every tick",
        )
        .hint = Some(
            "add `remote = \"origin\"` to [reconcile] (and `status_branch = \"converge/status\"` when the base branch is protected)".into(),
        );
        return None;
    };
    let mut label_names = Vec::new();
    for label in labels.map(|l| l.into_inner()).unwrap_or_default() {
        let name = label.get_ref().trim();
        if name.is_empty() || name.len() > 50 || name.contains(',') {
            ctx.error(
                Code::InvalidValue,
                label.span(),
                format!(
                    "label `{}` in [forge] is not a GitHub label name",
                    label.get_ref()
                ),
            )
            .hint = Some("labels are 1 to 50 characters, without commas".into());
            continue;
        }
        label_names.push(name.to_owned());
    }
    if label_names.is_empty() {
        label_names.push("converge".to_owned());
    }
    let merge_method = match method.as_ref().map(|m| *m.get_ref()) {
        Some("squash") => MergeMethod::Squash,
        Some("rebase") => MergeMethod::Rebase,
        _ => MergeMethod::Merge,
    };
    Some(Forge::Github(Github {
        repo: repo.into_inner(),
        api_url: api_url.map_or_else(
            || DEFAULT_API_URL.to_owned(),
            |u| u.into_inner().trim_end_matches('/').to_owned(),
        ),
        remote: remote.map_or(reconcile_remote, |r| r.into_inner()),
        merge_method,
        max_open_prs: max_open.map_or(10, |n| to_u32(*n.get_ref())),
        prs_per_hour: per_hour.map_or(4, |n| to_u32(*n.get_ref())),
        labels: label_names,
        checks_timeout: timeout.unwrap_or(Duration::from_secs(30 * 60)),
        dashboard: dashboard?,
    }))
}

/// `dashboard` (default `true`) and `dashboard_title`: the dashboard issue's
/// title, `Some(None)` when it is off; `None` when the keys are wrong (an
/// error names them).
fn dashboard(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Option<Option<String>> {
    let on = t.boolean(ctx, "dashboard");
    let title = t.string(ctx, "dashboard_title");
    if t.get("dashboard").is_some() && on.is_none() {
        return None;
    }
    let on = on.is_none_or(|b| *b.get_ref());
    let Some(title) = title else {
        if t.get("dashboard_title").is_some() {
            return None;
        }
        return Some(on.then(|| DEFAULT_DASHBOARD_TITLE.to_owned()));
    };
    let text = title.get_ref().trim();
    if text.is_empty() || text.chars().count() > MAX_TITLE || text.contains(['\n', '\r']) {
        ctx.error(
            Code::InvalidValue,
            title.span(),
            format!(
                "`dashboard_title` in [forge] is `{}`, not an issue title",
                title.get_ref()
            ),
        )
        .hint = Some(format!(
            "write one line of 1 to {MAX_TITLE} characters, such as `dashboard_title = \"{DEFAULT_DASHBOARD_TITLE}\"`"
        ));
        return None;
    }
    if !on {
        ctx.warning(
            Code::UnknownKey,
            title.span(),
            "`dashboard_title` in [forge] is ignored: `dashboard = false` turns the dashboard issue off",
        )
        .hint = Some("remove one of the two".into());
    }
    Some(on.then(|| text.to_owned()))
}

fn valid_github_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s != "."
        && s != ".."
}
