//! The probe engine: check every mirror's health concurrently, decide which
//! serve a stale tag, then measure throughput of the healthy ones fairly.
//!
//! Throughput samples taken all at once would share the user's downlink and
//! skew each other (reflector and rankmirrors warn of exactly this), so the
//! second phase gives each healthy mirror its own slice of a total budget,
//! running as few samples side by side as the budget allows.
//!
//! The engine produces data and events; it never prints.

pub mod fresh;
mod health;
pub mod status;
mod throughput;

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use tokio::sync::mpsc::UnboundedSender;

use crate::config::Mirror;

use crate::reference::Reference;
use crate::registry::client::{http_client, ClientOptions};
use crate::registry::manifest::{Descriptor, Platform};
use crate::registry::{RegistryClient, RegistryError};
pub use status::Status;

/// A small, common image every Docker Hub mirror should have.
pub const DEFAULT_IMAGE: &str = "library/alpine:latest";

/// A small, long-lived public image of `registry` to probe its mirrors
/// with, where one is known.
pub fn default_image(registry: &str) -> Option<&'static str> {
    Some(match registry {
        crate::reference::DOCKER_HUB => DEFAULT_IMAGE,
        "ghcr.io" => "ghcr.io/containerd/busybox:1.36",
        "gcr.io" => "gcr.io/distroless/static:latest",
        "quay.io" => "quay.io/prometheus/busybox:latest",
        "registry.k8s.io" => "registry.k8s.io/pause:3.10",
        // Registries the built-in list serves only through a prefix mirror.
        "mcr.microsoft.com" => "mcr.microsoft.com/dotnet/runtime-deps:8.0",
        "nvcr.io" => "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04",
        "docker.elastic.co" => "docker.elastic.co/elasticsearch/elasticsearch:8.19.15",
        _ => return None,
    })
}

/// Everything the probe needs to know, resolved from flags and files.
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    /// Mirrors to probe, in list order (enabled ones only).
    pub mirrors: Vec<Mirror>,
    /// Image whose manifest and largest layer every mirror must serve.
    pub image: Reference,
    /// Platform picked from a multi-platform index.
    pub platform: Platform,
    /// Bound on each mirror's health check.
    pub timeout: Duration,
    /// Total time for throughput samples, shared among healthy mirrors.
    pub budget: Duration,
    /// Bound on the bytes one throughput sample reads.
    pub sample_bytes: u64,
    /// The route out and the trust, as the Docker engine has them.
    pub network: crate::net::Network,
    /// Return once the tag's digest is settled instead of waiting for every
    /// mirror's check (pull: a hanging mirror must not delay it).
    pub settle_early: bool,
}

/// What the probe learnt of one mirror.
#[derive(Debug, Clone)]
pub struct MirrorResult {
    pub mirror: Mirror,
    pub status: Status,
    /// Time to answer `GET /v2/`, connection set-up included.
    pub latency: Option<Duration>,
    /// Sustained throughput of the sample, in bytes per second.
    pub throughput_bps: Option<f64>,
    /// Digest of the manifest the mirror served for the tag.
    pub digest: Option<String>,
    /// Why the mirror is not `ok`, in the server's words where it gave any.
    pub error: Option<String>,
}

/// Progress, for whoever draws it.
#[derive(Debug, Clone)]
pub enum Event {
    HealthStarted {
        /// The mirrors being checked, by name.
        names: Vec<String>,
    },
    HealthDone {
        name: String,
        status: Status,
    },
    MeasureStarted {
        total: usize,
        window: Duration,
    },
    MeasureDone {
        name: String,
        throughput_bps: Option<f64>,
    },
}

/// A mirror that passed the health check, ready to be measured.
pub(crate) struct Healthy {
    pub client: RegistryClient,
    pub layer: Descriptor,
}

/// Probe every mirror in `settings`; results come back unranked.
pub async fn probe(
    settings: &ProbeSettings,
    events: Option<UnboundedSender<Event>>,
) -> Vec<MirrorResult> {
    probe_settling(settings, events).await.0
}

/// The error of a mirror whose check had not ended when the digest settled.
pub const STILL_CHECKING: &str = "still being checked when the pull started without it";

/// `probe`; with `settle_early`, also the checks still running when the
/// digest settled, whose results arrive on the receiver as they end (a
/// pull adds those mirrors as they pass).
pub async fn probe_settling(
    settings: &ProbeSettings,
    events: Option<UnboundedSender<Event>>,
) -> (
    Vec<MirrorResult>,
    Option<tokio::sync::mpsc::UnboundedReceiver<MirrorResult>>,
) {
    let emit = |e: Event| {
        if let Some(tx) = &events {
            let _ = tx.send(e);
        }
    };
    let settings = Arc::new(settings.clone());
    emit(Event::HealthStarted {
        names: settings.mirrors.iter().map(|m| m.name.clone()).collect(),
    });

    // One client for every host certs.d says nothing about (building one
    // loads the system's CAs), one of its own for each host it does.
    let shared = |insecure: bool| {
        let mut opts = options(&settings, insecure);
        opts.network.trust = crate::net::Trust::default();
        let any = settings.mirrors.first().map(|m| m.url.clone());
        any.map(|u| http_client(&opts, &u))
    };
    let (secure, insecure) = (shared(false), shared(true));
    let checks = settings.mirrors.iter().enumerate().map(|(index, mirror)| {
        let http = if settings.network.trust.has_host(&mirror.url) {
            http_client(&options(&settings, mirror.insecure), &mirror.url)
        } else {
            let s = if mirror.insecure { &insecure } else { &secure };
            s.clone()
                .unwrap_or_else(|| http_client(&options(&settings, mirror.insecure), &mirror.url))
        };
        let settings = settings.clone();
        let events = events.clone();
        let mirror = mirror.clone();
        async move {
            let mut result = MirrorResult {
                mirror: mirror.clone(),
                status: Status::Timeout,
                latency: None,
                throughput_bps: None,
                digest: None,
                error: None,
            };
            let healthy = match http {
                Ok(http) => {
                    let client = crate::registry::client::for_registry(
                        http,
                        &mirror.url,
                        &options(&settings, mirror.insecure),
                    );
                    health::check(client, &settings, &mut result).await
                }
                Err(e) => {
                    result.status = e.kind.into();
                    result.error = Some(e.message.clone());
                    None
                }
            };
            if let Some(tx) = &events {
                let _ = tx.send(Event::HealthDone {
                    name: mirror.name.clone(),
                    status: result.status,
                });
            }
            (index, result, healthy)
        }
    });
    let mut pending: futures::stream::FuturesUnordered<_> = checks.collect();
    let mut checked: Vec<Option<(MirrorResult, Option<Healthy>)>> =
        (0..settings.mirrors.len()).map(|_| None).collect();
    // `settle_early` (pull): stop waiting once the tag's digest is settled —
    // upstream answered, or a short grace after the first healthy mirror —
    // so a mirror that never answers does not hold the pull back.
    let start = tokio::time::Instant::now();
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d, pending.next()).await {
                Ok(n) => n,
                Err(_) => break,
            },
            None => pending.next().await,
        };
        let Some((i, result, healthy)) = next else {
            break;
        };
        let ok = result.status == Status::Ok;
        let upstream = result.mirror.upstream;
        checked[i] = Some((result, healthy));
        if settings.settle_early && ok {
            if upstream {
                break;
            }
            let grace = start.elapsed().max(Duration::from_millis(300));
            deadline.get_or_insert(tokio::time::Instant::now() + grace);
        }
    }
    // The checks still running go on in the background for whoever wants
    // their results.
    let late = (settings.settle_early && !pending.is_empty()).then(|| {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some((_, result, _)) = pending.next().await {
                if tx.send(result).is_err() {
                    return;
                }
            }
        });
        rx
    });
    let (mut results, healthy): (Vec<MirrorResult>, Vec<Option<Healthy>>) = checked
        .into_iter()
        .zip(settings.mirrors.iter())
        .map(|(c, m)| {
            c.unwrap_or_else(|| {
                let r = MirrorResult {
                    mirror: m.clone(),
                    status: Status::Timeout,
                    latency: None,
                    throughput_bps: None,
                    digest: None,
                    error: Some(STILL_CHECKING.into()),
                };
                (r, None)
            })
        })
        .unzip();

    mark_stale(&mut results, &settings.image);

    // Measure only what is still ok after the freshness check.
    let to_measure: Vec<(usize, Healthy)> = healthy
        .into_iter()
        .enumerate()
        .filter_map(|(i, h)| h.map(|h| (i, h)))
        .filter(|(i, _)| results[*i].status == Status::Ok)
        .collect();
    // A zero budget (pull) skips measurement: its downloader adapts to the
    // mirrors' real speeds as it goes.
    let to_measure = if settings.budget.is_zero() {
        Vec::new()
    } else {
        to_measure
    };
    let plan = throughput::Plan::new(to_measure.len(), settings.budget);
    emit(Event::MeasureStarted {
        total: to_measure.len(),
        window: plan.window,
    });
    let repos: Vec<String> = results
        .iter()
        .map(|r| {
            r.mirror
                .repository_for(&settings.image)
                .unwrap_or_else(|| settings.image.repository.clone())
        })
        .collect();
    let samples: Vec<(usize, Result<f64, RegistryError>)> = stream::iter(to_measure)
        .map(|(i, h)| {
            let repo = repos[i].clone();
            let settings = settings.clone();
            let name = results[i].mirror.name.clone();
            let events = events.clone();
            async move {
                let r = throughput::sample(
                    &h.client,
                    &repo,
                    &h.layer,
                    plan.window,
                    settings.sample_bytes,
                )
                .await;
                // As each sample ends, so the count moves.
                if let Some(tx) = &events {
                    let _ = tx.send(Event::MeasureDone {
                        name,
                        throughput_bps: r.as_ref().ok().copied(),
                    });
                }
                (i, r)
            }
        })
        .buffer_unordered(plan.concurrency)
        .collect()
        .await;
    for (i, sample) in samples {
        let r = &mut results[i];
        match sample {
            Ok(bps) => r.throughput_bps = Some(bps),
            Err(e) => {
                let e = e.relative_to(r.mirror.url.as_str());
                r.status = e.kind.into();
                r.error = Some(e.message);
            }
        }
    }
    (results, late)
}

/// One line: how many mirrors came out in each status, `ok` first
/// (`7 ok, 3 forbidden, 2 timeout`).
pub fn summary(results: &[MirrorResult]) -> String {
    let mut counts: Vec<(Status, usize)> = Vec::new();
    for r in results {
        match counts.iter_mut().find(|(s, _)| *s == r.status) {
            Some((_, n)) => *n += 1,
            None => counts.push((r.status, 1)),
        }
    }
    counts.sort_by_key(|(s, n)| (*s != Status::Ok, std::cmp::Reverse(*n), s.to_string()));
    counts
        .iter()
        .map(|(s, n)| format!("{n} {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// When no mirror answered and every one failed to connect the same way,
/// the fault is this machine's network (or DNS, or proxy), not the mirrors:
/// one sentence that says so, instead of a table of dead mirrors.
pub fn offline(results: &[MirrorResult]) -> Option<String> {
    if results.len() < 2 || results.iter().any(|r| r.status != Status::Unreachable) {
        return None;
    }
    let cause = |r: &MirrorResult| -> Option<&'static str> {
        let e = r.error.as_deref()?.to_ascii_lowercase();
        [
            ("dns", "their names do not resolve (DNS)"),
            ("connection refused", "every connection is refused"),
            ("network is unreachable", "the network is unreachable"),
            ("no route to host", "there is no route to any of them"),
            ("proxy", "the proxy does not answer"),
        ]
        .into_iter()
        .find(|(k, _)| e.contains(k))
        .map(|(_, why)| why)
    };
    let first = cause(&results[0])?;
    results.iter().all(|r| cause(r) == Some(first)).then(|| {
        format!(
            "all {} mirrors are unreachable the same way: {first}. This machine's network, DNS or proxy looks down, not the mirrors; check it and probe again",
            results.len()
        )
    })
}

fn options(settings: &ProbeSettings, insecure: bool) -> ClientOptions {
    ClientOptions {
        insecure,
        connect_timeout: settings.timeout,
        network: settings.network.clone(),
        ..ClientOptions::default()
    }
}

/// Mark mirrors that serve another digest for the tag than the reference:
/// upstream when it answered, otherwise the strict majority.
fn mark_stale(results: &mut [MirrorResult], image: &Reference) {
    if image.digest.is_some() {
        return; // Fetched by digest: every answer was verified against it.
    }
    let served: Vec<fresh::Served<'_>> = results
        .iter()
        .map(|r| fresh::Served {
            digest: (r.status == Status::Ok)
                .then_some(r.digest.as_deref())
                .flatten(),
            upstream: r.mirror.upstream,
        })
        .collect();
    let Some((reference, from_upstream)) = fresh::fresh_digest(&served) else {
        return;
    };
    let reference = reference.to_owned();
    for r in results.iter_mut() {
        if r.status != Status::Ok {
            continue;
        }
        if let Some(d) = r.digest.as_deref().filter(|d| *d != reference) {
            r.error = Some(format!(
                "serves {d} for {image}; {} serves {reference}",
                if from_upstream {
                    "upstream"
                } else {
                    "the majority of mirrors"
                }
            ));
            r.status = Status::Stale;
        }
    }
}
