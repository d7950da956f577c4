use std::process::ExitCode;

use clap::Parser;

use converge::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.wants_json();
    match cli::run(cli) {
        Ok(()) => ExitCode::from(cli::exit::OK),
        Err(error) => {
            // Asked for JSON, a script reads stdout: the error comes as JSON there.
            if !error.reported && json {
                println!("{}", error.to_json());
            } else if !error.reported {
                eprint!("{error}");
            }
            ExitCode::from(error.kind.exit_code())
        }
    }
}
