//! One module per subcommand, kept thin: each resolves its clap arguments
//! into the settings its engine sees, runs the engine, and hands the report
//! to `output`. Only here do clap types, stdout and exit statuses meet.

pub mod apply;
pub mod cache;
pub mod completions;
pub mod history;
pub mod list;
pub mod probe;
pub mod pull;
pub mod schedule;
pub mod serve;

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

/// The route and trust of this run: `--proxy` (the engine's own proxy by
/// default, asked through its API) and `--certs-dir` (Docker's certs.d).
pub async fn network(args: &crate::cli::NetArgs) -> Result<crate::net::Network, Failure> {
    use crate::daemon::proxy;
    use crate::net::{Network, Route, Trust};
    let route =
        match Route::parse_flag(&args.proxy).map_err(|e| Failure::usage(anyhow::anyhow!(e)))? {
            Some(r) => r,
            None => {
                let located = crate::daemon::locate::locate()
                    .map_err(|e| Failure::usage(anyhow::anyhow!(e)))?;
                let engine = crate::daemon::engine::Engine::new(
                    located.endpoint.clone(),
                    std::time::Duration::from_secs(3),
                );
                proxy::engine_route(&located, &engine)
                    .await
                    .map_err(|e| Failure::usage(anyhow::anyhow!(e)))?
            }
        };
    let trust = match &args.certs_dir {
        Some(d) if d.exists() && !d.is_dir() => {
            return Err(Failure::usage(anyhow::anyhow!(
                "--certs-dir {}: not a directory; give Docker's certs.d (DIR/<host[:port]>/*.crt)",
                d.display()
            )))
        }
        Some(d) => Trust {
            dirs: vec![d.clone()],
        },
        None => Trust::docker_default(),
    };
    Ok(Network {
        route,
        trust,
        logins: crate::net::login::Logins::docker_default(),
    })
}

/// `--platform`, or this machine's.
pub fn parse_platform(s: Option<&str>) -> Result<crate::registry::manifest::Platform, Failure> {
    match s {
        Some(p) => p
            .parse()
            .map_err(|e| Failure::usage(anyhow::anyhow!("--platform: {e}"))),
        None => Ok(crate::registry::manifest::Platform::host()),
    }
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

/// Print a report as `args` asks (table, plain or json), refusing
/// prometheus: that is for probe and apply. `what` names the command.
pub fn print(
    args: &crate::cli::FormatArgs,
    what: &str,
    write: impl FnOnce(&mut std::io::StdoutLock<'static>, crate::cli::Format) -> std::io::Result<()>,
) -> CommandResult {
    use std::io::Write;
    let format = args.format();
    if format == crate::cli::Format::Prometheus {
        return Err(Failure::usage(anyhow::anyhow!(
            "--format prometheus is for probe and apply; {what} prints table, plain or json"
        )));
    }
    let mut out = std::io::stdout().lock();
    write(&mut out, format)?;
    out.flush()?;
    Ok(ExitStatus::Success)
}
