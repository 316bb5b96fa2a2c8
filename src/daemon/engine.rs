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
    /// `[["driver-type", "io.containerd.snapshotter.v1"], ...]` with the
    /// containerd image store.
    #[serde(default)]
    pub driver_status: Option<Vec<Vec<String>>>,
    /// The engine's own proxy (its environment or daemon.json `proxies`).
    #[serde(default)]
    pub http_proxy: String,
    #[serde(default)]
    pub https_proxy: String,
    #[serde(default)]
    pub no_proxy: String,
}

impl Info {
    /// Whether the engine uses the containerd image store, and so reads
    /// `certs.d/<registry>/hosts.toml` (Docker Engine 29+ fresh installs).
    pub fn uses_containerd_store(&self) -> bool {
        self.driver_status.iter().flatten().any(|kv| {
            kv.first().map(String::as_str) == Some("driver-type")
                && kv
                    .get(1)
                    .is_some_and(|v| v.starts_with("io.containerd.snapshotter"))
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegistryConfig {
    #[serde(default)]
    pub mirrors: Option<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no Docker engine at {0} ({1}); start Docker or point DOCKER_HOST at it")]
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

    /// The pid of the process serving the engine's socket, from the
    /// socket's peer credentials (`SO_PEERCRED`); `None` for a TCP engine
    /// or when nothing answers.
    pub async fn peer_pid(&self) -> Option<i32> {
        let Endpoint::Unix(p) = &self.endpoint else {
            return None;
        };
        let conn = tokio::time::timeout(self.timeout, tokio::net::UnixStream::connect(p))
            .await
            .ok()?
            .ok()?;
        conn.peer_cred().ok()?.pid()
    }

    async fn connect(&self) -> std::io::Result<Box<dyn Io>> {
        Ok(match &self.endpoint {
            Endpoint::Unix(p) => Box::new(tokio::net::UnixStream::connect(p).await?),
            Endpoint::Tcp(h) => Box::new(tokio::net::TcpStream::connect(h.as_str()).await?),
        })
    }

    /// `POST /images/load` with a docker-archive streamed from `body`, sent
    /// with chunked transfer encoding so nothing is buffered whole. Returns
    /// the engine's own words ("Loaded image: ubuntu:latest").
    pub async fn load(
        &self,
        mut body: tokio::sync::mpsc::Receiver<Vec<u8>>,
    ) -> Result<String, EngineError> {
        let io_err = |e: std::io::Error| EngineError::Unreachable(self.endpoint.clone(), e);
        let mut conn = tokio::time::timeout(self.timeout, self.connect())
            .await
            .map_err(|_| EngineError::Timeout(self.endpoint.clone(), self.timeout))?
            .map_err(io_err)?;
        let head = format!(
            "POST /images/load?quiet=1 HTTP/1.1\r\nHost: docker\r\nUser-Agent: dmirror/{}\r\nContent-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            env!("CARGO_PKG_VERSION")
        );
        conn.write_all(head.as_bytes()).await.map_err(io_err)?;
        while let Some(chunk) = body.recv().await {
            if chunk.is_empty() {
                continue;
            }
            conn.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await
                .map_err(io_err)?;
            conn.write_all(&chunk).await.map_err(io_err)?;
            conn.write_all(b"\r\n").await.map_err(io_err)?;
        }
        conn.write_all(b"0\r\n\r\n").await.map_err(io_err)?;
        conn.flush().await.map_err(io_err)?;
        let raw = read_all(&mut conn).await.map_err(io_err)?;
        let bad = |m: String| EngineError::Bad(self.endpoint.clone(), m);
        let (status, headers, body) =
            split_response(&raw).ok_or_else(|| bad("a malformed HTTP response".into()))?;
        let body = if headers
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_vec()
        };
        let text = String::from_utf8_lossy(&body);
        let mut said = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|_| serde_json::Value::String(line.to_owned()));
            if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
                return Err(bad(format!("an error to the image load: {e}")));
            }
            match v.get("stream").and_then(|s| s.as_str()) {
                Some(s) => said.push(s.trim().to_owned()),
                None => said.push(v.as_str().unwrap_or(line).trim().to_owned()),
            }
        }
        if status != 200 {
            return Err(bad(format!(
                "HTTP {status} to the image load: {}",
                said.join(" ")
            )));
        }
        Ok(said.join("; "))
    }

    /// `DELETE /images/{id}`: remove an image (its layers stay while another
    /// image uses them).
    pub async fn remove_image(&self, id: &str) -> Result<(), EngineError> {
        self.request("DELETE", &format!("/images/{id}"))
            .await
            .map(drop)
    }

    async fn get(&self, path: &str) -> Result<Vec<u8>, EngineError> {
        self.request("GET", path).await
    }

    async fn request(&self, method: &str, path: &str) -> Result<Vec<u8>, EngineError> {
        let request = format!(
            "{method} {path} HTTP/1.0\r\nHost: docker\r\nUser-Agent: dmirror/{}\r\n\r\n",
            env!("CARGO_PKG_VERSION")
        );
        let fut = async {
            let mut conn = self.connect().await?;
            conn.write_all(request.as_bytes()).await?;
            read_all(&mut conn).await
        };
        let raw = match tokio::time::timeout(self.timeout, fut).await {
            Err(_) => return Err(EngineError::Timeout(self.endpoint.clone(), self.timeout)),
            Ok(Err(e)) => return Err(EngineError::Unreachable(self.endpoint.clone(), e)),
            Ok(Ok(raw)) => raw,
        };
        let bad = |m: String| EngineError::Bad(self.endpoint.clone(), m);
        let (status, _, body) =
            split_response(&raw).ok_or_else(|| bad("a malformed HTTP response".into()))?;
        if status != 200 {
            return Err(bad(format!(
                "HTTP {status} to {path}: {}",
                String::from_utf8_lossy(body).trim()
            )));
        }
        Ok(body.to_vec())
    }
}

/// A connection to the engine, over a unix socket or TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

fn split_response(raw: &[u8]) -> Option<(u16, String, &[u8])> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, head, &raw[split + 4..]))
}

/// Undo HTTP/1.1 chunked transfer encoding (trailers ignored).
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&body[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        body = &body[eol + 2..];
        if size == 0 || size > body.len() {
            break;
        }
        out.extend_from_slice(&body[..size]);
        body = body.get(size + 2..).unwrap_or(&[]);
    }
    out
}

async fn read_all<S: AsyncRead + Unpin + ?Sized>(s: &mut S) -> std::io::Result<Vec<u8>> {
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
    fn the_containerd_image_store_is_told_by_driver_status() {
        let with: Info = serde_json::from_str(
            r#"{"DriverStatus":[["driver-type","io.containerd.snapshotter.v1"]]}"#,
        )
        .unwrap();
        assert!(with.uses_containerd_store());
        let without: Info =
            serde_json::from_str(r#"{"DriverStatus":[["Backing Filesystem","extfs"]]}"#).unwrap();
        assert!(!without.uses_containerd_store());
        let null: Info = serde_json::from_str(r#"{"DriverStatus":null}"#).unwrap();
        assert!(!null.uses_containerd_store());
    }

    #[test]
    fn chunked_bodies_decode() {
        assert_eq!(
            dechunk(b"4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\n\r\n"),
            b"Wikipedia"
        );
        assert_eq!(dechunk(b"zz\r\n"), b"");
        let (status, _, body) = split_response(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody").unwrap();
        assert_eq!((status, body), (200, &b"body"[..]));
    }

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
