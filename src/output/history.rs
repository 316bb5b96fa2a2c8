//! `dmirror history`: each mirror's record, as a table or JSON.

use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use comfy_table::{Cell, CellAlignment};
use serde::Serialize;

use super::{format_throughput, table};
use crate::history::Summary;

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

pub fn write_json<W: Write>(out: &mut W, file: &Path, summaries: &[Summary]) -> io::Result<()> {
    let doc = Doc {
        state_file: file.display().to_string(),
        mirrors: summaries.iter().map(entry).collect(),
    };
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}

pub fn write_table<W: Write>(
    out: &mut W,
    file: &Path,
    summaries: &[Summary],
    width: Option<u16>,
) -> io::Result<()> {
    if summaries.is_empty() {
        return writeln!(
            out,
            "no probe recorded yet in {}; run dmirror probe",
            file.display()
        );
    }
    let mut t = table::new_table(
        &[
            "mirror",
            "ok / runs",
            "last status",
            "last ok",
            "throughput",
            "latency",
        ],
        width,
    );
    for s in summaries {
        let last_ok = match s.last_ok {
            Some(at) => super::ago(UNIX_EPOCH + Duration::from_secs(at)),
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
    writeln!(out, "{t}")?;
    writeln!(out, "from {}", file.display())
}

/// One `key=value` line per mirror, for logs and scripts.
pub fn write_plain<W: Write>(out: &mut W, summaries: &[Summary]) -> io::Result<()> {
    for s in summaries {
        let e = entry(s);
        write!(
            out,
            "mirror={} runs={} ok_runs={} last_status={}",
            super::plain::value(e.name),
            e.runs,
            e.ok_runs,
            super::plain::value(e.last_status)
        )?;
        if let Some(t) = e.last_ok {
            write!(out, " last_ok={t}")?;
        }
        if let Some(b) = e.throughput_bps {
            write!(out, " throughput_bps={b}")?;
        }
        if let Some(l) = e.latency_ms {
            write!(out, " latency_ms={l}")?;
        }
        writeln!(out)?;
    }
    Ok(())
}
