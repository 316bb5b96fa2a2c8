//! Manifests: a tag resolves to what upstream serves when it answers, else
//! to what a strict majority of the mirrors agree on (`probe::fresh`, the
//! rule `pull` uses), remembered for a short while; everything else goes
//! by digest, verified, and cached.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};

use super::blob::Failed;
use super::sources::{Source, DEMOTION};
use super::Ctx;
use crate::probe::fresh::{fresh_digest, Served};
use crate::pull::store::TagRecord;
use crate::registry::client::FetchedManifest;
use crate::registry::manifest::Manifest;

/// How long a tag's resolution is reused before sources are asked again.
pub const TAG_TTL: Duration = Duration::from_secs(60);
/// How long a settled majority waits for upstream's answer.
const UPSTREAM_GRACE: Duration = Duration::from_millis(500);

/// A manifest to send.
pub struct Found {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: String,
    /// Where it came from: a source's name, `cache`, or `cache (stale)`.
    pub source: String,
    pub hit: bool,
}

/// The manifest `reference` (a tag or a digest) of `repo` in `registry`.
pub async fn get(
    ctx: &Arc<Ctx>,
    registry: &str,
    repo: &str,
    reference: &super::route::Reference,
) -> Result<Found, Failed> {
    use super::route::Reference;
    let digest = match reference {
        Reference::Digest(d) => d.clone(),
        Reference::Tag(tag) => {
            let key = (registry.to_owned(), repo.to_owned(), tag.clone());
            let known = super::lock(&ctx.tags)
                .get(&key)
                .filter(|(_, at)| at.elapsed() < TAG_TTL)
                .map(|(d, _)| d.clone());
            match known {
                Some(d) => d,
                None => return resolve(ctx, registry, repo, tag).await,
            }
        }
    };
    by_digest(ctx, registry, repo, &digest).await
}

/// A manifest by digest: the cache, else each source in turn.
async fn by_digest(
    ctx: &Arc<Ctx>,
    registry: &str,
    repo: &str,
    digest: &str,
) -> Result<Found, Failed> {
    if let Some((bytes, media_type)) = ctx.store.manifest(digest) {
        ctx.metrics.cache_hits.fetch_add(1, Relaxed);
        remember(ctx, &bytes, &media_type);
        return Ok(Found {
            bytes,
            media_type,
            digest: digest.to_owned(),
            source: "cache".into(),
            hit: true,
        });
    }
    ctx.metrics.cache_misses.fetch_add(1, Relaxed);
    let mut sources = ctx.pool.mirrors(registry);
    sources.extend(ctx.pool.upstream(registry));
    let mut reasons = Vec::new();
    let mut not_found = 0;
    for (i, src) in sources.iter().enumerate() {
        if i > 0 {
            ctx.metrics.failovers.fetch_add(1, Relaxed);
        }
        match ask(ctx, src, registry, repo, digest).await {
            Ok(m) => return Ok(keep(ctx, m, src.name())),
            Err(e) => {
                if e.contains("HTTP 404 from") {
                    not_found += 1;
                } else if !src.mirror.upstream {
                    ctx.pool.demote(src.name(), DEMOTION);
                }
                reasons.push(format!("{}: {e}", src.name()));
            }
        }
    }
    Err(unavailable(
        not_found == sources.len(),
        format!(
            "no source could serve manifest {digest}: {}",
            reasons.join("; ")
        ),
    ))
}

fn unavailable(not_found: bool, message: String) -> Failed {
    if not_found {
        Failed {
            status: 404,
            code: "MANIFEST_UNKNOWN",
            message,
        }
    } else {
        Failed {
            status: 502,
            code: "UNAVAILABLE",
            message,
        }
    }
}

/// One source's manifest `reference` of `repo`, bounded in time.
async fn ask(
    ctx: &Ctx,
    src: &Source,
    registry: &str,
    repo: &str,
    reference: &str,
) -> Result<FetchedManifest, String> {
    let wait = ctx.settings.timeout;
    let repo = src.repo(registry, repo);
    match tokio::time::timeout(wait, src.client.manifest(&repo, reference)).await {
        Ok(Ok(m)) => Ok(m),
        Ok(Err(e)) => Err(e.relative_to(src.mirror.url.as_str()).message),
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(wait)
        )),
    }
}

/// Cache a manifest fetched (and so verified) from `source`.
fn keep(ctx: &Ctx, m: FetchedManifest, source: &str) -> Found {
    let media_type = m.declared_media_type();
    if let Err(e) = ctx.store.put_manifest(&m.digest, &m.bytes, &media_type) {
        (ctx.log)(format!("cannot cache manifest {}: {e}", m.digest));
    }
    remember(ctx, &m.bytes, &media_type);
    Found {
        bytes: m.bytes,
        media_type,
        digest: m.digest,
        source: source.to_owned(),
        hit: false,
    }
}

/// Note the sizes a manifest declares, the bound on its blobs' downloads.
fn remember(ctx: &Ctx, bytes: &[u8], media_type: &str) {
    let found: Vec<(String, u64)> = match Manifest::parse(bytes, Some(media_type)) {
        Ok(Manifest::Image { config, layers }) => std::iter::once(config)
            .chain(layers)
            .map(|d| (d.digest, d.size))
            .collect(),
        _ => return,
    };
    super::blob::remember_sizes(&mut super::lock(&ctx.sizes), found);
}

/// Ask upstream and every voting mirror for the tag at once; settle on
/// upstream's answer, or on a strict majority of the mirrors once upstream
/// failed (or kept silent past a short grace).
async fn resolve(ctx: &Arc<Ctx>, registry: &str, repo: &str, tag: &str) -> Result<Found, Failed> {
    let start = Instant::now();
    let voters = ctx.pool.voters(registry);
    let upstream = ctx.pool.upstream(registry);
    let mut asks: FuturesUnordered<_> = voters
        .iter()
        .map(|(s, _)| s.clone())
        .chain(upstream.clone())
        .map(|src| async move {
            let r = ask(ctx, &src, registry, repo, tag).await;
            (src, r)
        })
        .collect();
    let mut answers: Vec<(Arc<Source>, FetchedManifest)> = Vec::new();
    let mut reasons = Vec::new();
    let mut not_found = 0;
    let asked = asks.len();
    let mut upstream_done = upstream.is_none();
    let vote = |answers: &[(Arc<Source>, FetchedManifest)]| {
        let served: Vec<Served> = answers
            .iter()
            .map(|(s, m)| Served {
                digest: Some(m.digest.as_str()),
                upstream: s.mirror.upstream,
            })
            .collect();
        fresh_digest(&served).map(|(d, _)| d.to_owned())
    };
    let deadline = tokio::time::sleep(ctx.settings.timeout);
    tokio::pin!(deadline);
    let settled: Option<String> = loop {
        let grace = UPSTREAM_GRACE.saturating_sub(start.elapsed());
        let event = tokio::select! {
            n = asks.next() => Some(n),
            _ = &mut deadline => Some(None),
            _ = tokio::time::sleep(grace), if !upstream_done && !grace.is_zero() => None,
        };
        match event {
            // Every source answered, or time is up: the rule on what came.
            Some(None) => break vote(&answers),
            Some(Some((src, Ok(m)))) => {
                let up = src.mirror.upstream;
                let d = m.digest.clone();
                answers.push((src, m));
                if up {
                    break Some(d);
                }
            }
            Some(Some((src, Err(e)))) => {
                if e.contains("HTTP 404 from") {
                    not_found += 1;
                } else if !src.mirror.upstream {
                    ctx.pool.demote(src.name(), DEMOTION);
                }
                upstream_done |= src.mirror.upstream;
                reasons.push(format!("{}: {e}", src.name()));
            }
            None => {}
        }
        // A strict majority of all voters cannot be outvoted by the rest.
        if upstream_done || start.elapsed() >= UPSTREAM_GRACE {
            if let Some(d) = vote(&answers) {
                let n = answers.iter().filter(|(_, m)| m.digest == d).count();
                if n * 2 > voters.len() {
                    break Some(d);
                }
            }
        }
    };
    let Some(digest) = settled else {
        return stale_or_fail(ctx, registry, repo, tag, not_found == asked, reasons).await;
    };
    let (src, m) = answers
        .into_iter()
        .find(|(_, m)| m.digest == digest)
        .expect("the settled digest is among the answers");
    let found = keep(ctx, m, src.name());
    super::lock(&ctx.tags).insert(
        (registry.to_owned(), repo.to_owned(), tag.to_owned()),
        (digest.clone(), Instant::now()),
    );
    let record = TagRecord {
        registry: registry.to_owned(),
        repo: repo.to_owned(),
        tag: tag.to_owned(),
        digest,
    };
    if let Err(e) = ctx.store.put_tag(&record) {
        (ctx.log)(format!("cannot record tag {registry}/{repo}:{tag}: {e}"));
    }
    Ok(found)
}

/// No source settled the tag: its last resolution from the cache, marked,
/// or the reasons.
async fn stale_or_fail(
    ctx: &Arc<Ctx>,
    registry: &str,
    repo: &str,
    tag: &str,
    not_found: bool,
    reasons: Vec<String>,
) -> Result<Found, Failed> {
    let message = if reasons.is_empty() {
        format!("the sources of {registry} disagree on {repo}:{tag} with no majority")
    } else {
        format!(
            "no source could resolve {repo}:{tag}: {}",
            reasons.join("; ")
        )
    };
    if !not_found {
        if let Some(r) = ctx.store.tag(registry, repo, tag) {
            if let Some((bytes, media_type)) = ctx.store.manifest(&r.digest) {
                ctx.metrics.stale_tags.fetch_add(1, Relaxed);
                (ctx.log)(format!(
                    "serving {registry}/{repo}:{tag} from the cache as {} (stale: {message})",
                    r.digest
                ));
                remember(ctx, &bytes, &media_type);
                return Ok(Found {
                    bytes,
                    media_type,
                    digest: r.digest,
                    source: "cache (stale)".into(),
                    hit: true,
                });
            }
        }
    }
    Err(unavailable(not_found, message))
}
