//! Pull's summary: JSON on stdout, or lines for the person on stderr.

use std::io::{self, Write};

use super::format_throughput;
use crate::pull::PullReport;

/// `--json`: what was pulled, from where, and where it went (`written`).
pub fn write_json<W: Write>(
    out: &mut W,
    report: &PullReport,
    written: &str,
    route: &crate::net::Route,
) -> io::Result<()> {
    let secs = report.elapsed.as_secs_f64().max(1e-3);
    let doc = serde_json::json!({
        "reference": report.image.reference.to_string(),
        "digest": report.image.manifest_digest,
        "bytes": report.bytes,
        "seconds": (secs * 1000.0).round() / 1000.0,
        "upstream_used": report.used_upstream,
        "sources": report.sources.iter().map(|s| serde_json::json!({"name": s.name, "bytes": s.bytes, "dropped": s.dropped})).collect::<Vec<_>>(),
        "output": written,
        "network": route.to_string(),
    });
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}

/// The summary for a person: size and speed, bytes per mirror, mirrors
/// dropped and why, where the image went.
pub fn write_summary<W: Write>(out: &mut W, report: &PullReport, written: &str) -> io::Result<()> {
    let secs = report.elapsed.as_secs_f64().max(1e-3);
    writeln!(
        out,
        "pulled {} ({}): {} in {:.1} s ({})",
        report.image.reference,
        report.image.manifest_digest,
        format_bytes(report.bytes),
        secs,
        format_throughput(Some(report.bytes as f64 / secs)),
    )?;
    let used: Vec<String> = report
        .sources
        .iter()
        .filter(|s| s.bytes > 0)
        .map(|s| format!("{} {}", s.name, format_bytes(s.bytes)))
        .collect();
    if !used.is_empty() {
        writeln!(out, "  from {}", used.join(", "))?;
    }
    for s in report.sources.iter().filter(|s| s.dropped.is_some()) {
        writeln!(
            out,
            "  dropped {}: {}",
            s.name,
            s.dropped.as_deref().unwrap_or_default()
        )?;
    }
    if report.used_upstream {
        writeln!(out, "  no mirror could serve it all; upstream did")?;
    }
    writeln!(out, "  {written}")
}

/// One `key=value` line, for logs and scripts.
pub fn write_plain<W: Write>(out: &mut W, report: &PullReport, written: &str) -> io::Result<()> {
    use super::plain::value;
    let secs = report.elapsed.as_secs_f64().max(1e-3);
    let sources: Vec<String> = report
        .sources
        .iter()
        .map(|s| format!("{}:{}", s.name, s.bytes))
        .collect();
    let dropped: Vec<String> = report
        .sources
        .iter()
        .filter_map(|s| s.dropped.as_ref().map(|d| format!("{}: {d}", s.name)))
        .collect();
    write!(
        out,
        "pulled reference={} digest={} bytes={} seconds={:.3} upstream_used={} sources={}",
        value(&report.image.reference.to_string()),
        value(&report.image.manifest_digest),
        report.bytes,
        secs,
        report.used_upstream,
        value(&sources.join(","))
    )?;
    if !dropped.is_empty() {
        write!(out, " dropped={}", value(&dropped.join("; ")))?;
    }
    writeln!(out, " output={}", value(written))
}

/// Decimal units, as in the tables: `12.3 MB`.
pub fn format_bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} kB", n / 1e3)
    } else {
        format!("{n} B")
    }
}
