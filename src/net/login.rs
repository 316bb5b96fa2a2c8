//! Logins as Docker has them: `$DOCKER_CONFIG/config.json` (else
//! `~/.docker/config.json`): `auths` (`auth` = base64 `user:password`, or an
//! `identitytoken`), `credHelpers` per host and `credsStore` for the rest,
//! through the `docker-credential-<name> get` protocol. A host's login is
//! looked up by that host's name only, so Docker Hub's login never reaches a
//! mirror, nor one mirror's another (moby#42022).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use reqwest::Url;
use serde::Deserialize;

/// A login for one host.
#[derive(Clone, PartialEq, Eq)]
pub enum Login {
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken`), for the token service.
    IdentityToken {
        username: String,
        token: String,
    },
}

impl std::fmt::Debug for Login {
    // Never print a secret, even in a debug dump.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Login::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Login::IdentityToken { username, .. } => write!(f, "IdentityToken({username}, ***)"),
        }
    }
}

impl Login {
    /// `Authorization: Basic …` for this login, when it is a password.
    pub fn basic_header(&self) -> Option<String> {
        match self {
            Login::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
            Login::IdentityToken { .. } => None,
        }
    }
}

/// Logins written out as a config.json (`Logins::export`).
#[derive(Debug, Clone)]
pub struct Exported {
    /// The hosts it holds a login for.
    pub keys: Vec<String>,
    /// The config.json.
    pub bytes: Vec<u8>,
}

/// Where Docker's client configuration is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Logins {
    /// config.json; `None`: no logins at all.
    pub config: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    auths: std::collections::HashMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: std::collections::HashMap<String, String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// Docker Hub's key in config.json, as `docker login` writes it.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

impl Logins {
    /// Docker's client configuration: `$DOCKER_CONFIG/config.json`, else
    /// `~/.docker/config.json`.
    pub fn docker_default() -> Logins {
        let dir = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| dirs::home_dir().map(|h| h.join(".docker")));
        Logins {
            config: dir.map(|d| d.join("config.json")),
        }
    }

    /// A config.json holding, as plain `auths`, the logins Docker has for
    /// the registries at `urls` (credential helpers asked now), and the
    /// keys it holds: for a service that runs as its own user, with no
    /// home and no helper. `None` when Docker has none of them.
    pub fn export(&self, urls: &[Url]) -> Result<Option<Exported>, String> {
        let mut auths = serde_json::Map::new();
        for url in urls {
            let Some(key) = Self::key_of(url) else {
                continue;
            };
            if auths.contains_key(&key) {
                continue;
            }
            let entry = match self.for_url(url)? {
                Some(Login::Basic { username, password }) => serde_json::json!({
                    "auth": base64::engine::general_purpose::STANDARD
                        .encode(format!("{username}:{password}")),
                }),
                Some(Login::IdentityToken { username, token }) => {
                    serde_json::json!({"username": username, "identitytoken": token})
                }
                None => continue,
            };
            auths.insert(key, entry);
        }
        if auths.is_empty() {
            return Ok(None);
        }
        let keys = auths.keys().cloned().collect();
        let doc = serde_json::json!({ "auths": auths });
        let bytes = serde_json::to_vec_pretty(&doc).map_err(|e| e.to_string())?;
        Ok(Some(Exported { keys, bytes }))
    }

    /// The name Docker keys a registry's login by: `host[:port]`, with
    /// Docker Hub's API host under Docker Hub's own key.
    fn key_of(url: &Url) -> Option<String> {
        let host = url.host_str()?;
        if host == "registry-1.docker.io" || host == "index.docker.io" || host == "docker.io" {
            return Some(DOCKER_HUB_KEY.to_owned());
        }
        Some(match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        })
    }

    /// The login for the registry at `url`, if Docker has one. A config file
    /// that cannot be read means no logins (with a reason for `warn`).
    pub fn for_url(&self, url: &Url) -> Result<Option<Login>, String> {
        let Some(path) = &self.config else {
            return Ok(None);
        };
        let Some(bytes) = crate::files::read_regular(path, 4 << 20)
            .map_err(|e| format!("{}: {e}", path.display()))?
        else {
            return Ok(None);
        };
        let config: ConfigFile = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{} is not valid JSON ({e})", path.display()))?;
        let Some(key) = Self::key_of(url) else {
            return Ok(None);
        };
        let matches = |k: &str| {
            let k = k
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_end_matches('/');
            k == key.trim_start_matches("https://").trim_end_matches('/')
                || (key == DOCKER_HUB_KEY && k == "index.docker.io/v1")
        };
        if let Some((_, helper)) = config.cred_helpers.iter().find(|(k, _)| matches(k)) {
            return helper_get(helper, &key);
        }
        if let Some((_, entry)) = config.auths.iter().find(|(k, _)| matches(k)) {
            if let Some(login) = entry_login(entry)? {
                return Ok(Some(login));
            }
        }
        match &config.creds_store {
            Some(store) if !store.is_empty() => helper_get(store, &key),
            _ => Ok(None),
        }
    }
}

fn entry_login(e: &AuthEntry) -> Result<Option<Login>, String> {
    let (mut user, mut pass) = (e.username.clone(), e.password.clone());
    if let Some(auth) = e.auth.as_deref().filter(|a| !a.is_empty()) {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| "an auths entry's auth is not base64".to_owned())?;
        let text =
            String::from_utf8(raw).map_err(|_| "an auths entry's auth is not text".to_owned())?;
        let (u, p) = text
            .split_once(':')
            .ok_or_else(|| "an auths entry's auth is not user:password".to_owned())?;
        user = Some(u.to_owned());
        pass = Some(p.to_owned());
    }
    if let Some(token) = e.identitytoken.clone().filter(|t| !t.is_empty()) {
        return Ok(Some(Login::IdentityToken {
            username: user.unwrap_or_default(),
            token,
        }));
    }
    Ok(match (user, pass) {
        (Some(username), Some(password)) => Some(Login::Basic { username, password }),
        _ => None,
    })
}

/// `docker-credential-<helper> get`, the host on stdin, JSON on stdout.
fn helper_get(helper: &str, key: &str) -> Result<Option<Login>, String> {
    if !helper
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(format!(
            "credential helper name {helper:?} is not a plain name"
        ));
    }
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(key.as_bytes());
    }
    // A helper that hangs (a locked keychain waiting for a prompt) must not
    // hang the probe.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => {
                let _ = child.kill();
                return Err(format!("{program} get did not answer within 10 s"));
            }
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        // "credentials not found in native keychain": no login, not an error.
        return Ok(None);
    }
    let a: HelperAnswer = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("{program} get answered something other than its JSON ({e})"))?;
    Ok(Some(if a.username == "<token>" {
        Login::IdentityToken {
            username: String::new(),
            token: a.secret,
        }
    } else {
        Login::Basic {
            username: a.username,
            password: a.secret,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exported_logins_are_only_those_asked_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        let auth = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        std::fs::write(
            &config,
            serde_json::json!({"auths": {
                "127.0.0.1:5000": {"auth": auth("alice:pw1")},
                "127.0.0.1:6000": {"auth": auth("bob:pw2")},
            }})
            .to_string(),
        )
        .unwrap();
        let logins = Logins {
            config: Some(config),
        };
        let url: Url = "http://127.0.0.1:5000/".parse().unwrap();
        let none: Url = "http://127.0.0.1:7000/".parse().unwrap();
        let Exported { keys, bytes } = logins.export(&[url.clone(), none]).unwrap().unwrap();
        assert_eq!(keys, ["127.0.0.1:5000"]);
        let out = dir.path().join("exported.json");
        std::fs::write(&out, &bytes).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("6000"));
        let back = Logins { config: Some(out) }.for_url(&url).unwrap();
        assert!(
            matches!(back, Some(Login::Basic { ref username, ref password }) if username == "alice" && password == "pw1")
        );
        let nothing: Url = "http://127.0.0.1:7000/".parse().unwrap();
        assert!(logins.export(&[nothing]).unwrap().is_none());
    }
}
