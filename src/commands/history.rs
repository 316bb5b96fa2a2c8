//! `dmirror history`: each mirror's record over its recent probes.

use anyhow::anyhow;

use super::{print, say, table_width, CommandResult, Failure};
use crate::cli::{Format, HistoryArgs};
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
    print(&args.out, "history", |out, format| match format {
        Format::Json => output::history::write_json(out, &store.path(), &summaries),
        Format::Plain => output::history::write_plain(out, &summaries),
        _ => output::history::write_table(out, &store.path(), &summaries, table_width()),
    })
}
