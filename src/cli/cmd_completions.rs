//! `converge completions SHELL`: a completion script on stdout.

use clap::CommandFactory;

use super::{Cli, CliResult, print};

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    pub shell: clap_complete::Shell,
}

pub fn run(args: &CompletionsArgs) -> CliResult {
    let mut command = Cli::command();
    let mut buffer = Vec::new();
    clap_complete::generate(args.shell, &mut command, "converge", &mut buffer);
    print(&String::from_utf8_lossy(&buffer))
}
