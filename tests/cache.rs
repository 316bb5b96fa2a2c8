//! `dmirror cache` on what a real `dmirror pull` and a real `dmirror serve`
//! left in one cache: the images named by their tags, sizes that add up,
//! pruning by age, by size and all of it, a download under way left alone,
//! a planted link neither counted nor followed, bad flags exit 2.

mod lab;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime};

use lab::serve::Serve;
use lab::{dmirror, Image, Lab};

const MB: usize = 1024 * 1024;

fn cache(lab: &Lab, args: &[&str]) -> Output {
    dmirror(lab)
        .arg("cache")
        .args(args)
        .output()
        .expect("run dmirror cache")
}

/// `dmirror pull ARGS` over `mirrors` into an OCI layout in the lab.
fn pull_to_oci(lab: &Lab, mirrors: &Path, args: &[&str]) -> Output {
    dmirror(lab)
        .arg("pull")
        .args(args)
        .args(["--timeout", "2s", "--output"])
        .arg(format!("oci:{}", lab.path("oci").display()))
        .arg("--mirrors")
        .arg(mirrors)
        .output()
        .expect("pull")
}

fn json(out: &Output) -> serde_json::Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json on stdout")
}

fn image<'a>(v: &'a serde_json::Value, reference: &str) -> Option<&'a serde_json::Value> {
    v["images"]
        .as_array()
        .expect("images")
        .iter()
        .find(|i| i["reference"] == reference)
}

fn blob_path(root: &Path, digest: &str) -> PathBuf {
    root.join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

fn age(path: &Path, days: u64) {
    let f = File::options().append(true).open(path).expect("open");
    f.set_modified(SystemTime::now() - Duration::from_secs(days * 86400))
        .expect("set mtime");
}

/// Issue 17, item 2: list, size and prune a cache `pull` and `serve` share.
#[test]
fn cache_lists_sizes_and_prunes_what_pull_and_serve_left() {
    let mut lab = Lab::new();
    let origin = lab.registry("origin");
    let amd = Image::synthetic(71, "amd64", &[3 * MB, 64 * 1024]);
    let arm = Image::synthetic(72, "arm64", &[2 * MB]);
    let index = origin.push_index("library/small", "latest", &[&amd, &arm]);
    let other = Image::synthetic(73, "amd64", &[MB, 32 * 1024]);
    origin.push("library/other", "latest", &other);
    // Upstream is a refused port: nothing leaves the machine.
    let upstream = format!("http://127.0.0.1:{}", lab.refused_port());
    let mirrors = lab.mirrors_toml(
        "m.toml",
        &[
            ("origin", origin.url(), ""),
            (
                "upstream",
                upstream,
                "upstream = true\nregistry = \"docker.io\"",
            ),
        ],
    );
    let root = lab.path("cache").join("dmirror");

    // pull records the index, the platform's manifest and the tag.
    let out = pull_to_oci(&lab, &mirrors, &["small", "--platform", "linux/amd64"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // serve, on the same cache, is asked for other's manifest and one blob.
    let s = Serve::start(
        &lab,
        &mirrors,
        &["--image", "small", "--cache-dir", root.to_str().unwrap()],
    );
    assert!(s.manifest("library/other").status().is_success());
    let layer = &other.layers[1];
    let body = reqwest::blocking::get(format!("{}/v2/library/other/blobs/{}", s.url, layer.digest))
        .and_then(|r| r.bytes())
        .expect("blob through serve");
    assert_eq!(body.len(), layer.bytes.len());
    drop(s);

    let v = json(&cache(&lab, &["list", "--json"]));
    let small = image(&v, "docker.io/library/small:latest").unwrap_or_else(|| panic!("{v}"));
    assert_eq!(small["digest"], index.as_str());
    assert_eq!(small["kind"], "index");
    assert_eq!(small["platforms"], serde_json::json!(["linux/amd64"]));
    let amd_bytes: usize = amd.layers.iter().map(|l| l.bytes.len()).sum::<usize>()
        + amd.config.bytes.len()
        + amd.manifest.len()
        + lab::index_of(&[&amd, &arm]).0.len();
    assert_eq!(small["bytes"], amd_bytes as u64, "{v}");
    assert_eq!(small["blobs"], small["cached_blobs"], "complete: {v}");
    let o = image(&v, "docker.io/library/other:latest").unwrap_or_else(|| panic!("{v}"));
    assert_eq!(o["kind"], "image");
    assert_eq!(o["blobs"], 4, "manifest, config, two layers: {v}");
    assert_eq!(
        o["cached_blobs"], 2,
        "the manifest and the one layer asked: {v}"
    );

    // Sizes add up to what is on disk.
    let on_disk: u64 = fs::read_dir(root.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let size = json(&cache(&lab, &["size", "--json"]));
    assert_eq!(size["blob_bytes"], on_disk, "{size}");
    assert_eq!(size["images"], 2, "{size}");
    assert!(size["free_bytes"].as_u64().unwrap_or(0) > 0, "{size}");
    let table = cache(&lab, &["list", "--format", "table"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("docker.io/library/small:latest") && text.contains("linux/amd64"),
        "{text}"
    );

    // What other left has not been used for 40 days; one of small's
    // layers for 10 (older than the rest of small, newer than other).
    let other_blobs = [other.digest.as_str(), layer.digest.as_str()];
    for d in other_blobs {
        age(&blob_path(&root, d), 40);
    }
    age(&blob_path(&root, &amd.layers[1].digest), 10);

    let dry = json(&cache(
        &lab,
        &["prune", "--unused-for", "30d", "--dry-run", "--json"],
    ));
    assert_eq!(dry["removed"].as_array().unwrap().len(), 2, "{dry}");
    assert!(
        other_blobs.iter().all(|d| blob_path(&root, d).exists()),
        "a dry run removes nothing"
    );
    let done = json(&cache(&lab, &["prune", "--unused-for", "30d", "--json"]));
    let gone: Vec<&str> = done["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["digest"].as_str().unwrap())
        .collect();
    let mut want = other_blobs.to_vec();
    want.sort();
    let mut got = gone.clone();
    got.sort();
    assert_eq!(got, want, "{done}");
    assert!(other_blobs.iter().all(|d| !blob_path(&root, d).exists()));
    let v = json(&cache(&lab, &["list", "--json"]));
    assert!(
        image(&v, "docker.io/library/other:latest").is_none(),
        "a tag whose manifest went is forgotten: {v}"
    );

    // --keep: the least recently used goes first, only as much as needed.
    let total = json(&cache(&lab, &["size", "--json"]))["bytes"]
        .as_u64()
        .unwrap();
    let keep = format!("{}", total - 1);
    let k = json(&cache(&lab, &["prune", "--keep", &keep, "--json"]));
    let removed = k["removed"].as_array().unwrap();
    assert_eq!(removed.len(), 1, "{k}");
    assert_eq!(removed[0]["digest"], amd.layers[1].digest.as_str(), "{k}");
    assert_eq!(removed[0]["reason"], "over-limit");
    assert_eq!(
        removed[0]["used_by"],
        serde_json::json!(["docker.io/library/small:latest"])
    );

    // A download under way (serve holds its partial locked), an abandoned
    // one, and a link planted where a blob would be.
    let partial = root.join("partial");
    fs::create_dir_all(&partial).unwrap();
    let busy_path = partial.join(format!("{}.stream", "a".repeat(64)));
    fs::write(&busy_path, vec![1u8; 1000]).unwrap();
    let busy = File::open(&busy_path).unwrap();
    busy.lock().expect("lock the busy partial");
    let idle_path = partial.join("b".repeat(64));
    fs::write(&idle_path, vec![2u8; 500]).unwrap();
    fs::write(
        partial.join(format!("{}.ranges", "b".repeat(64))),
        b"[[0,500]]",
    )
    .unwrap();
    let precious = lab.path("precious");
    fs::write(&precious, vec![3u8; 4000]).unwrap();
    std::os::unix::fs::symlink(&precious, root.join("blobs/sha256").join("c".repeat(64))).unwrap();

    let blobs = json(&cache(&lab, &["list", "--blobs", "--json"]));
    let partials = blobs["partials"].as_array().unwrap();
    assert_eq!(partials.len(), 2, "{blobs}");
    assert!(partials
        .iter()
        .any(|p| p["in_use"] == true && p["bytes"] == 1000));
    assert!(
        !blobs["blobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["digest"].as_str().unwrap().ends_with("cccc")),
        "a link is not a blob: {blobs}"
    );

    // A private download a killed server left (idle an hour), and one a
    // running server is writing.
    let abandoned = partial.join(".private-abandoned");
    let live = partial.join(".private-live");
    fs::write(&abandoned, vec![4u8; 700]).unwrap();
    fs::write(&live, vec![5u8; 300]).unwrap();
    File::options()
        .append(true)
        .open(&abandoned)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();

    let all = json(&cache(&lab, &["prune", "--all", "--json"]));
    assert!(!abandoned.exists(), "an abandoned private download stays");
    assert!(live.exists(), "a private download under way was removed");
    assert_eq!(all["in_use"], 1, "{all}");
    assert_eq!(
        all["left_bytes"], 1000,
        "only the busy partial stays: {all}"
    );
    assert!(busy_path.exists(), "a download under way is left alone");
    assert!(!idle_path.exists() && !partial.join(format!("{}.ranges", "b".repeat(64))).exists());
    assert_eq!(
        fs::read(&precious).unwrap().len(),
        4000,
        "the link's target is untouched"
    );
    let v = json(&cache(&lab, &["list", "--json"]));
    assert_eq!(v["images"], serde_json::json!([]), "{v}");
    drop(busy);
}

/// Bad flags and places exit 2 with a message naming the fix; an empty or
/// missing cache is listed as empty, not created.
#[test]
fn cache_errors_and_an_empty_cache() {
    let lab = Lab::new();
    let none = cache(&lab, &["prune"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("--keep"));
    let file = lab.path("a-file");
    fs::write(&file, b"x").unwrap();
    let out = cache(&lab, &["list", "--cache-dir", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a directory"));
    let out = cache(&lab, &["size", "--format", "prometheus"]);
    assert_eq!(out.status.code(), Some(2));
    let out = cache(&lab, &["prune", "--keep", "lots"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("20G"));

    let missing = lab.path("no-cache-here");
    let out = cache(
        &lab,
        &[
            "list",
            "-f",
            "table",
            "--cache-dir",
            missing.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("is empty"),
        "{out:?}"
    );
    let v = json(&cache(
        &lab,
        &[
            "prune",
            "--all",
            "--json",
            "--cache-dir",
            missing.to_str().unwrap(),
        ],
    ));
    assert_eq!(v["freed_bytes"], 0);
    assert!(!missing.exists(), "reading a cache does not create it");
}

/// A `dmirror pull` needing a blob a `dmirror serve` on the same cache is
/// fetching waits for that download rather than write the same partial
/// beside it: the blob crosses the network once, both end with verified
/// bytes, and no lock is left behind.
#[test]
fn pull_waits_for_the_blob_serve_is_fetching_into_the_same_cache() {
    let mut lab = Lab::new();
    let origin = lab.registry("origin");
    let small = Image::synthetic(74, "amd64", &[32 * 1024]);
    origin.push("library/small", "latest", &small);
    let big = Image::synthetic(75, "amd64", &[12 * MB, 64 * 1024]);
    origin.push("library/big", "latest", &big);
    let layer = big.layers[0].clone();
    // Two slow mirrors: serve spreads the layer over both (four
    // connections each, about 1 MB/s in all), so it is still under way
    // when the pull reaches it.
    let urls = lab.nginx(&[
        (
            "a",
            lab::Front::Proxy {
                upstream: origin.port,
                rate: Some("128k"),
            },
        ),
        (
            "b",
            lab::Front::Proxy {
                upstream: origin.port,
                rate: Some("128k"),
            },
        ),
    ]);
    let upstream = format!("http://127.0.0.1:{}", lab.refused_port());
    let mirrors = lab.mirrors_toml(
        "m.toml",
        &[
            ("a", urls["a"].clone(), ""),
            ("b", urls["b"].clone(), ""),
            (
                "upstream",
                upstream,
                "upstream = true\nregistry = \"docker.io\"",
            ),
        ],
    );
    let root = lab.path("cache").join("dmirror");
    let s = Serve::start(
        &lab,
        &mirrors,
        &["--image", "small", "--cache-dir", root.to_str().unwrap()],
    );
    s.wait_for("probe docker.io: 2 ok", Duration::from_secs(30));
    assert!(
        s.manifest("library/big").status().is_success(),
        "{}",
        s.log()
    );
    let url = format!("{}/v2/library/big/blobs/{}", s.url, layer.digest);
    let getter = std::thread::spawn(move || {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap()
            .get(url)
            .send()
            .and_then(|r| r.bytes())
            .map(|b| b.to_vec())
    });
    let hex = layer.digest.trim_start_matches("sha256:");
    let held = root.join("partial").join(format!("{hex}.lock"));
    let start = std::time::Instant::now();
    while !held.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "serve never started the layer\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let out = pull_to_oci(&lab, &mirrors, &["big", "--json", "--proxy", "none"]);
    let err = String::from_utf8_lossy(&out.stderr);
    let report = json(&out);
    assert!(
        err.contains(&format!(
            "waiting for another dmirror (serve) fetching {}",
            layer.digest
        )),
        "{err}"
    );
    let fetched: u64 = report["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .map(|s| s["bytes"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        fetched < layer.bytes.len() as u64 / 2,
        "the pull fetched {fetched} bytes itself though serve was fetching the {} byte layer\n{err}",
        layer.bytes.len()
    );
    let served = getter.join().unwrap().expect("the layer through serve");
    assert_eq!(lab::sha256(&served), layer.digest);
    let oci = lab.path("oci").join("blobs/sha256").join(hex);
    assert_eq!(
        lab::sha256(&fs::read(oci).expect("layer in the OCI layout")),
        layer.digest
    );
    let fetched_by_serve: u64 = s.fetched().values().sum();
    assert!(
        fetched_by_serve <= layer.bytes.len() as u64 * 11 / 10,
        "serve fetched {fetched_by_serve} for a {} byte layer",
        layer.bytes.len()
    );
    drop(s);
    let left: Vec<_> = fs::read_dir(root.join("partial"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left in partial/: {left:?}");
}
