//! `converge enqueue NAME FILE`: commit a queue item on the base branch
//! (`intent::enqueue`: validated with the queue-item compiler, then one
//! commit by compare-and-swap from the tip read).

use std::io::Read;

use super::human::{short, snapshot};
use super::source::open_repo;
use super::{CliError, CliResult, Ctx, print};

#[derive(Debug, clap::Args)]
pub struct EnqueueArgs {
    /// The item's name: it becomes `planning/queue/NAME.md` and task `queue/NAME`.
    pub name: String,
    /// The item (YAML front matter and a markdown body); `-` reads standard input.
    pub file: String,
}

pub fn run(ctx: &Ctx, args: &EnqueueArgs) -> CliResult {
    let text = if args.file == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::failure("cannot read the item from standard input").source(e))?;
        text
    } else {
        std::fs::read_to_string(&args.file).map_err(|e| {
            CliError::bad_input(format!("cannot read {}", args.file))
                .hint("name a readable UTF-8 file, or `-` for standard input")
                .source(e)
        })?
    };
    let repo = open_repo(ctx)?;
    let report = snapshot(&repo)?;
    let done = crate::intent::enqueue(
        &repo,
        &super::base_of(&report),
        &args.name,
        &text,
        "by converge enqueue",
    )?;
    let mut out = String::new();
    for w in &done.warnings {
        out.push_str(&w.to_string());
    }
    out.push_str(&format!(
        "enqueued {} (committed as {} on {}); the next tick promotes it to queue/{}\n",
        done.path,
        short(&done.committed.to_string()),
        report.base_branch,
        args.name
    ));
    print(&out)
}
