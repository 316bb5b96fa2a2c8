//! `dmirror serve`'s engine: a read-only registry mirror on this machine
//! that answers every pull from the ranked mirrors, with the guarantees of
//! `dmirror pull`: tags resolved by upstream or by the mirrors' majority,
//! every byte verified, the next source tried within the same request, one
//! cache shared with `pull`.
//!
//! - `route.rs`: which registry, repository and object a request names.
//! - `sources.rs`: the mirrors per registry, best first, demoted live.
//! - `manifest.rs`: tags resolved and manifests fetched by digest.
//! - `blob.rs`: one download per blob, read by every client asking;
//!   `spread.rs`: a large one over several mirrors at once; `reader.rs`:
//!   a response's bytes.
//! - `store.rs`: what is kept on disk; `http.rs`: the protocol;
//!   `metrics.rs`: `/metrics`; `unit.rs`: the systemd service.
//!
//! It never prints: request lines and notes go to the `log` callback.

pub mod blob;
pub mod gate;
pub mod http;
pub mod limits;
pub mod manifest;
pub mod metrics;
pub mod reader;
pub mod route;
pub mod sources;
pub mod spread;
pub mod unit;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::config::Mirror;
use crate::probe::ProbeSettings;
use crate::registry::client::ClientOptions;

/// Where serve listens unless told otherwise (loopback only).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5280";
/// Connections served at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 512;
/// Request line plus headers, at most.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Bound on a client's TLS handshake.
pub const HANDSHAKE: Duration = Duration::from_secs(10);
/// A throughput sample's bound for serve's probes (they repeat).
const SAMPLE_BYTES: u64 = 64 * 1024 * 1024;

/// One probe per registry `list` serves, each with its image from
/// `images` or the registry's built-in one. A list that serves nothing
/// sends every registry upstream.
pub fn probes(
    list: &crate::config::MirrorList,
    images: &[crate::reference::Reference],
    platform: &crate::registry::manifest::Platform,
    timeout: Duration,
    budget: Duration,
    network: &crate::net::Network,
    note: &dyn Fn(String),
) -> anyhow::Result<Vec<ProbeSettings>> {
    let plans = match crate::apply::registries(list, &[], images, note) {
        Ok(p) => p,
        Err(_) if images.is_empty() => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    Ok(plans
        .into_iter()
        .map(|(registry, image)| ProbeSettings {
            mirrors: list
                .enabled()
                .filter(|m| m.serves(&registry))
                .cloned()
                .collect(),
            image,
            platform: platform.clone(),
            timeout,
            budget,
            sample_bytes: SAMPLE_BYTES,
            network: network.clone(),
            settle_early: false,
        })
        .collect())
}

/// How long running transfers may take to finish on shutdown.
pub const DRAIN: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub listen: SocketAddr,
    /// The enabled mirrors.
    pub mirrors: Vec<Mirror>,
    /// One probe per registry the mirrors serve.
    pub probes: Vec<ProbeSettings>,
    pub cache_root: PathBuf,
    pub max_cache: Option<u64>,
    /// Re-probe this often (none: only at start).
    pub reprobe: Option<Duration>,
    /// Bound on a manifest request to one source, and on a tag's vote.
    pub timeout: Duration,
    /// Bound on a source's first byte of a blob.
    pub first_byte: Duration,
    /// Bound on a gap between two chunks of a blob.
    pub stall: Duration,
    pub network: crate::net::Network,
    /// Where the probe history lives (none: not kept).
    pub state_dir: Option<PathBuf>,
    /// Networks whose clients are answered (this machine always is);
    /// empty: everyone who reaches the address.
    pub allow: Vec<ipnet::IpNet>,
    /// TLS certificate and key (PEM), for other machines' engines.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// (registry, repository, tag).
pub type TagKey = (String, String, String);

/// Everything a request handler reads.
pub struct Ctx {
    pub settings: ServeSettings,
    pub pool: sources::Pool,
    pub store: crate::pull::store::Store,
    pub metrics: metrics::Metrics,
    pub inflight: Mutex<HashMap<String, Arc<blob::Inflight>>>,
    /// Tag resolutions: (registry, repo, tag) → (digest, when).
    pub tags: Mutex<HashMap<TagKey, (String, Instant)>>,
    /// Blob sizes the manifests served declared.
    pub sizes: Mutex<HashMap<String, u64>>,
    /// Cached blobs known to match their digest.
    pub verified: blob::Verified,
    pub log: Box<dyn Fn(String) + Send + Sync>,
    evicting: AtomicBool,
}

impl Ctx {
    /// Trim the cache to `--max-cache` in the background (once at a time).
    pub fn evict_soon(self: &Arc<Self>) {
        let Some(max) = self.settings.max_cache else {
            return;
        };
        if self.evicting.swap(true, Relaxed) {
            return;
        }
        let ctx = self.clone();
        tokio::task::spawn_blocking(move || {
            let removed = ctx.store.evict(max);
            if removed > 0 {
                (ctx.log)(format!(
                    "cache over {max} bytes: removed {removed} bytes of least recently used blobs"
                ));
            }
            ctx.evicting.store(false, Relaxed);
        });
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    #[error("cache {0}: {1}")]
    Cache(PathBuf, std::io::Error),
    #[error("{0}")]
    Tls(String),
}

/// Serve until `shutdown` resolves, then let running transfers finish
/// (at most [`DRAIN`]). `ready` gets the address bound.
pub async fn run(
    settings: ServeSettings,
    log: Box<dyn Fn(String) + Send + Sync>,
    ready: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    let tls = match &settings.tls {
        Some((cert, key)) => Some(gate::acceptor(cert, key).map_err(ServeError::Tls)?),
        None => None,
    };
    let store = crate::pull::store::Store::new(settings.cache_root.clone())
        .map_err(|e| ServeError::Cache(settings.cache_root.clone(), e))?;
    store.sweep_private(crate::pull::store::PRIVATE_IDLE);
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| ServeError::Listen(settings.listen, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServeError::Listen(settings.listen, e))?;
    let opts = ClientOptions {
        connect_timeout: settings.first_byte,
        network: settings.network.clone(),
        ..ClientOptions::default()
    };
    let ctx = Arc::new(Ctx {
        pool: sources::Pool::new(settings.mirrors.clone(), opts),
        store,
        metrics: metrics::Metrics::default(),
        inflight: Mutex::new(HashMap::new()),
        tags: Mutex::new(HashMap::new()),
        sizes: Mutex::new(HashMap::new()),
        verified: Default::default(),
        log,
        evicting: AtomicBool::new(false),
        settings,
    });
    ready(addr);
    ctx.evict_soon();
    let prober = tokio::spawn(probe_loop(ctx.clone()));
    let result = accept_loop(ctx.clone(), listener, tls, shutdown).await;
    prober.abort();
    result
}

/// Probe every registry's mirrors now and every `--reprobe`.
async fn probe_loop(ctx: Arc<Ctx>) {
    loop {
        for p in &ctx.settings.probes {
            let mut warn = |w: String| (ctx.log)(w);
            let ranked =
                crate::ranked::probe_ranked(p, ctx.settings.state_dir.clone(), None, &mut warn)
                    .await;
            let registry = &p.image.registry;
            (ctx.log)(format!(
                "probe {registry}: {}; order: {}",
                crate::probe::summary(&ranked.results),
                ranked
                    .results
                    .iter()
                    .filter(|r| r.status == crate::probe::Status::Ok)
                    .map(|r| r.mirror.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            ctx.pool.update(registry, &ranked.results);
        }
        match ctx.settings.reprobe {
            Some(every) => tokio::time::sleep(every).await,
            None => return,
        }
    }
}

async fn accept_loop(
    ctx: Arc<Ctx>,
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: wait, do not spin.
                    (ctx.log)(format!("accept: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let watcher = graceful.watcher();
        let (ctx, tls) = (ctx.clone(), tls.clone());
        tokio::spawn(async move {
            match tls {
                Some(tls) => match tokio::time::timeout(HANDSHAKE, tls.accept(stream)).await {
                    Ok(Ok(s)) => connection(ctx, s, peer, watcher).await,
                    // A client that does not speak TLS, or too slowly.
                    Ok(Err(_)) | Err(_) => {
                        ctx.metrics.tls_failures.fetch_add(1, Relaxed);
                    }
                },
                None => connection(ctx, stream, peer, watcher).await,
            }
            drop(permit);
        });
    }
    drop(listener);
    (ctx.log)(format!(
        "shutting down: letting running transfers finish (at most {})",
        humantime::format_duration(DRAIN)
    ));
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(DRAIN) => {
            (ctx.log)("transfers still running after the drain time; stopping them".into());
        }
    }
    Ok(())
}

/// Serve one connection (plain or TLS) until it closes or shutdown ends it.
async fn connection<I>(
    ctx: Arc<Ctx>,
    io: I,
    peer: SocketAddr,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use hyper_util::rt::{TokioIo, TokioTimer};
    let allowed = gate::allowed(&ctx.settings.allow, peer.ip());
    let ctx2 = ctx.clone();
    let service = hyper::service::service_fn(move |req| http::handle(ctx2.clone(), req, allowed));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .max_buf_size(MAX_HEAD_BYTES.max(8192))
        .serve_connection(TokioIo::new(io), service);
    let _ = watcher.watch(conn).await;
}

/// `--listen`: `HOST:PORT`, or `:PORT` for loopback.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let full = if s.starts_with(':') {
        format!("127.0.0.1{s}")
    } else {
        s.to_owned()
    };
    full.parse().map_err(|_| {
        format!("--listen {s:?}: give an address and port, e.g. 127.0.0.1:5280, [::1]:5280 or 0.0.0.0:5280")
    })
}

/// SIGINT or SIGTERM: the shutdown `run` waits for.
pub async fn signalled() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}
