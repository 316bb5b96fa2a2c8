//! `GET /metrics`: what the server did since it started, in Prometheus'
//! text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

#[derive(Default)]
pub struct Metrics {
    /// Responses by (kind, status).
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// Bytes fetched, by source.
    fetched: Mutex<BTreeMap<String, u64>>,
    pub served_bytes: AtomicU64,
    /// Blob bytes sent from the cache: what the mirrors were spared.
    pub cache_served_bytes: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    /// A request went on to the next source after one failed.
    pub failovers: AtomicU64,
    pub verification_failures: AtomicU64,
    /// Tags answered from the cache because every source failed.
    pub stale_tags: AtomicU64,
    /// Requests that joined a download already running.
    pub joined: AtomicU64,
    /// Connections that failed their TLS handshake.
    pub tls_failures: AtomicU64,
}

impl Metrics {
    pub fn request(&self, kind: &'static str, status: u16) {
        *super::lock(&self.requests)
            .entry((kind, status))
            .or_default() += 1;
    }

    pub fn fetched(&self, source: &str, bytes: u64) {
        *super::lock(&self.fetched)
            .entry(source.to_owned())
            .or_default() += bytes;
    }

    pub fn render(&self) -> String {
        let mut o = String::new();
        fn family(o: &mut String, name: &str, kind: &str, help: &str) -> String {
            let _ = writeln!(o, "# HELP dmirror_serve_{name} {help}");
            let _ = writeln!(o, "# TYPE dmirror_serve_{name} {kind}");
            format!("dmirror_serve_{name}")
        }
        let mut lines = Vec::new();
        let n = family(
            &mut o,
            "requests_total",
            "counter",
            "Responses by request kind and HTTP status.",
        );
        for ((kind, status), v) in super::lock(&self.requests).iter() {
            lines.push(format!("{n}{{kind=\"{kind}\",status=\"{status}\"}} {v}"));
        }
        let _ = writeln!(o, "{}", lines.join("\n"));
        lines.clear();
        let n = family(
            &mut o,
            "fetched_bytes_total",
            "counter",
            "Bytes fetched from each mirror (or upstream).",
        );
        for (source, v) in super::lock(&self.fetched).iter() {
            let source = crate::output::prometheus::label(source);
            lines.push(format!("{n}{{mirror=\"{source}\"}} {v}"));
        }
        if !lines.is_empty() {
            let _ = writeln!(o, "{}", lines.join("\n"));
        }
        for (name, help, v) in [
            (
                "served_bytes_total",
                "Bytes sent to clients.",
                &self.served_bytes,
            ),
            (
                "cache_served_bytes_total",
                "Blob bytes sent to clients from the cache, not fetched again.",
                &self.cache_served_bytes,
            ),
            (
                "cache_hits_total",
                "Blob and manifest requests answered from the cache.",
                &self.cache_hits,
            ),
            (
                "cache_misses_total",
                "Blob and manifest requests fetched from a source.",
                &self.cache_misses,
            ),
            (
                "failovers_total",
                "Times a request went on to the next source after one failed.",
                &self.failovers,
            ),
            (
                "verification_failures_total",
                "Blobs whose bytes did not match their digest.",
                &self.verification_failures,
            ),
            (
                "stale_tags_total",
                "Tags answered from the cache because every source failed.",
                &self.stale_tags,
            ),
            (
                "joined_total",
                "Requests that joined a download already running.",
                &self.joined,
            ),
            (
                "tls_handshake_failures_total",
                "Connections that failed their TLS handshake.",
                &self.tls_failures,
            ),
        ] {
            let n = family(&mut o, name, "counter", help);
            let _ = writeln!(o, "{n} {}", v.load(Relaxed));
        }
        o
    }
}
