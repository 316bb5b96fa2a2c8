//! `dmirror list`: the mirror list `probe` would use, merged and validated.

use super::{load_mirrors, print, table_width, CommandResult};
use crate::cli::{Format, ListArgs};
use crate::output;

pub fn run(args: &ListArgs) -> CommandResult {
    let list = load_mirrors(&args.source)?;
    print(&args.out, "list", |out, format| match format {
        Format::Json => output::json::write_list(out, &list.mirrors),
        Format::Plain => output::plain::write_list(out, &list.mirrors),
        _ => output::table::write_list(out, &list.mirrors, table_width()),
    })
}
