//! `dmirror completions SHELL`: completion scripts generated from the clap
//! command (the committed copies under `completions/` come from here).

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell as CompleteShell;

use super::CommandResult;
use crate::cli::{Cli, CompletionsArgs, Shell};
use crate::exit::ExitStatus;

/// The completion script for `shell`.
pub fn generate(shell: Shell) -> Vec<u8> {
    let shell = match shell {
        Shell::Bash => CompleteShell::Bash,
        Shell::Zsh => CompleteShell::Zsh,
        Shell::Fish => CompleteShell::Fish,
    };
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "dmirror", &mut buf);
    buf
}

pub fn run(args: &CompletionsArgs) -> CommandResult {
    let mut out = std::io::stdout().lock();
    out.write_all(&generate(args.shell))?;
    out.flush()?;
    Ok(ExitStatus::Success)
}
