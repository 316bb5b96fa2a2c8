//! The network as the Docker engine has it, so that a verdict measured here
//! holds for the engine that will use it: the path (the engine's proxy, a
//! proxy named on the command line, the shell's variables when asked, or a
//! direct connection), the trust (the system's CAs and the bundled ones,
//! plus Docker's `certs.d/<host[:port]>/` CAs and client certificates) and
//! the logins (`login`). A leaf: the registry client reads it.

pub mod login;

use std::fmt;
use std::path::{Path, PathBuf};

use reqwest::Url;

/// How requests leave this machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Route {
    /// A direct connection (no engine proxy, or `--proxy none`).
    #[default]
    Direct,
    /// The shell's `http_proxy`/`https_proxy`/`no_proxy` (`--proxy env`).
    Env,
    /// Through a proxy: the engine's (`from` says so) or `--proxy URL`.
    Proxy {
        http: Option<String>,
        https: Option<String>,
        no_proxy: Option<String>,
        from: &'static str,
    },
}

/// `url` as its scheme, its login and the rest: `http://u:p@h:1/x` is
/// `("http", Some("u:p"), "h:1/x")`; without a scheme, `("", None, url)`.
pub fn split_login(url: &str) -> (&str, Option<&str>, &str) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return ("", None, url);
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => (scheme, Some(&rest[..at]), &rest[at + 1..]),
        None => (scheme, None, rest),
    }
}

/// A proxy URL with its password hidden, for showing.
pub fn redact(url: &str) -> String {
    match split_login(url) {
        (scheme, Some(login), rest) => {
            let user = login.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{rest}")
        }
        _ => url.to_owned(),
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Direct => f.write_str("direct"),
            Route::Env => f.write_str("the shell's proxy variables"),
            Route::Proxy {
                http,
                https,
                no_proxy,
                from,
            } => {
                let mut parts = Vec::new();
                match (http, https) {
                    (Some(h), Some(s)) if h == s => parts.push(format!("proxy {}", redact(h))),
                    (h, s) => {
                        if let Some(h) = h {
                            parts.push(format!("http proxy {}", redact(h)));
                        }
                        if let Some(s) = s {
                            parts.push(format!("https proxy {}", redact(s)));
                        }
                    }
                }
                if let Some(n) = no_proxy.as_deref().filter(|n| !n.is_empty()) {
                    parts.push(format!("except {n}"));
                }
                write!(f, "{} ({from})", parts.join(", "))
            }
        }
    }
}

impl Route {
    /// The engine's proxy, as `/info` reports it; direct when it has none.
    pub fn of_engine(http: &str, https: &str, no_proxy: &str) -> Route {
        let some = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
        match (some(http), some(https)) {
            (None, None) => Route::Direct,
            (http, https) => Route::Proxy {
                http,
                https,
                no_proxy: some(no_proxy),
                from: "the Docker engine's",
            },
        }
    }

    /// `--proxy`: `engine` is resolved elsewhere (it needs the engine).
    pub fn parse_flag(s: &str) -> Result<Option<Route>, String> {
        match s {
            "engine" => Ok(None),
            "env" => Ok(Some(Route::Env)),
            "none" | "direct" => Ok(Some(Route::Direct)),
            url => {
                let parsed = Url::parse(url).map_err(|e| {
                    format!("--proxy {url:?}: use engine, env, none or a proxy URL ({e})")
                })?;
                if !matches!(parsed.scheme(), "http" | "https" | "socks5" | "socks5h") {
                    return Err(format!(
                        "--proxy {url:?}: a proxy URL is http://, https:// or socks5://"
                    ));
                }
                Ok(Some(Route::Proxy {
                    http: Some(url.to_owned()),
                    https: Some(url.to_owned()),
                    no_proxy: None,
                    from: "--proxy",
                }))
            }
        }
    }

    /// Apply this route to a client builder.
    pub fn configure(
        &self,
        mut b: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, String> {
        match self {
            Route::Env => Ok(b),
            Route::Direct => Ok(b.no_proxy()),
            Route::Proxy {
                http,
                https,
                no_proxy,
                ..
            } => {
                b = b.no_proxy();
                let except = no_proxy.as_deref().and_then(reqwest::NoProxy::from_string);
                for (url, https_only) in [(http, false), (https, true)] {
                    let Some(url) = url else { continue };
                    let p = if https_only {
                        reqwest::Proxy::https(url)
                    } else {
                        reqwest::Proxy::http(url)
                    }
                    .map_err(|e| format!("proxy {url}: {e}"))?;
                    b = b.proxy(p.no_proxy(except.clone()));
                }
                Ok(b)
            }
        }
    }
}

/// Docker's per-host TLS material: `<dir>/<host[:port]>/*.crt` are extra
/// CAs for that host, `*.cert` with the matching `*.key` a client
/// certificate it presents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trust {
    /// `certs.d` directories, in order (Docker's, or the rootless one).
    pub dirs: Vec<PathBuf>,
}

/// What `certs.d` holds for one host.
#[derive(Default)]
pub struct HostTrust {
    pub roots: Vec<reqwest::Certificate>,
    pub identity: Option<reqwest::Identity>,
    /// The files used, for messages (and containerd's `ca`/`client`).
    pub ca_files: Vec<PathBuf>,
    pub client: Option<(PathBuf, PathBuf)>,
}

/// Bound on one certificate or key file.
const MAX_PEM: u64 = 1 << 20;

impl Trust {
    /// Docker's certs.d for this user: `/etc/docker/certs.d` for root,
    /// `~/.config/docker/certs.d` (rootless Docker's) for anyone else.
    pub fn docker_default() -> Trust {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let dir = match dirs::config_dir() {
            Some(d) if !root => d.join("docker/certs.d"),
            _ => PathBuf::from("/etc/docker/certs.d"),
        };
        Trust { dirs: vec![dir] }
    }

    /// The directory name Docker uses for `url`'s host: `host[:port]`.
    pub fn host_dir_name(url: &Url) -> Option<String> {
        let host = url.host_str()?;
        Some(match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        })
    }

    /// Whether certs.d has a directory for `url`'s host (if not, the host
    /// can share a client with every other such host).
    pub fn has_host(&self, url: &Url) -> bool {
        Self::host_dir_name(url).is_some_and(|n| self.dirs.iter().any(|d| d.join(&n).is_dir()))
    }

    /// What certs.d holds for `url`'s host; an unreadable file is an error
    /// naming it (Docker refuses such a host too).
    pub fn for_url(&self, url: &Url) -> Result<HostTrust, String> {
        let mut t = HostTrust::default();
        let Some(name) = Self::host_dir_name(url) else {
            return Ok(t);
        };
        for dir in &self.dirs {
            let host_dir = dir.join(&name);
            let Ok(entries) = std::fs::read_dir(&host_dir) else {
                continue;
            };
            let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            files.sort();
            for f in &files {
                match f.extension().and_then(|e| e.to_str()) {
                    Some("crt") => {
                        let pem = read_pem(f)?;
                        let certs = reqwest::Certificate::from_pem_bundle(&pem)
                            .map_err(|e| format!("{}: not a PEM certificate ({e})", f.display()))?;
                        t.roots.extend(certs);
                        t.ca_files.push(f.clone());
                    }
                    Some("cert") => {
                        let key = f.with_extension("key");
                        if !key.exists() {
                            return Err(format!(
                                "{} has no matching {}; Docker needs both",
                                f.display(),
                                key.display()
                            ));
                        }
                        let mut pem = read_pem(f)?;
                        pem.push(b'\n');
                        pem.extend(read_pem(&key)?);
                        let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
                            format!(
                                "{} with {}: not a certificate and key ({e})",
                                f.display(),
                                key.display()
                            )
                        })?;
                        t.identity = Some(id);
                        t.client = Some((f.clone(), key));
                    }
                    _ => {}
                }
            }
        }
        Ok(t)
    }
}

fn read_pem(path: &Path) -> Result<Vec<u8>, String> {
    crate::files::read_regular(path, MAX_PEM)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .ok_or_else(|| format!("{} is gone", path.display()))
}

/// The route, the trust and the logins every client of one run shares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Network {
    pub route: Route,
    pub trust: Trust,
    /// Docker's client configuration, for a host's own login.
    pub logins: login::Logins,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_password_is_never_shown() {
        assert_eq!(redact("http://u:pw@p:1"), "http://u:***@p:1");
        assert_eq!(redact("http://p:1/x@y"), "http://p:1/x@y");
        let r = Route::Proxy {
            http: Some("http://u:pw@p:1".into()),
            https: Some("http://u:pw@p:1".into()),
            no_proxy: None,
            from: "the Docker engine's",
        };
        assert_eq!(
            r.to_string(),
            "proxy http://u:***@p:1 (the Docker engine's)"
        );
    }
}
