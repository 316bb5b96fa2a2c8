//! Finding the Docker engine the way the docker CLI does: `DOCKER_HOST`,
//! then the current context (`DOCKER_CONTEXT`, else config.json's
//! `currentContext`, read from `contexts/meta/<sha256 of the name>/meta.json`),
//! then a rootless engine's socket (`$XDG_RUNTIME_DIR/docker.sock`), then
//! `/var/run/docker.sock`. A rootless engine has its own daemon.json and is
//! managed by `systemctl --user`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::Digest as _;

use super::engine::{Endpoint, DEFAULT_SOCKET};

/// The engine found, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub endpoint: Endpoint,
    /// `DOCKER_HOST`, `context NAME`, `rootless socket` or `default socket`.
    pub from: String,
    /// A rootless engine (its socket under `$XDG_RUNTIME_DIR`, not root).
    pub rootless: bool,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(rename = "Endpoints", default)]
    endpoints: std::collections::HashMap<String, MetaEndpoint>,
}

#[derive(Deserialize)]
struct MetaEndpoint {
    #[serde(rename = "Host", default)]
    host: String,
}

#[derive(Deserialize, Default)]
struct Config {
    #[serde(rename = "currentContext", default)]
    current_context: String,
}

/// Docker's client configuration directory.
pub fn docker_config_dir() -> Option<PathBuf> {
    std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| dirs::home_dir().map(|h| h.join(".docker")))
}

/// The engine this user's `docker` would talk to.
pub fn locate() -> Result<Located, String> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    if let Some(h) = env("DOCKER_HOST") {
        let endpoint = Endpoint::from_docker_host(Some(&h))?;
        let rootless = is_rootless(&endpoint);
        return Ok(Located {
            endpoint,
            from: "DOCKER_HOST".into(),
            rootless,
        });
    }
    let dir = docker_config_dir();
    let context = env("DOCKER_CONTEXT").or_else(|| {
        let path = dir.as_ref()?.join("config.json");
        let bytes = crate::files::read_regular(&path, 4 << 20).ok()??;
        let c: Config = serde_json::from_slice(&bytes).ok()?;
        Some(c.current_context).filter(|c| !c.is_empty())
    });
    if let Some(name) = context.filter(|n| n != "default") {
        let dir = dir.ok_or("no Docker configuration directory for the current context")?;
        let host = context_host(&dir, &name)?;
        let endpoint = Endpoint::from_docker_host(Some(&host))
            .map_err(|e| format!("docker context {name:?}: {e}"))?;
        let rootless = is_rootless(&endpoint);
        return Ok(Located {
            endpoint,
            from: format!("docker context {name}"),
            rootless,
        });
    }
    if let Some(run) = env("XDG_RUNTIME_DIR") {
        let sock = Path::new(&run).join("docker.sock");
        if sock.exists() && !is_root() {
            return Ok(Located {
                endpoint: Endpoint::Unix(sock),
                from: "rootless socket".into(),
                rootless: true,
            });
        }
    }
    Ok(Located {
        endpoint: Endpoint::Unix(PathBuf::from(DEFAULT_SOCKET)),
        from: "default socket".into(),
        rootless: false,
    })
}

/// The docker host of context `name`, from its meta.json.
fn context_host(config_dir: &Path, name: &str) -> Result<String, String> {
    let id = format!("{:x}", sha2::Sha256::digest(name.as_bytes()));
    let path = config_dir.join("contexts/meta").join(id).join("meta.json");
    let bytes = crate::files::read_regular(&path, 1 << 20)
        .map_err(|e| format!("docker context {name:?}: {}: {e}", path.display()))?
        .ok_or_else(|| {
            format!(
                "docker context {name:?} is current, but {} does not exist; run docker context use default, or set DOCKER_HOST",
                path.display()
            )
        })?;
    let meta: Meta = serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "docker context {name:?}: {} is not valid ({e})",
            path.display()
        )
    })?;
    meta.endpoints
        .get("docker")
        .map(|e| e.host.clone())
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("docker context {name:?} has no docker endpoint"))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A socket under the user's runtime directory, for a user who is not root.
fn is_rootless(e: &Endpoint) -> bool {
    let Endpoint::Unix(p) = e else { return false };
    let run = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
    !is_root() && run.is_some_and(|r| p.starts_with(r))
}

/// A rootless engine's daemon.json: `~/.config/docker/daemon.json`.
pub fn rootless_daemon_json() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join("docker/daemon.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_meta_is_found_by_the_hash_of_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let id = format!("{:x}", sha2::Sha256::digest(b"lab"));
        let meta = dir.path().join("contexts/meta").join(id);
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(
            meta.join("meta.json"),
            r#"{"Name":"lab","Metadata":{},"Endpoints":{"docker":{"Host":"unix:///run/lab.sock","SkipTLSVerify":false}}}"#,
        )
        .unwrap();
        assert_eq!(
            context_host(dir.path(), "lab").unwrap(),
            "unix:///run/lab.sock"
        );
        assert!(context_host(dir.path(), "other")
            .unwrap_err()
            .contains("does not exist"));
    }
}
