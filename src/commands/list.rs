//! `dmirror list`: the mirror list `probe` would use, merged and validated.

use std::io::Write;

use super::{load_mirrors, table_width, CommandResult, Failure};
use crate::cli::Format;
use crate::cli::ListArgs;
use crate::exit::ExitStatus;
use crate::output;

pub fn run(args: &ListArgs) -> CommandResult {
    let list = load_mirrors(&args.source)?;
    let mut out = std::io::stdout().lock();
    match args.out.format() {
        Format::Json => output::json::write_list(&mut out, &list.mirrors)?,
        Format::Table => output::table::write_list(&mut out, &list.mirrors, table_width())?,
        Format::Plain => output::plain::write_list(&mut out, &list.mirrors)?,
        Format::Prometheus => {
            return Err(Failure::usage(anyhow::anyhow!(
                "--format prometheus is for probe and apply; list prints table, plain or json"
            )))
        }
    }
    out.flush()?;
    Ok(ExitStatus::Success)
}
