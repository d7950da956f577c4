//! `[tasks.sim]`: the script of the built-in simulated agent.

use toml::Spanned;

use super::super::diag::Code;
use super::super::model::{Sim, SimEdit, SimFile};
use super::super::toml_walk::{Ctx, Table};

pub(super) const SIM_KEYS: &[&str] = &[
    "files",
    "message",
    "fail_attempts",
    "sleep",
    "exit_code",
    "done",
    "commit",
];
const SIM_FILE_KEYS: &[&str] = &["path", "content", "append", "delete", "on_fail"];

/// `[tasks.sim]`: what the built-in simulated agent does.
pub(super) fn read_sim(ctx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Sim {
    let mut files = Vec::new();
    for (span, table) in t.array_of_tables(ctx, "files").unwrap_or_default() {
        let f = Table::new(table, span, format!("a file of {}", t.what), SIM_FILE_KEYS);
        if let Some(file) = read_sim_file(ctx, &f) {
            files.push(file);
        }
        f.finish(ctx);
    }
    let count = |ctx: &mut Ctx<'_>, key: &str| {
        t.integer_in(ctx, key, 0, i64::from(u32::MAX))
            .map_or(0, |n| u32::try_from(*n.get_ref()).unwrap_or(0))
    };
    let fail_attempts = count(ctx, "fail_attempts");
    let exit_code = t
        .integer_in(ctx, "exit_code", 0, 255)
        .map_or(0, |n| i32::try_from(*n.get_ref()).unwrap_or(0));
    let sim = Sim {
        files,
        message: t.string(ctx, "message").map(Spanned::into_inner),
        fail_attempts,
        sleep: t
            .duration(ctx, "sleep")
            .map(Spanned::into_inner)
            .unwrap_or_default(),
        exit_code,
        done: t.boolean(ctx, "done").is_none_or(|b| *b.get_ref()),
        commit: t.boolean(ctx, "commit").is_none_or(|b| *b.get_ref()),
    };
    t.finish(ctx);
    sim
}

fn read_sim_file(ctx: &mut Ctx<'_>, f: &Table<'_, '_>) -> Option<SimFile> {
    let path = f.required_string(ctx, "path", "\"src/lib.rs\"")?;
    let p = path.get_ref();
    let escapes = p.is_empty()
        || p.starts_with('/')
        || p.contains('\\')
        || p.chars().any(char::is_control)
        || p.split('/').any(|s| s == ".." || s == ".git");
    if escapes {
        ctx.error(
            Code::PathEscapes,
            path.span(),
            format!("`{p}` in {} must be a path inside the worktree", f.what),
        )
        .hint = Some("write a path relative to the repository root, like `src/lib.rs`".into());
        return None;
    }
    let content = f.string(ctx, "content");
    let append = f.string(ctx, "append");
    let delete = f.boolean(ctx, "delete").is_some_and(|b| *b.get_ref());
    let edit = match (content, append, delete) {
        (Some(c), None, false) => SimEdit::Content(c.into_inner()),
        (None, Some(a), false) => SimEdit::Append(a.into_inner()),
        (None, None, true) => SimEdit::Delete,
        _ => {
            ctx.error(
                Code::InvalidValue,
                path.span(),
                format!(
                    "`{p}` in {} needs exactly one of `content`, `append` or `delete = true`",
                    f.what
                ),
            )
            .hint = Some("for example `{ path = \"notes.md\", append = \"a line\\n\" }`".into());
            return None;
        }
    };
    Some(SimFile {
        path: path.into_inner(),
        edit,
        on_fail: f.string(ctx, "on_fail").map(Spanned::into_inner),
    })
}
