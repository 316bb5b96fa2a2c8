//! Prometheus text exposition format (version 0.0.4), for node_exporter's
//! textfile collector or any scraper: per mirror up/status, latency,
//! throughput, rank and last success time, labelled by mirror name.

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::history::History;
use crate::probe::{MirrorResult, Status};

/// A label value with `\`, `"` and newlines escaped.
pub fn label(v: &str) -> String {
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

/// One registry's ranked probe results, with the history of its mirrors.
pub struct Group<'a> {
    pub registry: &'a str,
    pub results: &'a [MirrorResult],
    pub history: Option<&'a History>,
}

/// The metrics of one probe (ranked results), with `history` for the last
/// success time and success ratio.
pub fn probe(
    registry: &str,
    results: &[MirrorResult],
    history: Option<&History>,
    at: SystemTime,
) -> String {
    probes(
        &[Group {
            registry,
            results,
            history,
        }],
        at,
    )
}

/// The metrics of probes of several registries, each family once.
pub fn probes(groups: &[Group<'_>], at: SystemTime) -> String {
    let mut o = String::new();
    let all = || {
        groups
            .iter()
            .flat_map(|g| g.results.iter().enumerate().map(move |(i, r)| (g, i, r)))
    };
    let m = |g: &Group<'_>, r: &MirrorResult| {
        format!(
            "mirror=\"{}\",registry=\"{}\"",
            label(&r.mirror.name),
            label(g.registry)
        )
    };

    family(
        &mut o,
        "dmirror_mirror_up",
        "1 when the mirror served the probe image, fresh and verified (status ok), else 0.",
    );
    for (g, _, r) in all() {
        let _ = writeln!(
            o,
            "dmirror_mirror_up{{{},url=\"{}\"}} {}",
            m(g, r),
            label(r.mirror.url.as_str()),
            u8::from(r.status == Status::Ok)
        );
    }
    family(
        &mut o,
        "dmirror_mirror_status",
        "The mirror's status in the last probe: 1 for the status it has, 0 for the others.",
    );
    for (g, _, r) in all() {
        for s in Status::ALL {
            let _ = writeln!(
                o,
                "dmirror_mirror_status{{{},status=\"{}\"}} {}",
                m(g, r),
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
    for (g, i, r) in all() {
        let _ = writeln!(o, "dmirror_mirror_rank{{{}}} {}", m(g, r), i + 1);
    }
    family(
        &mut o,
        "dmirror_mirror_latency_seconds",
        "Time to answer GET /v2/ in the last probe, connection set-up included.",
    );
    for (g, _, r) in all() {
        if let Some(l) = r.latency {
            let _ = writeln!(
                o,
                "dmirror_mirror_latency_seconds{{{}}} {}",
                m(g, r),
                l.as_secs_f64()
            );
        }
    }
    family(
        &mut o,
        "dmirror_mirror_throughput_bytes_per_second",
        "Sustained throughput of a layer sample in the last probe.",
    );
    for (g, _, r) in all() {
        if let Some(b) = r.throughput_bps {
            let _ = writeln!(
                o,
                "dmirror_mirror_throughput_bytes_per_second{{{}}} {}",
                m(g, r),
                b.round()
            );
        }
    }
    let summaries: Vec<_> = all()
        .map(|(g, _, r)| g.history.and_then(|h| h.summary(&r.mirror.name)))
        .collect();
    family(
        &mut o,
        "dmirror_mirror_last_success_timestamp_seconds",
        "When the mirror was last ok, seconds since the Unix epoch.",
    );
    for ((g, _, r), s) in all().zip(&summaries) {
        let last = match s.as_ref().and_then(|s| s.last_ok) {
            Some(t) => Some(t as f64),
            None if r.status == Status::Ok => Some(unix(at).floor()),
            None => None,
        };
        if let Some(t) = last {
            let _ = writeln!(
                o,
                "dmirror_mirror_last_success_timestamp_seconds{{{}}} {t}",
                m(g, r)
            );
        }
    }
    if groups.iter().any(|g| g.history.is_some()) {
        family(
            &mut o,
            "dmirror_mirror_success_ratio",
            "Share of the mirror's recent probes (up to 14) that found it ok.",
        );
        for ((g, _, r), s) in all().zip(&summaries) {
            if let Some(s) = s {
                let _ = writeln!(
                    o,
                    "dmirror_mirror_success_ratio{{{}}} {}",
                    m(g, r),
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
    for g in groups {
        let _ = writeln!(
            o,
            "dmirror_probe_timestamp_seconds{{registry=\"{}\"}} {}",
            label(g.registry),
            unix(at).floor()
        );
    }
    family(
        &mut o,
        "dmirror_probe_mirrors_ok",
        "How many mirrors were ok in the probe.",
    );
    for g in groups {
        let _ = writeln!(
            o,
            "dmirror_probe_mirrors_ok{{registry=\"{}\"}} {}",
            label(g.registry),
            g.results.iter().filter(|r| r.status == Status::Ok).count()
        );
    }
    o
}

/// What one apply did to one registry's configuration.
pub struct Applied<'a> {
    pub target: &'a str,
    pub registry: &'a str,
    pub outcome: &'a str,
    /// How many mirrors the configuration lists afterwards.
    pub mirrors: usize,
}

/// Apply's metrics, one series set per target and registry.
pub fn applied(all: &[Applied<'_>]) -> String {
    let mut o = String::new();
    let l = |a: &Applied<'_>| {
        format!(
            "target=\"{}\",registry=\"{}\"",
            label(a.target),
            label(a.registry)
        )
    };
    family(
        &mut o,
        "dmirror_apply_outcome",
        "What the last apply did: 1 for its outcome, 0 for the others.",
    );
    for a in all {
        for outcome in crate::apply::Outcome::ALL.map(|o| o.as_str()) {
            let _ = writeln!(
                o,
                "dmirror_apply_outcome{{{},outcome=\"{outcome}\"}} {}",
                l(a),
                u8::from(a.outcome == outcome)
            );
        }
    }
    family(
        &mut o,
        "dmirror_apply_mirrors",
        "How many mirrors the configuration lists after the apply.",
    );
    for a in all {
        let _ = writeln!(o, "dmirror_apply_mirrors{{{}}} {}", l(a), a.mirrors);
    }
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
