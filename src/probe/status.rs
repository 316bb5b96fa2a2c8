//! A mirror's verdict. Exactly one per mirror per probe.

use std::fmt;

use serde::Serialize;

use crate::registry::ErrorKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Serves the image, fresh, verified.
    Ok,
    /// Serves another digest for the tag than upstream (or the majority).
    Stale,
    /// HTTP 429.
    RateLimited,
    /// `/v2/` fine, but manifest or blob fails (fake mirrors land here).
    Broken,
    /// Needs a login.
    Unauthorized,
    /// HTTP 403 (campus-only, allowlists).
    Forbidden,
    /// Answers, but is not a registry.
    NotRegistry,
    /// HTTP 5xx.
    ServerError,
    /// No answer in time.
    Timeout,
    /// Refused, DNS, TLS.
    Unreachable,
}

impl Status {
    pub const ALL: [Status; 10] = [
        Status::Ok,
        Status::Stale,
        Status::RateLimited,
        Status::Broken,
        Status::Unauthorized,
        Status::Forbidden,
        Status::NotRegistry,
        Status::ServerError,
        Status::Timeout,
        Status::Unreachable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Stale => "stale",
            Status::RateLimited => "rate-limited",
            Status::Broken => "broken",
            Status::Unauthorized => "unauthorized",
            Status::Forbidden => "forbidden",
            Status::NotRegistry => "not-registry",
            Status::ServerError => "server-error",
            Status::Timeout => "timeout",
            Status::Unreachable => "unreachable",
        }
    }

    /// Order of the non-ok statuses in the ranking: the nearer to working,
    /// the higher.
    pub fn order(self) -> usize {
        Status::ALL
            .iter()
            .position(|s| *s == self)
            .unwrap_or(usize::MAX)
    }
}

impl From<ErrorKind> for Status {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::Unreachable => Status::Unreachable,
            ErrorKind::Timeout => Status::Timeout,
            ErrorKind::ServerError => Status::ServerError,
            ErrorKind::RateLimited => Status::RateLimited,
            ErrorKind::Forbidden => Status::Forbidden,
            ErrorKind::Unauthorized => Status::Unauthorized,
            ErrorKind::NotRegistry => Status::NotRegistry,
            ErrorKind::Broken => Status::Broken,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_serde() {
        for s in Status::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}
