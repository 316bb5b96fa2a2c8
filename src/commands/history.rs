//! `dmirror history`: each mirror's record over its recent probes.

use std::io::Write;

use anyhow::anyhow;

use super::{say, table_width, CommandResult, Failure};
use crate::cli::{Format, HistoryArgs};
use crate::exit::ExitStatus;
use crate::history;
use crate::output;

pub fn run(args: &HistoryArgs) -> CommandResult {
    let dir = history::default_dir()
        .ok_or_else(|| Failure::usage(anyhow!("no state directory: set XDG_STATE_HOME or HOME")))?;
    let registry = crate::config::validate_registry(&args.registry)
        .map_err(|e| Failure::usage(anyhow!("--registry: {e}")))?;
    let store = history::Store::new(history::registry_dir(dir, &registry));
    let mut summaries = store.load(&mut |w| say(w)).ranked_summaries();
    if !args.source.mirrors.is_empty() {
        let list = super::load_mirrors(&args.source)?;
        summaries.retain(|s| list.mirrors.iter().any(|m| m.name == s.name));
    }
    let mut out = std::io::stdout().lock();
    match args.out.format() {
        Format::Json => output::history::write_json(&mut out, &store.path(), &summaries)?,
        Format::Table => {
            output::history::write_table(&mut out, &store.path(), &summaries, table_width())?
        }
        Format::Plain => output::history::write_plain(&mut out, &summaries)?,
        Format::Prometheus => {
            return Err(Failure::usage(anyhow!(
                "--format prometheus is for probe and apply (their metrics carry the history); history prints table, plain or json"
            )))
        }
    }
    out.flush()?;
    Ok(ExitStatus::Success)
}
