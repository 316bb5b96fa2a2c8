//! One registry (or mirror) root, spoken to over HTTP.
//!
//! Redirects are followed here, not by reqwest, so that the hop count is
//! capped, an https→http downgrade is refused, and `Authorization` is only
//! ever sent to the origin that issued the challenge, never to a CDN or
//! another mirror a redirect points at.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, LOCATION, RANGE};
use reqwest::{Response, StatusCode, Url};

use super::auth::Challenge;
use super::digest;
use super::error::{error_text, ErrorKind, RegistryError};
use super::manifest::{self, MAX_MANIFEST_BYTES};

/// How to build a client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Skip TLS certificate verification.
    pub insecure: bool,
    /// Time allowed to set up a connection.
    pub connect_timeout: Duration,
    /// Most redirects followed for one request.
    pub max_redirects: usize,
    /// The route out and the trust (proxy, certs.d).
    pub network: crate::net::Network,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            insecure: false,
            connect_timeout: Duration::from_secs(5),
            max_redirects: 5,
            network: crate::net::Network::default(),
        }
    }
}

/// Builds the HTTP client for the registry at `base`: the run's route
/// (proxy or direct), the system's CAs and the bundled ones, plus what
/// Docker's certs.d holds for `base`'s host. Redirects are handled by
/// [`RegistryClient`].
pub fn http_client(opts: &ClientOptions, base: &Url) -> Result<reqwest::Client, RegistryError> {
    let broken = |m: String| RegistryError::new(ErrorKind::Unreachable, m);
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("dmirror/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(opts.connect_timeout)
        .danger_accept_invalid_certs(opts.insecure);
    b = opts.network.route.configure(b).map_err(broken)?;
    let host = opts.network.trust.for_url(base).map_err(broken)?;
    for root in host.roots {
        b = b.add_root_certificate(root);
    }
    if let Some(id) = host.identity {
        b = b.identity(id);
    }
    b.build()
        .map_err(|e| broken(format!("cannot build HTTP client: {e}")))
}

/// A client for the registry at `base`, over a client [`http_client`]
/// built, with Docker's login for `base`'s host if it has one (an
/// unreadable config means none).
pub fn for_registry(http: reqwest::Client, base: &Url, opts: &ClientOptions) -> RegistryClient {
    let login = opts.network.logins.for_url(base).ok().flatten();
    RegistryClient::new(http, base.clone(), opts.max_redirects).with_login(login)
}

/// The answer to `GET /v2/`.
#[derive(Debug, Clone)]
pub struct Ping {
    /// Time to the response headers, connection set-up included; `None`
    /// when no response came.
    pub latency: Option<Duration>,
    /// Whether the answer is a registry we can pull from anonymously.
    pub outcome: Result<(), RegistryError>,
}

/// A manifest as fetched, with the digest of its exact bytes.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub media_type: Option<String>,
    pub digest: String,
}

impl FetchedManifest {
    /// The manifest's own `mediaType`, else the Content-Type it came with,
    /// else OCI's image manifest.
    pub fn declared_media_type(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.bytes)
            .ok()
            .and_then(|v| v.get("mediaType")?.as_str().map(str::to_owned))
            .or_else(|| self.media_type.clone())
            .unwrap_or_else(|| manifest::OCI_MANIFEST.to_owned())
    }
}

pub struct RegistryClient {
    pub(super) http: reqwest::Client,
    pub(super) base: Url,
    max_redirects: usize,
    challenge: Mutex<Option<Challenge>>,
    /// Bearer tokens by repository.
    pub(super) tokens: Mutex<HashMap<String, String>>,
    /// Docker's login for this host (and this host only).
    pub(super) login: Option<crate::net::login::Login>,
    /// The registry asked for HTTP Basic: send the login with every request.
    pub(super) basic: std::sync::atomic::AtomicBool,
}

impl RegistryClient {
    pub fn new(http: reqwest::Client, base: Url, max_redirects: usize) -> Self {
        Self {
            http,
            base,
            max_redirects,
            challenge: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
            login: None,
            basic: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// `GET /v2/`: is this a registry, how far away is it, how does it authenticate?
    pub async fn ping(&self) -> Ping {
        let start = Instant::now();
        let url = match self.url("v2/") {
            Ok(u) => u,
            Err(e) => {
                return Ping {
                    latency: None,
                    outcome: Err(e),
                }
            }
        };
        let resp = match self.send(&url, HeaderMap::new(), None).await {
            Ok(r) => r,
            Err(e) => {
                return Ping {
                    latency: None,
                    outcome: Err(e),
                }
            }
        };
        Ping {
            latency: Some(start.elapsed()),
            outcome: self.check_ping(resp, &url).await,
        }
    }

    async fn check_ping(&self, resp: Response, url: &Url) -> Result<(), RegistryError> {
        let url = url.clone();
        let status = resp.status();
        match status {
            StatusCode::OK => {
                let api_header = resp
                    .headers()
                    .get("docker-distribution-api-version")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("registry/2"));
                let body = read_limited(resp, 64 * 1024, &url).await?;
                let json =
                    serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|v| v.is_object());
                if !(api_header || json) {
                    let what = error_text(&body).unwrap_or_else(|| "an empty body".into());
                    return Err(RegistryError::new(
                        ErrorKind::NotRegistry,
                        format!("{url} answers with {what}, not the registry API"),
                    ));
                }
                Ok(())
            }
            StatusCode::UNAUTHORIZED => {
                let challenge = challenge_of(&resp);
                let body = read_limited(resp, 64 * 1024, &url)
                    .await
                    .unwrap_or_default();
                match challenge {
                    Some(c @ Challenge::Bearer { .. }) => {
                        *lock(&self.challenge) = Some(c);
                        Ok(())
                    }
                    Some(Challenge::Basic { realm }) => {
                        let basic = self
                            .login
                            .as_ref()
                            .and_then(crate::net::login::Login::basic_header);
                        if let Some(header) = basic {
                            let again = self.send(&url, HeaderMap::new(), Some(header)).await?;
                            if again.status() == StatusCode::OK {
                                self.basic.store(true, std::sync::atomic::Ordering::Relaxed);
                                return Ok(());
                            }
                        }
                        Err(RegistryError::new(
                            ErrorKind::Unauthorized,
                            format!(
                                "needs a login (HTTP Basic{}); {}",
                                realm.map(|r| format!(", realm {r:?}")).unwrap_or_default(),
                                self.login_hint()
                            ),
                        ))
                    }
                    _ => Err(RegistryError::from_status(
                        401,
                        url.as_str(),
                        error_text(&body),
                    )),
                }
            }
            StatusCode::NOT_FOUND => {
                let body = read_limited(resp, 64 * 1024, &url)
                    .await
                    .unwrap_or_default();
                let mut e = RegistryError::from_status(404, url.as_str(), error_text(&body));
                e.kind = ErrorKind::NotRegistry;
                e.message.push_str(" (no registry API at /v2/)");
                Err(e)
            }
            s => Err(self.status_error(resp, s, &url).await),
        }
    }

    /// The manifest `reference` (tag or digest) of `repo`, verified against
    /// the digest when fetched by digest.
    pub async fn manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        let url = self.url(&format!("v2/{repo}/manifests/{reference}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(manifest::ACCEPT));
        let resp = self.get(repo, &url, headers).await?;
        let media_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or(s).trim().to_owned());
        let claimed = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = read_limited(resp, MAX_MANIFEST_BYTES, &url).await?;
        let digest = digest::of(&bytes);
        if reference.starts_with("sha256:") && digest != reference {
            return Err(RegistryError::broken(format!(
                "{url} served bytes with digest {digest}, not the {reference} asked for"
            )));
        }
        if let Some(claimed) = claimed.filter(|c| c.starts_with("sha256:")) {
            if claimed != digest {
                return Err(RegistryError::broken(format!(
                    "{url} claims Docker-Content-Digest {claimed} but its bytes hash to {digest}"
                )));
            }
        }
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// Start a blob download, optionally of the byte range `[start, end)`;
    /// the caller streams and verifies the body.
    pub async fn blob(
        &self,
        repo: &str,
        blob: &str,
        range: Option<(u64, u64)>,
    ) -> Result<Response, RegistryError> {
        if !digest::is_valid(blob) {
            return Err(RegistryError::broken(format!(
                "invalid blob digest {blob:?}"
            )));
        }
        let range = range
            .filter(|(s, e)| e > s)
            .map(|(start, end)| format!("bytes={start}-{}", end - 1));
        self.blob_with(repo, blob, range).await
    }

    /// Start a blob download from byte `start` to its end (the whole blob
    /// when `start` is 0).
    pub async fn blob_from(
        &self,
        repo: &str,
        blob: &str,
        start: u64,
    ) -> Result<Response, RegistryError> {
        if !digest::is_valid(blob) {
            return Err(RegistryError::broken(format!(
                "invalid blob digest {blob:?}"
            )));
        }
        self.blob_with(repo, blob, (start > 0).then(|| format!("bytes={start}-")))
            .await
    }

    async fn blob_with(
        &self,
        repo: &str,
        blob: &str,
        range: Option<String>,
    ) -> Result<Response, RegistryError> {
        let url = self.url(&format!("v2/{repo}/blobs/{blob}"))?;
        let mut headers = HeaderMap::new();
        if let Some(r) = range {
            let v = HeaderValue::from_str(&r).map_err(|e| RegistryError::broken(e.to_string()))?;
            headers.insert(RANGE, v);
        }
        self.get(repo, &url, headers).await
    }

    fn url(&self, path: &str) -> Result<Url, RegistryError> {
        self.base
            .join(path)
            .map_err(|e| RegistryError::broken(format!("cannot form a URL from {path:?}: {e}")))
    }

    /// GET with the repository's token, fetching one on a Bearer challenge.
    /// Returns only successful responses.
    async fn get(
        &self,
        repo: &str,
        url: &Url,
        headers: HeaderMap,
    ) -> Result<Response, RegistryError> {
        let known = lock(&self.challenge).clone();
        if let (None, Some(c)) = (self.token_for(repo), known) {
            self.fetch_token(&c, repo).await?;
        }
        let resp = self.send(url, headers.clone(), self.auth_for(repo)).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return self.ensure_success(resp, url).await;
        }
        // A challenge we had not seen (or our token was refused): one more try.
        let Some(challenge) = challenge_of(&resp) else {
            return self.ensure_success(resp, url).await;
        };
        if let Challenge::Basic { .. } = challenge {
            let basic = self
                .login
                .as_ref()
                .and_then(crate::net::login::Login::basic_header);
            if let (Some(header), false) =
                (basic, self.basic.load(std::sync::atomic::Ordering::Relaxed))
            {
                self.basic.store(true, std::sync::atomic::Ordering::Relaxed);
                let resp = self.send(url, headers, Some(header)).await?;
                if resp.status() != StatusCode::UNAUTHORIZED {
                    return self.ensure_success(resp, url).await;
                }
            }
            return Err(RegistryError::new(
                ErrorKind::Unauthorized,
                format!("{url} needs a login (HTTP Basic); {}", self.login_hint()),
            ));
        }
        let had_token = self.token_for(repo).is_some();
        *lock(&self.challenge) = Some(challenge.clone());
        self.fetch_token(&challenge, repo).await?;
        let resp = self.send(url, headers, self.auth_for(repo)).await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            let body = read_limited(resp, 64 * 1024, url).await.unwrap_or_default();
            let why = if had_token {
                "refused a fresh token"
            } else {
                "refused its own token"
            };
            return Err(RegistryError::new(
                ErrorKind::Unauthorized,
                format!(
                    "{url} {why}: {}",
                    error_text(&body).unwrap_or_else(|| "HTTP 401".into())
                ),
            ));
        }
        self.ensure_success(resp, url).await
    }

    pub(super) async fn ensure_success(
        &self,
        resp: Response,
        url: &Url,
    ) -> Result<Response, RegistryError> {
        let status = resp.status();
        if status.is_success() {
            Ok(resp)
        } else {
            Err(self.status_error(resp, status, url).await)
        }
    }

    async fn status_error(&self, resp: Response, status: StatusCode, url: &Url) -> RegistryError {
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = read_limited(resp, 64 * 1024, url).await.unwrap_or_default();
        let mut e = RegistryError::from_status(status.as_u16(), url.as_str(), error_text(&body));
        if let Some(r) = retry_after {
            e.message
                .push_str(&format!(" (Retry-After: {})", crate::text::clean(&r, 40)));
        }
        e
    }

    /// One GET, following redirects. `token` goes only to our own origin.
    /// GET `url`, following redirects; `authorization` goes only to the
    /// registry's own origin.
    pub(super) async fn send(
        &self,
        url: &Url,
        headers: HeaderMap,
        authorization: Option<String>,
    ) -> Result<Response, RegistryError> {
        let base = self.base.clone();
        self.send_with(url, headers, authorization, &base).await
    }

    /// GET `url` with `authorization` for `origin` only (a token service).
    pub(super) async fn send_to(
        &self,
        url: &Url,
        authorization: Option<String>,
        origin: &Url,
    ) -> Result<Response, RegistryError> {
        self.send_with(url, HeaderMap::new(), authorization, origin)
            .await
    }

    async fn send_with(
        &self,
        url: &Url,
        headers: HeaderMap,
        authorization: Option<String>,
        origin: &Url,
    ) -> Result<Response, RegistryError> {
        let mut url = url.clone();
        for _ in 0..=self.max_redirects {
            let mut req = self.http.get(url.clone()).headers(headers.clone());
            if let Some(a) = &authorization {
                if same_origin(&url, origin) {
                    req = req.header(AUTHORIZATION, a.as_str());
                }
            }
            let retry = req.try_clone();
            let resp = match req.send().await {
                Ok(r) => r,
                // A pooled keep-alive connection the server (or a proxy)
                // closed as we reused it: the request never reached
                // anyone, so one fresh try is safe (it is a GET).
                Err(e) if closed_before_answer(&e) => match retry {
                    Some(again) => again
                        .send()
                        .await
                        .map_err(|e| RegistryError::from_transport(&e, url.as_str()))?,
                    None => return Err(RegistryError::from_transport(&e, url.as_str())),
                },
                Err(e) => return Err(RegistryError::from_transport(&e, url.as_str())),
            };
            if !resp.status().is_redirection() || resp.status() == StatusCode::NOT_MODIFIED {
                return Ok(resp);
            }
            let location = resp
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    RegistryError::broken(format!(
                        "{url} redirects (HTTP {}) without a Location",
                        resp.status().as_u16()
                    ))
                })?;
            let next = url.join(location).map_err(|e| {
                RegistryError::broken(format!(
                    "{url} redirects to a bad Location {location:?}: {e}"
                ))
            })?;
            if url.scheme() == "https" && next.scheme() != "https" {
                return Err(RegistryError::broken(format!(
                    "{url} redirects to {next}, a downgrade from https; refused"
                )));
            }
            if next.scheme() != "http" && next.scheme() != "https" {
                return Err(RegistryError::broken(format!(
                    "{url} redirects to {next}; refused"
                )));
            }
            url = next;
        }
        Err(RegistryError::broken(format!(
            "more than {} redirects starting at {url}; refused",
            self.max_redirects
        )))
    }
}

/// Whether `e` is a connection closed before any answer came (hyper's
/// "connection closed before message completed" on a reused connection).
fn closed_before_answer(e: &reqwest::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        if s.to_string()
            .contains("connection closed before message completed")
        {
            return true;
        }
        source = s.source();
    }
    false
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

fn challenge_of(resp: &Response) -> Option<Challenge> {
    resp.headers()
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(Challenge::parse)
        .find(|c| !matches!(c, Challenge::Other(_)))
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Read a whole body, refusing more than `max` bytes.
pub async fn read_limited(
    mut resp: Response,
    max: usize,
    url: &Url,
) -> Result<Vec<u8>, RegistryError> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(RegistryError::broken(format!(
            "{url} sends more than {max} bytes; refused"
        )));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| RegistryError::from_transport(&e, url.as_str()))?
    {
        if out.len() + chunk.len() > max {
            return Err(RegistryError::broken(format!(
                "{url} sends more than {max} bytes; refused"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(same_origin(
            &u("https://a.example/v2/"),
            &u("https://a.example:443/")
        ));
        assert!(!same_origin(
            &u("https://a.example/"),
            &u("https://cdn.a.example/")
        ));
        assert!(!same_origin(
            &u("http://a.example/"),
            &u("https://a.example/")
        ));
        assert!(!same_origin(
            &u("http://127.0.0.1:1/"),
            &u("http://127.0.0.1:2/")
        ));
    }
}
