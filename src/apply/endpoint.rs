//! What the targets share: a mirror as a runtime addresses it for one
//! registry, the upstream's own endpoint, and the TOML helpers of the
//! targets whose files people edit by hand (containerd's `hosts.toml`,
//! containers-registries.conf). Those files are edited with `toml_edit`:
//! what dmirror does not own (comments, other keys, other registries) stays
//! byte for byte.

use crate::config::Mirror;

/// Where a mirror serves one registry, as a runtime addresses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The mirror's root URL, without a trailing `/`.
    pub root: String,
    /// `host[:port]` of the root.
    pub authority: String,
    /// For a prefix mirror, the registry it serves under `/v2/<registry>/`.
    pub prefix: Option<String>,
    /// Plain http.
    pub http: bool,
    /// TLS without certificate verification (`insecure = true` in mirrors.toml).
    pub skip_verify: bool,
    /// Extra CAs for this host (Docker's certs.d), for containerd's `ca`.
    pub ca: Vec<String>,
    /// A client certificate and key for this host, for containerd's `client`.
    pub client: Option<(String, String)>,
    /// containerd's `dial_timeout` for this host (a local server: a dead one
    /// then costs a pull nothing before the next host).
    pub dial_timeout: Option<String>,
}

impl Endpoint {
    /// `mirror` as an endpoint for `registry`; `None` when it does not serve it.
    pub fn new(mirror: &Mirror, registry: &str) -> Option<Self> {
        if !mirror.serves(registry) {
            return None;
        }
        // Served, and not at the root: under the prefix.
        let prefix = (mirror.registry != registry).then(|| registry.to_owned());
        let url = &mirror.url;
        let authority = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => return None,
        };
        Some(Self {
            root: url.as_str().trim_end_matches('/').to_owned(),
            authority,
            prefix,
            http: url.scheme() == "http",
            skip_verify: mirror.insecure && url.scheme() == "https",
            ca: Vec::new(),
            client: None,
            dial_timeout: None,
        })
    }
}

/// The upstream registry's own endpoint, containerd's `server`: the
/// `upstream = true` entry of the list that serves `registry` if there is
/// one, else the registry's well-known API host.
pub fn upstream_server<'a>(
    registry: &str,
    mut mirrors: impl Iterator<Item = &'a Mirror>,
) -> String {
    if let Some(m) = mirrors.find(|m| m.upstream && m.registry == registry) {
        return m.url.as_str().trim_end_matches('/').to_owned();
    }
    if registry == crate::reference::DOCKER_HUB {
        "https://registry-1.docker.io".to_owned()
    } else {
        format!("https://{registry}")
    }
}

/// Why a runtime's file cannot be merged.
#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    #[error("is not valid TOML: {0}")]
    Syntax(String),
    #[error("{0}")]
    Shape(String),
}

/// A merged file and what it no longer lists.
#[derive(Debug)]
pub struct Merged {
    pub text: String,
    /// Mirrors the file listed before and no longer does.
    pub dropped: Vec<String>,
}

pub(super) fn parse(text: &str) -> Result<toml_edit::DocumentMut, ConfError> {
    text.parse::<toml_edit::DocumentMut>()
        .map_err(|e| ConfError::Syntax(e.to_string().trim().replace('\n', " ")))
}

/// The highest position any table of `table` holds, recursively, so that
/// tables placed after it are rendered last.
pub(super) fn max_position(table: &toml_edit::Table) -> usize {
    let mut max = table.position().unwrap_or(0);
    for (_, item) in table.iter() {
        match item {
            toml_edit::Item::Table(t) => max = max.max(max_position(t)),
            toml_edit::Item::ArrayOfTables(a) => {
                for t in a.iter() {
                    max = max.max(max_position(t));
                }
            }
            _ => {}
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirror(url: &str) -> Mirror {
        Mirror::new("m", url.parse().unwrap())
    }

    #[test]
    fn endpoints_for_root_and_prefix_mirrors() {
        let mut m = mirror("https://m.example:8443/");
        m.registry = String::new();
        m.prefix_for = vec!["ghcr.io".into()];
        let e = Endpoint::new(&m, "ghcr.io").unwrap();
        assert_eq!(e.root, "https://m.example:8443");
        assert_eq!(e.authority, "m.example:8443");
        assert_eq!(e.prefix.as_deref(), Some("ghcr.io"));
        assert!(Endpoint::new(&m, "docker.io").is_none());

        let mut m = mirror("http://127.0.0.1:5000");
        m.insecure = true;
        let e = Endpoint::new(&m, "docker.io").unwrap();
        assert!(e.http && !e.skip_verify && e.prefix.is_none());
    }

    #[test]
    fn upstream_prefers_the_listed_upstream() {
        let mut up = mirror("https://up.example");
        up.upstream = true;
        up.registry = "quay.io".into();
        assert_eq!(
            upstream_server("quay.io", [up.clone()].iter()),
            "https://up.example"
        );
        assert_eq!(upstream_server("ghcr.io", [up].iter()), "https://ghcr.io");
        assert_eq!(
            upstream_server("docker.io", std::iter::empty()),
            "https://registry-1.docker.io"
        );
    }
}
