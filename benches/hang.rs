//! What a hanging mirror costs a pull (issue 15, item 6): `dmirror pull` of
//! a small image from one good in-process mirror, alone and with a mirror
//! that accepts connections and never answers listed first, five runs
//! each. Target: the hanging mirror adds under 0.5 s (median).
//!
//! Run: `cargo bench --bench hang`.

#[path = "../tests/lab/mod.rs"]
mod lab;

use std::time::{Duration, Instant};

use lab::hostile::{self, Reply};
use lab::{dmirror, Image, Lab, OCI_MANIFEST};

const RUNS: usize = 5;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let mut lab = Lab::new();
    let image = Image::synthetic(70, "amd64", &[1 << 20]);
    let manifest = image.manifest.clone();
    let digest = lab::sha256(&manifest);
    let blobs: Vec<(String, Vec<u8>)> = std::iter::once(&image.config)
        .chain(&image.layers)
        .map(|b| (b.digest.clone(), b.bytes.clone()))
        .collect();
    let good = hostile::serve(move |req| {
        let path = req.path.as_str();
        if path == "/v2/" {
            return Reply::new(200, "{}");
        }
        if path.contains("/manifests/") {
            return Reply::new(200, manifest.clone())
                .header("Content-Type", OCI_MANIFEST)
                .header("Docker-Content-Digest", &digest);
        }
        for (d, b) in &blobs {
            if path.ends_with(d.as_str()) {
                let (s, e) = req
                    .header("Range")
                    .and_then(|r| r.strip_prefix("bytes="))
                    .and_then(|r| r.split_once('-'))
                    .map(|(s, e)| {
                        (
                            s.parse().unwrap_or(0),
                            e.parse::<usize>().map_or(b.len(), |e| e + 1),
                        )
                    })
                    .unwrap_or((0, b.len()));
                let e = e.min(b.len());
                let status = if req.header("Range").is_some() {
                    206
                } else {
                    200
                };
                return Reply::new(status, b[s..e].to_vec());
            }
        }
        Reply::new(404, "{}")
    });
    let hang = format!("http://127.0.0.1:{}", lab.hanging_port());
    let refused = format!("http://127.0.0.1:{}", lab.refused_port());
    let alone = lab.mirrors_toml(
        "alone.toml",
        &[
            ("good", good.clone(), ""),
            ("origin", refused.clone(), "upstream = true"),
        ],
    );
    let with_hang = lab.mirrors_toml(
        "hang.toml",
        &[
            ("hang", hang, ""),
            ("good", good, ""),
            ("origin", refused, "upstream = true"),
        ],
    );
    let time = |list: &std::path::Path, run: usize| {
        let cache = lab.path(&format!(
            "cache-{}-{run}",
            list.file_stem().unwrap().to_string_lossy()
        ));
        let out = lab.path(&format!(
            "out-{}-{run}",
            list.file_stem().unwrap().to_string_lossy()
        ));
        let start = Instant::now();
        let o = dmirror(&lab)
            .env("XDG_CACHE_HOME", &cache)
            .args([
                "pull",
                "library/small",
                "-p",
                "linux/amd64",
                "-t",
                "5s",
                "--proxy",
                "none",
                "-m",
            ])
            .arg(list)
            .arg("-o")
            .arg(format!("oci:{}", out.display()))
            .output()
            .expect("run dmirror");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        start.elapsed()
    };
    let a: Vec<Duration> = (0..RUNS).map(|r| time(&alone, r)).collect();
    let h: Vec<Duration> = (0..RUNS).map(|r| time(&with_hang, r)).collect();
    let (a, h) = (median(a), median(h));
    let added = h.saturating_sub(a);
    println!(
        "pull alone {:.2} s, with a hanging mirror first {:.2} s: added {:.2} s (target < 0.5 s)",
        a.as_secs_f64(),
        h.as_secs_f64(),
        added.as_secs_f64()
    );
}
