//! `dmirror pull`'s engine: pick mirrors by probing, take the manifest the
//! fresh mirrors agree on, fetch every blob by digest across all of them at
//! once (see `download`), verify every byte, and hand the image to an output.
//! Upstream is the last resort, so a pull never does worse than `docker pull`.
//!
//! It produces data and never prints; `commands::pull` renders.

pub mod archive;
pub mod cache;
pub mod deliver;
pub mod download;
pub mod image;
pub mod inventory;
pub mod oci;
pub mod store;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Mirror;
use crate::probe::{self, MirrorResult, ProbeSettings, Status};
use crate::rank;
use crate::reference::{Reference, DOCKER_HUB};
use crate::registry::client::{http_client, ClientOptions, FetchedManifest};
use crate::registry::manifest::{Descriptor, Manifest, Platform};
use crate::registry::{RegistryClient, RegistryError};
use cache::Cache;
use download::{Progress, Source, SourceOutcome, Wanted};
pub use image::PulledImage;

/// Where a pull's upstream is when the list names none.
pub const DOCKER_HUB_REGISTRY: &str = "https://registry-1.docker.io";

/// Everything a pull needs, resolved from flags and files.
#[derive(Debug, Clone)]
pub struct PullSettings {
    /// The mirrors to probe (enabled ones), the image, platform and timeout.
    pub probe: ProbeSettings,
    /// Where blobs are cached.
    pub cache_root: std::path::PathBuf,
    /// Connections per mirror.
    pub per_source: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("{0}")]
    Manifest(String),
    #[error(transparent)]
    Download(#[from] download::DownloadError),
    #[error("cache {0}: {1}")]
    Cache(std::path::PathBuf, std::io::Error),
    #[error("not enough space in {path}: the image needs {need} more bytes there, {free} are free; free some space, or set XDG_CACHE_HOME to a larger disk")]
    Space {
        path: std::path::PathBuf,
        need: u64,
        free: u64,
    },
}

/// How long a pull waits for another process's hold on the cache.
pub const CACHE_LOCK_WAIT: Duration = Duration::from_secs(600);

/// sha256 of nothing: the only digest a blob of size 0 may have.
pub const EMPTY_DIGEST: &str =
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Bytes free for this user on the file system holding `path`.
pub fn free_space(path: &std::path::Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: `c` is NUL-terminated and `st` is a plain struct statvfs fills.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// What happened, for the summary.
#[derive(Debug, Clone)]
pub struct PullReport {
    pub image: PulledImage,
    pub probe: Vec<MirrorResult>,
    pub sources: Vec<SourceOutcome>,
    pub bytes: u64,
    pub elapsed: Duration,
    /// Whether upstream had to serve (no mirror could).
    pub used_upstream: bool,
}

/// Progress of a pull, for whoever draws it.
pub enum PullEvent {
    Probing {
        mirrors: usize,
    },
    /// Another dmirror holds the cache; this pull waits (at most
    /// [`CACHE_LOCK_WAIT`]).
    WaitingForCache {
        path: std::path::PathBuf,
    },
    /// A `dmirror serve` on the same cache is fetching this blob; this
    /// pull waits for it (at most [`CACHE_LOCK_WAIT`]) and then uses what
    /// it verified, or fetches the rest.
    WaitingForDownload {
        digest: String,
    },
    /// Blobs are being fetched; `image` says where each will appear once
    /// verified, so an output can start before the last one arrives.
    Downloading {
        image: Box<PulledImage>,
        sources: Vec<String>,
        progress: Arc<Progress>,
    },
}

/// Hold the partial of every blob in `wanted`, waiting for one another
/// process (a `dmirror serve` on this cache) is fetching: two writers never
/// share a partial, and the bytes it fetched are not fetched again.
async fn hold_partials(
    cache: &Cache,
    wanted: &[Wanted],
    events: &impl Fn(PullEvent),
) -> Result<Vec<cache::PartialHold>, PullError> {
    let failed = |e: std::io::Error| PullError::Cache(cache.root().to_owned(), e);
    let mut held = Vec::with_capacity(wanted.len());
    // One bound for all the waiting, however many blobs are busy.
    let start = Instant::now();
    for w in wanted {
        let mut told = false;
        loop {
            if let Some(h) = cache.try_hold_partial(&w.digest).map_err(failed)? {
                held.push(h);
                break;
            }
            if !told {
                told = true;
                events(PullEvent::WaitingForDownload {
                    digest: w.digest.clone(),
                });
            }
            if start.elapsed() >= CACHE_LOCK_WAIT {
                return Err(failed(std::io::Error::other(format!(
                    "another dmirror has been fetching {} into it for {}; try again once it is done",
                    w.digest,
                    humantime::format_duration(CACHE_LOCK_WAIT)
                ))));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(held)
}

/// The origin registry for `image`: an `upstream = true` entry serving
/// its registry, or the registry itself (`docker.io` at its API host).
fn upstream_of(mirrors: &[Mirror], image: &Reference) -> Option<Mirror> {
    if let Some(m) = mirrors
        .iter()
        .find(|m| m.upstream && m.serves(&image.registry))
    {
        return Some(m.clone());
    }
    let url = if image.registry == DOCKER_HUB {
        DOCKER_HUB_REGISTRY.to_owned()
    } else {
        format!("https://{}", image.registry)
    };
    Some(Mirror {
        upstream: true,
        registry: image.registry.clone(),
        ..Mirror::new(image.registry.clone(), url.parse().ok()?)
    })
}

pub async fn pull(
    settings: &PullSettings,
    events: impl Fn(PullEvent),
) -> Result<PullReport, PullError> {
    let start = Instant::now();
    let image = settings.probe.image.clone();
    events(PullEvent::Probing {
        mirrors: settings.probe.mirrors.len(),
    });
    let (mut results, late_results) = probe::probe_settling(&settings.probe, None).await;
    rank::rank(&mut results);

    let opts = ClientOptions {
        connect_timeout: settings.probe.timeout,
        network: settings.probe.network.clone(),
        ..ClientOptions::default()
    };
    let make = |m: &Mirror| source_for(&opts, &image, m);
    let fresh: Vec<&MirrorResult> = results.iter().filter(|r| r.status == Status::Ok).collect();
    let upstream = upstream_of(&settings.probe.mirrors, &image);
    let mut used_upstream = false;
    let mut sources: Vec<Source> = fresh.iter().filter_map(|r| make(&r.mirror).ok()).collect();
    if sources.is_empty() {
        let up = upstream.as_ref().ok_or_else(|| {
            PullError::Manifest(format!(
                "no mirror serves {image} and no upstream registry is known for it"
            ))
        })?;
        sources.push(make(up).map_err(|e| PullError::Manifest(e.message))?);
        used_upstream = true;
    }
    // The fresh mirrors agree on this digest (the probe marked the others stale).
    let wanted_ref = fresh
        .first()
        .and_then(|r| r.digest.clone())
        .unwrap_or_else(|| image.manifest_ref().to_owned());
    // When the pull fails, every mirror's reason belongs in the message,
    // not only the last fallback's.
    let mirrors_said = || -> String {
        let said: Vec<String> = results
            .iter()
            .filter(|r| r.status != Status::Ok && !r.mirror.upstream)
            .map(|r| {
                format!(
                    "{}: {}{}",
                    r.mirror.name,
                    r.status,
                    r.error
                        .as_deref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                )
            })
            .collect();
        if said.is_empty() {
            String::new()
        } else {
            format!("; the mirrors: {}", said.join("; "))
        }
    };
    let (manifest, media_type, digest, config, layers, index) = match fetch_manifest(
        &sources,
        &image,
        &wanted_ref,
        &settings.probe.platform,
        settings.probe.timeout,
    )
    .await
    {
        Ok(found) => found,
        Err(PullError::Manifest(m)) if used_upstream => {
            return Err(PullError::Manifest(m + &mirrors_said()))
        }
        Err(e) => return Err(e),
    };

    let cache = Cache::new(settings.cache_root.clone());
    cache
        .prepare()
        .map_err(|e| PullError::Cache(settings.cache_root.clone(), e))?;
    let _lock = crate::files::lock_dir(&settings.cache_root, CACHE_LOCK_WAIT, || {
        events(PullEvent::WaitingForCache {
            path: settings.cache_root.clone(),
        })
    })
    .map_err(|e| {
        PullError::Cache(
            settings.cache_root.clone(),
            std::io::Error::other(e.to_string()),
        )
    })?;
    let mut wanted = vec![Wanted {
        digest: config.digest.clone(),
        size: config.size,
    }];
    for l in &layers {
        if !wanted.iter().any(|w| w.digest == l.digest) {
            wanted.push(Wanted {
                digest: l.digest.clone(),
                size: l.size,
            });
        }
    }
    // Declared sizes are claims: check them before a byte is fetched.
    if let Some(w) = wanted
        .iter()
        .find(|w| w.size == 0 && w.digest != EMPTY_DIGEST)
    {
        return Err(PullError::Manifest(format!(
            "the manifest of {image} declares {} with size 0, but that is not the empty blob's digest; the registry serves a broken manifest",
            w.digest
        )));
    }
    let _held = hold_partials(&cache, &wanted, &events).await?;
    let need = cache.still_needed(
        &wanted
            .iter()
            .map(|w| (w.digest.clone(), w.size))
            .collect::<Vec<_>>(),
    );
    let free = free_space(&settings.cache_root)
        .map_err(|e| PullError::Cache(settings.cache_root.clone(), e))?;
    if need > free {
        return Err(PullError::Space {
            path: settings.cache_root.clone(),
            need,
            free,
        });
    }
    let pulled = PulledImage {
        reference: image.clone(),
        manifest,
        manifest_media_type: media_type,
        manifest_digest: digest,
        config,
        layers,
        blob_dir: cache.blobs_dir(),
    };
    let mut outcomes = Vec::new();
    let mut earlier: Vec<String> = Vec::new();
    // Mirrors still being checked when the pull started join it as they
    // pass, if they serve the digest the pull settled on.
    let mut late = download::Late::default();
    if let (Some(mut rx), false) = (late_results, used_upstream) {
        late.names = results
            .iter()
            .filter(|r| r.error.as_deref() == Some(probe::STILL_CHECKING))
            .map(|r| r.mirror.name.clone())
            .collect();
        let (tx, arrivals) = tokio::sync::mpsc::unbounded_channel();
        let want = wanted_ref.clone();
        let (opts, image) = (opts.clone(), image.clone());
        let make = move |m: &Mirror| source_for(&opts, &image, m);
        tokio::spawn(async move {
            while let Some(r) = rx.recv().await {
                let fresh = r.status == Status::Ok
                    && !r.mirror.upstream
                    && r.digest.as_deref().is_none_or(|d| d == want);
                if fresh {
                    if let Ok(src) = make(&r.mirror) {
                        if tx.send(src).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        late.arrivals = Some(arrivals);
    }
    let mut attempt = sources;
    loop {
        let late_now = std::mem::take(&mut late);
        let names: Vec<String> = attempt
            .iter()
            .map(|s| s.name.clone())
            .chain(late_now.names.iter().cloned())
            .collect();
        let progress = Arc::new(Progress::new(wanted.len(), names.len()));
        events(PullEvent::Downloading {
            image: Box::new(pulled.clone()),
            sources: names,
            progress: progress.clone(),
        });
        let result = download::fetch_all(
            &cache,
            attempt,
            late_now,
            &wanted,
            download::Limits::new(settings.per_source, settings.probe.timeout),
            progress,
        )
        .await;
        match result {
            Ok(o) => {
                outcomes.extend(o);
                break;
            }
            Err(download::DownloadError::NoSources { detail, .. })
                if !used_upstream && upstream.is_some() =>
            {
                // Every mirror failed mid-pull: upstream finishes the job.
                // Their reasons stay for the message if upstream fails too.
                earlier.push(detail);
                used_upstream = true;
                let up = upstream
                    .as_ref()
                    .map(make)
                    .transpose()
                    .map_err(|e| PullError::Manifest(e.message))?;
                attempt = up.into_iter().collect();
            }
            Err(download::DownloadError::NoSources { digest, detail }) => {
                earlier.push(detail);
                return Err(download::DownloadError::NoSources {
                    digest,
                    detail: earlier.join("; "),
                }
                .into());
            }
            Err(e) => return Err(e.into()),
        }
    }
    remember(&settings.cache_root, &pulled, index.as_ref());
    let bytes = wanted.iter().map(|w| w.size).sum();
    Ok(PullReport {
        image: pulled,
        probe: results,
        sources: merge_outcomes(outcomes),
        bytes,
        elapsed: start.elapsed(),
        used_upstream,
    })
}

/// Keep the manifests and the tag's resolution beside the blobs, so
/// `dmirror cache list` names the image and `dmirror serve` answers it
/// from the cache. Only a convenience: a failure here fails nothing.
fn remember(root: &std::path::Path, image: &PulledImage, index: Option<&FetchedManifest>) {
    let Ok(store) = store::Store::new(root.to_owned()) else {
        return;
    };
    let _ = store.put_manifest(
        &image.manifest_digest,
        &image.manifest,
        &image.manifest_media_type,
    );
    let top = match index {
        Some(i) => {
            let _ = store.put_manifest(&i.digest, &i.bytes, &i.declared_media_type());
            &i.digest
        }
        None => &image.manifest_digest,
    };
    if let (Some(tag), None) = (&image.reference.tag, &image.reference.digest) {
        let _ = store.put_tag(&store::TagRecord {
            registry: image.reference.registry.clone(),
            repo: image.reference.repository.clone(),
            tag: tag.clone(),
            digest: top.clone(),
        });
    }
}

/// A download source for mirror `m` serving `image`.
fn source_for(
    opts: &ClientOptions,
    image: &Reference,
    m: &Mirror,
) -> Result<Source, RegistryError> {
    let http = http_client(
        &ClientOptions {
            insecure: m.insecure,
            ..opts.clone()
        },
        &m.url,
    )?;
    Ok(Source {
        name: m.name.clone(),
        client: Arc::new(crate::registry::client::for_registry(http, &m.url, opts)),
        repo: m
            .repository_for(image)
            .unwrap_or_else(|| image.repository.clone()),
    })
}

fn merge_outcomes(all: Vec<SourceOutcome>) -> Vec<SourceOutcome> {
    let mut out: Vec<SourceOutcome> = Vec::new();
    for o in all {
        match out.iter_mut().find(|x| x.name == o.name) {
            Some(x) => {
                x.bytes += o.bytes;
                if x.dropped.is_none() {
                    x.dropped = o.dropped;
                }
            }
            None => out.push(o),
        }
    }
    out
}

/// The platform's manifest (bytes, media type, digest), its config and
/// layers, and the index it was picked from, if any.
type FetchedImage = (
    Vec<u8>,
    String,
    String,
    Descriptor,
    Vec<Descriptor>,
    Option<FetchedManifest>,
);

/// The platform's manifest, fetched by digest (so verified) from the first
/// source that serves it.
async fn fetch_manifest(
    sources: &[Source],
    image: &Reference,
    reference: &str,
    platform: &Platform,
    timeout: Duration,
) -> Result<FetchedImage, PullError> {
    let mut errors = Vec::new();
    for s in sources {
        let bounded = tokio::time::timeout(
            timeout,
            fetch_from(&s.client, &s.repo, image, reference, platform),
        )
        .await
        .unwrap_or_else(|_| {
            Err(RegistryError::new(
                crate::registry::ErrorKind::Timeout,
                format!(
                    "the manifest did not arrive within {}",
                    humantime::format_duration(timeout)
                ),
            ))
        });
        match bounded {
            Ok(found) => return Ok(found),
            Err(e) => errors.push(format!(
                "{}: {}",
                s.name,
                e.relative_to(s.client.base().as_str())
            )),
        }
    }
    Err(PullError::Manifest(format!(
        "cannot fetch the manifest of {image}: {}",
        errors.join("; ")
    )))
}

async fn fetch_from(
    client: &RegistryClient,
    repo: &str,
    image: &Reference,
    reference: &str,
    platform: &Platform,
) -> Result<FetchedImage, RegistryError> {
    let top = client.manifest(repo, reference).await?;
    let parsed =
        Manifest::parse(&top.bytes, top.media_type.as_deref()).map_err(RegistryError::broken)?;
    let (m, parsed, index) = match parsed {
        Manifest::Index { manifests } => {
            let entry = Manifest::select(&manifests, platform)
                .ok_or_else(|| RegistryError::broken(format!("{image} has no {platform} image")))?;
            let m = client.manifest(repo, &entry.digest).await?;
            let parsed = Manifest::parse(&m.bytes, m.media_type.as_deref())
                .map_err(RegistryError::broken)?;
            (m, parsed, Some(top))
        }
        image_manifest => (top, image_manifest, None),
    };
    let Manifest::Image { config, layers } = parsed else {
        return Err(RegistryError::broken("an index points at another index"));
    };
    let media_type = m.declared_media_type();
    Ok((m.bytes, media_type, m.digest, config, layers, index))
}
