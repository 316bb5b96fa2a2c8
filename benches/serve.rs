//! Serve benchmark (issues 16 and 17), on the capped-mirror lab of the pull
//! benchmark (three registries in network namespaces capped by `tc tbf` at
//! 4, 4 and 8 MB/s), with real dockerds, in one run:
//!
//! 1. What a mirror that accepts connections and never answers, listed
//!    first, adds to `docker pull` of a small image: dockerd with the list
//!    itself versus dockerd whose only mirror is `dmirror serve` over the
//!    same list (target: under 1 s through serve).
//! 2. `docker pull` of the 120 MB image through serve (cold cache) versus
//!    straight from the best mirror (target: at most 0.60 of it, serve
//!    spreading each layer over the three mirrors).
//! 3. A second pull of it, served from serve's warm cache, versus from
//!    Distribution's pull-through cache (`docker-registry` with
//!    `proxy.remoteurl` = the best mirror), warm, the two taking turns
//!    (target: no slower).
//! 4. dockerd and containerd pulling the image through serve at the same
//!    time, cold: the bytes serve fetched from the mirrors (target: at most
//!    1.1 × the image).
//! 5. Eight clients fetching the image's blobs through serve at once,
//!    cold: serve's peak RSS over that stretch (target: under 64 MB).
//!
//! Run as root: `cargo bench --bench serve`. Everything happens inside a
//! private network namespace and namespaces it creates and removes.

#[path = "../tests/lab/mod.rs"]
mod lab;

#[path = "common/capped.rs"]
mod capped;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lab::dockerd::{isolate_main, Containerd, Dockerd};
use lab::serve::Serve;
use lab::{Image, Lab};

const RUNS: usize = 3;

/// Warm pulls, serve and the pull-through cache taking turns: a second
/// apart, noise is larger than the difference, so more runs.
const WARM_RUNS: usize = 7;

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
    // What the last step wrote is on disk before the clock starts: its
    // write-back is not this pull's cost.
    let _ = Command::new("sync").status();
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

/// Peak resident memory of `pid` since its peak was last reset, in kB.
fn peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Every blob of `image` (its manifest first) through serve, the bytes
/// read and dropped.
fn fetch_image(s: &Serve, image: &Image) {
    let url = &s.url;
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .expect("client");
    let r = s.manifest("library/small");
    assert!(r.status().is_success(), "manifest: {}", r.status());
    let digests =
        std::iter::once(&image.config.digest).chain(image.layers.iter().map(|l| &l.digest));
    for d in digests {
        let mut r = client
            .get(format!("{url}/v2/library/small/blobs/{d}"))
            .send()
            .expect("blob");
        assert!(r.status().is_success(), "blob {d}: {}", r.status());
        let n = std::io::copy(&mut r, &mut std::io::sink()).expect("blob body");
        assert!(n > 0);
    }
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

    // 4. dockerd and containerd at once, cold.
    let hosts = lab.path("certs.d");
    let out = lab::dmirror(&lab)
        .args([
            "apply",
            "--target",
            "containerd",
            "--via",
            &s.url,
            "--hosts-dir",
        ])
        .arg(&hosts)
        .arg("--mirrors")
        .arg(&mirrors)
        .args(["--image", "small", "--proxy", "none"])
        .output()
        .expect("apply --via");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ctrd = Containerd::start(&lab.path("containerd"));
    let _ = d.docker(&["image", "rm", "-f", "small"]);
    let _ = d.docker(&["image", "prune", "-f"]);
    let _ = std::fs::remove_dir_all(&cache);
    let _ = Command::new("sync").status();
    let before = s.fetched().values().sum::<u64>();
    let start = Instant::now();
    let (docker_ok, ctr_out) = std::thread::scope(|sc| {
        let a = sc.spawn(|| d.docker(&["pull", "-q", "small"]));
        let b = sc.spawn(|| {
            ctrd.ctr(&[
                "images",
                "pull",
                "--hosts-dir",
                hosts.to_str().expect("utf8"),
                "docker.io/library/small:latest",
            ])
        });
        (a.join().expect("docker"), b.join().expect("ctr"))
    });
    let both = start.elapsed().as_secs_f64();
    assert!(
        docker_ok.status.success(),
        "docker: {}\n{}",
        String::from_utf8_lossy(&docker_ok.stderr),
        s.log()
    );
    assert!(
        ctr_out.status.success(),
        "ctr: {}\n{}",
        String::from_utf8_lossy(&ctr_out.stderr),
        s.log()
    );
    let two_fetched = s.fetched().values().sum::<u64>() - before;
    drop(ctrd);

    // 5. Eight clients at once, cold: serve's peak memory.
    let _ = std::fs::remove_dir_all(&cache);
    let _ = std::fs::write(format!("/proc/{}/clear_refs", s.pid()), "5");
    let start = Instant::now();
    std::thread::scope(|sc| {
        for _ in 0..8 {
            sc.spawn(|| fetch_image(&s, &c.image));
        }
    });
    let eight = start.elapsed().as_secs_f64();
    let eight_rss = peak_rss(s.pid());

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
    let proxy = dockerd(&lab, "d-proxy", &[format!("http://127.0.0.1:{proxy_port}")]);
    let big_proxy_cold = pull(&proxy, "small");
    // 3. Both warm (serve's cache holds the image since step 5), taking
    // turns so that drift in the machine falls on both alike.
    let (mut warm_serve, mut warm_proxy) = (Vec::new(), Vec::new());
    for _ in 0..WARM_RUNS {
        warm_serve.push(pull(&d, "small"));
        warm_proxy.push(pull(&proxy, "small"));
    }
    let (warm_serve, warm_proxy) = (median(warm_serve), median(warm_proxy));
    drop(proxy);
    drop(d);

    println!("probe: {order}");
    println!(
        "1. hanging first mirror, docker pull of tiny (median of {RUNS}): best alone {tiny_best:.2} s; list [hang, best] {tiny_hang:.2} s (+{:.2} s); through serve {tiny_serve:.2} s (+{:.2} s; target under 1 s)",
        tiny_hang - tiny_best,
        tiny_serve - tiny_best
    );
    println!(
        "2. docker pull of the {:.0} MB image: straight from the best mirror {big_best:.2} s; through serve, cold {big_serve:.2} s (ratio {:.2}; target at most 0.60)",
        c.total as f64 / 1e6,
        big_serve / big_best
    );
    println!(
        "3. second pull, warm (median of {WARM_RUNS}, taking turns): serve {warm_serve:.2} s; Distribution pull-through cache {warm_proxy:.2} s (its cold pull {big_proxy_cold:.2} s; target: serve no slower)"
    );
    println!(
        "4. dockerd and containerd pulling it through serve at once, cold: {both:.2} s; fetched from the mirrors {:.1} MB = {:.2} x the image (target at most 1.10)",
        two_fetched as f64 / 1e6,
        two_fetched as f64 / c.total as f64
    );
    println!(
        "5. eight clients fetching it through serve at once, cold: {eight:.2} s; serve's peak RSS {:.1} MB (target under 64 MB)",
        eight_rss as f64 / 1024.0
    );
}
