//! One module per subcommand: each resolves its clap arguments into the
//! settings the engine sees, runs it, and renders the outcome.

pub mod apply;
pub mod apply_runtime;
pub mod completions;
pub mod history;
pub mod list;
pub mod probe;
pub mod pull;
pub mod schedule;

use crate::exit::ExitStatus;

/// A command's failure: what to say, and the exit status it maps to.
#[derive(Debug)]
pub struct Failure {
    pub status: ExitStatus,
    pub error: anyhow::Error,
}

impl Failure {
    /// Bad flags, files or references: exit 2.
    pub fn usage(error: impl Into<anyhow::Error>) -> Self {
        Self::new(ExitStatus::Usage, error)
    }

    pub fn new(status: ExitStatus, error: impl Into<anyhow::Error>) -> Self {
        Self {
            status,
            error: error.into(),
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Self {
            status: ExitStatus::NothingUsable,
            error: e.into(),
        }
    }
}

pub type CommandResult = Result<ExitStatus, Failure>;

/// The mirror list from `--mirrors` files, or built-in plus the user's file.
pub fn load_mirrors(
    source: &crate::cli::MirrorSource,
) -> Result<crate::config::MirrorList, Failure> {
    let user = crate::config::MirrorList::user_file();
    crate::config::MirrorList::load(&source.mirrors, user.as_deref()).map_err(Failure::usage)
}

/// Terminal width for tables when stdout is a terminal.
pub fn table_width() -> Option<u16> {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() {
        comfy_table::Table::new().width()
    } else {
        None
    }
}

/// A line for the person at the terminal (or journald): stderr, never stdout,
/// so JSON on stdout stays clean.
pub fn say(line: impl std::fmt::Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
