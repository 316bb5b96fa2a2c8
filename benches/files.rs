//! Large-input benchmark (issue 13, item 9): the work dmirror does on its
//! own files must grow linearly with them. Times `dmirror list` over mirror
//! lists of 10,000 and 40,000 entries, and `dmirror apply --dry-run` over a
//! 14 MB daemon.json (the merge and the diff), against one in-process
//! mirror on loopback.
//!
//! Run: `cargo bench --bench files`. Targets: 40,000 entries in under 4 ×
//! the time of 10,000 plus 0.5 s (linear, not quadratic: it was 1.2 s and
//! 15 s); the 14 MB dry run under 5 s (it was 38 s).

#[path = "../tests/lab/mod.rs"]
mod lab;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use lab::hostile::{self, Content};
use lab::{dmirror, Image, Lab};

fn list_of(lab: &Lab, n: usize) -> std::path::PathBuf {
    let mut text = String::new();
    for i in 0..n {
        let _ = writeln!(
            text,
            "[[mirror]]\nname = \"m{i}\"\nurl = \"http://127.0.0.1:{}\"\nnotes = \"entry {i}\"\n",
            1024 + i % 60000
        );
    }
    let path = lab.path(&format!("list-{n}.toml"));
    std::fs::write(&path, text).expect("write list");
    path
}

fn time(cmd: &mut std::process::Command) -> Duration {
    let start = Instant::now();
    let out = cmd.output().expect("run dmirror");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn main() {
    let lab = Lab::new();
    let small = list_of(&lab, 10_000);
    let large = list_of(&lab, 40_000);
    let t10 = time(dmirror(&lab).args(["list", "--json", "--mirrors", small.to_str().unwrap()]));
    let t40 = time(dmirror(&lab).args(["list", "--json", "--mirrors", large.to_str().unwrap()]));
    let linear = t40.as_secs_f64() < 4.0 * t10.as_secs_f64() + 0.5;
    println!(
        "mirror lists: 10,000 entries {:.2} s, 40,000 entries {:.2} s (linear: {linear})",
        t10.as_secs_f64(),
        t40.as_secs_f64()
    );

    // One mirror serving a small image, for apply's probe.
    let image = Image::synthetic(50, "amd64", &[64 * 1024]);
    let url = hostile::registry(Content::of(&image), |_| None);
    let mirrors = lab.mirrors_toml("one.toml", &[("one", url, "")]);
    let mut big = String::from("{\n  \"labels\": [\n");
    let mut i = 0;
    while big.len() < 14 << 20 {
        let _ = writeln!(big, "    \"label-{i}=value-{i}-{}\",", "x".repeat(40));
        i += 1;
    }
    big.push_str("    \"last=1\"\n  ]\n}\n");
    let daemon_json = lab.path("daemon.json");
    std::fs::write(&daemon_json, &big).expect("write daemon.json");
    let dry = time(
        dmirror(&lab)
            .env(
                "DOCKER_HOST",
                format!("unix://{}", lab.path("none.sock").display()),
            )
            .args([
                "apply",
                "--dry-run",
                "--json",
                "--no-history",
                "--image",
                "small",
            ])
            .args(["--timeout", "3s", "--budget", "500ms", "--mirrors"])
            .arg(&mirrors)
            .arg("--daemon-json")
            .arg(&daemon_json)
            .arg("--dockerd-pidfile")
            .arg(lab.path("none.pid")),
    );
    println!(
        "apply --dry-run over a {} MB daemon.json: {:.2} s (target < 5 s)",
        big.len() >> 20,
        dry.as_secs_f64()
    );
}
