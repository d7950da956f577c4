use std::process::ExitCode;

use clap::Parser;

use converge::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli::run(cli) {
        Ok(()) => ExitCode::from(cli::exit::OK),
        Err(error) => {
            if !error.reported {
                eprint!("{error}");
            }
            ExitCode::from(error.kind.exit_code())
        }
    }
}
