//! Apply benchmark (issue 3): `docker pull` through a naive mirror list
//! copied from a blog post — a never-answering mirror first, then a 403 one,
//! a stale one, a good one — against the list `dmirror apply` writes, with
//! the same real dockerd in the same run. Reports pull time and whether the
//! image pulled is the current one.
//!
//! Run: `cargo bench --bench apply` as root (dockerd; a private network
//! namespace keeps dockerd's fallback to Docker Hub on loopback).

#[path = "../tests/lab/mod.rs"]
mod lab;

use std::time::{Duration, Instant};

use lab::dockerd::{isolate_main, Dockerd};
use lab::{dmirror, Front, Image, Lab};

/// A pull taking longer than this is reported as such and abandoned.
const PULL_CAP: Duration = Duration::from_secs(90);

fn pull(d: &Dockerd) -> (Duration, Option<String>, String) {
    let _ = d.docker(&["image", "rm", "-f", "small"]);
    let start = Instant::now();
    let mut child = std::process::Command::new("docker")
        .env("DOCKER_HOST", d.host())
        .args(["pull", "-q", "small"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("docker pull");
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let elapsed = start.elapsed();
            if !status.success() {
                return (elapsed, None, "failed".into());
            }
            let out = d.docker(&[
                "image",
                "inspect",
                "small",
                "--format",
                "{{index .RepoDigests 0}}",
            ]);
            let digest = String::from_utf8_lossy(&out.stdout)
                .trim()
                .rsplit('@')
                .next()
                .map(str::to_owned);
            return (elapsed, digest, "pulled".into());
        }
        if start.elapsed() > PULL_CAP {
            let _ = child.kill();
            let _ = child.wait();
            return (start.elapsed(), None, format!("gave up after {PULL_CAP:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn main() {
    if isolate_main() {
        return;
    }
    let mut lab = Lab::new();
    let origin = lab.registry("origin");
    let current = Image::synthetic(31, "amd64", &[16 * 1024 * 1024, 4 * 1024 * 1024]);
    origin.push("library/small", "latest", &current);
    let old = lab.registry("old");
    old.push(
        "library/small",
        "latest",
        &Image::synthetic(30, "amd64", &[16 * 1024 * 1024]),
    );
    let urls = lab.nginx(&[
        (
            "campus",
            Front::Status {
                code: 403,
                body: "{\"message\":\"campus only\"}",
                content_type: "application/json",
                retry_after: None,
            },
        ),
        (
            "stale",
            Front::Proxy {
                upstream: old.port,
                rate: None,
            },
        ),
        (
            "good",
            Front::Proxy {
                upstream: origin.port,
                rate: Some("8m"),
            },
        ),
    ]);
    let hang = format!("http://127.0.0.1:{}", lab.hanging_port());
    let naive = [
        hang.clone(),
        urls["campus"].clone(),
        urls["stale"].clone(),
        urls["good"].clone(),
    ];
    let config = lab.path("daemon.json");
    std::fs::write(
        &config,
        serde_json::to_string_pretty(&serde_json::json!({"registry-mirrors": naive}))
            .expect("json"),
    )
    .expect("write");
    let d = Dockerd::start(&lab.path("docker"), &config);

    let (naive_time, naive_digest, naive_how) = pull(&d);

    let mirrors = lab.mirrors_toml(
        "mirrors.toml",
        &[
            ("hang", hang, ""),
            ("campus", urls["campus"].clone(), ""),
            ("stale", urls["stale"].clone(), ""),
            ("good", urls["good"].clone(), ""),
            ("origin", origin.url(), "upstream = true"),
        ],
    );
    let start = Instant::now();
    let out = dmirror(&lab)
        .args([
            "apply",
            "--image",
            "small",
            "--timeout",
            "3s",
            "--json",
            "--mirrors",
        ])
        .arg(&mirrors)
        .arg("--daemon-json")
        .arg(&config)
        .arg("--dockerd-pidfile")
        .arg(&d.pidfile)
        .env("DOCKER_HOST", d.host())
        .output()
        .expect("dmirror apply");
    let apply_time = start.elapsed();
    assert!(
        out.status.success(),
        "apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = d.mirrors();
    let (applied_time, applied_digest, applied_how) = pull(&d);

    let verdict = |dg: &Option<String>| match dg.as_deref() {
        Some(x) if x == current.digest => "current",
        Some(_) => "STALE",
        None => "none",
    };
    println!("apply benchmark: 20 MiB image, good mirror capped at 8 MiB/s");
    println!("| list | docker pull | result | image |");
    println!("|---|---|---|---|");
    println!(
        "| naive (hang, 403, stale, good) | {:.1} s | {naive_how} | {} |",
        naive_time.as_secs_f64(),
        verdict(&naive_digest)
    );
    println!(
        "| written by dmirror apply ({written:?}) | {:.1} s | {applied_how} | {} |",
        applied_time.as_secs_f64(),
        verdict(&applied_digest)
    );
    println!(
        "dmirror apply itself took {:.1} s",
        apply_time.as_secs_f64()
    );
}
