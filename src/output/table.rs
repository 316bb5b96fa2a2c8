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
        // The error and the curated note both: "closed 2024-06" explains
        // exactly the failure it sits beside. Long errors are cut here; plain
        // and JSON carry them whole.
        let error = r.error.as_deref().map(|e| crate::text::clean(e, 160));
        let note = match (error, &r.mirror.notes) {
            (Some(e), Some(n)) => format!("{e}\n({n})"),
            (Some(e), None) => e,
            (None, Some(n)) => n.clone(),
            (None, None) => String::new(),
        };
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

/// Word-wrap `text` to `width` columns, each line after `indent`.
fn wrap(text: &str, width: usize, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty()
            && indent.len() + line.chars().count() + 1 + word.chars().count() > width
        {
            out.push_str(indent);
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(indent);
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The configured mirror list: a table on a wide terminal, two lines per
/// mirror on a narrow one (a URL is never broken, notes wrap).
pub fn write_list<W: Write>(out: &mut W, mirrors: &[Mirror], width: Option<u16>) -> io::Result<()> {
    if let Some(w) = width.filter(|w| *w < 120) {
        let w = usize::from(w).max(40);
        let name_w = mirrors.iter().map(|m| m.name.len()).max().unwrap_or(0);
        for m in mirrors {
            let mut serves: Vec<String> = Vec::new();
            if !m.registry.is_empty() {
                serves.push(m.registry.clone());
            }
            serves.extend(m.prefix_for.iter().map(|p| format!("{p}/…")));
            let state = match (m.upstream, m.enabled) {
                (true, _) => " [origin]",
                (false, false) => " [disabled]",
                _ => "",
            };
            writeln!(
                out,
                "{:name_w$}  {}{state}",
                m.name,
                m.url.as_str().trim_end_matches('/')
            )?;
            let notes = match (&m.provider, &m.notes) {
                (Some(p), Some(n)) => format!("{p}: {n}"),
                (Some(p), None) => p.clone(),
                (None, Some(n)) => n.clone(),
                (None, None) => String::new(),
            };
            let checked = m
                .checked
                .as_ref()
                .map(|c| format!(" (checked {c})"))
                .unwrap_or_default();
            let line = format!("serves {}. {notes}{checked}", serves.join(", "));
            write!(out, "{}", wrap(&line, w, "    "))?;
        }
        return Ok(());
    }
    let mut t = new_table(&["mirror", "url", "serves", "on", "notes"], width);
    for m in mirrors {
        let mut serves: Vec<String> = Vec::new();
        if !m.registry.is_empty() {
            serves.push(m.registry.clone());
        }
        serves.extend(m.prefix_for.iter().map(|p| format!("{p}/…")));
        let mut enabled = if m.enabled { "yes" } else { "no" }.to_owned();
        if m.upstream {
            enabled = "origin".into();
        }
        let mut notes = match (&m.provider, &m.notes) {
            (Some(p), Some(n)) => format!("{p}: {n}"),
            (Some(p), None) => p.clone(),
            (None, Some(n)) => n.clone(),
            (None, None) => String::new(),
        };
        if let Some(c) = &m.checked {
            notes.push_str(&format!(" (checked {c})"));
        }
        t.add_row(vec![
            m.name.clone(),
            m.url.as_str().trim_end_matches('/').to_owned(),
            serves.join(", "),
            enabled,
            notes,
        ]);
    }
    // URLs are never broken: prose wraps around them.
    if let Some(c) = t.column_mut(1) {
        c.set_constraint(comfy_table::ColumnConstraint::ContentWidth);
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

    /// Issue 15: a failing mirror shows its error and its curated note
    /// ("closed 2024-06" explains the failure it sits beside).
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
│                                                     (a note)                                 │
│ 3   nju        unreachable         -            -   /v2/: cannot connect: Connection refused │
│                                                     (a note)                                 │
└──────────────────────────────────────────────────────────────────────────────────────────────┘
";
        assert_eq!(text, expected, "\n{text}");
    }
}
