//! `apply --via URL`: instead of probing, the one "mirror" a `dmirror
//! serve` at URL is, as each target reaches it for a registry.

use std::time::Duration;

use reqwest::Url;

/// Why `--via` cannot be used.
#[derive(Debug)]
pub enum ViaError {
    /// Not a mirror URL.
    Usage(String),
    /// Nothing answers there as a registry.
    Down(String),
}

/// How long containerd waits to connect to the server before the next
/// host (upstream): long enough for a loopback or LAN server, short enough
/// that a dead one costs a pull nothing.
pub const DIAL_TIMEOUT: &str = "200ms";

/// `--via URL` as a mirror URL, not yet checked for an answer.
pub fn parse(s: &str) -> Result<Url, ViaError> {
    crate::config::parse_mirror_url(s).map_err(|e| ViaError::Usage(format!("--via: {e}")))
}

/// `--via URL`, checked as a mirror URL and answering as a registry.
pub async fn check(s: &str) -> Result<Url, ViaError> {
    let url = parse(s)?;
    let opts = crate::registry::ClientOptions {
        connect_timeout: Duration::from_secs(3),
        network: crate::net::Network::default(),
        ..Default::default()
    };
    let http = crate::registry::client::http_client(&opts, &url)
        .map_err(|e| ViaError::Usage(format!("--via {url}: {e}")))?;
    let client = crate::registry::RegistryClient::new(http, url.clone(), 0);
    let start = "start the server first (dmirror serve, or dmirror serve install)";
    match tokio::time::timeout(Duration::from_secs(5), client.ping()).await {
        Ok(p) => match p.outcome {
            Ok(()) => Ok(url),
            Err(e) => Err(ViaError::Down(format!(
                "--via {url}: {}; {start}",
                e.message
            ))),
        },
        Err(_) => Err(ViaError::Down(format!(
            "--via {url}: no answer at /v2/ within 5s; {start}"
        ))),
    }
}

/// The ranking `--via` stands for: the server, ok, reached at its root
/// (dockerd; containerd adds `?ns=<registry>`) or, with `prefix`, under
/// `/v2/<registry>/` (podman).
pub fn ranked(url: &Url, registry: &str, prefix: bool) -> crate::ranked::Ranked {
    let mut mirror = crate::config::Mirror::new("dmirror-serve", url.clone());
    mirror.provider = Some("dmirror serve".into());
    if prefix {
        mirror.registry = String::new();
        mirror.prefix_for = vec![registry.to_owned()];
    } else {
        mirror.registry = registry.to_owned();
    }
    crate::ranked::Ranked {
        results: vec![crate::probe::MirrorResult {
            mirror,
            status: crate::probe::Status::Ok,
            latency: None,
            throughput_bps: None,
            digest: None,
            error: None,
        }],
        history: None,
        at: std::time::SystemTime::now(),
    }
}
