//! `dmirror list`: the mirror list `probe` would use, merged and validated.

use std::io::Write;

use super::{load_mirrors, table_width, CommandResult};
use crate::cli::ListArgs;
use crate::exit::ExitStatus;
use crate::output;

pub fn run(args: &ListArgs) -> CommandResult {
    let list = load_mirrors(&args.source)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        output::json::write_list(&mut out, &list.mirrors)?;
    } else {
        output::table::write_list(&mut out, &list.mirrors, table_width())?;
    }
    out.flush()?;
    Ok(ExitStatus::Success)
}
