//! A hostile registry, in-process on port 0: it serves what a test tells it
//! to, including what no real registry produces (control characters in
//! errors, a petabyte declared, a layer that trickles a byte a second).
//! Plain HTTP/1.1, one request per connection.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use super::{Image, OCI_MANIFEST};

/// One request, as far as the tests care.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What to answer.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Send the body one piece per this interval.
    pub trickle: Option<Duration>,
    /// The size of each piece (1 when 0).
    pub piece: usize,
}

impl Reply {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            body: body.into(),
            ..Self::default()
        }
    }

    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_owned(), v.to_owned()));
        self
    }
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// Start serving; the URL of the server (`http://127.0.0.1:PORT`).
pub fn serve(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> String {
    serve_on("127.0.0.1", handler)
}

/// `serve` on another loopback address (`::1` for IPv6).
pub fn serve_on(addr: &str, handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind((addr, 0)).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let host = if addr.contains(':') {
        format!("[{addr}]")
    } else {
        addr.to_owned()
    };
    let handler: Arc<Handler> = Arc::new(handler);
    std::thread::spawn(move || {
        for conn in listener.incoming().take(100_000) {
            let Ok(conn) = conn else { continue };
            let handler = handler.clone();
            std::thread::spawn(move || answer(conn, &*handler));
        }
    });
    format!("http://{host}:{port}")
}

fn answer(conn: TcpStream, handler: &Handler) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(read) = conn.try_clone() else { return };
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return;
    };
    let mut headers = Vec::new();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let mut body = vec![0u8; length.min(1 << 20)];
    let _ = reader.read_exact(&mut body);
    let req = Request {
        method: method.to_owned(),
        path: path.to_owned(),
        headers,
    };
    let reply = handler(&req);
    let mut out = conn;
    let mut head = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", reply.status);
    let has_length = reply
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"));
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_length {
        head.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
    }
    head.push_str("\r\n");
    if out.write_all(head.as_bytes()).is_err() || req.method == "HEAD" {
        return;
    }
    match reply.trickle {
        None => {
            let _ = out.write_all(&reply.body);
        }
        Some(every) => {
            for piece in reply.body.chunks(reply.piece.max(1)) {
                if out.write_all(piece).is_err() {
                    return;
                }
                std::thread::sleep(every);
            }
        }
    }
    let _ = out.flush();
}

/// A blob answer to `req`: the `Range` asked for (206 with
/// `Content-Range`), or the whole blob.
pub fn blob_reply(req: &Request, bytes: &[u8]) -> Reply {
    let Some((s, e)) = req
        .header("Range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
    else {
        return Reply::new(200, bytes.to_vec());
    };
    let s: usize = s.parse().unwrap_or(0).min(bytes.len());
    let e: usize = e
        .parse::<usize>()
        .map_or(bytes.len(), |e| e + 1)
        .min(bytes.len());
    Reply::new(206, bytes[s..e.max(s)].to_vec()).header(
        "Content-Range",
        &format!("bytes {s}-{}/{}", e.max(s + 1) - 1, bytes.len()),
    )
}

/// The repository the hostile registry serves.
pub const REPO: &str = "library/small";

/// Blobs by digest and a manifest for `REPO:latest`.
pub struct Content {
    pub manifest: Vec<u8>,
    pub blobs: HashMap<String, Vec<u8>>,
}

impl Content {
    pub fn of(image: &Image) -> Content {
        let mut blobs = HashMap::new();
        blobs.insert(image.config.digest.clone(), image.config.bytes.clone());
        for l in &image.layers {
            blobs.insert(l.digest.clone(), l.bytes.clone());
        }
        Content {
            manifest: image.manifest.clone(),
            blobs,
        }
    }
}

/// A registry serving `content` (Range answered), with `tweak` given the
/// first say on every request.
pub fn registry(
    content: Content,
    tweak: impl Fn(&Request) -> Option<Reply> + Send + Sync + 'static,
) -> String {
    registry_on("127.0.0.1", content, tweak)
}

/// `registry` on another loopback address (`::1`).
pub fn registry_on(
    addr: &str,
    content: Content,
    tweak: impl Fn(&Request) -> Option<Reply> + Send + Sync + 'static,
) -> String {
    let content = Arc::new(content);
    serve_on(addr, move |req| {
        if let Some(r) = tweak(req) {
            return r;
        }
        let path = req.path.split('?').next().unwrap_or("");
        if path == "/v2/" {
            return Reply::new(200, "{}").header("Content-Type", "application/json");
        }
        if let Some(rest) = path.strip_prefix(&format!("/v2/{REPO}/manifests/")) {
            let digest = super::sha256(&content.manifest);
            if rest == "latest" || rest == digest {
                return Reply::new(200, content.manifest.clone())
                    .header("Content-Type", OCI_MANIFEST)
                    .header("Docker-Content-Digest", &digest);
            }
            return Reply::new(404, r#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#);
        }
        if let Some(d) = path.strip_prefix(&format!("/v2/{REPO}/blobs/")) {
            let Some(bytes) = content.blobs.get(d) else {
                return Reply::new(404, r#"{"errors":[{"code":"BLOB_UNKNOWN"}]}"#);
            };
            return blob_reply(req, bytes);
        }
        Reply::new(404, "{}")
    })
}
