//! The `dmirror` binary: parse the command line, run it, turn the outcome
//! into an exit status. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = dmirror::cli::Cli::parse();
    let status = dmirror::run(cli);
    ExitCode::from(status as u8)
}
