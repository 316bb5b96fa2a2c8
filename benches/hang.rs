//! What a hanging mirror costs a pull (issue 15, item 6): `dmirror pull` of
//! a small image from one good in-process mirror, alone and with a mirror
//! that accepts connections and never answers listed first, five runs
//! each. Target: the hanging mirror adds under 0.5 s (median).
//!
//! Run: `cargo bench --bench hang`.

#[path = "../tests/lab/mod.rs"]
mod lab;

use std::time::{Duration, Instant};

use lab::hostile::{self, Content};
use lab::{dmirror, Image, Lab};

const RUNS: usize = 5;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let mut lab = Lab::new();
    let image = Image::synthetic(70, "amd64", &[1 << 20]);
    let good = hostile::registry(Content::of(&image), |_| None);
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
