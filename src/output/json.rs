//! JSON for programs. Field names are a stable interface (see README).

use std::io::{self, Write};

use serde::Serialize;

use crate::config::Mirror;
use crate::probe::{MirrorResult, Status};

#[derive(Serialize)]
struct ProbeDoc<'a> {
    mirrors: Vec<ProbeEntry<'a>>,
    /// How the mirrors were reached: `direct`, or the proxy and whose it is.
    network: String,
}

#[derive(Serialize)]
struct ProbeEntry<'a> {
    name: &'a str,
    url: &'a str,
    status: Status,
    latency_ms: Option<u64>,
    throughput_bps: Option<u64>,
    digest: Option<&'a str>,
    error: Option<&'a str>,
}

fn entries(results: &[MirrorResult]) -> Vec<ProbeEntry<'_>> {
    results
        .iter()
        .map(|r| ProbeEntry {
            name: &r.mirror.name,
            url: r.mirror.url.as_str(),
            status: r.status,
            latency_ms: r.latency.map(|d| d.as_millis() as u64),
            throughput_bps: r.throughput_bps.map(|b| b.round() as u64),
            digest: r.digest.as_deref(),
            error: r.error.as_deref(),
        })
        .collect()
}

/// The `mirrors` array of a probe, to embed in a larger document.
pub fn probe_mirrors(results: &[MirrorResult]) -> serde_json::Value {
    serde_json::to_value(entries(results)).unwrap_or_default()
}

pub fn write_probe<W: Write>(
    out: &mut W,
    results: &[MirrorResult],
    route: &crate::net::Route,
) -> io::Result<()> {
    let doc = ProbeDoc {
        mirrors: entries(results),
        network: route.to_string(),
    };
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}

#[derive(Serialize)]
struct ListEntry<'a> {
    name: &'a str,
    url: &'a str,
    provider: Option<&'a str>,
    notes: Option<&'a str>,
    enabled: bool,
    insecure: bool,
    upstream: bool,
    /// The registry served at the root; empty for a prefix-only mirror.
    registry: &'a str,
    /// Registries served under `/v2/<registry>/`.
    prefix_for: &'a [String],
    /// When the entry was last checked by hand, `YYYY-MM-DD`.
    checked: Option<&'a str>,
}

pub fn write_list<W: Write>(out: &mut W, mirrors: &[Mirror]) -> io::Result<()> {
    let entries: Vec<ListEntry<'_>> = mirrors
        .iter()
        .map(|m| ListEntry {
            name: &m.name,
            url: m.url.as_str(),
            provider: m.provider.as_deref(),
            notes: m.notes.as_deref(),
            enabled: m.enabled,
            insecure: m.insecure,
            upstream: m.upstream,
            registry: &m.registry,
            prefix_for: &m.prefix_for,
            checked: m.checked.as_deref(),
        })
        .collect();
    serde_json::to_writer_pretty(&mut *out, &serde_json::json!({ "mirrors": entries }))?;
    writeln!(out)
}
