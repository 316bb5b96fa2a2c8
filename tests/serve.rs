//! `dmirror serve` against the lab: a real dockerd whose only mirror is the
//! server pulls the current image from a list with a hanging, a 403, a
//! stale, a tampering and a good mirror; containerd (ns routing) and skopeo
//! (prefix routing) pull through the files `apply --via` writes; a mirror
//! killed mid-blob does not fail the request; uploads are refused; a tag
//! is answered from the cache when every source is gone.

mod lab;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use lab::dockerd::{isolate, Containerd, Dockerd};
use lab::hostile::{self, Content, Reply};
use lab::serve::Serve;
use lab::{dmirror, Front, Image, Lab};

const REPO: &str = "library/small";
const MB: usize = 1024 * 1024;

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .no_proxy()
        .build()
        .expect("client")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The image's blob `digest` through serve: its bytes, or the error that
/// ended the transfer.
fn get_blob(s: &Serve, repo: &str, digest: &str) -> Result<Vec<u8>, String> {
    let resp = http()
        .get(format!("{}/v2/{repo}/blobs/{digest}", s.url))
        .send()
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    let mut body = Vec::new();
    let mut resp = resp;
    resp.read_to_end(&mut body).map_err(|e| e.to_string())?;
    Ok(body)
}

/// A mirror: nginx proxying `upstream` at `rate` per connection.
fn proxied(lab: &mut Lab, name: &str, upstream: u16, rate: &'static str) -> String {
    let rate = Some(rate);
    lab.nginx(&[(name, Front::Proxy { upstream, rate })])[name].clone()
}

/// The list of one mirror, nginx over `origin` at 1 MB/s per
/// connection, and a refused upstream.
fn one_slow_mirror(lab: &mut Lab, origin: u16) -> PathBuf {
    let slow = proxied(lab, "slow", origin, "1m");
    toml_of(
        lab,
        "m.toml",
        &[
            ("slow".into(), slow, String::new()),
            upstream_entry(lab, "docker.io"),
        ],
    )
}

/// GET `url` on another thread: the status and the whole body, or the
/// error that ended the transfer.
fn get_later(url: String) -> std::thread::JoinHandle<reqwest::Result<(u16, Vec<u8>)>> {
    std::thread::spawn(move || {
        let mut body = Vec::new();
        let mut r = http().get(url).send()?;
        r.copy_to(&mut body)?;
        Ok((r.status().as_u16(), body))
    })
}

/// Upstream of every registry: a refused port, so nothing leaves the machine.
fn upstream_entry(lab: &Lab, registry: &str) -> (String, String, String) {
    (
        format!("upstream-{}", registry.replace('.', "-")),
        format!("http://127.0.0.1:{}", lab.refused_port()),
        format!("upstream = true\nregistry = \"{registry}\""),
    )
}

fn toml_of(lab: &Lab, file: &str, entries: &[(String, String, String)]) -> PathBuf {
    let e: Vec<(&str, String, &str)> = entries
        .iter()
        .map(|(n, u, x)| (n.as_str(), u.clone(), x.as_str()))
        .collect();
    lab.mirrors_toml(file, &e)
}

/// Issue 16: a real dockerd whose only mirror is serve, in front of a list
/// with a mirror that never answers, a 403 one, a stale one, a tampering
/// one and a good one, pulls the current image, correct, with no stall.
/// The tampered layer is small, so it is verified before its response
/// starts: the good mirror serves the same request and dockerd never
/// retries.
#[test]
fn docker_pulls_the_current_image_through_serve_from_a_bad_list() {
    if isolate("docker_pulls_the_current_image_through_serve_from_a_bad_list") {
        return;
    }
    let mut lab = Lab::new();
    let origin = lab.registry("origin");
    let current = Image::synthetic(161, "amd64", &[4 * MB, 256 * 1024]);
    origin.push(REPO, "latest", &current);
    let old = lab.registry("old");
    let previous = Image::synthetic(160, "amd64", &[4 * MB, 256 * 1024]);
    old.push(REPO, "latest", &previous);
    // The tamperer serves the current manifest and the large layer (what a
    // probe samples) right, and noise for the small layer.
    let small = current.layers[1].clone();
    let evil = hostile::registry(Content::of(&current), move |req| {
        req.path
            .ends_with(&small.digest)
            .then(|| Reply::new(200, lab::noise(9, small.bytes.len())))
    });
    let urls = lab.nginx(&[
        (
            "forbidden",
            Front::Status {
                code: 403,
                body: r#"{"message":"campus only"}"#,
                content_type: "application/json",
                retry_after: None,
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
    let hang = lab.hanging_port();
    let mirrors = toml_of(
        &lab,
        "m.toml",
        &[
            (
                "hang".into(),
                format!("http://127.0.0.1:{hang}"),
                String::new(),
            ),
            ("forbidden".into(), urls["forbidden"].clone(), String::new()),
            (
                "stale".into(),
                format!("http://127.0.0.1:{}", old.port),
                String::new(),
            ),
            ("evil".into(), evil, String::new()),
            ("good".into(), urls["good"].clone(), String::new()),
            upstream_entry(&lab, "docker.io"),
        ],
    );
    let s = Serve::start(&lab, &mirrors, &["--image", "small"]);
    // /v2/ answers at once, while the probe still waits on "hang".
    let v2 = http()
        .get(format!("{}/v2/", s.url))
        .send()
        .expect("GET /v2/");
    assert_eq!(v2.status(), 200);
    assert!(!s.log().contains("probe docker.io"), "{}", s.log());
    s.wait_for("probe docker.io", Duration::from_secs(30));

    let config = lab.path("daemon.json");
    std::fs::write(&config, format!(r#"{{"registry-mirrors": ["{}"]}}"#, s.url)).expect("write");
    let d = Dockerd::start(&lab.path("docker"), &config);
    let start = Instant::now();
    let out = d.docker(&["pull", "small"]);
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "docker pull: {}\n{}",
        stderr(&out),
        s.log()
    );
    let layers = d.docker(&[
        "image",
        "inspect",
        "small",
        "--format",
        "{{json .RootFS.Layers}}",
    ]);
    let layers: Vec<String> = serde_json::from_slice(&layers.stdout).expect("layers");
    assert_eq!(layers, current.diff_ids, "not the current image");
    // A mirror that accepts and never answers costs dockerd 15 s a pull
    // when it is in registry-mirrors; through serve it costs nothing.
    assert!(
        took < Duration::from_secs(12),
        "docker pull took {took:?}\n{}",
        s.log()
    );
    let log = s.log();
    assert!(!log.contains("source=hang"), "{log}");
    assert!(!log.contains("source=forbidden"), "{log}");
    assert!(!log.contains("source=stale"), "{log}");
    // The tamperer was caught, and the retry came from the good mirror.
    assert!(log.contains("verification failed"), "{log}");
    assert!(
        log.contains(&format!("blob={} status=200", current.layers[1].digest)),
        "{log}"
    );
    let metrics = http()
        .get(format!("{}/metrics", s.url))
        .send()
        .and_then(|r| r.text())
        .expect("metrics");
    assert!(
        metrics.contains("dmirror_serve_verification_failures_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("dmirror_serve_fetched_bytes_total{mirror=\"good\"}"),
        "{metrics}"
    );
}

/// `dmirror apply --target TARGET --via URL` writing `file` (`flag`), the
/// lab's two registries each probed with their image.
fn apply_via(
    lab: &Lab,
    url: &str,
    mirrors: &Path,
    target: &str,
    flag: &str,
    file: &Path,
) -> Output {
    dmirror(lab)
        .args([
            "apply", "--target", target, "--via", url, "--json", "--proxy", "none",
        ])
        .arg(flag)
        .arg(file)
        .arg("--mirrors")
        .arg(mirrors)
        .args(["--image", "small", "--image", "ghcr.io/owner/app:v1"])
        .output()
        .expect("apply --via")
}

/// Issue 16, items 3 and 8: `apply --via` writes hosts.toml files (ns
/// routing) that containerd pulls a Docker Hub and a ghcr.io image
/// through, and a registries.conf (prefix routing) skopeo copies through.
#[test]
fn containerd_and_skopeo_pull_through_the_files_apply_via_writes() {
    if isolate("containerd_and_skopeo_pull_through_the_files_apply_via_writes") {
        return;
    }
    lab::require("skopeo", "skopeo");
    let mut lab = Lab::new();
    let hub = lab.registry("hub");
    let hub_image = Image::synthetic(162, "amd64", &[MB, 64 * 1024]);
    hub.push(REPO, "latest", &hub_image);
    let ghcr = lab.registry("ghcr");
    let gh_image = Image::synthetic(163, "amd64", &[MB]);
    ghcr.push("owner/app", "v1", &gh_image);
    let mirrors = toml_of(
        &lab,
        "m.toml",
        &[
            (
                "hub".into(),
                format!("http://127.0.0.1:{}", hub.port),
                String::new(),
            ),
            (
                "gh".into(),
                format!("http://127.0.0.1:{}", ghcr.port),
                "registry = \"ghcr.io\"".into(),
            ),
            upstream_entry(&lab, "docker.io"),
            upstream_entry(&lab, "ghcr.io"),
        ],
    );
    let s = Serve::start(
        &lab,
        &mirrors,
        &["--image", "small", "--image", "ghcr.io/owner/app:v1"],
    );

    let hosts = lab.path("certs.d");
    let out = apply_via(&lab, &s.url, &mirrors, "containerd", "--hosts-dir", &hosts);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for registry in ["docker.io", "ghcr.io"] {
        let text =
            std::fs::read_to_string(hosts.join(registry).join("hosts.toml")).expect("hosts.toml");
        let doc: toml::Table = toml::from_str(&text).expect("toml");
        let hosts_of = doc["host"].as_table().expect("hosts");
        assert_eq!(hosts_of.keys().collect::<Vec<_>>(), [&s.url], "{text}");
        assert!(
            doc["server"].as_str().is_some(),
            "upstream stays the fallback: {text}"
        );
    }
    let c = Containerd::start(&lab.path("containerd"));
    for image in ["docker.io/library/small:latest", "ghcr.io/owner/app:v1"] {
        let out = c.ctr(&[
            "images",
            "pull",
            "--hosts-dir",
            hosts.to_str().unwrap(),
            image,
        ]);
        assert!(
            out.status.success(),
            "ctr pull {image}: {}\n{}",
            stderr(&out),
            s.log()
        );
    }
    let log = s.log();
    assert!(
        log.contains("registry=ghcr.io repo=owner/app manifest=v1"),
        "{log}"
    );
    assert!(log.contains("source=gh"), "{log}");

    let conf = lab.path("registries.conf");
    let out = apply_via(&lab, &s.url, &mirrors, "podman", "--registries-conf", &conf);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(&conf).expect("conf");
    assert!(
        text.contains(&format!("location = \"{}/ghcr.io\"", s.authority())),
        "{text}"
    );
    let dir = lab.path("oci");
    let out = Command::new("skopeo")
        .arg("--registries-conf")
        .arg(&conf)
        .args([
            "copy",
            "--retry-times",
            "0",
            "docker://ghcr.io/owner/app:v1",
        ])
        .arg(format!("oci:{}", dir.display()))
        .output()
        .expect("skopeo");
    assert!(
        out.status.success(),
        "skopeo copy: {}\n{}",
        stderr(&out),
        s.log()
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).expect("index"))
            .expect("json");
    assert_eq!(index["manifests"][0]["digest"], gh_image.digest.as_str());
    assert!(
        s.log().contains("registry=ghcr.io repo=owner/app"),
        "{}",
        s.log()
    );

    // --via names something that is not a registry: refused, nothing written.
    let out = dmirror(&lab)
        .args([
            "apply",
            "--target",
            "podman",
            "--via",
            &format!("http://127.0.0.1:{}", lab.refused_port()),
        ])
        .arg("--registries-conf")
        .arg(lab.path("other.conf"))
        .arg("--mirrors")
        .arg(&mirrors)
        .args(["--proxy", "none"])
        .output()
        .expect("apply --via");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("start the server first"),
        "{}",
        stderr(&out)
    );
    assert!(!lab.path("other.conf").exists());
}

/// Issue 16, items 4 and 6: the mirror serving a blob is killed in the
/// middle of it; the same request goes on from the next mirror, and the
/// client gets every byte, verified. A tampered blob ends the response
/// with an error, never a clean end, and the retry is served right.
#[test]
fn a_mirror_killed_mid_blob_and_a_tampered_blob() {
    let mut lab = Lab::new();
    let origin = lab.registry("origin");
    let image = Image::synthetic(164, "amd64", &[6 * MB, 128 * 1024]);
    origin.push(REPO, "latest", &image);
    let first = proxied(&mut lab, "first", origin.port, "2m");
    let second = proxied(&mut lab, "second", origin.port, "1m");
    let mirrors = toml_of(
        &lab,
        "m.toml",
        &[
            ("first".into(), first.clone(), String::new()),
            ("second".into(), second.clone(), String::new()),
            upstream_entry(&lab, "docker.io"),
        ],
    );
    let s = Serve::start(&lab, &mirrors, &["--image", "small"]);
    s.wait_for("order: first, second", Duration::from_secs(30));
    let big = image.largest_layer().clone();
    let url = s.url.clone();
    let getter = std::thread::spawn(move || {
        let mut body = Vec::new();
        let r = http()
            .get(format!("{url}/v2/{REPO}/blobs/{}", big.digest))
            .send()
            .and_then(|mut r| r.copy_to(&mut body));
        (r.map(|_| ()), body)
    });
    // Kill the first mirror's nginx a second into the transfer.
    std::thread::sleep(Duration::from_secs(1));
    kill_nginx_serving(&lab, &first);
    let (r, body) = getter.join().expect("getter");
    assert!(r.is_ok(), "{r:?}\n{}", s.log());
    assert_eq!(lab::sha256(&body), image.largest_layer().digest);
    // The request's line comes once its body has ended.
    s.wait_for("source=first+second", Duration::from_secs(5));

    // Uploads and deletes: refused as the spec says.
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        let r = http()
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}/v2/{REPO}/blobs/uploads/", s.url),
            )
            .send()
            .expect("request");
        assert_eq!(r.status(), 405, "{method}");
        let v: serde_json::Value = serde_json::from_slice(&r.bytes().unwrap()).expect("error JSON");
        assert_eq!(v["errors"][0]["code"], "UNSUPPORTED", "{method}");
    }
    for (path, code) in [
        ("/v2/Bad/Name/manifests/latest", "NAME_INVALID"),
        ("/v2/library/small/manifests/-bad", "TAG_INVALID"),
        ("/v2/library/small/blobs/sha256:xyz", "DIGEST_INVALID"),
    ] {
        let r = http()
            .get(format!("{}{path}", s.url))
            .send()
            .expect("request");
        assert_eq!(r.status(), 400, "{path}");
        let v: serde_json::Value = serde_json::from_slice(&r.bytes().unwrap()).expect("error JSON");
        assert_eq!(v["errors"][0]["code"], code, "{path}");
    }
}

/// Issue 16, item 6: a blob whose bytes do not match its digest ends the
/// response with an error (the last byte is held until verified); the
/// mirror is dropped, and the retry is served from the next one.
#[test]
fn a_tampered_blob_aborts_the_response_and_the_retry_is_right() {
    let mut lab = Lab::new();
    let origin = lab.registry("origin");
    // The tampered layer is past VERIFY_FIRST (1 MiB), so it streams; the
    // largest (what the probe samples) is served right.
    let image = Image::synthetic(165, "amd64", &[2 * MB, 3 * MB / 2]);
    origin.push(REPO, "latest", &image);
    let small = image.layers[1].clone();
    let bad = small.clone();
    let evil = hostile::registry(Content::of(&image), move |req| {
        req.path
            .ends_with(&bad.digest)
            .then(|| Reply::new(200, lab::noise(3, bad.bytes.len())))
    });
    let good = proxied(&mut lab, "good", origin.port, "1m");
    let mirrors = toml_of(
        &lab,
        "m.toml",
        &[
            ("evil".into(), evil, String::new()),
            ("good".into(), good.clone(), String::new()),
            upstream_entry(&lab, "docker.io"),
        ],
    );
    let s = Serve::start(&lab, &mirrors, &["--image", "small"]);
    s.wait_for("order: evil, good", Duration::from_secs(30));
    let first = get_blob(&s, REPO, &small.digest);
    assert!(first.is_err(), "a tampered blob ended cleanly");
    let second = get_blob(&s, REPO, &small.digest).expect("the retry");
    assert_eq!(lab::sha256(&second), small.digest);
    assert!(s.log().contains("verification failed"), "{}", s.log());
    // Cached now: served from disk, verified on the way.
    let third = get_blob(&s, REPO, &small.digest).expect("from the cache");
    assert_eq!(third, second);
    s.wait_for("source=cache cache=hit", Duration::from_secs(5));
}

/// Issue 17, item 1: a large blob a manifest declared is fetched over
/// every healthy mirror at once, streaming to the client as its bytes
/// arrive in order. A mirror whose ranges lie is found and dropped: the
/// response that streamed its bytes ends with an error, never a clean
/// end, and the retry gets the verified blob.
#[test]
fn a_large_blob_is_spread_over_every_healthy_mirror() {
    let mut lab = Lab::new();
    let origin = lab.registry("origin");
    // The probe samples the largest layer (served right by everyone); the
    // other is the one the liar tampers with.
    let image = Image::synthetic(166, "amd64", &[16 * MB, 17 * MB]);
    origin.push(REPO, "latest", &image);
    let target = image.layers[0].clone();
    let bad = target.clone();
    // Made once: noise made per request is slow enough in a debug build
    // on a busy machine to miss the first-byte bound.
    let noise = lab::noise(7, bad.bytes.len());
    let liar = hostile::registry(Content::of(&image), move |req| {
        req.path
            .ends_with(&bad.digest)
            .then(|| hostile::blob_reply(req, &noise))
    });
    let urls = lab.nginx(&[
        (
            "a",
            Front::Proxy {
                upstream: origin.port,
                rate: Some("6m"),
            },
        ),
        (
            "b",
            Front::Proxy {
                upstream: origin.port,
                rate: Some("6m"),
            },
        ),
    ]);
    let mirrors = toml_of(
        &lab,
        "m.toml",
        &[
            ("a".into(), urls["a"].clone(), String::new()),
            ("b".into(), urls["b"].clone(), String::new()),
            ("liar".into(), liar, String::new()),
            upstream_entry(&lab, "docker.io"),
        ],
    );
    let s = Serve::start(&lab, &mirrors, &["--image", "small", "--budget", "2s"]);
    s.wait_for("probe docker.io: 3 ok", Duration::from_secs(30));
    // The manifest declares the blob's size: what lets serve cut it.
    let r = s.manifest(REPO);
    assert_eq!(r.status().as_u16(), 200, "{}", s.log());

    let first = get_blob(&s, REPO, &target.digest);
    assert!(
        first.is_err(),
        "bytes that failed verification ended cleanly\n{}",
        s.log()
    );
    let second = get_blob(&s, REPO, &target.digest).expect("the retry");
    assert_eq!(lab::sha256(&second), target.digest);
    let log = s.log();
    assert!(log.contains("verification failed"), "{log}");
    assert!(log.contains("liar: dropped from"), "{log}");
    assert!(log.contains("do not match its digest"), "{log}");

    // With the liar gone, the other layer comes from both honest mirrors.
    let other = image.layers[1].clone();
    let before = s.fetched();
    let body = get_blob(&s, REPO, &other.digest).expect("the other layer");
    assert_eq!(lab::sha256(&body), other.digest);
    let after = s.fetched();
    let got = |m: &str| after.get(m).copied().unwrap_or(0) - before.get(m).copied().unwrap_or(0);
    assert!(
        got("a") > 2 * MB as u64 && got("b") > 2 * MB as u64,
        "one blob, both mirrors: a {} b {}\n{}",
        got("a"),
        got("b"),
        s.log()
    );
    assert_eq!(got("liar"), 0, "a dropped mirror is not asked again");
    assert!(
        got("a") + got("b") <= other.bytes.len() as u64 * 11 / 10,
        "each byte fetched about once: {} of {}",
        got("a") + got("b"),
        other.bytes.len()
    );
}

/// Issue 16, items 2, 7 and 10: a source sending more bytes than the
/// manifest declared is refused and the next one serves the request; a
/// `HEAD` of a blob not cached answers its size and digest; `--max-cache`
/// evicts the least recently used blob, which is fetched again when asked.
#[test]
fn oversized_blob_head_and_eviction() {
    let mut lab = Lab::new();
    let origin = lab.registry("origin");
    let image = Image::synthetic(167, "amd64", &[3 * MB, 2 * MB, 512 * 1024]);
    origin.push(REPO, "latest", &image);
    let (big, mid, small) = (
        image.layers[0].clone(),
        image.layers[1].clone(),
        image.layers[2].clone(),
    );
    let long = small.clone();
    let liar = hostile::registry(Content::of(&image), move |req| {
        req.path.ends_with(&long.digest).then(|| {
            let mut b = long.bytes.clone();
            b.extend(lab::noise(5, 300 * 1024));
            Reply::new(200, b)
        })
    });
    let good = proxied(&mut lab, "good", origin.port, "4m");
    let mirrors = toml_of(
        &lab,
        "m.toml",
        &[
            ("liar".into(), liar, String::new()),
            ("good".into(), good.clone(), String::new()),
            upstream_entry(&lab, "docker.io"),
        ],
    );
    let cache = lab.path("cache-dir");
    let blobs = cache.join("blobs/sha256");
    let cached = |d: &str| blobs.join(d.trim_start_matches("sha256:")).exists();
    // Room for the two larger layers and half the small one.
    let max = (big.bytes.len() + mid.bytes.len() + small.bytes.len() / 2).to_string();
    let s = Serve::start(
        &lab,
        &mirrors,
        &[
            "--image",
            "small",
            "--cache-dir",
            cache.to_str().unwrap(),
            "--max-cache",
            &max,
        ],
    );
    s.wait_for("order: liar, good", Duration::from_secs(30));
    let r = s.manifest(REPO);
    assert_eq!(r.status().as_u16(), 200, "{}", s.log());

    let body = get_blob(&s, REPO, &small.digest).expect("the small layer");
    assert_eq!(lab::sha256(&body), small.digest);
    let log = s.log();
    assert!(log.contains("whose manifest declares"), "{log}");
    assert!(log.contains("source=good"), "{log}");

    let r = http()
        .head(format!("{}/v2/{REPO}/blobs/{}", s.url, mid.digest))
        .send()
        .expect("HEAD");
    assert_eq!(r.status().as_u16(), 200, "{}", s.log());
    assert_eq!(
        r.headers()["content-length"],
        mid.bytes.len().to_string().as_str()
    );
    assert_eq!(r.headers()["docker-content-digest"], mid.digest.as_str());
    assert!(r.bytes().unwrap().is_empty());

    // Oldest first: the small layer goes when the big one comes in.
    get_blob(&s, REPO, &mid.digest).expect("mid");
    std::thread::sleep(Duration::from_millis(20));
    assert!(cached(&small.digest) && cached(&mid.digest), "{}", s.log());
    get_blob(&s, REPO, &big.digest).expect("big");
    s.wait_for("cache over", Duration::from_secs(5));
    assert!(!cached(&small.digest), "the least recently used blob stays");
    assert!(cached(&mid.digest) && cached(&big.digest), "{}", s.log());
    let again = get_blob(&s, REPO, &small.digest).expect("fetched again");
    assert_eq!(lab::sha256(&again), small.digest);
    let misses = s
        .log()
        .lines()
        .filter(|l| l.contains(&format!("blob={}", small.digest)) && l.contains("cache=miss"))
        .count();
    assert_eq!(misses, 2, "{}", s.log());
}

/// The cache's disk filling up while a blob streams in (another program
/// took the space) costs the client nothing: serve removes least recently
/// used blobs to make room, logs it, and the response completes verified.
/// Nothing but its own blobs is removed. The cache is a 14 MB tmpfs in a
/// private mount namespace.
#[test]
fn a_disk_filling_up_makes_room_from_the_least_recently_used_blobs() {
    if std::env::var_os("DMIRROR_TEST_IN_MOUNT_NS").is_none() {
        let status = Command::new(lab::require("unshare", "util-linux"))
            .args(["-m", "--propagation", "private", "--"])
            .arg(std::env::current_exe().unwrap())
            .args([
                "a_disk_filling_up_makes_room_from_the_least_recently_used_blobs",
                "--exact",
                "--nocapture",
            ])
            .env("DMIRROR_TEST_IN_MOUNT_NS", "1")
            .status()
            .unwrap();
        assert!(status.success(), "failed in its mount namespace");
        return;
    }
    let mut lab = Lab::new();
    let cache = lab.path("cache-disk");
    std::fs::create_dir_all(&cache).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=14m", "tmpfs"])
        .arg(&cache)
        .status()
        .unwrap();
    assert!(mounted.success());
    let origin = lab.registry("origin");
    let small = Image::synthetic(181, "amd64", &[16 * 1024]);
    origin.push(REPO, "latest", &small);
    let old = Image::synthetic(182, "amd64", &[4 * MB]);
    origin.push("library/old", "latest", &old);
    let new = Image::synthetic(183, "amd64", &[4 * MB]);
    origin.push("library/new", "latest", &new);
    let mirrors = one_slow_mirror(&mut lab, origin.port);
    let root = cache.join("dmirror");
    let s = Serve::start(
        &lab,
        &mirrors,
        &["--image", "small", "--cache-dir", root.to_str().unwrap()],
    );
    s.wait_for("order: slow", Duration::from_secs(30));
    let first = old.layers[0].clone();
    assert_eq!(
        lab::sha256(&get_blob(&s, "library/old", &first.digest).expect("old layer")),
        first.digest
    );
    let kept = root
        .join("blobs/sha256")
        .join(first.digest.trim_start_matches("sha256:"));
    assert!(kept.exists(), "the old layer is cached");

    // The manifest declares the layer's size: what serve makes room for
    // (a source's own claim never empties the cache).
    assert!(
        s.manifest("library/new").status().is_success(),
        "{}",
        s.log()
    );
    let layer = new.layers[0].clone();
    let url = format!("{}/v2/library/new/blobs/{}", s.url, layer.digest);
    let getter = get_later(url);
    let stream = root.join(format!(
        "partial/{}.stream",
        layer.digest.trim_start_matches("sha256:")
    ));
    let start = Instant::now();
    while std::fs::metadata(&stream).map_or(0, |m| m.len()) < 256 * 1024 {
        assert!(start.elapsed() < Duration::from_secs(20), "{}", s.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    // Another program takes every byte left.
    let filler_path = cache.join("someone-elses-file");
    let mut filler = std::fs::File::create(&filler_path).unwrap();
    let zeros = vec![0u8; 64 * 1024];
    while std::io::Write::write_all(&mut filler, &zeros).is_ok() {}
    let filled = filler.metadata().unwrap().len();

    let (status, body) = getter
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("the new layer: {e}\n{}", s.log()));
    assert_eq!(status, 200, "{}", s.log());
    assert_eq!(lab::sha256(&body), layer.digest, "{}", s.log());
    let log = s.log();
    assert!(log.contains("short of space: removed"), "{log}");
    assert!(!kept.exists(), "the least recently used blob made room");
    assert!(root
        .join("blobs/sha256")
        .join(layer.digest.trim_start_matches("sha256:"))
        .exists());
    assert_eq!(
        std::fs::metadata(&filler_path).unwrap().len(),
        filled,
        "another program's file is not dmirror's to remove"
    );
    drop(s);
    let _ = Command::new("umount").arg(&cache).status();
}

/// A mirror that sends a byte every 200 ms never stalls long enough for
/// `--first-byte`, but it is a trickle, not a transfer: once a window of
/// its bytes falls below the floor, the request goes on from the next
/// source with `Range`, and the client gets the verified blob in bounded
/// time.
#[test]
fn a_trickling_mirror_is_left_for_the_next_source_mid_blob() {
    let mut lab = Lab::new();
    let origin = lab.registry("origin");
    let small = Image::synthetic(185, "amd64", &[16 * 1024]);
    origin.push(REPO, "latest", &small);
    let target = Image::synthetic(186, "amd64", &[2 * MB]);
    origin.push(REPO, "other", &target);
    let layer = target.layers[0].clone();
    let mut content = Content::of(&small);
    content
        .blobs
        .insert(layer.digest.clone(), layer.bytes.clone());
    let bytes = layer.bytes.clone();
    let digest = layer.digest.clone();
    // Fast for the probe (it never asks for this blob); a byte every
    // 200 ms for the layer.
    let trickler = hostile::registry(content, move |req| {
        req.path.ends_with(&digest).then(|| Reply {
            trickle: Some(Duration::from_millis(200)),
            piece: 1,
            ..hostile::blob_reply(req, &bytes)
        })
    });
    let mirrors = toml_of(
        &lab,
        "m.toml",
        &[
            ("trickler".into(), trickler, String::new()),
            (
                "origin".into(),
                origin.url(),
                "upstream = true\nregistry = \"docker.io\"".into(),
            ),
        ],
    );
    let s = Serve::start(&lab, &mirrors, &["--image", "small"]);
    s.wait_for("order: trickler", Duration::from_secs(30));
    let start = Instant::now();
    let body = get_blob(&s, REPO, &layer.digest).unwrap_or_else(|e| panic!("{e}\n{}", s.log()));
    let took = start.elapsed();
    assert_eq!(lab::sha256(&body), layer.digest);
    let log = s.log();
    assert!(log.contains("below the floor"), "{log}");
    assert!(log.contains("source=trickler+origin"), "{log}");
    assert!(took < Duration::from_secs(40), "took {took:?}\n{log}");
    let fetched = s.fetched();
    assert!(
        fetched.get("trickler").copied().unwrap_or(0) < 1000,
        "{fetched:?}"
    );
}

/// Two servers on one cache streaming the same blob at once: the second
/// writes a private file, not the first one's; both clients get the
/// verified blob, the cache holds it once, and nothing is left in
/// `partial/`.
#[test]
fn two_servers_on_one_cache_stream_one_blob_at_once() {
    let mut lab = Lab::new();
    let origin = lab.registry("origin");
    let image = Image::synthetic(187, "amd64", &[3 * MB]);
    origin.push(REPO, "latest", &image);
    let layer = image.layers[0].clone();
    let mirrors = one_slow_mirror(&mut lab, origin.port);
    let cache = lab.path("shared-cache");
    let args = ["--image", "small", "--cache-dir", cache.to_str().unwrap()];
    let one = Serve::start(&lab, &mirrors, &args);
    let two = Serve::start(&lab, &mirrors, &args);
    one.wait_for("order: slow", Duration::from_secs(30));
    two.wait_for("order: slow", Duration::from_secs(30));
    let get = |s: &Serve| get_later(format!("{}/v2/{REPO}/blobs/{}", s.url, layer.digest));
    let (a, b) = (get(&one), get(&two));
    for (name, s, got) in [("one", &one, a), ("two", &two, b)] {
        let (status, body) = got
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", s.log()));
        assert_eq!(status, 200, "{name}\n{}", s.log());
        assert_eq!(lab::sha256(&body), layer.digest, "{name}\n{}", s.log());
    }
    let cached = cache
        .join("blobs/sha256")
        .join(layer.digest.trim_start_matches("sha256:"));
    assert_eq!(lab::sha256(&std::fs::read(&cached).unwrap()), layer.digest);
    let left: Vec<_> = std::fs::read_dir(cache.join("partial"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left in partial/: {left:?}");
}

/// Issue 16, item 7: a server killed mid-blob leaves its partial; the
/// next one resumes it with `Range`, fetching only the rest.
#[test]
fn a_partial_left_by_a_killed_server_is_resumed() {
    let mut lab = Lab::new();
    let origin = lab.registry("origin");
    let image = Image::synthetic(168, "amd64", &[4 * MB]);
    origin.push(REPO, "latest", &image);
    let layer = image.layers[0].clone();
    let mirrors = one_slow_mirror(&mut lab, origin.port);
    let cache = lab.path("cache-dir");
    let args = ["--image", "small", "--cache-dir", cache.to_str().unwrap()];
    let s = Serve::start(&lab, &mirrors, &args);
    s.wait_for("order: slow", Duration::from_secs(30));
    let url = s.url.clone();
    let digest = layer.digest.clone();
    let getter = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = http()
            .get(format!("{url}/v2/{REPO}/blobs/{digest}"))
            .send()
            .and_then(|mut r| r.copy_to(&mut s));
    });
    std::thread::sleep(Duration::from_millis(1500));
    drop(s); // SIGKILL
    let _ = getter.join();
    let partial = cache.join(format!(
        "partial/{}.stream",
        layer.digest.trim_start_matches("sha256:")
    ));
    let kept = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
    let size = layer.bytes.len() as u64;
    assert!(kept > 0 && kept < size, "partial holds {kept} of {size}");

    let s = Serve::start(&lab, &mirrors, &args);
    s.wait_for("order: slow", Duration::from_secs(30));
    let body = get_blob(&s, REPO, &layer.digest).expect("resumed");
    assert_eq!(lab::sha256(&body), layer.digest);
    let fetched = s.fetched().get("slow").copied().unwrap_or(0);
    assert!(
        fetched <= size - kept,
        "fetched {fetched} of {size} though {kept} were kept\n{}",
        s.log()
    );
    assert!(!partial.exists(), "the partial became the cached blob");
}

/// Issue 16, items 5 and 7: after a restart with every source gone, a tag
/// resolved before is answered from the cache (marked in the log), and
/// its blobs too; SIGTERM stops the server cleanly.
#[test]
fn a_tag_is_served_from_the_cache_when_every_source_is_gone() {
    let mut lab = Lab::new();
    let origin = lab.registry("origin");
    let image = Image::synthetic(166, "amd64", &[512 * 1024]);
    origin.push(REPO, "latest", &image);
    let mirrors = toml_of(
        &lab,
        "m.toml",
        &[
            (
                "m".into(),
                format!("http://127.0.0.1:{}", origin.port),
                String::new(),
            ),
            upstream_entry(&lab, "docker.io"),
        ],
    );
    let cache = lab.path("cache-dir");
    let cache_s = cache.to_str().unwrap().to_owned();
    let mut s = Serve::start(
        &lab,
        &mirrors,
        &["--image", "small", "--cache-dir", &cache_s],
    );
    let r = s.manifest("small");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["docker-content-digest"], image.digest.as_str());
    assert_eq!(lab::sha256(&r.bytes().unwrap()), image.digest);
    get_blob(&s, REPO, &image.layers[0].digest).expect("blob");
    assert!(s.stop().success(), "serve exits 0 on SIGTERM");

    let gone = toml_of(
        &lab,
        "gone.toml",
        &[
            (
                "m".into(),
                format!("http://127.0.0.1:{}", lab.refused_port()),
                String::new(),
            ),
            upstream_entry(&lab, "docker.io"),
        ],
    );
    let s = Serve::start(&lab, &gone, &["--image", "small", "--cache-dir", &cache_s]);
    let r = s.manifest("small");
    assert_eq!(r.status(), 200, "{}", s.log());
    assert_eq!(lab::sha256(&r.bytes().unwrap()), image.digest);
    assert!(s.log().contains("stale"), "{}", s.log());
    let blob = get_blob(&s, REPO, &image.layers[0].digest).expect("blob from the cache");
    assert_eq!(lab::sha256(&blob), image.layers[0].digest);
    // Something never seen: the reasons, not a hang.
    let r = http()
        .get(format!("{}/v2/library/other/manifests/latest", s.url))
        .send()
        .expect("manifest");
    assert_eq!(r.status(), 502);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().unwrap()).expect("json");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no source could resolve library/other:latest"),
        "{v}"
    );
}

/// Stop the nginx whose configuration listens on `url`'s port (SIGTERM:
/// nginx's fast shutdown, connections cut).
fn kill_nginx_serving(lab: &Lab, url: &str) {
    let port = url.rsplit(':').next().unwrap();
    for entry in std::fs::read_dir(lab.dir.path()).unwrap().flatten() {
        let conf = entry.path().join("nginx.conf");
        let Ok(text) = std::fs::read_to_string(&conf) else {
            continue;
        };
        if text.contains(&format!("listen 127.0.0.1:{port};")) {
            let pid = std::fs::read_to_string(entry.path().join("nginx.pid")).unwrap();
            let status = Command::new("kill")
                .args(["-TERM", pid.trim()])
                .status()
                .unwrap();
            assert!(status.success());
            return;
        }
    }
    panic!("no nginx serves {url}");
}

/// Issue 16, item 8: `serve install` writes a sandboxed service that
/// `systemd-analyze verify` accepts, ordered before docker and containerd;
/// options after `--` are checked by the serve parser; `remove` undoes it.
#[test]
fn serve_install_writes_a_verified_sandboxed_service() {
    let lab = Lab::new();
    let units = lab.path("units");
    std::fs::create_dir_all(&units).expect("dir");
    let run = |args: &[&str]| {
        dmirror(&lab)
            .arg("serve")
            .arg(args[0])
            .arg("--unit-dir")
            .arg(&units)
            .args(&args[1..])
            .output()
            .expect("run")
    };
    let bin = env!("CARGO_BIN_EXE_dmirror");
    let out = run(&[
        "install",
        "--binary",
        bin,
        "--dry-run",
        "--listen",
        "127.0.0.1:5299",
        "--",
        "--max-cache",
        "20G",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        !units.join("dmirror-serve.service").exists(),
        "--dry-run wrote"
    );
    for want in [
        &format!("ExecStart={bin} serve --listen 127.0.0.1:5299 --max-cache 20G") as &str,
        "Before=docker.service containerd.service",
        "Restart=on-failure",
        "DynamicUser=yes",
        "CacheDirectory=dmirror",
        "StateDirectory=dmirror",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ] {
        assert!(shown.contains(want), "no {want:?} in\n{shown}");
    }
    let out = run(&["install", "--binary", bin, "--", "--max-cache", "lots"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--max-cache"), "{}", stderr(&out));
    assert!(!units.join("dmirror-serve.service").exists());

    let out = run(&["install", "--binary", bin]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let unit = units.join("dmirror-serve.service");
    let verify = Command::new(lab::require("systemd-analyze", "systemd"))
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze");
    assert!(
        verify.status.success(),
        "systemd-analyze verify: {}",
        stderr(&verify)
    );
    let out = run(&["remove"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!unit.exists());
    let out = run(&["remove"]);
    assert!(stderr(&out).contains("not installed"), "{}", stderr(&out));
}

/// Issue 16, items 7, 9 and 10: two clients asking for one blob at once
/// share one download; a request head past the bound is refused; SIGTERM
/// lets a running transfer finish before the server exits.
#[test]
fn one_download_per_blob_bounded_heads_and_a_graceful_stop() {
    let mut lab = Lab::new();
    let origin = lab.registry("origin");
    let image = Image::synthetic(167, "amd64", &[3 * MB, 64 * 1024]);
    origin.push(REPO, "latest", &image);
    let mirrors = one_slow_mirror(&mut lab, origin.port);
    let mut s = Serve::start(&lab, &mirrors, &["--image", "small"]);
    s.wait_for("probe docker.io", Duration::from_secs(30));
    let big = image.largest_layer().digest.clone();
    let fetch = |url: String, digest: String| {
        std::thread::spawn(move || {
            let mut body = Vec::new();
            http()
                .get(format!("{url}/v2/{REPO}/blobs/{digest}"))
                .send()
                .and_then(|mut r| r.copy_to(&mut body))
                .map(|_| lab::sha256(&body))
        })
    };
    let a = fetch(s.url.clone(), big.clone());
    std::thread::sleep(Duration::from_millis(300));
    let b = fetch(s.url.clone(), big.clone());
    // The second client joined the first one's download.
    std::thread::sleep(Duration::from_millis(300));
    let metrics = http()
        .get(format!("{}/metrics", s.url))
        .send()
        .and_then(|r| r.text())
        .expect("metrics");
    assert!(
        metrics.contains("dmirror_serve_joined_total 1"),
        "{metrics}"
    );
    // Stop the server while both transfers run: they finish first.
    let pid = s.pid();
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    for t in [a, b] {
        assert_eq!(
            t.join().unwrap().expect("transfer").as_str(),
            big,
            "{}",
            s.log()
        );
    }
    assert!(s.stop().success(), "{}", s.log());
    let log = s.log();
    assert!(log.contains("shutting down"), "{log}");
    let n = image.largest_layer().bytes.len();
    let line = format!("blob={big} status=200 bytes={n} source=slow cache=miss");
    assert_eq!(log.matches(&line).count(), 2, "{log}");

    let s = Serve::start(&lab, &mirrors, &["--image", "small"]);
    let mut conn = std::net::TcpStream::connect(s.authority()).expect("connect");
    use std::io::Write;
    let huge = format!(
        "GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let _ = conn.write_all(huge.as_bytes());
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "a 64 KiB request head was read: {answer:?}"
    );
    let ok = http()
        .get(format!("{}/v2/", s.url))
        .send()
        .expect("GET /v2/");
    assert_eq!(ok.status(), 200);
}

/// Bad input to serve and `apply --via`: a clear error, exit 2, nothing
/// written.
#[test]
fn bad_listen_via_and_install_options_exit_2() {
    let lab = Lab::new();
    let refused = format!("http://127.0.0.1:{}", lab.refused_port());
    let mirrors = toml_of(
        &lab,
        "m.toml",
        &[
            ("m".into(), refused, String::new()),
            upstream_entry(&lab, "docker.io"),
        ],
    );
    let run = |args: &[&str]| dmirror(&lab).args(args).output().expect("run");
    let out = run(&[
        "serve",
        "--listen",
        "localhost",
        "--mirrors",
        mirrors.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("give an address and port"),
        "{}",
        stderr(&out)
    );
    // TLS: a key without its certificate; a certificate that is not PEM;
    // an --allow that is not a network.
    let junk = lab.path("junk.pem");
    std::fs::write(&junk, "not a certificate\n").expect("write");
    let junk = junk.to_str().unwrap();
    let m = mirrors.to_str().unwrap();
    for (args, says) in [
        (
            vec!["serve", "--tls-key", junk, "--mirrors", m],
            "--tls-cert",
        ),
        (
            vec![
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--tls-cert",
                junk,
                "--tls-key",
                junk,
                "--mirrors",
                m,
                "--proxy",
                "none",
            ],
            "no certificate in it",
        ),
        (
            vec!["serve", "--allow", "10.0.0.0/33", "--mirrors", m],
            "give a network or an address",
        ),
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    let out = run(&[
        "apply",
        "--target",
        "podman",
        "--via",
        "ftp://127.0.0.1:1",
        "--proxy",
        "none",
        "--registries-conf",
        lab.path("r.conf").to_str().unwrap(),
        "--mirrors",
        mirrors.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--via"), "{}", stderr(&out));
    assert!(!lab.path("r.conf").exists());
    let units = lab.path("units");
    std::fs::create_dir_all(&units).unwrap();
    let out = run(&[
        "serve",
        "install",
        "--binary",
        env!("CARGO_BIN_EXE_dmirror"),
        "--unit-dir",
        units.to_str().unwrap(),
        "--",
        "--cache-dir",
        "/x\nExecStartPre=/bin/evil",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(!units.join("dmirror-serve.service").exists());
}

/// A network namespace acting as another machine, linked to this one by a
/// veth pair: this side `10.88.0.1`, the other `10.88.0.2` and `.3`.
struct OtherMachine {
    ns: String,
}

impl OtherMachine {
    fn new() -> OtherMachine {
        let ns = format!("dmt-{}", std::process::id());
        let sh = |c: &str| {
            let ok = Command::new("sh").arg("-c").arg(c).status();
            assert!(ok.is_ok_and(|s| s.success()), "failed: {c}");
        };
        sh(&format!("ip netns add {ns}"));
        let m = OtherMachine { ns: ns.clone() };
        sh(&format!(
            "ip link add dmt0h type veth peer name dmt0m netns {ns}"
        ));
        sh("ip addr add 10.88.0.1/24 dev dmt0h && ip link set dmt0h up");
        sh(&format!(
            "ip netns exec {ns} sh -c 'ip link set lo up && ip addr add 10.88.0.2/24 dev dmt0m && ip addr add 10.88.0.3/24 dev dmt0m && ip link set dmt0m up'"
        ));
        m
    }

    /// `program args` run on the other machine.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns, program])
            .args(args)
            .output()
            .expect("ip netns exec")
    }
}

impl Drop for OtherMachine {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// A CA and a certificate it signed for the IP address `ip`: (ca, cert, key).
fn certificate_for(lab: &Lab, ip: &str) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = lab::require("openssl", "openssl");
    let d = lab.path("tls");
    std::fs::create_dir_all(&d).expect("mkdir");
    let run = |args: &[&str]| {
        let out = Command::new(&openssl)
            .current_dir(&d)
            .args(args)
            .output()
            .expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
    };
    std::fs::write(d.join("ext"), format!("subjectAltName=IP:{ip}\n")).expect("ext");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=dmirror lab CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        &format!("/CN={ip}"),
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext",
    ]);
    (d.join("ca.crt"), d.join("server.crt"), d.join("server.key"))
}

/// Issue 17, item 2: a team cache. serve listens on this machine's address
/// with TLS; another machine (a second network namespace) copies an image
/// through it with skopeo, trusting the server's CA and nothing insecure;
/// without that CA it is refused; a client outside `--allow` gets 403;
/// this machine is always answered; plain HTTP on the port is refused.
#[test]
fn a_team_cache_over_tls_for_another_machine() {
    if isolate("a_team_cache_over_tls_for_another_machine") {
        return;
    }
    lab::require("skopeo", "skopeo");
    lab::require("curl", "curl");
    let mut lab = Lab::new();
    let origin = lab.registry("origin");
    let image = Image::synthetic(169, "amd64", &[MB, 64 * 1024]);
    origin.push(REPO, "latest", &image);
    let mirrors = toml_of(
        &lab,
        "m.toml",
        &[
            (
                "m".into(),
                format!("http://127.0.0.1:{}", origin.port),
                String::new(),
            ),
            upstream_entry(&lab, "docker.io"),
        ],
    );
    let other = OtherMachine::new();
    let (ca, cert, key) = certificate_for(&lab, "10.88.0.1");
    let port = lab::free_port().to_string();
    let s = Serve::start(
        &lab,
        &mirrors,
        &[
            "--image",
            "small",
            "--listen",
            &format!("0.0.0.0:{port}"),
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--allow",
            "10.88.0.2/32",
        ],
    );
    assert!(s.url.starts_with("https://"), "{}", s.url);
    s.wait_for("probe docker.io", Duration::from_secs(30));
    let remote = format!("docker://10.88.0.1:{port}/library/small:latest");

    // The other machine, trusting the CA: the image, verified.
    let certs = lab.path("certs");
    std::fs::create_dir_all(&certs).expect("mkdir");
    std::fs::copy(&ca, certs.join("ca.crt")).expect("ca");
    let dir = lab.path("oci");
    let oci = format!("oci:{}", dir.display());
    let out = other.run(
        "skopeo",
        &[
            "copy",
            "--retry-times",
            "0",
            "--src-cert-dir",
            certs.to_str().unwrap(),
            &remote,
            &oci,
        ],
    );
    assert!(
        out.status.success(),
        "skopeo copy: {}\n{}",
        stderr(&out),
        s.log()
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).expect("index"))
            .expect("json");
    assert_eq!(index["manifests"][0]["digest"], image.digest.as_str());
    assert!(s.log().contains("source=m"), "{}", s.log());

    // Without the CA: refused by the client, as it should be.
    let out = other.run("skopeo", &["inspect", "--retry-times", "0", &remote]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("certificate"), "{}", stderr(&out));

    // From an address outside --allow: 403 with the spec's error body.
    let ca_path = ca.to_str().unwrap().to_owned();
    let curl = |args: &[&str]| -> Vec<String> {
        [
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            &ca_path,
        ]
        .iter()
        .chain(args)
        .map(|a| a.to_string())
        .collect()
    };
    let url = format!("https://10.88.0.1:{port}/v2/");
    let run_curl = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        other.run("curl", &args)
    };
    let out = run_curl(curl(&["--interface", "10.88.0.3", &url]));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "403", "{}", s.log());
    let out = run_curl(curl(&["--interface", "10.88.0.2", &url]));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    // This machine always; plain HTTP on the TLS port never.
    let local = format!("https://127.0.0.1:{port}/v2/");
    let out = Command::new("curl")
        .args(["-k"])
        .args(curl(&[&local]))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    let out = Command::new("curl")
        .args(curl(&[&format!("http://127.0.0.1:{port}/v2/")]))
        .output()
        .expect("curl");
    assert_ne!(String::from_utf8_lossy(&out.stdout), "200");
    let out = Command::new("curl")
        .args(["-s", "-k", &format!("https://127.0.0.1:{port}/metrics")])
        .output()
        .expect("curl");
    let metrics = String::from_utf8_lossy(&out.stdout);
    let failed: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("dmirror_serve_tls_handshake_failures_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(failed >= 1, "{metrics}");
    assert!(
        metrics.contains("kind=\"denied\",status=\"403\"} 1"),
        "{metrics}"
    );
}

/// Issue 17, item 4: the example alerts pass promtool, and every metric
/// they and the dashboard name is one a running server exports (so they
/// cannot drift from the code).
#[test]
fn contrib_alerts_and_dashboard_name_real_metrics() {
    let lab = Lab::new();
    let mirrors = toml_of(
        &lab,
        "m.toml",
        &[
            (
                "m".into(),
                format!("http://127.0.0.1:{}", lab.refused_port()),
                String::new(),
            ),
            upstream_entry(&lab, "docker.io"),
        ],
    );
    let s = Serve::start(&lab, &mirrors, &["--image", "small"]);
    let metrics = http()
        .get(format!("{}/metrics", s.url))
        .send()
        .and_then(|r| r.text())
        .expect("metrics");
    let exported: std::collections::HashSet<&str> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib");
    let rules = root.join("prometheus/dmirror-serve-alerts.yml");
    let dashboard = root.join("grafana/dmirror-serve.json");
    let out = Command::new(lab::require("promtool", "prometheus"))
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    let dash: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&dashboard).expect("dashboard")).expect("json");
    let mut named = 0;
    for text in [
        std::fs::read_to_string(&rules).expect("rules"),
        dash.to_string(),
    ] {
        for (i, _) in text.match_indices("dmirror_serve_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                exported.contains(name.as_str()),
                "{name} is not exported:\n{metrics}"
            );
            named += 1;
        }
    }
    assert!(named >= 10, "the files name {named} metrics");
}
