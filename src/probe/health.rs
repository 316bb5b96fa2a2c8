//! One mirror's health check: `/v2/`, the token flow, the tag's manifest,
//! the platform's manifest, and the first bytes of the largest layer, all
//! within the probe's timeout.

use std::sync::Mutex;

use super::{Healthy, MirrorResult, ProbeSettings, Status};
use crate::registry::digest;
use crate::registry::manifest::Manifest;
use crate::registry::{RegistryClient, RegistryError};

/// Bytes of the largest layer read to prove the blob really flows.
const FIRST_BYTES: usize = 64 * 1024;

/// Check `client`'s mirror, filling `result`; returns the mirror ready for
/// measurement when it is healthy.
pub(super) async fn check(
    client: RegistryClient,
    settings: &ProbeSettings,
    result: &mut MirrorResult,
) -> Option<Healthy> {
    if let Err(e) = resolve(&client, settings.timeout).await {
        result.status = e.kind.into();
        result.error = Some(e.message);
        return None;
    }
    let stage = Mutex::new("connecting");
    let outcome =
        tokio::time::timeout(settings.timeout, run(&client, settings, result, &stage)).await;
    let err = match outcome {
        Ok(Ok(layer)) => {
            result.status = Status::Ok;
            return Some(Healthy { client, layer });
        }
        Ok(Err(e)) => e,
        Err(_) => RegistryError::new(
            crate::registry::ErrorKind::Timeout,
            format!(
                "no answer within {} while {}",
                humantime::format_duration(settings.timeout),
                stage.lock().map(|s| *s).unwrap_or("probing")
            ),
        ),
    };
    let err = err.relative_to(client.base().as_str());
    result.status = err.kind.into();
    result.error = Some(err.message);
    None
}

/// Look the mirror's host name up first, so that a lookup that hangs or
/// fails reads as what it is (DNS: `unreachable`), not as a slow mirror
/// (`timeout`, which ranks above the dead ones).
async fn resolve(
    client: &RegistryClient,
    timeout: std::time::Duration,
) -> Result<(), RegistryError> {
    let url = client.base();
    let Some(host) = url.host_str() else {
        return Ok(());
    };
    if host.starts_with('[') || host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let unreachable = |m: String| RegistryError::new(crate::registry::ErrorKind::Unreachable, m);
    match tokio::time::timeout(timeout, tokio::net::lookup_host((host, port))).await {
        Err(_) => Err(unreachable(format!(
            "DNS: the lookup of {host} did not answer within {}",
            humantime::format_duration(timeout)
        ))),
        Ok(Err(e)) => Err(unreachable(format!("DNS: cannot resolve {host}: {e}"))),
        Ok(Ok(addrs)) => {
            let mut addrs = addrs;
            match addrs.next() {
                Some(_) => Ok(()),
                None => Err(unreachable(format!("DNS: {host} has no address"))),
            }
        }
    }
}

async fn run(
    client: &RegistryClient,
    settings: &ProbeSettings,
    result: &mut MirrorResult,
    stage: &Mutex<&'static str>,
) -> Result<crate::registry::manifest::Descriptor, RegistryError> {
    let set = |s: &'static str| {
        if let Ok(mut g) = stage.lock() {
            *g = s;
        }
    };
    let image = &settings.image;
    let repo = result
        .mirror
        .repository_for(image)
        .unwrap_or_else(|| image.repository.clone());
    let repo = repo.as_str();

    set("waiting for /v2/");
    let ping = client.ping().await;
    result.latency = ping.latency;
    ping.outcome?;

    set("fetching the manifest");
    let top = client
        .manifest(repo, image.manifest_ref())
        .await
        .map_err(|e| e.context(&format!("manifest of {image}")))?;
    result.digest = Some(top.digest.clone());
    let parsed = Manifest::parse(&top.bytes, top.media_type.as_deref())
        .map_err(|e| RegistryError::broken(format!("manifest of {image}: {e}")))?;
    let layers = match parsed {
        Manifest::Image { layers, .. } => layers,
        Manifest::Index { manifests } => {
            let entry = Manifest::select(&manifests, &settings.platform).ok_or_else(|| {
                RegistryError::broken(format!("{image} has no {} image", settings.platform))
            })?;
            set("fetching the platform manifest");
            let m = client
                .manifest(repo, &entry.digest)
                .await
                .map_err(|e| e.context(&format!("{} manifest of {image}", settings.platform)))?;
            match Manifest::parse(&m.bytes, m.media_type.as_deref()) {
                Ok(Manifest::Image { layers, .. }) => layers,
                Ok(Manifest::Index { .. }) => {
                    return Err(RegistryError::broken(format!(
                        "{image}: an index points at another index"
                    )))
                }
                Err(e) => {
                    return Err(RegistryError::broken(format!(
                        "{} manifest of {image}: {e}",
                        settings.platform
                    )))
                }
            }
        }
    };
    let layer = Manifest::largest_layer(&layers)
        .ok_or_else(|| RegistryError::broken(format!("{image} has no layers")))?
        .clone();

    set("waiting for the first bytes of a layer");
    // Ask for the first bytes only: a whole layer cut off after 64 KiB
    // would keep the mirror's link busy with bytes nobody reads.
    let first = (FIRST_BYTES as u64).min(layer.size);
    let mut resp = client
        .blob(repo, &layer.digest, Some((0, first)))
        .await
        .map_err(|e| e.context(&format!("layer {}", layer.digest)))?;
    let total = if resp.status().as_u16() == 206 {
        resp.headers()
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit('/').next())
            .and_then(|t| t.trim().parse::<u64>().ok())
    } else {
        resp.content_length()
    };
    if let Some(len) = total.filter(|len| *len != layer.size) {
        return Err(RegistryError::broken(format!(
            "layer {} is {} bytes, but the mirror sends {len}",
            layer.digest, layer.size
        )));
    }
    let mut hasher = digest::Hasher::default();
    let mut got = 0usize;
    while got < FIRST_BYTES {
        let chunk = resp
            .chunk()
            .await
            .map_err(|e| RegistryError::from_transport(&e, &layer.digest).context("layer"))?;
        let Some(chunk) = chunk else { break };
        got += chunk.len();
        hasher.update(&chunk);
        if got as u64 > layer.size {
            return Err(RegistryError::broken(format!(
                "layer {} sends more than its {} bytes",
                layer.digest, layer.size
            )));
        }
    }
    if got == 0 {
        return Err(RegistryError::broken(format!(
            "layer {} came back empty",
            layer.digest
        )));
    }
    if got as u64 == layer.size {
        let actual = hasher.finish();
        if actual != layer.digest {
            return Err(RegistryError::broken(format!(
                "layer bytes hash to {actual}, not {}: the mirror serves tampered or wrong data",
                layer.digest
            )));
        }
    }
    Ok(layer)
}
