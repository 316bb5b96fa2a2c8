//! Probe benchmark (issue 2): 17 lab mirrors, five of which never answer or
//! refuse, four capped at different bandwidths. Reports the wall time of
//! `dmirror probe --timeout 3s` over several runs and whether the capped
//! mirrors came out in the order of their caps.
//!
//! Run: `cargo bench --bench probe` (needs the lab's Debian packages; see
//! `.ci/run`). Targets: wall time under 10 s; capped mirrors in cap order.

#[path = "../tests/lab/mod.rs"]
mod lab;

use std::time::{Duration, Instant};

use lab::{dmirror, Front, Image, Lab};

const RUNS: usize = 3;

fn main() {
    let mut lab = Lab::new();
    let origin = lab.registry("origin");
    origin.push(
        "library/small",
        "latest",
        &Image::synthetic(11, "amd64", &[8 * 1024 * 1024]),
    );
    let caps = [
        ("cap-512k", "512k"),
        ("cap-1m", "1m"),
        ("cap-2m", "2m"),
        ("cap-4m", "4m"),
    ];
    let mut fronts: Vec<(&str, Front)> = caps
        .iter()
        .map(|(n, r)| {
            (
                *n,
                Front::Proxy {
                    upstream: origin.port,
                    rate: Some(*r),
                },
            )
        })
        .collect();
    let forbidden = Front::Status {
        code: 403,
        body: "{\"message\":\"campus only\"}",
        content_type: "application/json",
        retry_after: None,
    };
    fronts.push((
        "fast-1",
        Front::Proxy {
            upstream: origin.port,
            rate: None,
        },
    ));
    fronts.push((
        "fast-2",
        Front::Proxy {
            upstream: origin.port,
            rate: None,
        },
    ));
    fronts.push(("forbidden-1", forbidden.clone()));
    fronts.push(("forbidden-2", forbidden));
    fronts.push(("portal", Front::Portal));
    fronts.push(("bad-gateway", Front::BadGateway));
    fronts.push(("fake", Front::Fake));
    let urls = lab.nginx(&fronts);

    let mut entries: Vec<(String, String)> =
        urls.iter().map(|(n, u)| (n.clone(), u.clone())).collect();
    for i in 0..4 {
        entries.push((
            format!("hang-{i}"),
            format!("http://127.0.0.1:{}", lab.hanging_port()),
        ));
    }
    for i in 0..2 {
        entries.push((
            format!("refused-{i}"),
            format!("http://127.0.0.1:{}", lab.refused_port()),
        ));
    }
    entries.sort();
    let borrowed: Vec<(&str, String, &str)> = entries
        .iter()
        .map(|(n, u)| (n.as_str(), u.clone(), ""))
        .collect();
    let file = lab.mirrors_toml("bench.toml", &borrowed);

    println!(
        "probe benchmark: {} mirrors (4 hang, 2 refuse, 4 capped at 512k/1m/2m/4m per connection)",
        entries.len()
    );
    let mut times = Vec::new();
    let mut in_order = 0;
    for run in 0..RUNS {
        let start = Instant::now();
        let out = dmirror(&lab)
            .args([
                "probe",
                "--image",
                "small",
                "--timeout",
                "3s",
                "--json",
                // Each run ranks on its own measurements.
                "--no-history",
                "--mirrors",
            ])
            .arg(&file)
            .output()
            .expect("run dmirror");
        let elapsed = start.elapsed();
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let ranked: Vec<String> = json["mirrors"]
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|m| m["name"].as_str().map(str::to_owned))
            .filter(|n| n.starts_with("cap-"))
            .collect();
        let ok = ranked == ["cap-4m", "cap-2m", "cap-1m", "cap-512k"];
        in_order += usize::from(ok);
        println!(
            "run {}: {:.2} s, capped order {:?} {}",
            run + 1,
            elapsed.as_secs_f64(),
            ranked,
            if ok { "ok" } else { "WRONG" }
        );
        times.push(elapsed);
    }
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "wall time: min {:.2} s, median {:.2} s, max {:.2} s (target < 10 s); capped order right in {in_order}/{RUNS} runs",
        times[0].as_secs_f64(),
        median.as_secs_f64(),
        times[times.len() - 1].as_secs_f64()
    );
    let table = dmirror(&lab)
        .args(["probe", "--format", "table", "--image", "small"])
        .args(["--timeout", "3s", "--mirrors"])
        .arg(&file)
        .output()
        .expect("run dmirror");
    println!("\n{}", String::from_utf8_lossy(&table.stdout));
    if times[times.len() - 1] > Duration::from_secs(10) || in_order != RUNS {
        std::process::exit(1);
    }
}
