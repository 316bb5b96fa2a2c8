//! The HTTP face: the pull side of the OCI distribution spec (`GET` and
//! `HEAD` of `/v2/`, manifests and blobs, `Range`), every write method
//! refused with the spec's error JSON, `/metrics`, and one log line per
//! request once its response has ended.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use hyper::{Method, Request, Response, StatusCode};

use super::blob;
use super::reader::Reader;
use super::route::{self, Target};
use super::Ctx;

pub type Body = BoxBody<Bytes, std::io::Error>;

const API_VERSION: &str = "registry/2.0";

/// What one request was, for its log line.
struct Line {
    method: Method,
    what: String,
    start: Instant,
}

impl Line {
    fn log(&self, ctx: &Ctx, status: u16, bytes: u64, source: &str, cache: &str, note: &str) {
        (ctx.log)(format!(
            "{} {} status={status} bytes={bytes} source={source} cache={cache} ms={}{}",
            self.method,
            self.what,
            self.start.elapsed().as_millis(),
            if note.is_empty() {
                String::new()
            } else {
                format!(" note={note:?}")
            }
        ));
    }
}

pub async fn handle(
    ctx: Arc<Ctx>,
    req: Request<Incoming>,
    allowed: bool,
) -> Result<Response<Body>, std::convert::Infallible> {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let mut line = Line {
        method: method.clone(),
        what: format!("path={:?}", crate::text::clean(&path, 200)),
        start,
    };
    if !allowed {
        ctx.metrics.request("denied", 403);
        line.log(&ctx, 403, 0, "-", "-", "client not in --allow");
        return Ok(error(
            403,
            "DENIED",
            "this server answers only the networks its operator allowed (--allow); ask them to add yours",
        ));
    }
    let target = route::parse(&path, req.uri().query());
    if method != Method::GET && method != Method::HEAD {
        let r = error(
            405,
            "UNSUPPORTED",
            "this registry mirror is read-only: pushes and deletes are refused",
        );
        ctx.metrics.request("write", 405);
        line.log(&ctx, 405, 0, "-", "-", "");
        return Ok(r);
    }
    let target = match target {
        Ok(t) => t,
        Err(r) => {
            ctx.metrics.request("invalid", r.status);
            line.log(&ctx, r.status, 0, "-", "-", &r.message);
            return Ok(error(r.status, r.code, &r.message));
        }
    };
    let head = method == Method::HEAD;
    let resp = match target {
        Target::Base => {
            ctx.metrics.request("base", 200);
            let mut r = Response::new(full(if head { "" } else { "{}" }));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        Target::Metrics => {
            ctx.metrics.request("metrics", 200);
            let mut r = Response::new(full(ctx.metrics.render()));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            return Ok(r);
        }
        Target::Manifest {
            registry,
            repo,
            reference,
        } => {
            line.what = format!(
                "registry={registry} repo={repo} manifest={}",
                reference.as_str()
            );
            // Clients may send one Accept header per media type (dockerd does).
            let all: Vec<&str> = req
                .headers()
                .get_all(ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            let accept = (!all.is_empty()).then(|| all.join(", "));
            manifest(
                &ctx,
                &line,
                &registry,
                &repo,
                &reference,
                accept.as_deref(),
                head,
            )
            .await
        }
        Target::Blob {
            registry,
            repo,
            digest,
        } => {
            line.what = format!("registry={registry} repo={repo} blob={digest}");
            let range = req
                .headers()
                .get(RANGE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            blob(
                &ctx,
                line,
                &registry,
                &repo,
                &digest,
                range.as_deref(),
                head,
            )
            .await
        }
    };
    let mut resp = resp;
    resp.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static(API_VERSION),
    );
    Ok(resp)
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// The spec's error body.
pub fn error(status: u16, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({"errors": [{"code": code, "message": message}]});
    let mut r = Response::new(full(body.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static(API_VERSION),
    );
    r
}

/// Whether a client's `Accept` takes `media_type` (no header: anything).
fn accepts(accept: Option<&str>, media_type: &str) -> bool {
    let Some(a) = accept else { return true };
    a.split(',')
        .map(|p| p.split(';').next().unwrap_or("").trim())
        .any(|p| p == media_type || p == "*/*" || p.is_empty())
}

async fn manifest(
    ctx: &Arc<Ctx>,
    line: &Line,
    registry: &str,
    repo: &str,
    reference: &route::Reference,
    accept: Option<&str>,
    head: bool,
) -> Response<Body> {
    let found = match super::manifest::get(ctx, registry, repo, reference).await {
        Ok(f) => f,
        Err(f) => {
            ctx.metrics.request("manifest", f.status);
            line.log(ctx, f.status, 0, "-", "miss", &f.message);
            return error(f.status, f.code, &f.message);
        }
    };
    if !accepts(accept, &found.media_type) {
        let m = format!(
            "{repo}:{} is a {}, which this client's Accept header does not list",
            reference.as_str(),
            found.media_type
        );
        ctx.metrics.request("manifest", 404);
        line.log(ctx, 404, 0, &found.source, "-", &m);
        return error(404, "MANIFEST_UNKNOWN", &m);
    }
    let n = found.bytes.len() as u64;
    let cache = if found.hit { "hit" } else { "miss" };
    let note = if found.source == "cache (stale)" {
        "stale tag served from the cache"
    } else {
        ""
    };
    ctx.metrics.request("manifest", 200);
    if !head {
        ctx.metrics.served_bytes.fetch_add(n, Relaxed);
    }
    line.log(
        ctx,
        200,
        if head { 0 } else { n },
        &found.source,
        cache,
        &format!("{}{note}", digest_note(reference, &found.digest)),
    );
    let mut r = Response::new(if head {
        full(Bytes::new())
    } else {
        full(found.bytes)
    });
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&found.media_type) {
        h.insert(CONTENT_TYPE, v);
    }
    h.insert(CONTENT_LENGTH, HeaderValue::from(n));
    if let Ok(v) = HeaderValue::from_str(&found.digest) {
        h.insert("docker-content-digest", v);
    }
    r
}

fn digest_note(reference: &route::Reference, digest: &str) -> String {
    match reference {
        route::Reference::Tag(_) => format!("digest {digest}"),
        route::Reference::Digest(_) => String::new(),
    }
}

/// A range that does not fit the blob.
#[derive(Debug, PartialEq, Eq)]
pub struct Unsatisfiable;

/// A single `bytes=a-b` / `bytes=a-` / `bytes=-n` range of a `size`-byte
/// blob: `Ok(None)` for no (or an ignored) range, `Err` when it cannot be
/// satisfied.
pub fn parse_range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, Unsatisfiable> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(Unsatisfiable)?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().map_err(|_| Unsatisfiable)?;
            (size.saturating_sub(n), size)
        }
        (a, "") => (a.parse().map_err(|_| Unsatisfiable)?, size),
        (a, b) => {
            let (a, b): (u64, u64) = (
                a.parse().map_err(|_| Unsatisfiable)?,
                b.parse().map_err(|_| Unsatisfiable)?,
            );
            if b < a {
                return Err(Unsatisfiable);
            }
            (a, (b + 1).min(size))
        }
    };
    if start >= size || start >= end {
        return Err(Unsatisfiable);
    }
    Ok(Some((start, end)))
}

async fn blob(
    ctx: &Arc<Ctx>,
    line: Line,
    registry: &str,
    repo: &str,
    digest: &str,
    range: Option<&str>,
    head: bool,
) -> Response<Body> {
    let cached = ctx.store.cache.blob_path(digest);
    let (reader, size, source, hit) = match std::fs::File::open(&cached).and_then(|f| {
        let n = f.metadata()?.len();
        Ok((f, n))
    }) {
        Ok((file, size)) => {
            crate::pull::store::touch(&cached);
            ctx.metrics.cache_hits.fetch_add(1, Relaxed);
            let verify = (!blob::known_good(&ctx.verified, digest, &file))
                .then(|| (digest.to_owned(), Default::default(), ctx.verified.clone()));
            let reader = Reader::Cached {
                file,
                size,
                verify,
                path: cached,
            };
            (reader, Some(size), "cache".to_owned(), true)
        }
        Err(_) => {
            ctx.metrics.cache_misses.fetch_add(1, Relaxed);
            let (inflight, size) = match blob::settled(ctx, registry, repo, digest).await {
                Ok(x) => x,
                Err(f) => {
                    ctx.metrics.request("blob", f.status);
                    line.log(ctx, f.status, 0, "-", "miss", &f.message);
                    return error(f.status, f.code, &f.message);
                }
            };
            let source = inflight
                .state
                .borrow()
                .from
                .last()
                .cloned()
                .unwrap_or_else(|| "-".into());
            (Reader::live(inflight), size, source, false)
        }
    };
    let (status, start, end) = match size.map(|s| (s, parse_range(range, s))) {
        Some((s, Err(Unsatisfiable))) => {
            ctx.metrics.request("blob", 416);
            line.log(ctx, 416, 0, &source, "-", "range not satisfiable");
            let mut r = error(
                416,
                "BLOB_UNKNOWN",
                "the requested range is not satisfiable",
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{s}")) {
                r.headers_mut().insert(CONTENT_RANGE, v);
            }
            return r;
        }
        Some((_, Ok(Some((a, b))))) => (206, a, Some(b)),
        Some((s, Ok(None))) => (200, 0, Some(s)),
        None => (200, 0, None),
    };
    let mut reader = reader;
    if status == 206 {
        if let Reader::Cached { verify, .. } = &mut reader {
            *verify = None;
        }
    }
    ctx.metrics.request("blob", status);
    let cache = if hit { "hit" } else { "miss" };
    let body = if head {
        line.log(ctx, status, 0, &source, cache, "");
        full(Bytes::new())
    } else {
        stream(
            ctx.clone(),
            line,
            reader,
            (start, end),
            status,
            source,
            cache,
        )
    };
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert("accept-ranges", HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(digest) {
        h.insert("docker-content-digest", v);
    }
    if let Some(end) = end {
        h.insert(CONTENT_LENGTH, HeaderValue::from(end - start));
        if let (206, Some(total)) = (status, size) {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{total}", end - 1)) {
                h.insert(CONTENT_RANGE, v);
            }
        }
    }
    r
}

/// The body of a blob response; logs its line when it ends.
fn stream(
    ctx: Arc<Ctx>,
    line: Line,
    reader: Reader,
    (start, end): (u64, Option<u64>),
    status: u16,
    source: String,
    cache: &'static str,
) -> Body {
    /// The body's state; its line is logged when it is dropped (hyper
    /// stops polling once Content-Length bytes went out, or the client
    /// left), saying how it ended.
    struct St {
        ctx: Arc<Ctx>,
        line: Line,
        reader: Reader,
        at: u64,
        start: u64,
        end: Option<u64>,
        source: String,
        cache: &'static str,
        status: u16,
        /// Why it ended early, if it did.
        aborted: Option<String>,
        done: bool,
    }
    impl Drop for St {
        fn drop(&mut self) {
            let source = live_source(&self.reader).unwrap_or(self.source.clone());
            let complete = self.done || self.end.is_some_and(|e| self.at >= e);
            let note = match (&self.aborted, complete) {
                (Some(why), _) => format!("aborted: {why}"),
                (None, true) => String::new(),
                (None, false) => "the client left before the end".into(),
            };
            let (at, start) = (self.at, self.start);
            self.line.log(
                &self.ctx,
                self.status,
                at - start,
                &source,
                self.cache,
                &note,
            );
        }
    }
    let st = St {
        ctx,
        line,
        reader,
        at: start,
        start,
        end,
        source,
        cache,
        status,
        aborted: None,
        done: false,
    };
    let s = futures::stream::unfold(st, |mut st| async move {
        if st.aborted.is_some() {
            return None;
        }
        match st.reader.next(st.at, st.end).await {
            Some(Ok(b)) => {
                st.at += b.len() as u64;
                let m = &st.ctx.metrics;
                m.served_bytes.fetch_add(b.len() as u64, Relaxed);
                if st.cache == "hit" {
                    m.cache_served_bytes.fetch_add(b.len() as u64, Relaxed);
                }
                Some((Ok(Frame::data(b)), st))
            }
            Some(Err(e)) => {
                st.aborted = Some(e.to_string());
                Some((Err(e), st))
            }
            None => {
                // Read by St's Drop, which logs the line.
                #[allow(unused_assignments)]
                {
                    st.done = true;
                }
                None
            }
        }
    });
    BodyExt::boxed(StreamBody::new(s))
}

/// The sources a live download used, joined.
fn live_source(r: &Reader) -> Option<String> {
    match r {
        Reader::Live { rx, .. } => {
            let from = rx.borrow().from.clone();
            (!from.is_empty()).then(|| from.join("+"))
        }
        Reader::Cached { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-4"), 10), Ok(Some((0, 5))));
        assert_eq!(parse_range(Some("bytes=5-"), 10), Ok(Some((5, 10))));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Ok(Some((7, 10))));
        assert_eq!(parse_range(Some("bytes=8-100"), 10), Ok(Some((8, 10))));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Err(Unsatisfiable));
        assert_eq!(parse_range(Some("bytes=4-2"), 10), Err(Unsatisfiable));
        assert_eq!(parse_range(Some("bytes=0-1,4-5"), 10), Ok(None));
        assert_eq!(parse_range(Some("items=0-1"), 10), Ok(None));
    }

    #[test]
    fn accept_lists() {
        let m = crate::registry::manifest::OCI_INDEX;
        assert!(accepts(None, m));
        assert!(accepts(Some("application/json, */*"), m));
        assert!(accepts(Some(&format!("{m}; q=0.5")), m));
        assert!(!accepts(
            Some(crate::registry::manifest::DOCKER_MANIFEST),
            m
        ));
    }
}
