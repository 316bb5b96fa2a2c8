//! A hostile mirror against the real binary: each test drives one class of
//! attack or accident (issue 13) through `dmirror` and checks that it ends,
//! says why, and leaves nothing behind it should not. The mirror is an
//! in-process server: no real registry produces these faults.

mod lab;

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lab::hostile::{blob_reply, registry, registry_on, Content, Reply, REPO};
use lab::{dmirror, Image, Lab, OCI_MANIFEST};

/// The hostile mirror, and an upstream that refuses connections, so that
/// nothing falls back to the real Docker Hub.
fn mirrors(lab: &Lab, url: &str) -> std::path::PathBuf {
    with_refused_origin(lab, &[("evil", url.to_owned())])
}

/// `list` (name, url) and an upstream that refuses connections.
fn with_refused_origin(lab: &Lab, list: &[(&str, String)]) -> std::path::PathBuf {
    let refused = format!("http://127.0.0.1:{}", lab.refused_port());
    let mut entries: Vec<(&str, String, &str)> =
        list.iter().map(|(n, u)| (*n, u.clone(), "")).collect();
    entries.push(("origin", refused, "upstream = true"));
    lab.mirrors_toml("m.toml", &entries)
}

/// `dmirror pull --json` into an OCI layout with `timeout`: the exit must
/// be 0; the summary and how long it took.
fn pull_json(lab: &Lab, m: &Path, timeout: &str) -> (serde_json::Value, Duration) {
    let dest = format!("oci:{}", lab.path("out").display());
    let mut args = pull_args(m, &dest);
    let t = args.iter().position(|a| *a == "--timeout").unwrap();
    args[t + 1] = timeout;
    args.push("--json");
    let start = Instant::now();
    let out = run_bounded(dmirror(lab).args(args), Duration::from_secs(90));
    let took = start.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    (serde_json::from_slice(&out.stdout).unwrap(), took)
}

/// Source `name`'s record in a pull's JSON summary.
fn source(doc: &serde_json::Value, name: &str) -> serde_json::Value {
    doc["sources"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name))
        .cloned()
        .unwrap_or_default()
}

/// The hostile server as the registry's origin itself: no mirror passes
/// the probe's checks with such a manifest, so the pull goes to the origin
/// and its downloader meets the manifest's claims.
fn origin_only(lab: &Lab, url: &str) -> std::path::PathBuf {
    lab.mirrors_toml("o.toml", &[("origin", url.to_owned(), "upstream = true")])
}

/// Run to the end, but never longer than `limit`: a hang fails the test.
fn run_bounded(cmd: &mut std::process::Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn dmirror");
    let pid = child.id();
    let start = Instant::now();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d2 = done.clone();
    std::thread::spawn(move || {
        while !d2.load(std::sync::atomic::Ordering::Acquire) {
            if start.elapsed() > limit {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc_kill(pid as i32) };
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let out = child.wait_with_output().expect("wait");
    done.store(true, std::sync::atomic::Ordering::Release);
    assert!(
        start.elapsed() < limit,
        "dmirror did not finish within {limit:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

extern "C" {
    #[link_name = "kill"]
    fn c_kill(pid: i32, sig: i32) -> i32;
}

unsafe fn libc_kill(pid: i32) {
    c_kill(pid, 9);
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn pull_args<'a>(m: &'a Path, out: &'a str) -> Vec<&'a str> {
    vec![
        "pull",
        REPO,
        "--platform",
        "linux/amd64",
        "--mirrors",
        m.to_str().unwrap(),
        "--output",
        out,
        "--timeout",
        "3s",
    ]
}

/// A manifest with `layers` as its layer descriptors, over `image`'s config.
fn manifest_with(image: &Image, layers: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": lab::OCI_CONFIG, "digest": image.config.digest, "size": image.config.bytes.len()},
        "layers": layers,
    }))
    .unwrap()
}

#[test]
fn a_layer_declared_empty_that_is_not_ends_the_pull_with_the_reason() {
    let lab = Lab::new();
    let image = Image::synthetic(31, "amd64", &[4096]);
    let mut content = Content::of(&image);
    content.manifest = manifest_with(
        &image,
        serde_json::json!([{"mediaType": lab::OCI_LAYER_GZIP, "digest": image.layers[0].digest, "size": 0}]),
    );
    let url = registry(content, |_| None);
    let dir = lab.path("out");
    for m in [mirrors(&lab, &url), origin_only(&lab, &url)] {
        let out = run_bounded(
            dmirror(&lab).args(pull_args(&m, &format!("oci:{}", dir.display()))),
            Duration::from_secs(60),
        );
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&image.layers[0].digest)
                && (err.contains("size 0") || err.contains("is 0 bytes")),
            "the reason names the layer and its declared size: {err}"
        );
    }
}

#[test]
fn a_petabyte_declared_is_refused_for_want_of_space_and_leaves_nothing() {
    let lab = Lab::new();
    let image = Image::synthetic(32, "amd64", &[4096]);
    let mut content = Content::of(&image);
    let huge: u64 = 8 << 40; // 8 TiB
    content.manifest = manifest_with(
        &image,
        serde_json::json!([{"mediaType": lab::OCI_LAYER_GZIP, "digest": image.layers[0].digest, "size": huge}]),
    );
    let url = registry(content, |_| None);
    let m = origin_only(&lab, &url);
    let dir = lab.path("out");
    let out = run_bounded(
        dmirror(&lab).args(pull_args(&m, &format!("oci:{}", dir.display()))),
        Duration::from_secs(60),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("free") && err.contains(&lab.path("cache").display().to_string()),
        "the message names the space and the path: {err}"
    );
    // No partial larger than what was received (nothing was).
    let partial = lab.path("cache").join("dmirror/partial");
    for e in std::fs::read_dir(&partial).into_iter().flatten().flatten() {
        let len = e.metadata().unwrap().len();
        assert!(len <= 4096, "{} is {len} bytes", e.path().display());
    }
}

/// Against serve, a manifest declaring a layer larger than the cache's
/// disk could ever hold is answered "not enough space", and the blobs the
/// cache holds stay: making room evicts only for a size that would fit.
#[test]
fn a_petabyte_declared_through_serve_empties_no_cache() {
    let lab = Lab::new();
    let small = Image::synthetic(37, "amd64", &[16 * 1024]);
    let huge = Image::synthetic(38, "amd64", &[4096]);
    let layer = huge.layers[0].clone();
    let declared: u64 = 8 << 40; // 8 TiB
    let manifest = manifest_with(
        &huge,
        serde_json::json!([{"mediaType": lab::OCI_LAYER_GZIP, "digest": layer.digest, "size": declared}]),
    );
    let url = registry(Content::of(&small), move |req| {
        if req.path == "/v2/library/huge/manifests/latest" {
            return Some(Reply::new(200, manifest.clone()).header("Content-Type", OCI_MANIFEST));
        }
        // It even claims the size it declared.
        req.path.ends_with(&layer.digest).then(|| {
            Reply::new(200, layer.bytes.clone()).header("Content-Length", &declared.to_string())
        })
    });
    let m = mirrors(&lab, &url);
    let s = lab::serve::Serve::start(&lab, &m, &["--image", "small"]);
    s.wait_for("order: evil", Duration::from_secs(30));
    let http = reqwest::blocking::Client::new();
    let kept = &small.layers[0];
    let got = http
        .get(format!("{}/v2/{REPO}/blobs/{}", s.url, kept.digest))
        .send()
        .and_then(|r| r.bytes())
        .expect("a small layer through serve");
    assert_eq!(lab::sha256(&got), kept.digest);
    let cached = lab
        .path("cache")
        .join("dmirror/blobs/sha256")
        .join(kept.digest.trim_start_matches("sha256:"));
    assert!(cached.exists(), "{}", s.log());

    let r = http
        .get(format!("{}/v2/library/huge/manifests/latest", s.url))
        .header("Accept", OCI_MANIFEST)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", s.log());
    let r = http
        .get(format!(
            "{}/v2/library/huge/blobs/{}",
            s.url, huge.layers[0].digest
        ))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 507, "{}", s.log());
    let log = s.log();
    assert!(log.contains("not enough space"), "{log}");
    assert!(
        cached.exists(),
        "the cache was emptied for a size it could never hold\n{log}"
    );
}

#[test]
fn control_characters_and_floods_from_a_mirror_are_escaped_and_capped() {
    let lab = Lab::new();
    let image = Image::synthetic(33, "amd64", &[1024]);
    let flood = "A".repeat(200_000);
    let url = registry(Content::of(&image), move |req| {
        (req.path == "/v2/").then(|| {
            Reply::new(403, "\u{1b}[2J\u{1b}]0;pwned\u{7}denied\r\nline2")
                .header("WWW-Authenticate", &format!("Basic realm=\"{flood}\""))
        })
    });
    let m = mirrors(&lab, &url);
    for format in ["plain", "table"] {
        let out = run_bounded(
            dmirror(&lab).args([
                "probe",
                "--mirrors",
                m.to_str().unwrap(),
                "--no-history",
                "--timeout",
                "3s",
                "--format",
                format,
            ]),
            Duration::from_secs(60),
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &stderr(&out);
        for bad in ['\u{1b}', '\u{7}', '\r'] {
            assert!(!text.contains(bad), "{format}: raw {bad:?} in {text:?}");
        }
        let longest = text.lines().map(str::len).max().unwrap_or(0);
        assert!(longest < 2000, "{format}: a line of {longest} bytes");
    }
}

#[test]
fn oci_output_never_writes_through_a_planted_link() {
    let lab = Lab::new();
    let image = Image::synthetic(34, "amd64", &[8192]);
    let url = registry(Content::of(&image), |_| None);
    let m = mirrors(&lab, &url);
    let dir = lab.path("out");
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let victim = lab.path("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let hex = image.layers[0].digest.trim_start_matches("sha256:");
    // A dangling link where the blob goes, and links at every name a
    // temporary file could take.
    std::os::unix::fs::symlink(lab.path("nowhere"), blobs.join(hex)).unwrap();
    for name in [format!("{hex}.tmp"), format!("{hex}.dmirror-tmp")] {
        std::os::unix::fs::symlink(&victim, blobs.join(name)).unwrap();
    }
    let out = run_bounded(
        dmirror(&lab).args(pull_args(&m, &format!("oci:{}", dir.display()))),
        Duration::from_secs(60),
    );
    assert!(
        std::fs::read(&victim).unwrap() == b"precious",
        "the victim file was overwritten through a planted link"
    );
    assert!(
        !lab.path("nowhere").exists(),
        "wrote through the dangling link"
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("link"), "{}", stderr(&out));

    // A docker-archive whose name is a planted link: the link is replaced
    // by the archive, the file it pointed to is untouched.
    let archive = lab.path("image.tar");
    std::os::unix::fs::symlink(&victim, &archive).unwrap();
    let dest = format!("docker-archive:{}", archive.display());
    let out = run_bounded(
        dmirror(&lab).args(pull_args(&m, &dest)),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        std::fs::read(&victim).unwrap() == b"precious",
        "wrote through the archive's link"
    );
    assert!(std::fs::symlink_metadata(&archive).unwrap().is_file());
}

/// Links planted in the cache where a download writes (its partial, the
/// partial's lock, its list of ranges) are never written through: the pull
/// stops naming the link, or replaces a file it owns, and the file the link
/// points to is untouched.
#[test]
fn a_pull_never_writes_through_a_link_planted_in_the_cache() {
    let lab = Lab::new();
    let image = Image::synthetic(36, "amd64", &[64 * 1024]);
    let url = registry(Content::of(&image), |_| None);
    let m = mirrors(&lab, &url);
    let partial = lab.path("cache").join("dmirror/partial");
    std::fs::create_dir_all(&partial).unwrap();
    let victim = lab.path("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let hex = image.layers[0].digest.trim_start_matches("sha256:");
    let out_dir = format!("oci:{}", lab.path("out").display());
    let pull = || {
        run_bounded(
            dmirror(&lab).args(pull_args(&m, &out_dir)),
            Duration::from_secs(60),
        )
    };
    for planted in [format!("{hex}.lock"), hex.to_owned()] {
        let link = partial.join(&planted);
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let out = pull();
        assert_eq!(out.status.code(), Some(1), "{planted}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&link.display().to_string())
                && err.to_lowercase().contains("a link stands"),
            "{planted}: {err}"
        );
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious", "{planted}");
        std::fs::remove_file(&link).unwrap();
    }
    // The list of ranges is replaced, never written through.
    let link = partial.join(format!("{hex}.ranges"));
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let out = pull();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
}

/// Issue 13, item 9: a daemon.json that cannot be read unambiguously (a
/// duplicated key) or is not a regular file (a FIFO: reading it would
/// block) is refused at once with exit 2, before any probing, untouched.
#[test]
fn ambiguous_or_special_daemon_json_is_refused_at_once() {
    let lab = Lab::new();
    let url = registry(Content::of(&Image::synthetic(35, "amd64", &[1024])), |_| {
        None
    });
    let m = mirrors(&lab, &url);
    let apply = |daemon_json: &Path| {
        run_bounded(
            dmirror(&lab)
                .env(
                    "DOCKER_HOST",
                    format!("unix://{}", lab.path("no.sock").display()),
                )
                .args(["apply", "--reload", "--mirrors", m.to_str().unwrap()])
                .args(["--daemon-json", daemon_json.to_str().unwrap()])
                .args(["--dockerd-pidfile", lab.path("no.pid").to_str().unwrap()]),
            Duration::from_secs(30),
        )
    };
    let dup = lab.path("dup.json");
    let text = "{\r\n  \"debug\": true,\r\n  \"debug\": false\r\n}\r\n";
    std::fs::write(&dup, text).unwrap();
    let out = apply(&dup);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("more than once"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("probing"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&dup).unwrap(), text);

    let fifo = lab.path("fifo.json");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let out = apply(&fifo);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a regular file"),
        "{}",
        stderr(&out)
    );
}

/// Issue 13, item 9: apply leaves every other key of daemon.json as it
/// was, byte for byte (numbers, escapes, CRLF), in what --dry-run shows.
#[test]
fn dry_run_changes_only_the_mirror_list() {
    let lab = Lab::new();
    let image = Image::synthetic(36, "amd64", &[1024]);
    let url = registry(Content::of(&image), |_| None);
    let m = lab.mirrors_toml("m.toml", &[("good", url.clone(), "")]);
    let file = lab.path("daemon.json");
    let text = "{\r\n  \"max-concurrent-downloads\": 3,\r\n  \"labels\": [\"x=\\u00e9\"],\r\n  \"registry-mirrors\": []\r\n}\r\n";
    std::fs::write(&file, text).unwrap();
    let out = run_bounded(
        dmirror(&lab)
            .env(
                "DOCKER_HOST",
                format!("unix://{}", lab.path("no.sock").display()),
            )
            .args([
                "apply",
                "--dry-run",
                "--json",
                "--no-history",
                "--timeout",
                "3s",
            ])
            .args(["--image", REPO, "--mirrors", m.to_str().unwrap()])
            .args(["--daemon-json", file.to_str().unwrap()])
            .args(["--dockerd-pidfile", lab.path("no.pid").to_str().unwrap()]),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let diff = doc["apply"]["message"].as_str().unwrap();
    let changed: Vec<&str> = diff
        .lines()
        .filter(|l| {
            (l.starts_with('+') || l.starts_with('-'))
                && !l.starts_with("+++")
                && !l.starts_with("---")
        })
        .collect();
    let root = url.trim_end_matches('/');
    assert_eq!(
        changed,
        [
            "-  \"registry-mirrors\": []",
            "+  \"registry-mirrors\": [",
            &format!("+    \"{root}\""),
            "+  ]",
        ],
        "{diff}"
    );
    assert!(diff.contains("+  ]\r\n"), "CRLF line ends kept: {diff:?}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        text,
        "dry run wrote"
    );
}

/// Issue 13, item 8: a Docker schema-2 image written as an OCI layout reads
/// in skopeo (inspect and copy), like an OCI image does.
#[test]
fn oci_layouts_of_docker_images_read_in_skopeo() {
    const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    let lab = Lab::new();
    let image = Image::synthetic(37, "amd64", &[4096, 2048]);
    let mut content = Content::of(&image);
    content.manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": image.config.digest, "size": image.config.bytes.len()},
        "layers": image.layers.iter().map(|l| serde_json::json!({
            "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": l.digest, "size": l.bytes.len()
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    let docker_digest = lab::sha256(&content.manifest);
    let manifest = content.manifest.clone();
    let url = registry(content, move |req| {
        // Serve the Docker type as such.
        (req.path.contains("/manifests/")).then(|| {
            Reply::new(200, manifest.clone())
                .header("Content-Type", DOCKER_MANIFEST)
                .header("Docker-Content-Digest", &docker_digest)
        })
    });
    let m = mirrors(&lab, &url);
    for (i, tagged) in [true, false].into_iter().enumerate() {
        let dir = lab.path(&format!("out{i}"));
        let out = run_bounded(
            dmirror(&lab).args(pull_args(&m, &format!("oci:{}", dir.display()))),
            Duration::from_secs(60),
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let skopeo = lab::require("skopeo", "skopeo");
        let name = if tagged {
            format!("oci:{}:latest", dir.display())
        } else {
            format!("oci:{}", dir.display())
        };
        let inspect = std::process::Command::new(&skopeo)
            .args(["inspect", &name])
            .output()
            .unwrap();
        assert!(
            inspect.status.success(),
            "skopeo inspect {name}: {}",
            stderr(&inspect)
        );
        let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
        let layers: Vec<&str> = v["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l.as_str())
            .collect();
        let want: Vec<&str> = image.layers.iter().map(|l| l.digest.as_str()).collect();
        assert_eq!(layers, want);
        let copy_to = lab.path(&format!("copy{i}"));
        let copy = std::process::Command::new(&skopeo)
            .args(["copy", &name, &format!("dir:{}", copy_to.display())])
            .output()
            .unwrap();
        assert!(
            copy.status.success(),
            "skopeo copy {name}: {}",
            stderr(&copy)
        );
    }
}

/// Issue 13, item 12: when every mirror fails to connect the same way, one
/// sentence says the network looks down, instead of leaving the user to
/// read a table of dead mirrors.
#[test]
fn offline_is_one_message() {
    let lab = Lab::new();
    let entries: Vec<(String, String)> = (0..4)
        .map(|i| {
            (
                format!("m{i}"),
                format!("http://127.0.0.1:{}", lab.refused_port()),
            )
        })
        .collect();
    let refs: Vec<(&str, String, &str)> = entries
        .iter()
        .map(|(n, u)| (n.as_str(), u.clone(), ""))
        .collect();
    let m = lab.mirrors_toml("m.toml", &refs);
    let out = run_bounded(
        dmirror(&lab).args([
            "probe",
            "--no-history",
            "--format",
            "plain",
            "--mirrors",
            m.to_str().unwrap(),
        ]),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.matches("looks down").count(), 1, "{err}");
    assert!(err.contains("refused"), "{err}");

    // One mirror that answers: no such note.
    let url = registry(Content::of(&Image::synthetic(38, "amd64", &[1024])), |_| {
        None
    });
    let mut with_good = refs.clone();
    with_good.push(("good", url, ""));
    let m = lab.mirrors_toml("m2.toml", &with_good);
    let out = run_bounded(
        dmirror(&lab).args([
            "probe",
            "--no-history",
            "--format",
            "plain",
            "--image",
            REPO,
            "--mirrors",
            m.to_str().unwrap(),
        ]),
        Duration::from_secs(30),
    );
    assert!(!stderr(&out).contains("looks down"), "{}", stderr(&out));
}

/// A registry serving `image` whose blob transfers collapse to a trickle
/// after the probe's first-bytes request (which stays fast).
fn collapsing(image: &Image) -> String {
    registry(Content::of(image), |req| {
        let probe = req.header("Range") == Some("bytes=0-65535");
        (req.path.contains("/blobs/") && !probe && req.method == "GET").then(|| Reply {
            status: 206,
            headers: Vec::new(),
            body: vec![0u8; 4096],
            trickle: Some(Duration::from_millis(200)),
            piece: 1,
        })
    })
}

/// Issue 13, item 4: a mirror whose rate collapses after the probe is
/// dropped once it falls far behind the others; the pull completes.
#[test]
fn a_mirror_that_collapses_to_a_trickle_is_dropped() {
    let lab = Lab::new();
    let image = Image::synthetic(39, "amd64", &[6 << 20]);
    let good = registry(Content::of(&image), |_| None);
    let slow = collapsing(&image);
    let m = with_refused_origin(&lab, &[("good", good), ("slow", slow)]);
    let (doc, _) = pull_json(&lab, &m, "3s");
    let slow = source(&doc, "slow");
    let why = slow["dropped"].as_str().unwrap_or_default();
    assert!(why.contains("far later"), "{doc}");
}

/// Issue 13, item 4: a lone mirror below the floor fails the pull with that
/// reason, in bounded time, instead of trickling for hours.
#[test]
fn a_lone_trickle_fails_the_pull_at_the_floor() {
    let lab = Lab::new();
    let image = Image::synthetic(40, "amd64", &[6 << 20]);
    let slow = collapsing(&image);
    let m = with_refused_origin(&lab, &[("slow", slow)]);
    let dir = lab.path("out");
    let out = run_bounded(
        dmirror(&lab).args(pull_args(&m, &format!("oci:{}", dir.display()))),
        Duration::from_secs(120),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("floor") && err.contains("slow"), "{err}");
}

/// Issue 13, item 5: the disk filling up mid-pull is the disk's fault: the
/// pull stops naming the path and the cause, blames no mirror, and leaves
/// no partial file behind. The cache is a 4 MB tmpfs in a private mount
/// namespace, filled by another writer while the layer downloads.
#[test]
fn a_full_disk_is_the_disks_fault() {
    if std::env::var_os("DMIRROR_TEST_IN_MOUNT_NS").is_none() {
        let status = std::process::Command::new(lab::require("unshare", "util-linux"))
            .args(["-m", "--propagation", "private", "--"])
            .arg(std::env::current_exe().unwrap())
            .args(["a_full_disk_is_the_disks_fault", "--exact", "--nocapture"])
            .env("DMIRROR_TEST_IN_MOUNT_NS", "1")
            .status()
            .unwrap();
        assert!(status.success(), "failed in its mount namespace");
        return;
    }
    let lab = Lab::new();
    let cache = lab.path("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&cache)
        .status()
        .unwrap();
    assert!(mounted.success());
    let image = Image::synthetic(41, "amd64", &[3 << 20]);
    // A pacing front over the real registry's bytes.
    let content = Content::of(&image);
    let blob = content.blobs[&image.layers[0].digest].clone();
    let layer = image.layers[0].digest.clone();
    let url = registry(content, move |req| {
        let probe = req.header("Range") == Some("bytes=0-65535");
        if !(req.path.ends_with(&layer) && !probe && req.method == "GET") {
            return None;
        }
        Some(Reply {
            trickle: Some(Duration::from_millis(100)),
            piece: 64 * 1024,
            ..blob_reply(req, &blob)
        })
    });
    let m = mirrors(&lab, &url);
    let dir = lab.path("out");
    let dest = format!("oci:{}", dir.display());
    let child = dmirror(&lab)
        .env("XDG_CACHE_HOME", &cache)
        .args(pull_args(&m, &dest))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the layer is on its way, another writer takes the rest.
    let partial = cache.join("dmirror/partial");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        let growing = std::fs::read_dir(&partial)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.metadata().is_ok_and(|m| m.len() > 0));
        if growing {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut filler = std::fs::File::create(cache.join("filler")).unwrap();
    let zeros = vec![0u8; 64 * 1024];
    while std::io::Write::write_all(&mut filler, &zeros).is_ok() {}
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("No space left") && err.contains(&cache.display().to_string()),
        "names the cause and the path: {err}"
    );
    assert!(err.contains("nothing is wrong with the mirrors"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&partial)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().ends_with(".ranges"))
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "partials left behind: {left:?}");
    let _ = std::process::Command::new("umount").arg(&cache).status();
}

/// Issue 14, item 7: IPv6 mirror URLs work in probe, pull and the apply
/// targets' files.
#[test]
fn ipv6_mirrors_work() {
    let lab = Lab::new();
    let image = Image::synthetic(42, "amd64", &[2048]);
    let url = registry_on("::1", Content::of(&image), |_| None);
    assert!(url.starts_with("http://[::1]:"), "{url}");
    let m = lab.mirrors_toml("m.toml", &[("v6", url.clone(), "")]);
    let out = run_bounded(
        dmirror(&lab).args([
            "probe",
            "--json",
            "--no-history",
            "--image",
            REPO,
            "--mirrors",
            m.to_str().unwrap(),
        ]),
        Duration::from_secs(30),
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["mirrors"][0]["status"], "ok", "{doc}");

    let dir = lab.path("out");
    let dest = format!("oci:{}", dir.display());
    let out = run_bounded(
        dmirror(&lab).args(pull_args(&m, &dest)),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let conf = lab.path("registries.conf");
    let out = run_bounded(
        dmirror(&lab).args([
            "apply",
            "--target",
            "podman",
            "--json",
            "--no-history",
            "--image",
            REPO,
            "--mirrors",
            m.to_str().unwrap(),
            "--registries-conf",
            conf.to_str().unwrap(),
        ]),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(&conf).unwrap();
    let authority = url.trim_start_matches("http://");
    assert!(
        text.contains(&format!("location = \"{authority}\"")),
        "{text}"
    );
    let daemon_json = lab.path("daemon.json");
    let out = run_bounded(
        dmirror(&lab)
            .env(
                "DOCKER_HOST",
                format!("unix://{}", lab.path("no.sock").display()),
            )
            .args([
                "apply",
                "--json",
                "--no-history",
                "--image",
                REPO,
                "--mirrors",
                m.to_str().unwrap(),
            ])
            .args(["--daemon-json", daemon_json.to_str().unwrap()])
            .args(["--dockerd-pidfile", lab.path("no.pid").to_str().unwrap()]),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&daemon_json).unwrap()).unwrap();
    assert_eq!(written["registry-mirrors"][0], url.as_str());
}

/// A fake Docker engine on a unix socket answering every request with a
/// recorded `/info` of Docker Engine 29 using the containerd image store.
fn fake_engine_29(sock: &Path) {
    let listener = std::os::unix::net::UnixListener::bind(sock).unwrap();
    std::thread::spawn(move || {
        let info = serde_json::json!({
            "ID": "recorded", "Driver": "overlayfs", "ServerVersion": "29.0.1",
            "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]],
            "RegistryConfig": {"Mirrors": []}, "ContainersRunning": 0,
            "HttpProxy": "", "HttpsProxy": "", "NoProxy": ""
        })
        .to_string();
        for conn in listener.incoming().take(1000) {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut conn, &mut buf);
            let _ = std::io::Write::write_all(
                &mut conn,
                format!(
                    "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{info}",
                    info.len()
                )
                .as_bytes(),
            );
        }
    });
}

/// Issue 14, item 4: an engine on the containerd image store (recorded
/// /info of Docker 29) reads certs.d/<registry>/hosts.toml: apply's dockerd
/// target plans those files too, beside daemon.json, and says why.
#[test]
fn docker_29_with_the_containerd_store_gets_hosts_files() {
    let lab = Lab::new();
    let image = Image::synthetic(43, "amd64", &[2048]);
    let url = registry(Content::of(&image), |_| None);
    let m = lab.mirrors_toml("m.toml", &[("good", url.clone(), "")]);
    let sock = lab.path("docker29.sock");
    fake_engine_29(&sock);
    let certs = lab.path("certs.d");
    let daemon_json = lab.path("daemon.json");
    let out = run_bounded(
        dmirror(&lab)
            .env("DOCKER_HOST", format!("unix://{}", sock.display()))
            .args([
                "apply",
                "--dry-run",
                "--json",
                "--no-history",
                "--image",
                REPO,
                "--proxy",
                "none",
            ])
            .args([
                "--mirrors",
                m.to_str().unwrap(),
                "--certs-dir",
                certs.to_str().unwrap(),
            ])
            .args(["--daemon-json", daemon_json.to_str().unwrap()])
            .args(["--dockerd-pidfile", lab.path("no.pid").to_str().unwrap()]),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("containerd image store"),
        "{}",
        stderr(&out)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["apply"]["outcome"], "dry-run", "{doc}");
    let hosts = &doc["hosts_files"];
    assert_eq!(hosts["target"], "docker-hosts", "{doc}");
    let hub = &hosts["registries"][0];
    assert_eq!(hub["registry"], "docker.io");
    assert_eq!(hub["outcome"], "dry-run");
    assert_eq!(
        hub["file"].as_str().unwrap(),
        certs.join("docker.io/hosts.toml").to_str().unwrap()
    );
    let diff = hub["message"].as_str().unwrap();
    assert!(
        diff.contains(&format!("+[host.\"{}\"]", url.trim_end_matches('/'))),
        "{diff}"
    );
    assert!(
        !certs.join("docker.io/hosts.toml").exists(),
        "dry run wrote"
    );
}

/// Issue 15, item 6: a pull starts once the tag's digest is settled; a
/// mirror that accepts connections and never answers does not hold it back
/// for the whole --timeout.
#[test]
fn a_hanging_mirror_does_not_delay_a_pull() {
    let mut lab = Lab::new();
    let image = Image::synthetic(44, "amd64", &[64 * 1024]);
    let good = registry(Content::of(&image), |_| None);
    let hang = format!("http://127.0.0.1:{}", lab.hanging_port());
    let m = with_refused_origin(&lab, &[("hang", hang), ("good", good)]);
    // A long timeout: waiting for the hanging mirror would show.
    let (doc, took) = pull_json(&lab, &m, "20s");
    assert!(
        took < Duration::from_secs(10),
        "the pull waited {took:?} for a mirror that never answers"
    );
    let good = source(&doc, "good");
    assert!(good["bytes"].as_u64().unwrap_or(0) > 0, "{doc}");
}

/// Issue 15, item 6: a mirror whose check ends after the pull started joins
/// it when it passes, and takes a share of the bytes.
#[test]
fn a_mirror_that_passes_late_joins_the_pull() {
    let lab = Lab::new();
    let image = Image::synthetic(45, "amd64", &[6 << 20]);
    let layer = image.layers[0].digest.clone();
    let blob = image.layers[0].bytes.clone();
    // The first mirror is healthy at once but slow to send the layer.
    let paced = registry(Content::of(&image), move |req| {
        if !(req.path.ends_with(&layer) && req.method == "GET") {
            return None;
        }
        Some(Reply {
            trickle: Some(Duration::from_millis(50)),
            piece: 32 * 1024,
            ..blob_reply(req, &blob)
        })
    });
    // The second answers its first request only after 1.5 s, then is fast.
    let late = registry(Content::of(&image), |req| {
        if req.path == "/v2/" {
            std::thread::sleep(Duration::from_millis(1500));
        }
        None
    });
    let m = with_refused_origin(&lab, &[("paced", paced), ("late", late)]);
    let (doc, _) = pull_json(&lab, &m, "3s");
    let late = source(&doc, "late");
    assert!(
        late["bytes"].as_u64().unwrap_or(0) > 0,
        "the late mirror took no share: {doc}"
    );
}

/// The metrics of an apply that also planned Docker 29's hosts files: one
/// series per mirror and registry, both targets' outcomes, valid for
/// promtool.
#[test]
fn docker_29_metrics_count_each_probe_once() {
    let lab = Lab::new();
    let image = Image::synthetic(46, "amd64", &[2048]);
    let url = registry(Content::of(&image), |_| None);
    let m = lab.mirrors_toml("m.toml", &[("good", url, "")]);
    let sock = lab.path("docker29.sock");
    fake_engine_29(&sock);
    let out = run_bounded(
        dmirror(&lab)
            .env("DOCKER_HOST", format!("unix://{}", sock.display()))
            .args([
                "apply",
                "--dry-run",
                "-f",
                "prometheus",
                "--no-history",
                "--image",
                REPO,
                "--proxy",
                "none",
            ])
            .args([
                "--mirrors",
                m.to_str().unwrap(),
                "--certs-dir",
                lab.path("certs.d").to_str().unwrap(),
            ])
            .args(["--daemon-json", lab.path("daemon.json").to_str().unwrap()])
            .args(["--dockerd-pidfile", lab.path("no.pid").to_str().unwrap()]),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("target=\"docker-hosts\"") && text.contains("target=\"docker\""),
        "{text}"
    );
    let series: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let unique: std::collections::HashSet<&str> = series
        .iter()
        .map(|l| l.rsplit_once(' ').map_or(*l, |x| x.0))
        .collect();
    assert_eq!(unique.len(), series.len(), "duplicate series:\n{text}");
    let check = std::process::Command::new(lab::require("promtool", "prometheus"))
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .output_with_stdin(&text);
    assert!(
        check.status.success(),
        "promtool: {}",
        String::from_utf8_lossy(&check.stderr)
    );
}

trait OutputWithStdin {
    fn output_with_stdin(&mut self, input: &str) -> Output;
}

impl OutputWithStdin for std::process::Command {
    fn output_with_stdin(&mut self, input: &str) -> Output {
        use std::io::Write as _;
        let mut child = self
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write");
        child.wait_with_output().expect("wait")
    }
}
