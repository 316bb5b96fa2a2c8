//! `dmirror completions SHELL` and `dmirror man`: completion scripts and the
//! man page, generated from the clap command (the committed copies under
//! `completions/` and `man/` come from here).

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

/// The man page, as roff.
pub fn man_page() -> Vec<u8> {
    let mut buf = Vec::new();
    // Rendering into a Vec cannot fail.
    let _ = clap_mangen::Man::new(Cli::command()).render(&mut buf);
    buf
}

pub fn man() -> CommandResult {
    let mut out = std::io::stdout().lock();
    out.write_all(&man_page())?;
    out.flush()?;
    Ok(ExitStatus::Success)
}
