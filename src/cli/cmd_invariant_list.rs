//! `converge invariant list`: the invariants of converge.toml and who uses them.

use super::source::{self, Default};
use super::table::{self, list};
use super::{CliResult, Ctx, print};
use crate::spec::duration;

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub source: source::SourceArgs,
}

pub fn run(ctx: &Ctx, args: &ListArgs) -> CliResult {
    let loaded = source::load(ctx, &args.source, Default::Base)?;
    let (spec, loaded) = source::require_spec(loaded)?;
    let mut out = format!("# {}\n\n", loaded.origin);
    if spec.config.invariants.is_empty() {
        out.push_str("no invariants: add one with `converge invariant add NAME --kind KIND --command PROGRAM`\n");
        return print(&out);
    }
    let descriptions = &spec.config.invariant_descriptions;
    let rows: Vec<Vec<String>> = spec
        .config
        .invariants
        .values()
        .map(|inv| {
            let mut users: Vec<String> = spec
                .plans
                .values()
                .flat_map(|p| {
                    p.tasks
                        .iter()
                        .filter(|t| t.invariants.contains(&inv.name))
                        .map(move |t| format!("{}/{}", p.id, t.name))
                })
                .collect();
            let task_count = users.len();
            if task_count > 3 {
                users.truncate(3);
                users.push(format!("+{} more", task_count - 3));
            }
            if spec.config.merge.invariants.contains(&inv.name) {
                users.insert(0, "[merge]".into());
            }
            let command = std::iter::once(inv.command.as_str())
                .chain(inv.args.iter().map(String::as_str))
                .map(shell_word)
                .collect::<Vec<_>>()
                .join(" ");
            let mut kind = inv.kind.as_str().to_owned();
            if inv.advisory {
                kind.push_str(" (advisory)");
            }
            let mut row = vec![
                inv.name.clone(),
                kind,
                command,
                duration::format(inv.timeout),
                list(&users),
            ];
            if !descriptions.is_empty() {
                let text = descriptions.get(&inv.name).map_or("-", String::as_str);
                row.push(text.lines().next().unwrap_or("-").to_owned());
            }
            row
        })
        .collect();
    let mut header = vec!["INVARIANT", "KIND", "COMMAND", "TIMEOUT", "USED BY"];
    if !descriptions.is_empty() {
        header.push("DESCRIPTION");
    }
    out.push_str(&table::render(&header, &rows));
    print(&out)
}

/// Quotes an argument for display when a shell would split or expand it.
pub fn shell_word(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c))
    {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}
