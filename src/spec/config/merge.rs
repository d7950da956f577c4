//! `[merge]`: the invariants run on a merge result before the base branch
//! moves, and whether agents may change `.gitattributes` and `.gitmodules`.

use std::collections::BTreeMap;

use super::super::model::{Invariant, Merge};
use super::super::toml_walk::{Ctx, Table};
use super::invariants::unknown_invariant;

const MERGE_KEYS: &[&str] = &["invariants", "protect_git_files"];

pub(super) fn read(
    ctx: &mut Ctx<'_>,
    root: &Table<'_, '_>,
    invariants: &BTreeMap<String, Invariant>,
    github: bool,
) -> Merge {
    let Some(t) = root.table(ctx, "merge", "[merge]", MERGE_KEYS) else {
        return Merge::default();
    };
    let mut merge = Merge::default();
    if let Some(list) = t.string_array(ctx, "invariants") {
        if github && !list.get_ref().is_empty() {
            // GitHub merges on GitHub: there is no local merge result to run
            // them on before the base moves.
            super::not_supported(
                ctx,
                list.span(),
                "`[merge] invariants` run on converge's own merge result, and with `[forge] kind = \"github\"` GitHub makes the merge",
                "make them required status checks of the base branch on GitHub (a workflow that runs them on pull requests), and remove `invariants` here; task invariants still run at converge's gate",
            );
            return Merge::default();
        }
        for name in list.into_inner() {
            if invariants.contains_key(name.get_ref()) {
                merge.invariants.push(name.into_inner());
            } else if super::super::names::check(name.get_ref()).is_err()
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
    if let Some(protect) = t.boolean(ctx, "protect_git_files") {
        merge.protect_git_files = protect.into_inner();
    }
    t.finish(ctx);
    merge
}
