//! A large blob over several mirrors at once: `pull`'s downloader (ranges
//! across every healthy mirror, faster ones taking more, stalled ranges
//! moved, the mirror that lied found and dropped) writes the blob, and the
//! bytes it has written in order from offset 0 stream to every client
//! reading the download, the last one held until the digest matched.

use std::fs::File;
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::blob::{Failed, State, VERIFY_FIRST};
use super::sources::{Source, DEMOTION, DROP};
use super::Ctx;
use crate::pull::cache::PartialHold;
use crate::pull::download::{self, DownloadError, Late, Limits, Progress, Wanted};

/// Connections per mirror for one blob (`pull`'s default).
const PER_SOURCE: usize = 4;
/// How often a download's progress reaches its readers.
const TICK: Duration = Duration::from_millis(20);

/// The mirrors to spread `digest` over: every healthy one, when the blob
/// is large enough to gain from it and at least two are healthy.
pub fn sources(ctx: &Ctx, registry: &str, size: u64) -> Option<Vec<Arc<Source>>> {
    if size <= VERIFY_FIRST {
        return None;
    }
    let healthy = ctx.pool.healthy(registry);
    (healthy.len() >= 2).then_some(healthy)
}

/// Open the download's partial file (`pull`'s, so a blob `pull` left half
/// done resumes here and the other way round), held against a `pull` or
/// another serve on the same cache. `None` when another holds it.
pub fn open(ctx: &Ctx, digest: &str, size: u64) -> std::io::Result<Option<(File, PartialHold)>> {
    ctx.store.ensure()?;
    let Some(hold) = ctx.store.cache.try_hold_partial(digest)? else {
        return Ok(None);
    };
    Ok(Some((ctx.store.cache.open_partial(digest, size)?, hold)))
}

/// Fetch `digest` (`size` bytes) over `sources`, telling readers through
/// `tx` how far the bytes in order reach. `Err(None)`: every mirror
/// failed, the caller tries the others and upstream.
#[allow(clippy::too_many_arguments)]
pub async fn fetch(
    ctx: &Arc<Ctx>,
    registry: &str,
    repo: &str,
    digest: &str,
    size: u64,
    sources: Vec<Arc<Source>>,
    tx: &watch::Sender<State>,
) -> Result<(), Option<Failed>> {
    let need = ctx.store.cache.still_needed(&[(digest.to_owned(), size)]);
    if !super::limits::room_for(ctx, digest, need, true).await {
        return Err(Some(super::limits::no_room(ctx, digest, need)));
    }
    let names: Vec<String> = sources.iter().map(|s| s.name().to_owned()).collect();
    let list = sources
        .iter()
        .map(|s| download::Source {
            name: s.name().to_owned(),
            client: s.client.clone(),
            repo: s.repo(registry, repo),
        })
        .collect();
    let progress = Arc::new(Progress::new(1, names.len()));
    let limits = Limits {
        per_source: PER_SOURCE,
        first_byte: ctx.settings.first_byte,
        stall: ctx.settings.stall,
    };
    let wanted = [Wanted {
        digest: digest.to_owned(),
        size,
    }];
    tx.send_modify(|s| s.size = Some(size));
    let run = download::fetch_all(
        &ctx.store.cache,
        list,
        Late::default(),
        &wanted,
        limits,
        progress.clone(),
    );
    tokio::pin!(run);
    let mut counted = vec![0u64; names.len()];
    let mut restarts = 0;
    let result = loop {
        let tick = tokio::select! {
            r = &mut run => Some(r),
            () = tokio::time::sleep(TICK) => None,
        };
        report(
            ctx,
            digest,
            &names,
            &progress,
            &mut counted,
            &mut restarts,
            tx,
        );
        if let Some(r) = tick {
            break r;
        }
    };
    match result {
        Ok(outcomes) => {
            for o in outcomes {
                if let Some(why) = o.dropped {
                    let lied = why.contains("do not match");
                    ctx.pool.demote(&o.name, if lied { DROP } else { DEMOTION });
                    (ctx.log)(format!("{}: dropped from {digest}: {why}", o.name));
                }
            }
            if let Ok(f) = File::open(ctx.store.cache.blob_path(digest)) {
                super::blob::mark_good(&ctx.verified, digest, &f);
            }
            ctx.evict_soon();
            Ok(())
        }
        Err(DownloadError::NoSources { detail, .. }) => {
            for n in &names {
                ctx.pool.demote(n, DEMOTION);
            }
            (ctx.log)(format!(
                "no mirror finished {digest}: {detail}; trying the others"
            ));
            Err(None)
        }
        Err(e) => Err(Some(Failed {
            status: if matches!(e, DownloadError::Disk { .. }) {
                507
            } else {
                502
            },
            code: "UNKNOWN",
            message: e.to_string(),
        })),
    }
}

/// Pass the download's progress to its readers and its bytes to the
/// metrics.
#[allow(clippy::too_many_arguments)]
fn report(
    ctx: &Ctx,
    digest: &str,
    names: &[String],
    progress: &Progress,
    counted: &mut [u64],
    restarts: &mut u32,
    tx: &watch::Sender<State>,
) {
    let mut from = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let n = progress.source_bytes[i].load(Relaxed);
        if n > counted[i] {
            ctx.metrics.fetched(name, n - counted[i]);
            counted[i] = n;
        }
        if n > 0 {
            from.push(name.clone());
        }
    }
    let r = progress.blob_restarts[0].load(Acquire);
    let prefix = progress.blob_prefix[0].load(Acquire);
    if r != *restarts {
        // The bytes streamed so far failed verification: every reader of
        // them ends with an error; later ones read the verified blob.
        *restarts = r;
        ctx.metrics.verification_failures.fetch_add(1, Relaxed);
        (ctx.log)(format!(
            "verification failed: {digest} over {}; finding the mirror that lied",
            from.join(", ")
        ));
        tx.send_modify(|s| {
            s.generation += 1;
            s.written = 0;
            s.from = from;
        });
        return;
    }
    tx.send_if_modified(|s| {
        let changed = prefix > s.written || s.from.len() != from.len();
        if s.generation == 0 {
            s.written = s.written.max(prefix);
        }
        s.from = from;
        changed
    });
}
