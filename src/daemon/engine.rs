//! The Docker Engine API, for the one question apply must ask: what does
//! the running daemon really use? (`GET /info` → `RegistryConfig.Mirrors`.)
//!
//! Requests are HTTP/1.0 so that the engine answers with a plain body ended
//! by closing the connection (Go's net/http never chunks for 1.0 clients),
//! which keeps this client small. `DOCKER_HOST` is honoured: `unix://PATH`
//! or `tcp://HOST:PORT`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
const MAX_RESPONSE: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp(String),
}

impl Endpoint {
    /// From `DOCKER_HOST`'s value, or the default socket when unset.
    pub fn from_docker_host(value: Option<&str>) -> Result<Endpoint, String> {
        match value.map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(Endpoint::Unix(PathBuf::from(DEFAULT_SOCKET))),
            Some(v) => {
                if let Some(p) = v.strip_prefix("unix://") {
                    Ok(Endpoint::Unix(PathBuf::from(p)))
                } else if let Some(h) = v
                    .strip_prefix("tcp://")
                    .or_else(|| v.strip_prefix("http://"))
                {
                    Ok(Endpoint::Tcp(h.trim_end_matches('/').to_owned()))
                } else {
                    Err(format!(
                        "DOCKER_HOST={v:?} is not unix://PATH or tcp://HOST:PORT"
                    ))
                }
            }
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix://{}", p.display()),
            Endpoint::Tcp(h) => write!(f, "tcp://{h}"),
        }
    }
}

/// The parts of `GET /info` dmirror reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Info {
    #[serde(default)]
    pub registry_config: RegistryConfig,
    #[serde(default)]
    pub containers_running: u64,
    #[serde(default)]
    pub live_restore_enabled: bool,
    #[serde(default)]
    pub server_version: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegistryConfig {
    #[serde(default)]
    pub mirrors: Option<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot reach the Docker engine at {0}: {1}")]
    Unreachable(Endpoint, std::io::Error),
    #[error("the Docker engine at {0} did not answer within {1:?}")]
    Timeout(Endpoint, Duration),
    #[error("the Docker engine at {0} answered {1}")]
    Bad(Endpoint, String),
}

pub struct Engine {
    endpoint: Endpoint,
    timeout: Duration,
}

impl Engine {
    pub fn new(endpoint: Endpoint, timeout: Duration) -> Self {
        Self { endpoint, timeout }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub async fn info(&self) -> Result<Info, EngineError> {
        let body = self.get("/info").await?;
        serde_json::from_slice(&body)
            .map_err(|e| EngineError::Bad(self.endpoint.clone(), format!("unreadable /info: {e}")))
    }

    async fn get(&self, path: &str) -> Result<Vec<u8>, EngineError> {
        let request = format!(
            "GET {path} HTTP/1.0\r\nHost: docker\r\nUser-Agent: dmirror/{}\r\n\r\n",
            env!("CARGO_PKG_VERSION")
        );
        let fut = async {
            match &self.endpoint {
                Endpoint::Unix(p) => {
                    exchange(tokio::net::UnixStream::connect(p).await?, &request).await
                }
                Endpoint::Tcp(h) => {
                    exchange(tokio::net::TcpStream::connect(h.as_str()).await?, &request).await
                }
            }
        };
        let raw = match tokio::time::timeout(self.timeout, fut).await {
            Err(_) => return Err(EngineError::Timeout(self.endpoint.clone(), self.timeout)),
            Ok(Err(e)) => return Err(EngineError::Unreachable(self.endpoint.clone(), e)),
            Ok(Ok(raw)) => raw,
        };
        let bad = |m: String| EngineError::Bad(self.endpoint.clone(), m);
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| bad("a malformed HTTP response".into()))?;
        let head = String::from_utf8_lossy(&raw[..split]);
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(0);
        let body = raw[split + 4..].to_vec();
        if status != 200 {
            return Err(bad(format!(
                "HTTP {status} to {path}: {}",
                String::from_utf8_lossy(&body).trim()
            )));
        }
        Ok(body)
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    request: &str,
) -> std::io::Result<Vec<u8>> {
    s.write_all(request.as_bytes()).await?;
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Ok(out);
        }
        if out.len() + n > MAX_RESPONSE {
            return Err(std::io::Error::other("response too large"));
        }
        out.extend_from_slice(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_host_forms() {
        assert_eq!(
            Endpoint::from_docker_host(None).unwrap(),
            Endpoint::Unix(DEFAULT_SOCKET.into())
        );
        assert_eq!(
            Endpoint::from_docker_host(Some("unix:///tmp/d.sock")).unwrap(),
            Endpoint::Unix("/tmp/d.sock".into())
        );
        assert_eq!(
            Endpoint::from_docker_host(Some("tcp://127.0.0.1:2375")).unwrap(),
            Endpoint::Tcp("127.0.0.1:2375".into())
        );
        assert!(Endpoint::from_docker_host(Some("ssh://host")).is_err());
    }

    #[test]
    fn info_parses_mirrors_and_tolerates_absence() {
        let i: Info = serde_json::from_str(r#"{"RegistryConfig":{"Mirrors":["https://a/"]},"ContainersRunning":2,"LiveRestoreEnabled":false,"Other":1}"#).unwrap();
        assert_eq!(i.registry_config.mirrors.unwrap(), ["https://a/"]);
        assert_eq!(i.containers_running, 2);
        let i: Info = serde_json::from_str(r#"{"RegistryConfig":{"Mirrors":null}}"#).unwrap();
        assert!(i.registry_config.mirrors.is_none());
    }
}
