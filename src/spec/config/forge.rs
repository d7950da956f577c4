//! `[forge]`: where merged work goes (only `local` runs today).

use super::super::diag::Code;
use super::super::model::Forge;
use super::super::toml_walk::{Ctx, Table};
use super::not_supported;

const FORGE_KEYS: &[&str] = &["kind", "repo"];

pub(super) fn read(ctx: &mut Ctx<'_>, root: &Table<'_, '_>) -> Option<Forge> {
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

fn valid_github_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s != "."
        && s != ".."
}
