//! `[sandbox]`: whether agents run under Landlock and which variables they see.

use super::super::diag::Code;
use super::super::model::Sandbox;
use super::super::toml_walk::{Ctx, Table};

const SANDBOX_KEYS: &[&str] = &["enabled", "required", "env_allow"];

pub(super) fn read(ctx: &mut Ctx<'_>, root: &Table<'_, '_>) -> Option<Sandbox> {
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
