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

#[path = "common/capped.rs"]
mod capped;

use std::path::Path;
use std::process::Command;

use capped::{timed, CAPS, NAMES};
use lab::dockerd::{isolate_main, Dockerd};
use lab::{dmirror, Lab};

const RUNS: usize = 3;

fn main() {
    if isolate_main() {
        return;
    }
    let mut lab = Lab::new();
    let capped = capped::start(&mut lab, "p", &[]);
    let (urls, origin, total) = (&capped.urls, &capped.origin, capped.total);
    let best = capped.best();
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
            .map(|(i, u)| (NAMES[i], u.clone(), ""))
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
