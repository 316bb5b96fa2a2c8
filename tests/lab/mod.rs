//! The test lab: real Distribution registries seeded with synthetic images,
//! real nginx fronts that behave like the mirrors users meet, and, for the
//! one fault no real part makes here, a port that accepts and never answers.
//!
//! Everything listens on 127.0.0.1 on ports picked at run time, lives in a
//! temporary directory, and is stopped when the `Lab` is dropped.

#![allow(dead_code)]

pub mod dockerd;
pub mod hostile;
pub mod serve;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// The token nginx's token service hands out and its registry front accepts.
const LAB_TOKEN: &str = "lab-token-7f3a";

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// Fail early and clearly when the lab's Debian packages are missing.
pub fn require(binary: &str, package: &str) -> PathBuf {
    for dir in [
        "/usr/sbin",
        "/usr/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
        "/sbin",
        "/bin",
    ] {
        let p = Path::new(dir).join(binary);
        if p.exists() {
            return p;
        }
    }
    panic!("{binary} not found: install Debian's {package} (`.ci/run` does) to run the lab tests");
}

/// A loopback port nothing listens on now, never handed out twice in this
/// process (the kernel may reissue a just-released port, and two nginx
/// server blocks on one port would silently share it).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("no free loopback port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

fn wait_for_port(port: u16, what: &str, child: &mut Child) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited with {status} before listening on port {port}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{what} did not listen on port {port} within 15 s");
}

/// Deterministic bytes that do not compress (xorshift).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[derive(Clone, Debug)]
pub struct Blob {
    pub media_type: &'static str,
    pub digest: String,
    pub bytes: Vec<u8>,
}

impl Blob {
    fn new(media_type: &'static str, bytes: Vec<u8>) -> Blob {
        Blob {
            media_type,
            digest: sha256(&bytes),
            bytes,
        }
    }

    fn descriptor(&self) -> serde_json::Value {
        serde_json::json!({"mediaType": self.media_type, "digest": self.digest, "size": self.bytes.len()})
    }
}

/// A single-platform OCI image: a config and gzip'd tar layers.
#[derive(Clone, Debug)]
pub struct Image {
    pub config: Blob,
    pub layers: Vec<Blob>,
    /// Uncompressed tar digests, as `docker image inspect` reports them.
    pub diff_ids: Vec<String>,
    pub manifest: Vec<u8>,
    pub digest: String,
    pub arch: String,
}

impl Image {
    /// An image whose layers hold `layer_sizes` bytes of noise each, in one
    /// file per layer. `seed` makes two images of one shape differ.
    pub fn synthetic(seed: u64, arch: &str, layer_sizes: &[usize]) -> Image {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for (i, size) in layer_sizes.iter().enumerate() {
            let mut tar = tar::Builder::new(Vec::new());
            let data = noise(seed * 1000 + i as u64, *size);
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(1_700_000_000);
            header.set_cksum();
            tar.append_data(
                &mut header,
                format!("data/layer-{seed}-{i}.bin"),
                data.as_slice(),
            )
            .expect("tar");
            let tar = tar.into_inner().expect("tar");
            diff_ids.push(sha256(&tar));
            // Noise does not compress; storing keeps seeding fast.
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
            gz.write_all(&tar).expect("gzip");
            layers.push(Blob::new(OCI_LAYER_GZIP, gz.finish().expect("gzip")));
        }
        let config = serde_json::json!({
            "architecture": arch,
            "os": "linux",
            "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": layer_sizes.iter().map(|_| serde_json::json!({"created_by": "dmirror lab"})).collect::<Vec<_>>(),
        });
        let config = Blob::new(OCI_CONFIG, serde_json::to_vec(&config).expect("json"));
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(),
            "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
        });
        let manifest = serde_json::to_vec(&manifest).expect("json");
        Image {
            digest: sha256(&manifest),
            config,
            layers,
            diff_ids,
            manifest,
            arch: arch.to_owned(),
        }
    }

    pub fn largest_layer(&self) -> &Blob {
        self.layers
            .iter()
            .max_by_key(|b| b.bytes.len())
            .expect("layers")
    }
}

/// An OCI index over `images`, with an attestation entry like BuildKit's.
pub fn index_of(images: &[&Image]) -> (Vec<u8>, String) {
    let mut manifests: Vec<serde_json::Value> = images
        .iter()
        .map(|i| {
            serde_json::json!({"mediaType": OCI_MANIFEST, "digest": i.digest, "size": i.manifest.len(),
                "platform": {"os": "linux", "architecture": i.arch}})
        })
        .collect();
    if let Some(first) = images.first() {
        manifests.push(serde_json::json!({"mediaType": OCI_MANIFEST, "digest": first.digest, "size": first.manifest.len(),
            "platform": {"os": "unknown", "architecture": "unknown"},
            "annotations": {"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": first.digest}}));
    }
    let index =
        serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    let bytes = serde_json::to_vec(&index).expect("json");
    let digest = sha256(&bytes);
    (bytes, digest)
}

/// A running Distribution registry.
#[derive(Clone, Debug)]
pub struct Registry {
    pub port: u16,
}

impl Registry {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn push_blob(&self, http: &reqwest::blocking::Client, repo: &str, blob: &Blob) {
        let resp = http
            .post(format!("{}/v2/{repo}/blobs/uploads/", self.url()))
            .send()
            .expect("start upload");
        assert_eq!(
            resp.status().as_u16(),
            202,
            "start upload: {:?}",
            resp.text()
        );
        let location = resp.headers()["location"]
            .to_str()
            .expect("location")
            .to_owned();
        let mut url = reqwest::Url::parse(&self.url())
            .expect("url")
            .join(&location)
            .expect("location url");
        url.query_pairs_mut().append_pair("digest", &blob.digest);
        let resp = http
            .put(url)
            .header("content-type", "application/octet-stream")
            .body(blob.bytes.clone())
            .send()
            .expect("upload");
        assert_eq!(
            resp.status().as_u16(),
            201,
            "upload blob: {:?}",
            resp.text()
        );
    }

    fn push_manifest(
        &self,
        http: &reqwest::blocking::Client,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) {
        let resp = http
            .put(format!("{}/v2/{repo}/manifests/{reference}", self.url()))
            .header("content-type", media_type)
            .body(bytes.to_vec())
            .send()
            .expect("put manifest");
        assert_eq!(
            resp.status().as_u16(),
            201,
            "put manifest: {:?}",
            resp.text()
        );
    }

    /// Push `image` as `repo:tag`.
    pub fn push(&self, repo: &str, tag: &str, image: &Image) {
        let http = reqwest::blocking::Client::new();
        for blob in image.layers.iter().chain(std::iter::once(&image.config)) {
            self.push_blob(&http, repo, blob);
        }
        self.push_manifest(&http, repo, tag, OCI_MANIFEST, &image.manifest);
    }

    /// Push `images` by digest and an index over them as `repo:tag`.
    pub fn push_index(&self, repo: &str, tag: &str, images: &[&Image]) -> String {
        let http = reqwest::blocking::Client::new();
        for image in images {
            for blob in image.layers.iter().chain(std::iter::once(&image.config)) {
                self.push_blob(&http, repo, blob);
            }
            self.push_manifest(&http, repo, &image.digest, OCI_MANIFEST, &image.manifest);
        }
        let (bytes, digest) = index_of(images);
        self.push_manifest(&http, repo, tag, OCI_INDEX, &bytes);
        digest
    }
}

/// How an nginx front behaves.
#[derive(Clone, Debug)]
pub enum Front {
    /// A working mirror: proxies a registry, optionally at `rate` per
    /// connection (nginx `limit_rate`, e.g. "400k").
    Proxy {
        upstream: u16,
        rate: Option<&'static str>,
    },
    /// Every request gets `code` with `body` (403 campus-only, 429, ...).
    Status {
        code: u16,
        body: &'static str,
        content_type: &'static str,
        retry_after: Option<u32>,
    },
    /// Every request is redirected (302) to the same path on another port.
    Redirect { to: u16 },
    /// `/v2/` says 200, every manifest 404: a fake mirror.
    Fake,
    /// A web portal answering HTML to everything.
    Portal,
    /// A real nginx 502: its upstream port is closed.
    BadGateway,
    /// Bearer token auth with its own token service on another port; when
    /// `anonymous` is false the token service demands a login. With `cdn`,
    /// blob requests that pass the token check are redirected (307) there.
    TokenAuth {
        upstream: u16,
        anonymous: bool,
        cdn: Option<u16>,
    },
    /// A blob CDN: proxies a registry, but refuses (400) any request that
    /// carries `Authorization`, as a credential leak would.
    Cdn { upstream: u16 },
    /// Proxies a registry but serves every blob from `file` instead.
    Tampered { upstream: u16, file: PathBuf },
}

pub struct Lab {
    pub dir: tempfile::TempDir,
    children: Vec<(String, Child)>,
    hang: Vec<TcpListener>,
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}

impl Lab {
    pub fn new() -> Lab {
        Lab {
            dir: tempfile::Builder::new()
                .prefix("dmirror-lab-")
                .tempdir()
                .expect("tempdir"),
            children: Vec::new(),
            hang: Vec::new(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Start a Distribution registry with its own storage.
    pub fn registry(&mut self, name: &str) -> Registry {
        let bin = require("docker-registry", "docker-registry");
        let port = free_port();
        let root = self.path(&format!("registry-{name}"));
        std::fs::create_dir_all(&root).expect("mkdir");
        let config = root.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                root.join("data").display()
            ),
        )
        .expect("write registry config");
        let mut child = Command::new(bin)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        wait_for_port(port, "docker-registry", &mut child);
        self.children.push((format!("registry {name}"), child));
        Registry { port }
    }

    /// A port that accepts connections (the kernel completes the handshake)
    /// but never answers.
    pub fn hanging_port(&mut self) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        self.hang.push(l);
        port
    }

    /// A port nothing listens on.
    pub fn refused_port(&self) -> u16 {
        free_port()
    }

    /// Start one nginx serving every front; returns each front's URL by name.
    pub fn nginx(&mut self, fronts: &[(&str, Front)]) -> HashMap<String, String> {
        let prefix = self.path(&format!("nginx-{}", self.children.len()));
        std::fs::create_dir_all(prefix.join("logs")).expect("mkdir");
        let mut servers = String::new();
        let mut urls = HashMap::new();
        let mut ports = Vec::new();
        for (name, front) in fronts {
            let port = free_port();
            ports.push(port);
            urls.insert(name.to_string(), format!("http://127.0.0.1:{port}"));
            servers.push_str(&server_block(port, front, &mut ports));
        }
        self.start_nginx(&prefix, &servers, &ports);
        urls
    }

    /// Start one nginx with `servers` (server blocks) listening on `ports`.
    pub fn nginx_raw(&mut self, servers: &str, ports: &[u16]) {
        let prefix = self.path(&format!("nginx-{}", self.children.len()));
        std::fs::create_dir_all(prefix.join("logs")).expect("mkdir");
        self.start_nginx(&prefix, servers, ports);
    }

    fn start_nginx(&mut self, prefix: &Path, servers: &str, ports: &[u16]) {
        let bin = require("nginx", "nginx-light");
        let conf = prefix.join("nginx.conf");
        let text = format!(
            "user root;\nworker_processes 1;\npid {pid};\nerror_log {log} warn;\nevents {{ worker_connections 512; }}\nhttp {{\n  access_log off;\n  client_max_body_size 0;\n  proxy_http_version 1.1;\n{servers}}}\n",
            pid = prefix.join("nginx.pid").display(),
            log = prefix.join("logs/error.log").display(),
        );
        std::fs::write(&conf, text).expect("write nginx.conf");
        let mut child = Command::new(bin)
            .arg("-p")
            .arg(prefix)
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nginx");
        for port in ports {
            wait_for_port(*port, "nginx", &mut child);
        }
        self.children.push(("nginx".into(), child));
    }

    /// Keep `child` running until the lab is dropped, once `port` answers.
    pub fn adopt(&mut self, name: &str, mut child: Child, port: u16) {
        wait_for_port(port, name, &mut child);
        self.children.push((name.to_owned(), child));
    }

    /// Write a mirrors.toml for `entries` of (name, url, extra TOML lines).
    pub fn mirrors_toml(&self, file: &str, entries: &[(&str, String, &str)]) -> PathBuf {
        let mut text = String::new();
        for (name, url, extra) in entries {
            let _ = writeln!(
                text,
                "[[mirror]]\nname = \"{name}\"\nurl = \"{url}\"\n{extra}\n"
            );
        }
        let path = self.path(file);
        std::fs::write(&path, text).expect("write mirrors.toml");
        path
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            // SIGTERM first: nginx's master then stops its workers.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
        }
        for (_, child) in &mut self.children {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(3) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn proxy_lines(upstream: u16) -> String {
    format!(
        "      proxy_pass http://127.0.0.1:{upstream};\n      proxy_set_header Host $host:$server_port;\n      proxy_buffering on;\n      proxy_max_temp_file_size 0;\n"
    )
}

fn server_block(port: u16, front: &Front, ports: &mut Vec<u16>) -> String {
    let listen = format!("  server {{\n    listen 127.0.0.1:{port};\n");
    let body = match front {
        Front::Proxy { upstream, rate } => {
            let limit = rate.map(|r| format!("      limit_rate {r};\n")).unwrap_or_default();
            format!("    location / {{\n{}{limit}    }}\n", proxy_lines(*upstream))
        }
        Front::Status { code, body, content_type, retry_after } => {
            let retry = retry_after
                .map(|s| format!("      add_header Retry-After {s} always;\n"))
                .unwrap_or_default();
            format!(
                "    location / {{\n      default_type {content_type};\n{retry}      return {code} '{body}';\n    }}\n"
            )
        }
        Front::Redirect { to } => {
            format!("    location / {{\n      return 302 http://127.0.0.1:{to}$request_uri;\n    }}\n")
        }
        Front::Fake => "    location = /v2/ {\n      default_type application/json;\n      add_header Docker-Distribution-API-Version registry/2.0 always;\n      return 200 '{}';\n    }\n    location / {\n      default_type application/json;\n      return 404 '{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\",\"message\":\"manifest unknown\"}]}';\n    }\n".to_owned(),
        Front::Portal => "    location / {\n      default_type text/html;\n      return 200 '<!DOCTYPE html><html><head><title>Free Docker Mirror Portal</title></head><body><h1>Welcome</h1></body></html>';\n    }\n".to_owned(),
        Front::BadGateway => {
            let closed = free_port();
            format!("    location / {{\n      proxy_pass http://127.0.0.1:{closed};\n    }}\n")
        }
        Front::Cdn { upstream } => format!(
            "    location / {{\n      if ($http_authorization != \"\") {{ return 400 'Authorization was forwarded to another host'; }}\n{}    }}\n",
            proxy_lines(*upstream)
        ),
        Front::TokenAuth { upstream, anonymous, cdn } => {
            let to_cdn = cdn
                .map(|port| format!("    location ~ /blobs/ {{\n      if ($http_authorization != \"Bearer {LAB_TOKEN}\") {{ return 401; }}\n      return 307 http://127.0.0.1:{port}$request_uri;\n    }}\n"))
                .unwrap_or_default();
            let token_port = free_port();
            ports.push(token_port);
            let token_location = if *anonymous {
                format!(
                    "    location = /token {{\n      default_type application/json;\n      if ($arg_service != \"lab-registry\") {{ return 400 '{{\"details\":\"unknown service\"}}'; }}\n      if ($arg_scope !~ \"^repository(:|%3A)[a-zA-Z0-9/%._-]+(:|%3A)pull$\") {{ return 400 '{{\"details\":\"bad scope\"}}'; }}\n      return 200 '{{\"token\":\"{LAB_TOKEN}\",\"access_token\":\"{LAB_TOKEN}\",\"expires_in\":300}}';\n    }}\n"
                )
            } else {
                "    location = /token {\n      default_type application/json;\n      return 401 '{\"details\":\"incorrect username or password\"}';\n    }\n".to_owned()
            };
            format!(
                "{to_cdn}    location /v2/ {{\n      if ($http_authorization != \"Bearer {LAB_TOKEN}\") {{\n        add_header WWW-Authenticate 'Bearer realm=\"http://127.0.0.1:{token_port}/token\",service=\"lab-registry\"' always;\n        add_header Docker-Distribution-API-Version registry/2.0 always;\n        return 401 '{{\"errors\":[{{\"code\":\"UNAUTHORIZED\",\"message\":\"authentication required\"}}]}}';\n      }}\n{}    }}\n  }}\n  server {{\n    listen 127.0.0.1:{token_port};\n{token_location}",
                proxy_lines(*upstream)
            )
        }
        Front::Tampered { upstream, file } => format!(
            "    location ~ /blobs/ {{\n      root {dir};\n      default_type application/octet-stream;\n      rewrite ^ /{name} break;\n    }}\n    location / {{\n{}    }}\n",
            proxy_lines(*upstream),
            dir = file.parent().expect("dir").display(),
            name = file.file_name().expect("name").to_string_lossy(),
        ),
    };
    format!("{listen}{body}  }}\n")
}

/// The `dmirror` binary with a clean environment: no user config, no
/// proxies, nothing inherited that could change what it does.
pub fn dmirror(lab: &Lab) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dmirror"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", lab.path("home"))
        .env("XDG_CONFIG_HOME", lab.path("config"))
        .env("XDG_CACHE_HOME", lab.path("cache"))
        .env("XDG_STATE_HOME", lab.path("state"))
        .stdin(Stdio::null());
    cmd
}

/// A TCP proxy to `upstream` that cuts every connection after `cut_after`
/// bytes of response, like the free proxies that drop long transfers. No
/// real part here does that on demand, so this one is in-process.
pub fn cutting_proxy(upstream: u16, cut_after: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for client in listener.incoming().take(10_000) {
            let Ok(client) = client else { continue };
            std::thread::spawn(move || {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    return;
                };
                let (Ok(mut c_read), Ok(mut s_write)) = (client.try_clone(), server.try_clone())
                else {
                    return;
                };
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_read, &mut s_write);
                    let _ = s_write.shutdown(std::net::Shutdown::Write);
                });
                let (mut s_read, mut c_write) = (server, client);
                let mut buf = [0u8; 16 * 1024];
                let mut sent = 0;
                while sent < cut_after {
                    let n = match std::io::Read::read(&mut s_read, &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n.min(cut_after - sent),
                    };
                    if c_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    sent += n;
                }
                let _ = c_write.shutdown(std::net::Shutdown::Both);
                let _ = s_read.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    port
}
