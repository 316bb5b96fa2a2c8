//! dmirror: measure Docker registry mirrors, rank the working ones, and use them.
//!
//! `run` is the whole program behind a thin `main`: parse → resolve → run,
//! with one place that turns failures into messages and exit statuses.

#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod apply;
pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod exit;
pub mod files;
pub mod history;
pub mod net;
pub mod output;
pub mod probe;
pub mod pull;
pub mod rank;
pub mod ranked;
pub mod reference;
pub mod registry;
pub mod schedule;
pub mod serve;
pub mod text;

use std::io::Write;

use cli::{Cli, Command};
use commands::{CommandResult, Failure};
use exit::ExitStatus;

/// Run one invocation and say how it ended.
pub fn run(cli: Cli) -> ExitStatus {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            report(&Failure::usage(anyhow::anyhow!(
                "cannot start the async runtime: {e}"
            )));
            return ExitStatus::NothingUsable;
        }
    };
    // serve shuts down on its own signals, letting transfers finish.
    let serving = matches!(&cli.command, Command::Serve(a) if a.action.is_none());
    let outcome = runtime.block_on(async {
        if serving {
            return dispatch(&cli).await;
        }
        tokio::select! {
            r = dispatch(&cli) => r,
            _ = tokio::signal::ctrl_c() => Ok(ExitStatus::Interrupted),
        }
    });
    if matches!(outcome, Ok(ExitStatus::Interrupted)) {
        // Ctrl-C: clear the progress bars still drawn, before their tasks go.
        output::progress::clear_all();
    }
    // Do not wait for stragglers (a mirror that never answers) on the way out.
    runtime.shutdown_background();
    match outcome {
        Ok(status) => status,
        Err(f) if is_broken_pipe(&f.error) => ExitStatus::Success,
        Err(f) => {
            report(&f);
            f.status
        }
    }
}

async fn dispatch(cli: &Cli) -> CommandResult {
    match &cli.command {
        Command::Probe(args) => commands::probe::run(args).await,
        Command::Apply(args) => commands::apply::run(args).await,
        Command::Pull(args) => commands::pull::run(args).await,
        Command::List(args) => commands::list::run(args),
        Command::History(args) => commands::history::run(args),
        Command::Schedule(c) => commands::schedule::run(c),
        Command::Serve(args) => commands::serve::run(args).await,
        Command::Cache(c) => commands::cache::run(c),
        Command::Completions(args) => commands::completions::run(args),
        Command::Man => commands::completions::man(),
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `error: …` then one `Caused by: …` per cause.
fn report(f: &Failure) {
    let mut err = std::io::stderr().lock();
    let shown = |e: &dyn std::fmt::Display| text::clean(&e.to_string(), 4000);
    let _ = writeln!(err, "error: {}", shown(&f.error));
    for cause in f.error.chain().skip(1) {
        let _ = writeln!(err, "  Caused by: {}", shown(&cause));
    }
}
