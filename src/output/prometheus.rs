//! Prometheus text exposition format (version 0.0.4), for node_exporter's
//! textfile collector or any scraper: per mirror up/status, latency,
//! throughput, rank and last success time, labelled by mirror name.

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::history::History;
use crate::probe::{MirrorResult, Status};

/// A label value with `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
}

fn unix(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// The metrics of one probe (ranked results), with `history` for the last
/// success time and success ratio.
pub fn probe(results: &[MirrorResult], history: Option<&History>, at: SystemTime) -> String {
    let mut o = String::new();
    let m = |r: &MirrorResult| format!("mirror=\"{}\"", label(&r.mirror.name));

    family(
        &mut o,
        "dmirror_mirror_up",
        "1 when the mirror served the probe image, fresh and verified (status ok), else 0.",
    );
    for r in results {
        let _ = writeln!(
            o,
            "dmirror_mirror_up{{{},url=\"{}\"}} {}",
            m(r),
            label(r.mirror.url.as_str()),
            u8::from(r.status == Status::Ok)
        );
    }
    family(
        &mut o,
        "dmirror_mirror_status",
        "The mirror's status in the last probe: 1 for the status it has, 0 for the others.",
    );
    for r in results {
        for s in Status::ALL {
            let _ = writeln!(
                o,
                "dmirror_mirror_status{{{},status=\"{}\"}} {}",
                m(r),
                s,
                u8::from(r.status == s)
            );
        }
    }
    family(
        &mut o,
        "dmirror_mirror_rank",
        "The mirror's place in the ranking, 1 for the best.",
    );
    for (i, r) in results.iter().enumerate() {
        let _ = writeln!(o, "dmirror_mirror_rank{{{}}} {}", m(r), i + 1);
    }
    family(
        &mut o,
        "dmirror_mirror_latency_seconds",
        "Time to answer GET /v2/ in the last probe, connection set-up included.",
    );
    for r in results {
        if let Some(l) = r.latency {
            let _ = writeln!(
                o,
                "dmirror_mirror_latency_seconds{{{}}} {}",
                m(r),
                l.as_secs_f64()
            );
        }
    }
    family(
        &mut o,
        "dmirror_mirror_throughput_bytes_per_second",
        "Sustained throughput of a layer sample in the last probe.",
    );
    for r in results {
        if let Some(b) = r.throughput_bps {
            let _ = writeln!(
                o,
                "dmirror_mirror_throughput_bytes_per_second{{{}}} {}",
                m(r),
                b.round()
            );
        }
    }
    let summaries: Vec<_> = results
        .iter()
        .map(|r| history.and_then(|h| h.summary(&r.mirror.name)))
        .collect();
    family(
        &mut o,
        "dmirror_mirror_last_success_timestamp_seconds",
        "When the mirror was last ok, seconds since the Unix epoch.",
    );
    for (r, s) in results.iter().zip(&summaries) {
        let last = match s.as_ref().and_then(|s| s.last_ok) {
            Some(t) => Some(t as f64),
            None if r.status == Status::Ok => Some(unix(at).floor()),
            None => None,
        };
        if let Some(t) = last {
            let _ = writeln!(
                o,
                "dmirror_mirror_last_success_timestamp_seconds{{{}}} {t}",
                m(r)
            );
        }
    }
    if history.is_some() {
        family(
            &mut o,
            "dmirror_mirror_success_ratio",
            "Share of the mirror's recent probes (up to 14) that found it ok.",
        );
        for (r, s) in results.iter().zip(&summaries) {
            if let Some(s) = s {
                let _ = writeln!(
                    o,
                    "dmirror_mirror_success_ratio{{{}}} {}",
                    m(r),
                    s.success_ratio()
                );
            }
        }
    }
    family(
        &mut o,
        "dmirror_probe_timestamp_seconds",
        "When the probe ran, seconds since the Unix epoch.",
    );
    let _ = writeln!(o, "dmirror_probe_timestamp_seconds {}", unix(at).floor());
    family(
        &mut o,
        "dmirror_probe_mirrors_ok",
        "How many mirrors were ok in the probe.",
    );
    let _ = writeln!(
        o,
        "dmirror_probe_mirrors_ok {}",
        results.iter().filter(|r| r.status == Status::Ok).count()
    );
    o
}

/// Outcomes apply reports, for the one-of-n gauge.
pub const APPLY_OUTCOMES: [&str; 6] = [
    "applied",
    "written",
    "unchanged",
    "dry-run",
    "rolled-back",
    "failed",
];

/// Apply's own metrics, to follow [`probe`]'s.
pub fn apply(report: &crate::commands::apply::Report) -> String {
    let mut o = String::new();
    family(
        &mut o,
        "dmirror_apply_outcome",
        "What the last apply did: 1 for its outcome, 0 for the others.",
    );
    for outcome in APPLY_OUTCOMES {
        let _ = writeln!(
            o,
            "dmirror_apply_outcome{{outcome=\"{outcome}\"}} {}",
            u8::from(report.outcome == outcome)
        );
    }
    family(
        &mut o,
        "dmirror_apply_mirrors",
        "How many mirrors the daemon configuration lists after the apply.",
    );
    let kept = if matches!(report.outcome, "applied" | "written") {
        report.new.len()
    } else {
        report.old.len()
    };
    let _ = writeln!(o, "dmirror_apply_mirrors {kept}");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
