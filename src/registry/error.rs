//! Registry errors carry a kind that the probe turns into a mirror status,
//! and the server's own words where it gave any.

use std::fmt;

/// What went wrong, in the terms a user picks a mirror by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Connection refused, DNS failure, TLS failure.
    Unreachable,
    /// No answer in time.
    Timeout,
    /// HTTP 5xx.
    ServerError,
    /// HTTP 429.
    RateLimited,
    /// HTTP 403.
    Forbidden,
    /// HTTP 401 that anonymous access cannot get past.
    Unauthorized,
    /// Something answers, but it is not a registry (a web portal, a 404 at `/v2/`).
    NotRegistry,
    /// A registry that does not serve what it should: missing manifests,
    /// wrong bytes, broken redirects, unreachable token service.
    Broken,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryError {
    pub kind: ErrorKind,
    pub message: String,
}

impl RegistryError {
    /// The message may carry a server's words: its control characters are
    /// escaped and its length capped here, once for every consumer.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: crate::text::clean(&message.into(), 4 * crate::text::MAX_FOREIGN),
        }
    }

    pub fn broken(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Broken, message)
    }

    /// Prefix the message with what we were doing ("manifest: ...").
    pub fn context(mut self, what: &str) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    /// Classify a transport error from reqwest. The message is its root
    /// cause ("Connection refused", "invalid peer certificate: …"), which
    /// is what a user can act on; reqwest's outer layers add only noise.
    pub fn from_transport(err: &reqwest::Error, url: &str) -> Self {
        let mut root: &dyn std::error::Error = err;
        while let Some(next) = root.source() {
            root = next;
        }
        let cause = root.to_string();
        let kind = if err.is_timeout() {
            ErrorKind::Timeout
        } else if err.is_connect() {
            ErrorKind::Unreachable
        } else if err.is_body() || err.is_decode() {
            ErrorKind::Broken
        } else {
            ErrorKind::Unreachable
        };
        let what = match kind {
            ErrorKind::Unreachable if err.is_connect() => "cannot connect",
            ErrorKind::Timeout => "timed out",
            _ => "transfer failed",
        };
        Self::new(kind, format!("{url}: {what}: {cause}"))
    }

    /// Drop `base` (a mirror's root URL) from the message: the mirror is
    /// named beside it, so `HTTP 403 from /v2/` says enough.
    pub fn relative_to(mut self, base: &str) -> Self {
        let base = base.trim_end_matches('/');
        if !base.is_empty() {
            self.message = self.message.replace(base, "");
        }
        self
    }

    /// An HTTP status that is not what the protocol step needed.
    pub fn from_status(status: u16, url: &str, detail: Option<String>) -> Self {
        // 407 is the proxy on the way, not the mirror: the mirror was
        // never reached.
        if status == 407 {
            return Self::new(
                ErrorKind::Unreachable,
                format!("HTTP 407 from the proxy on the way to {url}: it wants a login; give it in the proxy's URL (--proxy http://USER:PASSWORD@HOST:PORT, or the engine's proxy settings)"),
            );
        }
        let kind = match status {
            401 => ErrorKind::Unauthorized,
            403 => ErrorKind::Forbidden,
            429 => ErrorKind::RateLimited,
            500..=599 => ErrorKind::ServerError,
            _ => ErrorKind::Broken,
        };
        let mut message = format!("HTTP {status} from {url}");
        if let Some(d) = detail.filter(|d| !d.is_empty()) {
            message.push_str(": ");
            message.push_str(&d);
        }
        Self::new(kind, message)
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RegistryError {}

/// Pull the human part out of an error body: the registry's
/// `{"errors":[{"code","message"}]}`, a proxy's `{"message"}` or
/// `{"detail"}`, an HTML page's title, or the first line of plain text.
pub fn error_text(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
        if let Some(errors) = v.get("errors").and_then(|e| e.as_array()) {
            let parts: Vec<String> = errors
                .iter()
                .map(|e| {
                    let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
                    let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
                    match (code.is_empty(), msg.is_empty()) {
                        (false, false) => format!("{code}: {msg}"),
                        (false, true) => code.to_owned(),
                        _ => msg.to_owned(),
                    }
                })
                .filter(|s| !s.is_empty())
                .collect();
            if !parts.is_empty() {
                return Some(shorten(&parts.join("; ")));
            }
        }
        for key in ["message", "detail", "details", "error"] {
            if let Some(s) = v.get(key).and_then(|m| m.as_str()) {
                return Some(shorten(s));
            }
        }
        return Some(shorten(text));
    }
    if looks_like_html(text) {
        return Some(match html_title(text) {
            Some(t) => format!("an HTML page titled {t:?}"),
            None => "an HTML page".to_owned(),
        });
    }
    text.lines().next().map(shorten)
}

pub fn looks_like_html(text: &str) -> bool {
    let head: String = text
        .chars()
        .take(512)
        .collect::<String>()
        .to_ascii_lowercase();
    head.contains("<html") || head.contains("<!doctype html") || head.contains("<head")
}

fn html_title(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let start = lower.find("<title>")? + "<title>".len();
    let end = start + lower[start..].find("</title>")?;
    let t = text.get(start..end)?.trim();
    (!t.is_empty()).then(|| shorten(t))
}

fn shorten(s: &str) -> String {
    crate::text::clean(s.trim(), crate::text::MAX_FOREIGN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_the_servers_words() {
        assert_eq!(
            error_text(br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#).unwrap(),
            "MANIFEST_UNKNOWN: manifest unknown"
        );
        assert_eq!(
            error_text(br#"{"message":"docker.mirrors.example is currently campus-only"}"#)
                .unwrap(),
            "docker.mirrors.example is currently campus-only"
        );
        assert_eq!(
            error_text(br#"{"detail": "Rate limit exceeded"}"#).unwrap(),
            "Rate limit exceeded"
        );
        assert_eq!(
            error_text(b"<!DOCTYPE html><html><head><title>Welcome</title></head></html>").unwrap(),
            "an HTML page titled \"Welcome\""
        );
        assert_eq!(error_text(b"bad gateway\nmore").unwrap(), "bad gateway");
        assert_eq!(error_text(b"  "), None);
        assert_eq!(
            error_text("x".repeat(500).as_bytes()).unwrap(),
            format!("{}… (300 more bytes)", "x".repeat(200))
        );
    }

    #[test]
    fn statuses_map_to_kinds() {
        assert_eq!(
            RegistryError::from_status(403, "u", None).kind,
            ErrorKind::Forbidden
        );
        assert_eq!(
            RegistryError::from_status(429, "u", None).kind,
            ErrorKind::RateLimited
        );
        assert_eq!(
            RegistryError::from_status(502, "u", None).kind,
            ErrorKind::ServerError
        );
        assert_eq!(
            RegistryError::from_status(407, "u", None).kind,
            ErrorKind::Unreachable
        );
        assert_eq!(
            RegistryError::from_status(401, "u", None).kind,
            ErrorKind::Unauthorized
        );
        assert_eq!(
            RegistryError::from_status(404, "u", None).kind,
            ErrorKind::Broken
        );
    }
}
