//! Blobs: from the cache, or fetched once however many clients ask.
//!
//! A blob not cached is fetched by one download task, which writes its
//! bytes in order to `partial/<hex>.stream` and hashes them as they come;
//! every client asking for it meanwhile reads that file up to what has
//! been written. The source that cuts or stalls is demoted and the next
//! one continues from the same offset (`Range`). Each response holds back
//! its last byte until the whole blob has matched its digest: a blob that
//! does not match ends every response with an error, never a clean end.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::sync::watch;

use super::sources::{Source, DEMOTION, DROP};
use super::Ctx;
use crate::pull::cache::PartialHold;
use crate::registry::digest::Hasher;
use crate::registry::RegistryError;

/// Largest blob fetched when no manifest we served declared its size.
pub const MAX_UNDECLARED: u64 = 64 << 30;
/// Bytes read from disk per response chunk.
pub const CHUNK: u64 = 1024 * 1024;

/// Cached blobs this process has seen match their digest, by digest:
/// (size, inode). A whole-blob response from the cache re-hashes what it
/// sends unless the file is one of these; the inode survives the rename
/// into the cache and changes when the file is replaced.
pub type Verified = Arc<std::sync::Mutex<HashMap<String, (u64, u64)>>>;

/// Whether `file` is a copy of `digest` this process verified.
pub fn known_good(verified: &Verified, digest: &str, file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = file.metadata() else { return false };
    super::lock(verified).get(digest) == Some(&(m.len(), m.ino()))
}

pub(super) fn mark_good(verified: &Verified, digest: &str, file: &File) {
    use std::os::unix::fs::MetadataExt;
    if let Ok(m) = file.metadata() {
        let mut v = super::lock(verified);
        if v.len() > 100_000 {
            v.clear();
        }
        v.insert(digest.to_owned(), (m.len(), m.ino()));
    }
}

/// Why a blob could not be had.
#[derive(Debug, Clone)]
pub struct Failed {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug, Clone)]
pub enum End {
    Running,
    /// Verified and in the cache.
    Done,
    Failed(Failed),
}

/// A download's state, watched by every response reading it.
#[derive(Debug, Clone)]
pub struct State {
    /// Total size, once a source told it.
    pub size: Option<u64>,
    /// Bytes written, in order, from offset 0.
    pub written: u64,
    pub end: End,
    /// The sources that sent bytes, in order.
    pub from: Vec<String>,
    /// Bumped when the bytes written so far failed verification: readers
    /// of an earlier generation end with an error, readers of a later one
    /// wait for the verified blob in the cache.
    pub generation: u32,
}

/// One blob being fetched.
pub struct Inflight {
    pub file: Arc<File>,
    pub state: watch::Receiver<State>,
    /// Where the blob lands once verified.
    pub cached: std::path::PathBuf,
}

/// The running download of `digest`, started if none is.
pub fn join(
    ctx: &Arc<Ctx>,
    registry: &str,
    repo: &str,
    digest: &str,
) -> Result<Arc<Inflight>, Failed> {
    let mut all = super::lock(&ctx.inflight);
    if let Some(i) = all.get(digest) {
        ctx.metrics.joined.fetch_add(1, Relaxed);
        return Ok(i.clone());
    }
    let declared = super::lock(&ctx.sizes).get(digest).copied();
    // A large blob of known size over every healthy mirror at once, when
    // no other process (a serve or a pull) on this cache is fetching it;
    // else one source at a time into a stream file.
    let spread = match declared
        .and_then(|size| Some((size, super::spread::sources(ctx, registry, size)?)))
    {
        Some((size, sources)) => super::spread::open(ctx, digest, size)
            .map_err(|e| cache_failed(ctx, e))?
            .map(|(f, hold)| (f, Plan::Spread(sources, size, hold))),
        None => None,
    };
    let (file, written, plan) = match spread {
        Some((f, plan)) => (f, 0, plan),
        None => {
            let (f, path, w, h) = open_stream(ctx, digest).map_err(|e| cache_failed(ctx, e))?;
            (f, w, Plan::Stream(h, path))
        }
    };
    let (tx, rx) = watch::channel(State {
        size: None,
        written,
        end: End::Running,
        from: Vec::new(),
        generation: 0,
    });
    let file = Arc::new(file);
    let inflight = Arc::new(Inflight {
        file: file.clone(),
        state: rx,
        cached: ctx.store.cache.blob_path(digest),
    });
    all.insert(digest.to_owned(), inflight.clone());
    drop(all);
    let (ctx, registry, repo, digest) = (
        ctx.clone(),
        registry.to_owned(),
        repo.to_owned(),
        digest.to_owned(),
    );
    tokio::spawn(async move {
        let end = match plan {
            Plan::Stream(hasher, path) => {
                fetch(&ctx, &registry, &repo, &digest, (&file, &path), hasher, &tx).await
            }
            Plan::Spread(sources, size, _hold) => {
                match super::spread::fetch(&ctx, &registry, &repo, &digest, size, sources, &tx)
                    .await
                {
                    Ok(()) => Ok(()),
                    Err(Some(f)) => Err(f),
                    // Every healthy mirror failed: the others and upstream,
                    // one after another; readers wait for the verified blob.
                    Err(None) => match open_stream(&ctx, &digest) {
                        Ok((f, path, written, hasher)) => {
                            tx.send_modify(|s| {
                                s.generation += 1;
                                s.written = written;
                            });
                            fetch(&ctx, &registry, &repo, &digest, (&f, &path), hasher, &tx).await
                        }
                        Err(e) => Err(cache_failed(&ctx, e)),
                    },
                }
            }
        };
        let end = match end {
            Ok(()) => End::Done,
            Err(f) => End::Failed(f),
        };
        super::lock(&ctx.inflight).remove(&digest);
        tx.send_modify(|s| s.end = end);
    });
    Ok(inflight)
}

/// How a blob is fetched.
enum Plan {
    /// One source at a time, in order, hashed as it comes, into the file
    /// at this path.
    Stream(Hasher, PathBuf),
    /// Over these mirrors at once (`spread.rs`), this many bytes, the
    /// partial held for as long as the download runs.
    Spread(Vec<Arc<Source>>, u64, PartialHold),
}

fn cache_failed(ctx: &Ctx, e: std::io::Error) -> Failed {
    Failed {
        status: 500,
        code: "UNKNOWN",
        message: format!("cache {}: {e}", ctx.store.root().display()),
    }
}

/// The stream file of `digest` and its path: resumed where an earlier run
/// left it (its bytes re-hashed), or a private one when another process
/// holds it (never resumed, removed when the download ends either way).
fn open_stream(ctx: &Ctx, digest: &str) -> std::io::Result<(File, PathBuf, u64, Hasher)> {
    ctx.store.ensure()?;
    let path = ctx.store.stream_path(digest);
    let f = crate::files::open_no_follow(&path)?;
    if f.try_lock().is_err() {
        let tmp = tempfile::Builder::new()
            .prefix(crate::pull::store::PRIVATE)
            .tempfile_in(path.parent().unwrap_or(ctx.store.root()))?;
        let (f, private) = tmp.keep().map_err(|e| e.error)?;
        return Ok((f, private, 0, Hasher::default()));
    }
    let mut hasher = Hasher::default();
    let mut buf = vec![0u8; CHUNK as usize];
    let mut at = 0u64;
    loop {
        let n = f.read_at(&mut buf, at)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    Ok((f, path, at, hasher))
}

/// Fetch `digest` into `file` (at `path`) from `written` on, source after
/// source. A private file (another process holds the stream file) goes
/// when the download fails: it is never resumed.
async fn fetch(
    ctx: &Arc<Ctx>,
    registry: &str,
    repo: &str,
    digest: &str,
    (file, path): (&File, &Path),
    hasher: Hasher,
    tx: &watch::Sender<State>,
) -> Result<(), Failed> {
    let r = fetch_into(ctx, registry, repo, digest, (file, path), hasher, tx).await;
    if r.is_err() && path != ctx.store.stream_path(digest) {
        let _ = std::fs::remove_file(path);
    }
    r
}

async fn fetch_into(
    ctx: &Arc<Ctx>,
    registry: &str,
    repo: &str,
    digest: &str,
    (file, path): (&File, &Path),
    mut hasher: Hasher,
    tx: &watch::Sender<State>,
) -> Result<(), Failed> {
    let declared = super::lock(&ctx.sizes).get(digest).copied();
    let mut sources: Vec<Arc<Source>> = ctx.pool.mirrors(registry);
    sources.extend(ctx.pool.upstream(registry));
    let mut reasons = Vec::new();
    let mut not_found = 0;
    let mut tried = 0;
    let mut done = false;
    for src in &sources {
        if tried > 0 {
            ctx.metrics.failovers.fetch_add(1, Relaxed);
        }
        tried += 1;
        match from_source(
            ctx,
            src,
            registry,
            repo,
            digest,
            declared,
            file,
            &mut hasher,
            tx,
        )
        .await
        {
            Ok(()) => {
                done = true;
                break;
            }
            Err(e) => {
                if e.message.contains("HTTP 404 from") {
                    not_found += 1;
                } else if !src.mirror.upstream {
                    ctx.pool.demote(src.name(), DEMOTION);
                }
                if let Some(f) = e.fatal {
                    return Err(f);
                }
                (ctx.log)(format!(
                    "{}: {digest}: {}; trying the next source",
                    src.name(),
                    e.message
                ));
                reasons.push(format!("{}: {}", src.name(), e.message));
            }
        }
    }
    if !done {
        let status = if not_found == tried && tried > 0 {
            404
        } else {
            502
        };
        return Err(Failed {
            status,
            code: if status == 404 {
                "BLOB_UNKNOWN"
            } else {
                "UNAVAILABLE"
            },
            message: format!("no source could serve {digest}: {}", reasons.join("; ")),
        });
    }
    let actual = hasher.finish();
    if actual != digest {
        ctx.metrics.verification_failures.fetch_add(1, Relaxed);
        let from = tx.borrow().from.clone();
        for name in &from {
            ctx.pool.demote(name, DROP);
        }
        let _ = std::fs::remove_file(path);
        (ctx.log)(format!(
            "verification failed: {digest} from {} hashes to {actual}; dropped {} for {}",
            from.join(", "),
            if from.len() == 1 { "it" } else { "them" },
            humantime::format_duration(DROP)
        ));
        return Err(Failed {
            status: 502,
            code: "DIGEST_INVALID",
            message: format!(
                "the bytes of {digest} from {} hash to {actual}; try again",
                from.join(", ")
            ),
        });
    }
    // No fsync: a blob torn by a crash fails its digest when next sent
    // whole (it is re-hashed then, being unknown to the next process).
    let _ = ctx.store.ensure();
    std::fs::rename(path, ctx.store.cache.blob_path(digest)).map_err(|e| cache_failed(ctx, e))?;
    mark_good(&ctx.verified, digest, file);
    ctx.evict_soon();
    Ok(())
}

struct SourceError {
    message: String,
    /// Not the source's fault: stop trying others.
    fatal: Option<Failed>,
}

impl From<RegistryError> for SourceError {
    fn from(e: RegistryError) -> Self {
        Self {
            message: e.message,
            fatal: None,
        }
    }
}

fn source_error(m: impl Into<String>) -> SourceError {
    SourceError {
        message: m.into(),
        fatal: None,
    }
}

/// Continue the download from one source.
#[allow(clippy::too_many_arguments)]
async fn from_source(
    ctx: &Arc<Ctx>,
    src: &Source,
    registry: &str,
    repo: &str,
    digest: &str,
    declared: Option<u64>,
    file: &File,
    hasher: &mut Hasher,
    tx: &watch::Sender<State>,
) -> Result<(), SourceError> {
    let offset = tx.borrow().written;
    let wait = ctx.settings.first_byte;
    let repo = src.repo(registry, repo);
    let mut resp = tokio::time::timeout(wait, src.client.blob_from(&repo, digest, offset))
        .await
        .map_err(|_| {
            source_error(format!(
                "no answer within {}",
                humantime::format_duration(wait)
            ))
        })??;
    // What the answer covers: 206 from `offset`, or 200 from 0.
    let (mut skip, total) = match resp.status().as_u16() {
        206 => {
            let total = resp
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit_once('/'))
                .and_then(|(_, t)| t.parse::<u64>().ok());
            let start = resp
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes "))
                .and_then(|v| v.split('-').next())
                .and_then(|s| s.parse::<u64>().ok());
            if start != Some(offset) {
                return Err(source_error("answered a range it was not asked for"));
            }
            (0, total)
        }
        _ => (offset, resp.content_length()),
    };
    let total = match (total, declared) {
        (Some(t), Some(d)) if t != d => {
            return Err(source_error(format!(
                "sends {t} bytes for {digest}, whose manifest declares {d}"
            )))
        }
        (t, d) => d.or(t),
    };
    if let Some(t) = total {
        if declared.is_none() && t > MAX_UNDECLARED {
            return Err(source_error(format!(
                "declares {t} bytes for {digest}, more than the {MAX_UNDECLARED} accepted without a manifest declaring it"
            )));
        }
        let need = t.saturating_sub(offset);
        if !super::limits::room_for(ctx, digest, need, declared.is_some()).await {
            let f = super::limits::no_room(ctx, digest, need);
            return Err(SourceError {
                message: f.message.clone(),
                fatal: Some(f),
            });
        }
    }
    tx.send_modify(|s| {
        s.size = total;
        s.from.push(src.name().to_owned());
    });
    let stall = ctx.settings.stall;
    let mut at = offset;
    let mut pace = super::limits::Pace::default();
    loop {
        let chunk = tokio::time::timeout(stall, resp.chunk())
            .await
            .map_err(|_| {
                source_error(format!(
                    "stalled for {} at byte {at}",
                    humantime::format_duration(stall)
                ))
            })?
            .map_err(|e| RegistryError::from_transport(&e, src.mirror.url.as_str()))?;
        let Some(mut chunk) = chunk else { break };
        if skip > 0 {
            let n = skip.min(chunk.len() as u64);
            skip -= n;
            chunk = chunk.slice(n as usize..);
        }
        if chunk.is_empty() {
            continue;
        }
        let end = at + chunk.len() as u64;
        if total.is_some_and(|t| end > t) || (total.is_none() && end > MAX_UNDECLARED) {
            return Err(source_error(format!(
                "sends more than the {} bytes of {digest}",
                total.unwrap_or(MAX_UNDECLARED)
            )));
        }
        let mut written = file.write_all_at(&chunk, at);
        if written
            .as_ref()
            .is_err_and(|e| e.raw_os_error() == Some(libc::ENOSPC))
        {
            let rest = total.unwrap_or(end).saturating_sub(at);
            if super::limits::room_for(ctx, digest, rest, declared.is_some()).await {
                written = file.write_all_at(&chunk, at);
            }
        }
        written.map_err(|e| {
            let f = Failed {
                status: 507,
                code: "UNKNOWN",
                message: crate::pull::download::disk_error(&ctx.store.stream_path(digest), e)
                    .to_string(),
            };
            SourceError {
                message: f.message.clone(),
                fatal: Some(f),
            }
        })?;
        hasher.update(&chunk);
        ctx.metrics.fetched(src.name(), chunk.len() as u64);
        at = end;
        tx.send_modify(|s| s.written = at);
        // Judged after the bytes count as written: the next source goes
        // on from here.
        if let Some(why) = pace.too_slow(chunk.len() as u64) {
            return Err(source_error(why));
        }
    }
    match total {
        Some(t) if at < t => Err(source_error(format!(
            "cut the transfer at byte {at} of {t}"
        ))),
        _ => Ok(()),
    }
}

/// Blobs up to this size are verified before their response starts, so a
/// source that lies about one costs the client nothing: the next source
/// serves the same request. Larger ones stream as they arrive.
pub const VERIFY_FIRST: u64 = 1 << 20;

/// The download of `digest` to answer from, and its size: joined or
/// started, and for a small blob finished and verified (a failed
/// verification tries the next source, at most three times).
pub async fn settled(
    ctx: &Arc<Ctx>,
    registry: &str,
    repo: &str,
    digest: &str,
) -> Result<(Arc<Inflight>, Option<u64>), Failed> {
    let mut tries = 0;
    loop {
        let inflight = join(ctx, registry, repo, digest)?;
        let size = size_of(&inflight).await?;
        if size.is_none_or(|s| s > VERIFY_FIRST) {
            return Ok((inflight, size));
        }
        let mut rx = inflight.state.clone();
        let end = loop {
            let end = rx.borrow_and_update().end.clone();
            if !matches!(end, End::Running) {
                break end;
            }
            if rx.changed().await.is_err() {
                break End::Failed(gone());
            }
        };
        match end {
            End::Failed(f) if f.code == "DIGEST_INVALID" && tries < 3 => {
                tries += 1;
                ctx.metrics.failovers.fetch_add(1, Relaxed);
            }
            End::Failed(f) => return Err(f),
            _ => return Ok((inflight, size)),
        }
    }
}

/// Wait until the download's size is known (or it failed).
pub async fn size_of(inflight: &Inflight) -> Result<Option<u64>, Failed> {
    let mut rx = inflight.state.clone();
    loop {
        {
            let s = rx.borrow_and_update();
            match &s.end {
                End::Failed(f) => return Err(f.clone()),
                End::Done => return Ok(s.size.or(Some(s.written))),
                End::Running if s.size.is_some() => return Ok(s.size),
                End::Running => {}
            }
        }
        if rx.changed().await.is_err() {
            return Err(gone());
        }
    }
}

pub(super) fn gone() -> Failed {
    Failed {
        status: 502,
        code: "UNAVAILABLE",
        message: "the download ended without a word".into(),
    }
}

/// Known blob sizes (from manifests served), bounded.
pub fn remember_sizes(
    sizes: &mut HashMap<String, u64>,
    found: impl IntoIterator<Item = (String, u64)>,
) {
    if sizes.len() > 200_000 {
        sizes.clear();
    }
    sizes.extend(found);
}
