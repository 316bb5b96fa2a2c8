//! `dmirror history`: each mirror's record over its recent probes.

use std::io::Write;

use anyhow::anyhow;

use super::{say, table_width, CommandResult, Failure};
use crate::cli::HistoryArgs;
use crate::exit::ExitStatus;
use crate::history;
use crate::output;

pub fn run(args: &HistoryArgs) -> CommandResult {
    let dir = history::default_dir()
        .ok_or_else(|| Failure::usage(anyhow!("no state directory: set XDG_STATE_HOME or HOME")))?;
    let registry = crate::config::validate_registry(&args.registry)
        .map_err(|e| Failure::usage(anyhow!("--registry: {e}")))?;
    let store = history::Store::new(history::registry_dir(dir, &registry));
    let summaries = store.load(&mut |w| say(w)).ranked_summaries();
    let mut out = std::io::stdout().lock();
    if args.json {
        output::history::write_json(&mut out, &store.path(), &summaries)?;
    } else {
        output::history::write_table(&mut out, &store.path(), &summaries, table_width())?;
    }
    out.flush()?;
    Ok(ExitStatus::Success)
}
