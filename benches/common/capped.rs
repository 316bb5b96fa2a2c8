//! The capped-mirror lab the pull and serve benchmarks share: three
//! registries over one storage, each in its own network namespace behind a
//! veth pair whose mirror side `tc tbf` caps at 4, 4 and 8 MB/s (a cap that
//! holds however many connections a client opens), seeded with an image of
//! about 120 MB in six layers; and a timer that also reads peak RSS.

// Each benchmark uses part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::lab::{Image, Lab, Registry};

pub const MB: usize = 1_000_000;
/// Mirror caps in MB/s (decimal, as network speeds are quoted).
pub const CAPS: [u32; 3] = [4, 4, 8];
/// The mirrors' names in mirrors.toml, in the order of `CAPS`.
pub const NAMES: [&str; 3] = ["m4a", "m4b", "m8"];

pub struct Netns {
    pub names: Vec<String>,
    pub children: Vec<Child>,
}

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

pub fn sh(cmd: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "failed: {cmd}");
}

pub fn wait_http(url: &str) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if reqwest::blocking::get(url).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{url} never answered");
}

pub fn timed(cmd: Command) -> (Duration, Option<u64>, bool) {
    let rss_file = tempfile::NamedTempFile::new().expect("tmp");
    let mut wrapped = Command::new("/usr/bin/time");
    wrapped
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(rss_file.path())
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    wrapped.stdout(Stdio::null()).stderr(Stdio::piped());
    let start = Instant::now();
    let out = wrapped.output().expect("run");
    let elapsed = start.elapsed();
    let said = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || std::env::var_os("BENCH_VERBOSE").is_some() {
        eprintln!("{said}");
    }
    let rss = std::fs::read_to_string(rss_file.path())
        .ok()
        .and_then(|s| s.lines().last().and_then(|l| l.trim().parse().ok()));
    (elapsed, rss, out.status.success())
}

/// The lab: namespaces (dropped last), the mirrors' URLs, the loopback
/// registry that seeded them, the image and its size.
pub struct Capped {
    pub urls: Vec<String>,
    pub origin: Registry,
    pub image: Image,
    pub total: usize,
    /// The storage the three registries share.
    pub store: PathBuf,
    /// Kept for its Drop: the namespaces go with the lab.
    pub ns: Netns,
}

impl Capped {
    /// The URL of the fastest mirror.
    pub fn best(&self) -> String {
        let i = CAPS
            .iter()
            .enumerate()
            .max_by_key(|(_, c)| **c)
            .map(|(i, _)| i)
            .unwrap_or(0);
        self.urls[i].clone()
    }
}

/// Start the lab; `extra` images are seeded beside the 120 MB one.
pub fn start(lab: &mut Lab, tag: &str, extra: &[(&str, &Image)]) -> Capped {
    let store = lab.path("store");
    let pid = std::process::id();
    let mut ns = Netns {
        names: Vec::new(),
        children: Vec::new(),
    };
    let mut urls = Vec::new();
    for (i, cap) in CAPS.iter().enumerate() {
        let n = format!("dmb{tag}-{pid}-{i}");
        let (host, peer) = (format!("dmb{tag}{i}h"), format!("dmb{tag}{i}m"));
        sh(&format!("ip netns add {n}"));
        ns.names.push(n.clone());
        sh(&format!(
            "ip link add {host} type veth peer name {peer} netns {n}"
        ));
        sh(&format!(
            "ip addr add 10.77.{i}.1/24 dev {host} && ip link set {host} up"
        ));
        sh(&format!("ip netns exec {n} sh -c 'ip link set lo up && ip addr add 10.77.{i}.2/24 dev {peer} && ip link set {peer} up'"));
        let rate = cap * 8;
        sh(&format!("ip netns exec {n} tc qdisc add dev {peer} root tbf rate {rate}mbit burst 128kb latency 200ms"));
        let config = lab.path(&format!("registry-{i}.yml"));
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 10.77.{i}.2:5000\n",
                store.display()
            ),
        )
        .expect("config");
        let child = Command::new("ip")
            .args(["netns", "exec", &n, "docker-registry", "serve"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("registry");
        ns.children.push(child);
        let url = format!("http://10.77.{i}.2:5000");
        wait_http(&format!("{url}/v2/"));
        urls.push(url);
    }
    // Seed through mirror 0's registry (pushes are not capped: tbf shapes
    // the mirrors' egress only); all three share the storage.
    let origin = lab.registry("loopback");
    let image = Image::synthetic(51, "amd64", &[20 * MB; 6]);
    origin.push("library/small", "latest", &image);
    for (repo, extra) in extra {
        origin.push(repo, "latest", extra);
    }
    sh(&format!(
        "rm -rf {} && cp -a {} {}",
        store.display(),
        lab.path("registry-loopback/data").display(),
        store.display()
    ));
    let total: usize = image.layers.iter().map(|l| l.bytes.len()).sum();
    Capped {
        urls,
        origin,
        image,
        total,
        store,
        ns,
    }
}
