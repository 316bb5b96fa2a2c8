//! `dmirror history`: each mirror's record over its recent probes.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::anyhow;
use comfy_table::{presets, Cell, CellAlignment, ContentArrangement, Table};
use serde::Serialize;

use super::{say, table_width, CommandResult, Failure};
use crate::cli::HistoryArgs;
use crate::exit::ExitStatus;
use crate::history::{self, Summary};
use crate::output::format_throughput;

#[derive(Serialize)]
struct Doc<'a> {
    state_file: String,
    mirrors: Vec<Entry<'a>>,
}

#[derive(Serialize)]
struct Entry<'a> {
    name: &'a str,
    runs: usize,
    ok_runs: usize,
    last_status: &'a str,
    last_ok: Option<u64>,
    throughput_bps: Option<u64>,
    latency_ms: Option<u64>,
}

pub fn run(args: &HistoryArgs) -> CommandResult {
    let dir = history::default_dir()
        .ok_or_else(|| Failure::usage(anyhow!("no state directory: set XDG_STATE_HOME or HOME")))?;
    let registry = crate::config::validate_registry(&args.registry)
        .map_err(|e| Failure::usage(anyhow!("--registry: {e}")))?;
    let store = history::Store::new(history::registry_dir(dir, &registry));
    let mut summaries = store.load(&mut |w| say(w)).summaries();
    // Most reliable first, then fastest.
    summaries.sort_by(|a, b| {
        b.success_ratio()
            .total_cmp(&a.success_ratio())
            .then_with(|| {
                b.throughput_bps
                    .unwrap_or(0.0)
                    .total_cmp(&a.throughput_bps.unwrap_or(0.0))
            })
            .then_with(|| a.name.cmp(&b.name))
    });
    let mut out = std::io::stdout().lock();
    if args.json {
        let doc = Doc {
            state_file: store.path().display().to_string(),
            mirrors: summaries.iter().map(entry).collect(),
        };
        serde_json::to_writer_pretty(&mut out, &doc).map_err(std::io::Error::other)?;
        writeln!(out)?;
    } else if summaries.is_empty() {
        writeln!(
            out,
            "no probe recorded yet in {}; run dmirror probe",
            store.path().display()
        )?;
    } else {
        write_table(&mut out, &summaries)?;
        writeln!(out, "from {}", store.path().display())?;
    }
    out.flush()?;
    Ok(ExitStatus::Success)
}

fn entry(s: &Summary) -> Entry<'_> {
    Entry {
        name: &s.name,
        runs: s.runs,
        ok_runs: s.ok_runs,
        last_status: &s.last_status,
        last_ok: s.last_ok,
        throughput_bps: s.throughput_bps.map(|b| b.round() as u64),
        latency_ms: s.latency_ms.map(|l| l.round() as u64),
    }
}

fn write_table<W: Write>(out: &mut W, summaries: &[Summary]) -> std::io::Result<()> {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_BORDERS_ONLY);
    t.set_header(
        [
            "mirror",
            "ok / runs",
            "last status",
            "last ok",
            "throughput",
            "latency",
        ]
        .map(Cell::new),
    );
    match table_width() {
        Some(w) => {
            t.set_content_arrangement(ContentArrangement::Dynamic);
            t.set_width(w);
        }
        None => {
            t.set_content_arrangement(ContentArrangement::Disabled);
        }
    }
    let now = SystemTime::now();
    for s in summaries {
        let last_ok = match s.last_ok {
            Some(at) => {
                let ago = now
                    .duration_since(UNIX_EPOCH + Duration::from_secs(at))
                    .unwrap_or_default();
                // Whole minutes: seconds are noise here.
                let ago = Duration::from_secs(ago.as_secs() / 60 * 60);
                if ago.is_zero() {
                    "just now".to_owned()
                } else {
                    format!("{} ago", humantime::format_duration(ago))
                }
            }
            None => "never".to_owned(),
        };
        t.add_row(vec![
            Cell::new(&s.name),
            Cell::new(format!("{} / {}", s.ok_runs, s.runs)).set_alignment(CellAlignment::Right),
            Cell::new(&s.last_status),
            Cell::new(last_ok),
            Cell::new(format_throughput(s.throughput_bps)).set_alignment(CellAlignment::Right),
            Cell::new(
                s.latency_ms
                    .map(|l| format!("{l:.0} ms"))
                    .unwrap_or_else(|| "-".into()),
            )
            .set_alignment(CellAlignment::Right),
        ]);
    }
    writeln!(out, "{t}")
}
