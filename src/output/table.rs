//! Tables for terminals.

use std::io::{self, Write};

use comfy_table::{presets, Cell, CellAlignment, ContentArrangement, Table};

use super::{format_latency, format_throughput};
use crate::config::Mirror;
use crate::probe::MirrorResult;

pub(super) fn new_table(header: &[&str], width: Option<u16>) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_BORDERS_ONLY);
    t.set_header(header.iter().map(Cell::new));
    match width {
        Some(w) => {
            t.set_content_arrangement(ContentArrangement::Dynamic);
            t.set_width(w);
        }
        None => {
            t.set_content_arrangement(ContentArrangement::Disabled);
        }
    }
    t
}

/// Ranked probe results. `width` wraps notes to a terminal's width.
pub fn write_probe<W: Write>(
    out: &mut W,
    results: &[MirrorResult],
    width: Option<u16>,
) -> io::Result<()> {
    let mut t = new_table(
        &["#", "mirror", "status", "latency", "throughput", "note"],
        width,
    );
    for (i, r) in results.iter().enumerate() {
        let note = r
            .error
            .clone()
            .or_else(|| r.mirror.notes.clone())
            .unwrap_or_default();
        t.add_row(vec![
            Cell::new(i + 1).set_alignment(CellAlignment::Right),
            Cell::new(&r.mirror.name),
            Cell::new(r.status),
            Cell::new(format_latency(r.latency)).set_alignment(CellAlignment::Right),
            Cell::new(format_throughput(r.throughput_bps)).set_alignment(CellAlignment::Right),
            Cell::new(note),
        ]);
    }
    writeln!(out, "{t}")
}

/// The line under a probe's table saying how the mirrors were reached.
pub fn write_route<W: Write>(out: &mut W, route: &crate::net::Route) -> io::Result<()> {
    writeln!(out, "measured over: {route}")
}

/// The configured mirror list.
pub fn write_list<W: Write>(out: &mut W, mirrors: &[Mirror], width: Option<u16>) -> io::Result<()> {
    let mut t = new_table(
        &["mirror", "url", "serves", "provider", "enabled", "notes"],
        width,
    );
    for m in mirrors {
        let mut serves: Vec<String> = Vec::new();
        if !m.registry.is_empty() {
            serves.push(m.registry.clone());
        }
        if !m.prefix_for.is_empty() {
            serves.push(format!("prefix: {}", m.prefix_for.join(", ")));
        }
        let mut enabled = if m.enabled { "yes" } else { "no" }.to_owned();
        if m.upstream {
            enabled.push_str(" (upstream)");
        }
        t.add_row(vec![
            m.name.clone(),
            m.url.to_string(),
            serves.join("; "),
            m.provider.clone().unwrap_or_default(),
            enabled,
            m.notes.clone().unwrap_or_default(),
        ]);
    }
    writeln!(out, "{t}")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::probe::Status;

    fn result(
        name: &str,
        status: Status,
        ms: Option<u64>,
        bps: Option<f64>,
        error: Option<&str>,
    ) -> MirrorResult {
        MirrorResult {
            mirror: Mirror {
                notes: Some("a note".into()),
                ..Mirror::new(name, "https://m.example".parse().expect("url"))
            },
            status,
            latency: ms.map(Duration::from_millis),
            throughput_bps: bps,
            digest: None,
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn probe_table_snapshot() {
        let rows = [
            result("daocloud", Status::Ok, Some(38), Some(12_345_678.0), None),
            result(
                "ustc",
                Status::Forbidden,
                Some(61),
                None,
                Some("HTTP 403 from /v2/: campus only"),
            ),
            result(
                "nju",
                Status::Unreachable,
                None,
                None,
                Some("/v2/: cannot connect: Connection refused"),
            ),
        ];
        let mut out = Vec::new();
        write_probe(&mut out, &rows, None).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        let expected = "\
┌──────────────────────────────────────────────────────────────────────────────────────────────┐
│ #   mirror     status        latency   throughput   note                                     │
╞══════════════════════════════════════════════════════════════════════════════════════════════╡
│ 1   daocloud   ok              38 ms    12.3 MB/s   a note                                   │
│ 2   ustc       forbidden       61 ms            -   HTTP 403 from /v2/: campus only          │
│ 3   nju        unreachable         -            -   /v2/: cannot connect: Connection refused │
└──────────────────────────────────────────────────────────────────────────────────────────────┘
";
        assert_eq!(text, expected, "\n{text}");
    }
}
