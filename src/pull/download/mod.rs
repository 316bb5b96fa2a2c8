//! Downloading blobs over several mirrors at once.
//!
//! Every blob is cut into segments (byte ranges) in one shared queue. Each
//! mirror runs a few workers that take the next segment, so faster mirrors
//! take more of the work. When the queue runs dry, an idle worker splits
//! the largest segment still in flight and takes its tail, sized by the two
//! mirrors' speeds, so the last bytes do not wait on the slowest mirror. A
//! segment that fails or stalls goes back to the queue from where it
//! stopped, and is resumed with `Range` on whichever mirror takes it next.
//!
//! A blob is verified (sha256) once all its bytes are written. When it does
//! not match, each mirror that wrote part of it fetches it whole on its own;
//! a mirror whose bytes fail is dropped for the rest of the pull.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::cache::{self, Cache};
use transfer::transfer;
use verify::complete_blob;

mod pace;
mod transfer;
mod verify;
use crate::registry::RegistryClient;

/// Initial segment size: small enough to spread a layer over mirrors, large
/// enough that request overhead stays negligible.
const SEGMENT: u64 = 4 * 1024 * 1024;
/// Never split a segment into parts smaller than this.
const MIN_SPLIT: u64 = 512 * 1024;
/// A transfer that yields no bytes for this long is abandoned and resumed elsewhere.
const STALL: Duration = Duration::from_secs(10);
/// Attempts in a row without a single byte before a mirror is dropped.
const MAX_FAILURES: u32 = 4;
/// Bound on a blob the verification step fetches whole.
const WHOLE_FETCH_TIMEOUT: Duration = Duration::from_secs(600);

/// A mirror to download from.
pub struct Source {
    pub name: String,
    pub client: Arc<RegistryClient>,
    /// The image's repository as this source names it (a prefix mirror
    /// serves `ghcr.io/owner/app` for ghcr.io's `owner/app`).
    pub repo: String,
}

/// How a download uses each source.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections per source.
    pub per_source: usize,
    /// Bound on each request's first byte.
    pub first_byte: Duration,
    /// Bound on a gap between two chunks; the rest is resumed elsewhere.
    pub stall: Duration,
}

impl Limits {
    /// `pull`'s: `per_source` connections, `first_byte` (its `--timeout`),
    /// the default stall bound.
    pub fn new(per_source: usize, first_byte: Duration) -> Self {
        Self {
            per_source,
            first_byte,
            stall: STALL,
        }
    }
}

/// A blob to fetch.
#[derive(Debug, Clone)]
pub struct Wanted {
    pub digest: String,
    pub size: u64,
}

/// What a late mirror's slot says until it joins.
pub const LATE: &str = "still being checked when the pull started; it never passed";

/// Mirrors still being checked when the pull started: their names (one
/// slot each) and the sources, as they pass, on `arrivals`.
#[derive(Default)]
pub struct Late {
    pub names: Vec<String>,
    pub arrivals: Option<tokio::sync::mpsc::UnboundedReceiver<Source>>,
}

/// Live counters for progress display (and for `serve`, which streams
/// each blob's verified-in-order prefix while it downloads).
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes written, per blob (index into the wanted list).
    pub blob_bytes: Vec<AtomicU64>,
    /// Bytes written in order from offset 0, per blob: what a reader may
    /// stream before the blob is verified.
    pub blob_prefix: Vec<AtomicU64>,
    /// Times a blob failed verification and started over in a new file,
    /// per blob: bytes read from it before are not to be trusted.
    pub blob_restarts: Vec<AtomicU32>,
    /// Bytes received, per source.
    pub source_bytes: Vec<AtomicU64>,
    /// Segments in flight, per source.
    pub source_active: Vec<AtomicUsize>,
    pub blobs_done: AtomicUsize,
}

/// How one source fared.
#[derive(Debug, Clone)]
pub struct SourceOutcome {
    pub name: String,
    pub bytes: u64,
    pub dropped: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("no mirror is left to fetch {digest} from; {detail}")]
    NoSources { digest: String, detail: String },
    #[error("cache: {0}")]
    Io(#[from] std::io::Error),
    /// The disk, not a mirror: full, over quota, read-only.
    #[error("cannot write {path}: {cause}; nothing is wrong with the mirrors. {hint}")]
    Disk {
        path: String,
        cause: std::io::Error,
        hint: &'static str,
    },
    #[error("{0}")]
    Manifest(String),
}

/// A write error in the cache as what it is: the disk's fault (full, over
/// quota, read-only), never a mirror's.
pub fn disk_error(path: &std::path::Path, cause: std::io::Error) -> DownloadError {
    let hint = match cause.raw_os_error() {
        Some(libc::ENOSPC) => {
            "Free some space, or put the cache on a larger disk (XDG_CACHE_HOME; for serve, --cache-dir)"
        }
        Some(libc::EDQUOT) => "Your disk quota is used up; free some of it",
        Some(libc::EROFS) => {
            "The file system is read-only; put the cache on a writable one (XDG_CACHE_HOME; for serve, --cache-dir)"
        }
        Some(libc::ELOOP) => {
            "A link stands where dmirror writes (it never writes through one): remove it, and ask who put it there"
        }
        _ => "Check the disk",
    };
    DownloadError::Disk {
        path: path.display().to_string(),
        cause,
        hint,
    }
}

struct Seg {
    blob: usize,
    pos: AtomicU64,
    end: AtomicU64,
    started: Instant,
    start: u64,
}

struct BlobState {
    digest: String,
    size: u64,
    file: Mutex<Option<Arc<std::fs::File>>>,
    /// Segments queued or in flight.
    outstanding: AtomicUsize,
    /// Ranges written, and by which source: who to suspect, and what to
    /// compare with a verified copy, when the blob does not match.
    written_by: Mutex<Vec<(u64, u64, usize)>>,
    done_ranges: Mutex<Vec<(u64, u64)>>,
    done: AtomicBool,
}

struct SourceState {
    name: String,
    /// The client and the repository as this source names it; set when the
    /// source joins (at once, or when a late mirror passes its check).
    conn: std::sync::OnceLock<(Arc<RegistryClient>, String)>,
    failures: AtomicU32,
    dropped: Mutex<Option<String>>,
    busy_nanos: AtomicU64,
    bytes_done: AtomicU64,
}

impl SourceState {
    fn is_dropped(&self) -> bool {
        self.dropped.lock().map(|d| d.is_some()).unwrap_or(true)
    }

    fn drop_with(&self, reason: String) {
        if let Ok(mut d) = self.dropped.lock() {
            d.get_or_insert(reason);
        }
    }

    /// Bytes per second over the segments it finished; `None` before any.
    fn rate(&self) -> Option<f64> {
        let busy = self.busy_nanos.load(Ordering::Relaxed);
        (busy > 0).then(|| self.bytes_done.load(Ordering::Relaxed) as f64 / (busy as f64 / 1e9))
    }
}

struct Shared {
    cache: Cache,
    blobs: Vec<BlobState>,
    sources: Vec<SourceState>,
    queue: Mutex<VecDeque<(usize, u64, u64)>>,
    inflight: Mutex<Vec<(usize, Arc<Seg>)>>,
    remaining: AtomicUsize,
    notify: Notify,
    fatal: Mutex<Option<DownloadError>>,
    progress: Arc<Progress>,
    limits: Limits,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Fetch every `wanted` blob into `cache`, over `sources`, as `limits` say.
pub async fn fetch_all(
    cache: &Cache,
    sources: Vec<Source>,
    late: Late,
    wanted: &[Wanted],
    limits: Limits,
    progress: Arc<Progress>,
) -> Result<Vec<SourceOutcome>, DownloadError> {
    let per_source = limits.per_source;
    let mut late_rx = late.arrivals;
    let mut blobs = Vec::new();
    let mut queue = VecDeque::new();
    let mut remaining = 0;
    for (i, w) in wanted.iter().enumerate() {
        let state = BlobState {
            digest: w.digest.clone(),
            size: w.size,
            file: Mutex::new(None),
            outstanding: AtomicUsize::new(0),
            written_by: Mutex::new(Vec::new()),
            done_ranges: Mutex::new(Vec::new()),
            done: AtomicBool::new(false),
        };
        if cache.has_verified(&w.digest, w.size) {
            state.done.store(true, Ordering::Relaxed);
            progress.blob_bytes[i].store(w.size, Ordering::Relaxed);
            progress.blob_prefix[i].store(w.size, Ordering::Relaxed);
            progress.blobs_done.fetch_add(1, Ordering::Relaxed);
        } else {
            let done = cache.done_ranges(&w.digest, w.size);
            let already: u64 = done.iter().map(|(s, e)| e - s).sum();
            progress.blob_bytes[i].store(already, Ordering::Relaxed);
            progress.blob_prefix[i].store(prefix_of(&done), Ordering::Relaxed);
            *lock(&state.done_ranges) = done.clone();
            let file = cache
                .open_partial(&w.digest, w.size)
                .map_err(|e| disk_error(&cache.partial_path(&w.digest), e))?;
            *lock(&state.file) = Some(Arc::new(file));
            let gaps = cache::missing(&done, w.size);
            if gaps.is_empty() {
                // Every byte is here from an earlier run: verify it below.
                queue.push_back((i, w.size, w.size));
                state.outstanding.store(1, Ordering::Relaxed);
            }
            // One queue entry per gap: segments are cut from it as workers
            // take them, so memory does not grow with a declared size.
            for (s, e) in gaps {
                queue.push_back((i, s, e));
                state.outstanding.fetch_add(1, Ordering::Relaxed);
            }
            remaining += 1;
        }
        blobs.push(state);
    }
    let state = |name: String, dropped: Option<String>| SourceState {
        name,
        conn: std::sync::OnceLock::new(),
        failures: AtomicU32::new(0),
        dropped: Mutex::new(dropped),
        busy_nanos: AtomicU64::new(0),
        bytes_done: AtomicU64::new(0),
    };
    let mut slots = Vec::new();
    for src in sources {
        let slot = state(src.name, None);
        let _ = slot.conn.set((src.client, src.repo));
        slots.push(slot);
    }
    let joined = slots.len();
    // A late mirror waits in its slot, out of the work, until it passes.
    for name in late.names {
        slots.push(state(name, Some(LATE.to_owned())));
    }
    let shared = Arc::new(Shared {
        cache: cache.clone(),
        blobs,
        sources: slots,
        queue: Mutex::new(queue),
        inflight: Mutex::new(Vec::new()),
        remaining: AtomicUsize::new(remaining),
        notify: Notify::new(),
        fatal: Mutex::new(None),
        progress,
        limits,
    });

    let mut workers = tokio::task::JoinSet::new();
    for s in 0..joined {
        for _ in 0..per_source.max(1) {
            workers.spawn(worker(shared.clone(), s));
        }
    }
    loop {
        tokio::select! {
            arrived = async { late_rx.as_mut()?.recv().await }, if late_rx.is_some() => {
                let Some(src) = arrived else {
                    late_rx = None;
                    continue;
                };
                // A late mirror passed its check: it joins in its slot.
                let slot = (joined..shared.sources.len())
                    .find(|&i| shared.sources[i].name == src.name && shared.sources[i].conn.get().is_none());
                if let Some(i) = slot {
                    let _ = shared.sources[i].conn.set((src.client, src.repo));
                    if let Ok(mut d) = shared.sources[i].dropped.lock() {
                        *d = None;
                    }
                    for _ in 0..per_source.max(1) {
                        workers.spawn(worker(shared.clone(), i));
                    }
                }
            }
            done = workers.join_next() => {
                if done.is_none() {
                    break;
                }
            }
        }
    }
    let outcomes = shared
        .sources
        .iter()
        .enumerate()
        .map(|(i, s)| SourceOutcome {
            name: s.name.clone(),
            bytes: shared.progress.source_bytes[i].load(Ordering::Relaxed),
            dropped: lock(&s.dropped).clone(),
        })
        .collect::<Vec<_>>();
    if let Some(e) = lock(&shared.fatal).take() {
        if matches!(e, DownloadError::Disk { .. }) {
            // A full disk: give back what the unfinished blobs hold.
            for b in shared
                .blobs
                .iter()
                .filter(|b| !b.done.load(Ordering::Acquire))
            {
                *lock(&b.file) = None;
                shared.cache.discard_partial(&b.digest);
            }
        }
        return Err(e);
    }
    if shared.remaining.load(Ordering::Acquire) > 0 {
        let missing = shared
            .blobs
            .iter()
            .find(|b| !b.done.load(Ordering::Acquire));
        let detail = outcomes
            .iter()
            .map(|o| format!("{}: {}", o.name, o.dropped.as_deref().unwrap_or("gave up")))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(DownloadError::NoSources {
            digest: missing.map(|b| b.digest.clone()).unwrap_or_default(),
            detail,
        });
    }
    Ok(outcomes)
}

fn finished(shared: &Shared) -> bool {
    shared.remaining.load(Ordering::Acquire) == 0
        || lock(&shared.fatal).is_some()
        || shared.sources.iter().all(SourceState::is_dropped)
}

async fn worker(shared: Arc<Shared>, s: usize) {
    loop {
        if finished(&shared) || shared.sources[s].is_dropped() {
            shared.notify.notify_waiters();
            return;
        }
        match next_segment(&shared, s) {
            Some(seg) => run_segment(&shared, s, seg).await,
            None => {
                let _ = tokio::time::timeout(Duration::from_millis(100), shared.notify.notified())
                    .await;
            }
        }
    }
}

/// The next queued segment (cut from the front of the next gap), or the
/// tail of the largest one in flight.
fn next_segment(shared: &Shared, s: usize) -> Option<Arc<Seg>> {
    let queued = {
        let mut queue = lock(&shared.queue);
        let front = queue.pop_front();
        match front {
            Some((blob, start, end)) if end - start > SEGMENT => {
                queue.push_front((blob, start + SEGMENT, end));
                shared.blobs[blob]
                    .outstanding
                    .fetch_add(1, Ordering::AcqRel);
                Some((blob, start, start + SEGMENT))
            }
            other => other,
        }
    };
    let seg = match queued {
        Some((blob, start, end)) => Arc::new(Seg {
            blob,
            pos: AtomicU64::new(start),
            end: AtomicU64::new(end),
            started: Instant::now(),
            start,
        }),
        None => steal(shared, s)?,
    };
    lock(&shared.inflight).push((s, seg.clone()));
    Some(seg)
}

fn steal(shared: &Shared, thief: usize) -> Option<Arc<Seg>> {
    let inflight = lock(&shared.inflight);
    let (victim, seg) = inflight
        .iter()
        .filter(|(owner, _)| *owner != thief)
        .max_by_key(|(_, seg)| {
            seg.end
                .load(Ordering::Acquire)
                .saturating_sub(seg.pos.load(Ordering::Acquire))
        })?;
    let pos = seg.pos.load(Ordering::Acquire);
    let end = seg.end.load(Ordering::Acquire);
    let left = end.saturating_sub(pos);
    if left < 2 * MIN_SPLIT {
        return None;
    }
    let elapsed = seg.started.elapsed().as_secs_f64().max(1e-3);
    let victim_rate = (pos - seg.start) as f64 / elapsed;
    let thief_rate = shared.sources[thief].rate().unwrap_or(victim_rate).max(1.0);
    let victim_rate = victim_rate
        .max(shared.sources[*victim].rate().unwrap_or(0.0))
        .max(1.0);
    let share = (left as f64 * thief_rate / (thief_rate + victim_rate)) as u64;
    if share < MIN_SPLIT {
        return None;
    }
    let mid = end - share;
    if seg
        .end
        .compare_exchange(end, mid, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return None;
    }
    shared.blobs[seg.blob]
        .outstanding
        .fetch_add(1, Ordering::AcqRel);
    Some(Arc::new(Seg {
        blob: seg.blob,
        pos: AtomicU64::new(mid),
        end: AtomicU64::new(end),
        started: Instant::now(),
        start: mid,
    }))
}

fn leave_inflight(shared: &Shared, seg: &Arc<Seg>) {
    lock(&shared.inflight).retain(|(_, x)| !Arc::ptr_eq(x, seg));
}

async fn run_segment(shared: &Arc<Shared>, s: usize, seg: Arc<Seg>) {
    let blob = &shared.blobs[seg.blob];
    let source = &shared.sources[s];
    let begin = Instant::now();
    let from = seg.pos.load(Ordering::Acquire);
    shared.progress.source_active[s].fetch_add(1, Ordering::Relaxed);
    let result = transfer(shared, s, &seg).await;
    shared.progress.source_active[s].fetch_sub(1, Ordering::Relaxed);
    let got = seg.pos.load(Ordering::Acquire).saturating_sub(from);
    leave_inflight(shared, &seg);
    let pos = seg.pos.load(Ordering::Acquire);
    let end = seg.end.load(Ordering::Acquire);
    if got > 0 {
        lock(&blob.written_by).push((from, pos.min(end).max(from), s));
        let mut ranges = lock(&blob.done_ranges);
        ranges.push((from, pos.min(end).max(from)));
        *ranges = cache::normalise(std::mem::take(&mut *ranges));
        let _ = shared.cache.record_ranges(&blob.digest, &ranges);
        shared.progress.blob_prefix[seg.blob].fetch_max(prefix_of(&ranges), Ordering::AcqRel);
    }
    match result {
        Ok(()) if pos >= end => {
            source.failures.store(0, Ordering::Relaxed);
            source
                .busy_nanos
                .fetch_add(begin.elapsed().as_nanos() as u64, Ordering::Relaxed);
            source.bytes_done.fetch_add(got, Ordering::Relaxed);
            if blob.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
                complete_blob(shared, seg.blob).await;
            }
        }
        other => {
            // Resume the rest elsewhere (or here, later).
            lock(&shared.queue).push_front((seg.blob, pos, end));
            shared.notify.notify_waiters();
            if got == 0 {
                let n = source.failures.fetch_add(1, Ordering::AcqRel) + 1;
                if n >= MAX_FAILURES {
                    let why = match other {
                        Err(e) => e.message,
                        Ok(()) => "transfers ended early".into(),
                    };
                    source.drop_with(format!("{n} attempts in a row failed; last: {why}"));
                }
            } else {
                source.failures.store(0, Ordering::Relaxed);
            }
        }
    }
}

/// The end of the ranges' first run when it starts at offset 0.
fn prefix_of(ranges: &[(u64, u64)]) -> u64 {
    match ranges.first() {
        Some(&(0, e)) => e,
        _ => 0,
    }
}

impl Progress {
    pub fn new(blobs: usize, sources: usize) -> Self {
        Self {
            blob_bytes: (0..blobs).map(|_| AtomicU64::new(0)).collect(),
            blob_prefix: (0..blobs).map(|_| AtomicU64::new(0)).collect(),
            blob_restarts: (0..blobs).map(|_| AtomicU32::new(0)).collect(),
            source_bytes: (0..sources).map(|_| AtomicU64::new(0)).collect(),
            source_active: (0..sources).map(|_| AtomicUsize::new(0)).collect(),
            blobs_done: AtomicUsize::new(0),
        }
    }
}
