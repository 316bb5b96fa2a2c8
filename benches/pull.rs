//! Pull benchmark (issue 4).
//!
//! Part 1: three mirrors, each in its own network namespace behind a veth
//! pair whose mirror side is capped by `tc tbf` at 4, 4 and 8 MB/s (a cap
//! that holds however many connections a client opens), serving an image of
//! about 120 MB in six layers. `docker pull` through the best single mirror
//! versus `dmirror pull` over all three, into the same real dockerd, in the
//! same run; and dmirror's peak RSS.
//!
//! Part 2: one unthrottled loopback mirror: `dmirror pull --output oci:DIR`
//! versus `skopeo copy` to an OCI directory.
//!
//! Run as root: `cargo bench --bench pull`. Everything happens inside a
//! private network namespace and namespaces it creates and removes.

#[path = "../tests/lab/mod.rs"]
mod lab;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lab::dockerd::{isolate_main, Dockerd};
use lab::{dmirror, Image, Lab};

const MB: usize = 1_000_000;
/// Mirror caps in MB/s (decimal, as network speeds are quoted).
const CAPS: [u32; 3] = [4, 4, 8];
const RUNS: usize = 3;

struct Netns {
    names: Vec<String>,
    children: Vec<Child>,
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

fn sh(cmd: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "failed: {cmd}");
}

fn wait_http(url: &str) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if reqwest::blocking::get(url).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{url} never answered");
}

fn timed(cmd: Command) -> (Duration, Option<u64>, bool) {
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

fn main() {
    if isolate_main() {
        return;
    }
    let mut lab = Lab::new();
    let store = lab.path("store");
    let pid = std::process::id();
    let mut ns = Netns {
        names: Vec::new(),
        children: Vec::new(),
    };
    let mut urls = Vec::new();
    for (i, cap) in CAPS.iter().enumerate() {
        let n = format!("dmb-{pid}-{i}");
        let (host, peer) = (format!("dmb{i}h"), format!("dmb{i}m"));
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
    sh(&format!(
        "rm -rf {} && cp -a {} {}",
        store.display(),
        lab.path("registry-loopback/data").display(),
        store.display()
    ));
    let total: usize = image.layers.iter().map(|l| l.bytes.len()).sum();

    let best = urls[CAPS
        .iter()
        .enumerate()
        .max_by_key(|(_, c)| **c)
        .map(|(i, _)| i)
        .unwrap_or(0)]
    .clone();
    let config = lab.path("daemon.json");
    std::fs::write(
        &config,
        serde_json::to_string(&serde_json::json!({"registry-mirrors": [best], "insecure-registries": ["10.77.0.0/16"]})).expect("json"),
    )
    .expect("write");
    let d = Dockerd::start(&lab.path("docker"), &config);
    let mirrors = lab.mirrors_toml(
        "m.toml",
        &urls
            .iter()
            .enumerate()
            .map(|(i, u)| (["m4a", "m4b", "m8"][i], u.clone(), ""))
            .collect::<Vec<_>>(),
    );

    println!("pull benchmark: {:.0} MB image in 6 layers; mirrors capped at {CAPS:?} MB/s (tbf); {RUNS} runs", total as f64 / 1e6);
    let mut rows = Vec::new();
    for run in 0..RUNS {
        let _ = d.docker(&["image", "rm", "-f", "small"]);
        let _ = d.docker(&["image", "prune", "-f"]);
        let mut docker = Command::new("docker");
        docker
            .env("DOCKER_HOST", d.host())
            .args(["pull", "-q", "small"]);
        let (t_docker, _, ok1) = timed(docker);

        let _ = d.docker(&["image", "rm", "-f", "small"]);
        let _ = std::fs::remove_dir_all(lab.path("cache"));
        let mut ours = dmirror(&lab);
        ours.env("DOCKER_HOST", d.host())
            .args(["pull", "small", "--timeout", "3s", "--mirrors"])
            .arg(&mirrors);
        let (t_ours, rss, ok2) = timed(ours);
        let ratio = t_ours.as_secs_f64() / t_docker.as_secs_f64();
        println!(
            "run {}: docker pull via best mirror {:.2} s{}; dmirror pull {:.2} s{}; ratio {:.2}; dmirror peak RSS {} MB",
            run + 1,
            t_docker.as_secs_f64(),
            if ok1 { "" } else { " (FAILED)" },
            t_ours.as_secs_f64(),
            if ok2 { "" } else { " (FAILED)" },
            ratio,
            rss.map(|k| format!("{:.1}", k as f64 / 1024.0)).unwrap_or_else(|| "?".into())
        );
        rows.push((t_docker, t_ours, rss));
    }
    let med = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let ratio = med(rows
        .iter()
        .map(|r| r.1.as_secs_f64() / r.0.as_secs_f64())
        .collect());
    let rss_max = rows.iter().filter_map(|r| r.2).max().unwrap_or(0) as f64 / 1024.0;
    let limit = *CAPS.iter().max().unwrap_or(&1) as f64 / CAPS.iter().sum::<u32>() as f64;
    println!(
        "median: docker {:.2} s, dmirror {:.2} s, ratio {ratio:.2} (target <= 0.55; physical limit {limit:.2}); peak RSS max {rss_max:.1} MB (target < 64 MB)",
        med(rows.iter().map(|r| r.0.as_secs_f64()).collect()),
        med(rows.iter().map(|r| r.1.as_secs_f64()).collect()),
    );
    drop(d);

    // Part 2: unthrottled loopback, OCI output versus skopeo copy.
    let loop_mirrors = lab.mirrors_toml("loop.toml", &[("loopback", origin.url(), "")]);
    let mut part2 = Vec::new();
    for _ in 0..RUNS {
        let _ = std::fs::remove_dir_all(lab.path("cache"));
        let oci = lab.path("oci-ours");
        let _ = std::fs::remove_dir_all(&oci);
        let mut ours = dmirror(&lab);
        ours.args(["pull", "small", "--timeout", "3s", "--output"])
            .arg(format!("oci:{}", oci.display()))
            .arg("--mirrors")
            .arg(&loop_mirrors);
        let (t_ours, _, ok1) = timed(ours);
        let theirs_dir = lab.path("oci-skopeo");
        let _ = std::fs::remove_dir_all(&theirs_dir);
        let mut skopeo = Command::new("skopeo");
        skopeo
            .args(["copy", "--src-tls-verify=false"])
            .arg(format!(
                "docker://127.0.0.1:{}/library/small:latest",
                origin.port
            ))
            .arg(format!("oci:{}", theirs_dir.display()));
        let (t_skopeo, _, ok2) = timed(skopeo);
        assert!(ok1 && ok2, "part 2 failed");
        assert!(Path::new(&oci).join("index.json").exists());
        println!(
            "loopback: dmirror pull --output oci {:.2} s; skopeo copy to oci {:.2} s",
            t_ours.as_secs_f64(),
            t_skopeo.as_secs_f64()
        );
        part2.push((t_ours.as_secs_f64(), t_skopeo.as_secs_f64()));
    }
    println!(
        "median loopback: dmirror {:.2} s, skopeo {:.2} s (target: dmirror <= skopeo)",
        med(part2.iter().map(|r| r.0).collect()),
        med(part2.iter().map(|r| r.1).collect())
    );
}
