//! Renderers: the engines' reports (probe, apply, pull, history, the
//! mirror list) as a table for people, plain lines for logs, JSON for
//! programs and Prometheus metrics, plus the progress drawn from the
//! engines' events. They write into any `Write`, so tests can read them,
//! and they read the domain types only: nothing here knows the commands.

pub mod apply;
pub mod cache;
pub mod history;
pub mod json;
pub mod plain;
pub mod progress;
pub mod prometheus;
pub mod pull;
pub mod table;

use std::time::Duration;

/// How a command prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table for people.
    Table,
    /// One key=value line per mirror, for logs.
    Plain,
    /// JSON for programs.
    Json,
    /// Prometheus text format.
    Prometheus,
}

/// How long ago `t` was, in whole minutes (seconds are noise here):
/// `just now`, `3h 12m ago`.
pub fn ago(t: std::time::SystemTime) -> String {
    let d = std::time::SystemTime::now()
        .duration_since(t)
        .unwrap_or_default();
    let d = Duration::from_secs(d.as_secs() / 60 * 60);
    if d.is_zero() {
        "just now".to_owned()
    } else {
        format!("{} ago", humantime::format_duration(d))
    }
}

/// `123 ms`.
pub fn format_latency(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!("{} ms", d.as_millis()),
        None => "-".into(),
    }
}

/// Decimal units, as network speeds are quoted: `12.3 MB/s`.
pub fn format_throughput(bps: Option<f64>) -> String {
    let Some(b) = bps else { return "-".into() };
    let (v, unit) = if b >= 1e9 {
        (b / 1e9, "GB/s")
    } else if b >= 1e6 {
        (b / 1e6, "MB/s")
    } else if b >= 1e3 {
        (b / 1e3, "kB/s")
    } else {
        (b, "B/s")
    };
    if v >= 100.0 {
        format!("{v:.0} {unit}")
    } else {
        format!("{v:.1} {unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(format_throughput(Some(12_345_678.0)), "12.3 MB/s");
        assert_eq!(format_throughput(Some(512.0)), "512 B/s");
        assert_eq!(format_throughput(Some(2048.0)), "2.0 kB/s");
        assert_eq!(format_throughput(None), "-");
        assert_eq!(format_latency(Some(Duration::from_micros(42_700))), "42 ms");
    }
}
