//! Serve benchmark (issue 16), on the capped-mirror lab of the pull
//! benchmark (three registries in network namespaces capped by `tc tbf` at
//! 4, 4 and 8 MB/s), with real dockerds, in one run:
//!
//! 1. What a mirror that accepts connections and never answers, listed
//!    first, adds to `docker pull` of a small image: dockerd with the list
//!    itself versus dockerd whose only mirror is `dmirror serve` over the
//!    same list (target: under 1 s through serve).
//! 2. `docker pull` of the 120 MB image through serve (cold cache) versus
//!    straight from the best mirror (target: no slower).
//! 3. A second pull of it, served from serve's warm cache, versus from
//!    Distribution's pull-through cache (`docker-registry` with
//!    `proxy.remoteurl` = the best mirror), warm (target: no slower).
//!
//! Run as root: `cargo bench --bench serve`. Everything happens inside a
//! private network namespace and namespaces it creates and removes.

#[path = "../tests/lab/mod.rs"]
mod lab;

#[path = "common/capped.rs"]
mod capped;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lab::dockerd::{isolate_main, Dockerd};
use lab::serve::Serve;
use lab::{Image, Lab};

const RUNS: usize = 3;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Start a dockerd whose `registry-mirrors` are `mirrors`.
fn dockerd(lab: &Lab, name: &str, mirrors: &[String]) -> Dockerd {
    let config = lab.path(&format!("{name}.json"));
    std::fs::write(
        &config,
        serde_json::json!({"registry-mirrors": mirrors, "insecure-registries": ["10.77.0.0/16"]})
            .to_string(),
    )
    .expect("write");
    Dockerd::start(&lab.path(name), &config)
}

/// Seconds `docker pull image` takes in `d`, the image removed first.
fn pull(d: &Dockerd, image: &str) -> f64 {
    let _ = d.docker(&["image", "rm", "-f", image]);
    let _ = d.docker(&["image", "prune", "-f"]);
    let start = Instant::now();
    let out = d.docker(&["pull", "-q", image]);
    let t = start.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "docker pull {image} (mirrors {:?}): {}",
        d.mirrors(),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("  docker pull {image} via {:?}: {t:.2} s", d.mirrors());
    t
}

fn main() {
    if isolate_main() {
        return;
    }
    let mut lab = Lab::new();
    let tiny = Image::synthetic(52, "amd64", &[2 * capped::MB]);
    let c = capped::start(&mut lab, "s", &[("library/tiny", &tiny)]);
    let best = c.best();
    let hang = format!("http://127.0.0.1:{}", lab.hanging_port());
    let refused = format!("http://127.0.0.1:{}", lab.refused_port());
    let mut entries: Vec<(&str, String, &str)> = vec![("hang", hang.clone(), "")];
    for (i, u) in c.urls.iter().enumerate() {
        entries.push((capped::NAMES[i], u.clone(), ""));
    }
    entries.push(("origin", refused, "upstream = true"));
    let mirrors = lab.mirrors_toml("m.toml", &entries);
    println!(
        "serve benchmark: {:.0} MB image in 6 layers and a {:.0} MB one; mirrors capped at {:?} MB/s (tbf)",
        c.total as f64 / 1e6,
        tiny.layers[0].bytes.len() as f64 / 1e6,
        capped::CAPS
    );

    // 1 and 2, straight from the mirrors.
    let d = dockerd(&lab, "d-best", std::slice::from_ref(&best));
    let tiny_best = median((0..RUNS).map(|_| pull(&d, "tiny")).collect());
    let big_best = pull(&d, "small");
    drop(d);
    let d = dockerd(&lab, "d-hang", &[hang.clone(), best.clone()]);
    let tiny_hang = median((0..RUNS).map(|_| pull(&d, "tiny")).collect());
    drop(d);

    // Through serve.
    let cache = lab.path("serve-cache");
    let s = Serve::start(
        &lab,
        &mirrors,
        &[
            "--image",
            "small",
            "--timeout",
            "3s",
            "--budget",
            "3s",
            "--cache-dir",
            cache.to_str().expect("utf8"),
        ],
    );
    s.wait_for("probe docker.io", Duration::from_secs(60));
    let order = s
        .log()
        .lines()
        .find(|l| l.contains("probe docker.io"))
        .unwrap_or_default()
        .to_owned();
    let d = dockerd(&lab, "d-serve", std::slice::from_ref(&s.url));
    let mut tiny_serve = Vec::new();
    for _ in 0..RUNS {
        // Cold each time: the cost measured is the mirrors', not the
        // cache's (the server makes its directories again).
        let _ = std::fs::remove_dir_all(&cache);
        let t = std::panic::catch_unwind(|| pull(&d, "tiny"));
        tiny_serve.push(t.unwrap_or_else(|_| panic!("through serve; its log:\n{}", s.log())));
    }
    let tiny_serve = median(tiny_serve);
    let big_serve = pull(&d, "small");
    let warm_serve = median((0..RUNS).map(|_| pull(&d, "small")).collect());
    drop(d);

    // Distribution's pull-through cache in front of the best mirror.
    let proxy_port = lab::free_port();
    let root = lab.path("proxy");
    std::fs::create_dir_all(&root).expect("mkdir");
    let config = root.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{proxy_port}\nproxy:\n  remoteurl: {best}\n",
            root.join("data").display()
        ),
    )
    .expect("config");
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry");
    lab.adopt("pull-through cache", child, proxy_port);
    let d = dockerd(&lab, "d-proxy", &[format!("http://127.0.0.1:{proxy_port}")]);
    let big_proxy_cold = pull(&d, "small");
    let warm_proxy = median((0..RUNS).map(|_| pull(&d, "small")).collect());
    drop(d);

    println!("probe: {order}");
    println!(
        "1. hanging first mirror, docker pull of tiny (median of {RUNS}): best alone {tiny_best:.2} s; list [hang, best] {tiny_hang:.2} s (+{:.2} s); through serve {tiny_serve:.2} s (+{:.2} s; target under 1 s)",
        tiny_hang - tiny_best,
        tiny_serve - tiny_best
    );
    println!(
        "2. docker pull of the {:.0} MB image: straight from the best mirror {big_best:.2} s; through serve, cold {big_serve:.2} s (ratio {:.2}; target at most 1.00)",
        c.total as f64 / 1e6,
        big_serve / big_best
    );
    println!(
        "3. second pull, warm (median of {RUNS}): serve {warm_serve:.2} s; Distribution pull-through cache {warm_proxy:.2} s (its cold pull {big_proxy_cold:.2} s; target: serve no slower)"
    );
}
