//! Logins and tokens: the Bearer token flow (anonymous, or with Docker's
//! login for this host when the token service is on the same host) and
//! HTTP Basic, with the hint a user needs when a registry wants a login.

use reqwest::header::HeaderMap;
use reqwest::{StatusCode, Url};

use super::auth::{Challenge, TokenResponse};
use super::client::{lock, read_limited, RegistryClient};
use super::error::{error_text, ErrorKind, RegistryError};

impl RegistryClient {
    /// Use `login` (Docker's, for this client's host) where the registry
    /// asks for one: HTTP Basic, or the token service on the same host.
    pub fn with_login(mut self, login: Option<crate::net::login::Login>) -> Self {
        self.login = login;
        self
    }

    /// What to tell a registry that wants a login we do not have (or
    /// refused the one we had).
    pub(super) fn login_hint(&self) -> String {
        let host = self.base.host_str().unwrap_or("the mirror");
        let host = match self.base.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        };
        if self.login.is_some() {
            format!("the login for {host} in Docker's config was refused; run docker login {host} again")
        } else {
            format!(
                "run docker login {host} (dmirror uses Docker's logins), or pick another mirror"
            )
        }
    }

    /// The Authorization header for a request about `repo`: its token, or
    /// the Basic login once the registry asked for one.
    pub(super) fn auth_for(&self, repo: &str) -> Option<String> {
        if let Some(t) = self.token_for(repo) {
            return Some(format!("Bearer {t}"));
        }
        if self.basic.load(std::sync::atomic::Ordering::Relaxed) {
            return self
                .login
                .as_ref()
                .and_then(crate::net::login::Login::basic_header);
        }
        None
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    pub(super) fn token_for(&self, repo: &str) -> Option<String> {
        lock(&self.tokens).get(repo).cloned()
    }

    pub(super) async fn fetch_token(
        &self,
        challenge: &Challenge,
        repo: &str,
    ) -> Result<(), RegistryError> {
        let Challenge::Bearer { realm, service, .. } = challenge else {
            return Ok(());
        };
        let mut url = Url::parse(realm).map_err(|e| {
            RegistryError::broken(format!("token realm {realm:?} is not a URL: {e}"))
        })?;
        if url.scheme() != "https" && url.scheme() != "http" {
            return Err(RegistryError::broken(format!(
                "token realm {realm:?} is not http(s)"
            )));
        }
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            q.append_pair("scope", &format!("repository:{repo}:pull"));
        }
        // The login goes to the token service only when it is on the
        // registry's own host: never to a third party a mirror names.
        let same_host = url.host_str().is_some() && url.host_str() == self.base.host_str();
        let login = self.login.as_ref().filter(|_| same_host);
        let sent = match login {
            Some(crate::net::login::Login::IdentityToken { token, .. }) => {
                let mut form = vec![
                    ("grant_type", "refresh_token".to_owned()),
                    ("refresh_token", token.clone()),
                    ("client_id", "dmirror".to_owned()),
                    ("scope", format!("repository:{repo}:pull")),
                ];
                if let Some(s) = service {
                    form.push(("service", s.clone()));
                }
                let mut post = url.clone();
                post.set_query(None);
                self.http
                    .post(post.clone())
                    .form(&form)
                    .send()
                    .await
                    .map_err(|e| RegistryError::from_transport(&e, post.as_str()))
            }
            Some(l) => self.send_to(&url, l.basic_header(), &url).await,
            None => self.send(&url, HeaderMap::new(), None).await,
        };
        let resp = sent.map_err(|e| match e.kind {
            ErrorKind::Unreachable => RegistryError::broken(format!(
                "token service {realm} is unreachable, so nothing can be pulled: {}",
                e.message
            )),
            _ => e.context("token service"),
        })?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let body = read_limited(resp, 64 * 1024, &url)
                .await
                .unwrap_or_default();
            let who = if login.is_some() {
                "the login's"
            } else {
                "anonymous"
            };
            return Err(RegistryError::new(
                ErrorKind::Unauthorized,
                format!(
                    "token service {realm} refuses {who} pulls of {repo} (HTTP {}){}; {}",
                    status.as_u16(),
                    error_text(&body)
                        .map(|t| format!(": {t}"))
                        .unwrap_or_default(),
                    self.login_hint()
                ),
            ));
        }
        let resp = self
            .ensure_success(resp, &url)
            .await
            .map_err(|e| e.context("token service"))?;
        let body = read_limited(resp, 1024 * 1024, &url).await?;
        let token = serde_json::from_slice::<TokenResponse>(&body)
            .ok()
            .and_then(TokenResponse::into_token)
            .ok_or_else(|| {
                RegistryError::broken(format!("token service {realm} answered without a token"))
            })?;
        lock(&self.tokens).insert(repo.to_owned(), token);
        Ok(())
    }
}
