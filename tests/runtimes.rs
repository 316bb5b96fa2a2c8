//! `dmirror apply --target containerd|podman` against the lab: a real
//! containerd pulls through the hosts.toml files dmirror wrote, skopeo
//! resolves through the registries.conf it wrote, each for Docker Hub and
//! for ghcr.io through a per-registry and a prefix mirror. What the user
//! had in those files survives; bad files are refused untouched.
//!
//! containerd and skopeo fall back to the upstream registry when every
//! mirror fails, so the tests that run them do so in a network namespace
//! holding only loopback: a pull that succeeds there went through a mirror.

mod lab;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lab::dockerd::{isolate, Containerd};
use lab::{dmirror, Front, Image, Lab};

const MB: usize = 1024 * 1024;

struct World {
    lab: Lab,
    mirrors: PathBuf,
    urls: std::collections::HashMap<String, String>,
}

/// One origin registry seen through four fronts: a Docker Hub mirror, a
/// ghcr.io mirror at its root (`sub`), a prefix mirror of both (`pre`),
/// and a dead one. `owner/root-only` exists only at the root,
/// `ghcr.io/owner/prefix-only` only under the prefix: pulling each proves
/// which kind of host entry worked.
fn world() -> World {
    let mut lab = Lab::new();
    let origin = lab.registry("origin");
    let hub = Image::synthetic(81, "amd64", &[MB, 64 * 1024]);
    origin.push("library/small", "latest", &hub);
    origin.push("docker.io/library/small", "latest", &hub);
    let app = Image::synthetic(82, "amd64", &[MB]);
    origin.push("owner/app", "v1", &app);
    origin.push("ghcr.io/owner/app", "v1", &app);
    origin.push(
        "owner/root-only",
        "v1",
        &Image::synthetic(83, "amd64", &[MB]),
    );
    origin.push(
        "ghcr.io/owner/prefix-only",
        "v1",
        &Image::synthetic(84, "amd64", &[MB]),
    );
    let proxy = || Front::Proxy {
        upstream: origin.port,
        rate: None,
    };
    let urls = lab.nginx(&[("hub", proxy()), ("sub", proxy()), ("pre", proxy())]);
    let dead = format!("http://127.0.0.1:{}", lab.refused_port());
    let mirrors = lab.mirrors_toml(
        "mirrors.toml",
        &[
            ("dead", dead, "prefix_for = [\"ghcr.io\"]"),
            ("hub", urls["hub"].clone(), ""),
            ("sub", urls["sub"].clone(), "registry = \"ghcr.io\""),
            (
                "pre",
                urls["pre"].clone(),
                "prefix_for = [\"docker.io\", \"ghcr.io\"]",
            ),
        ],
    );
    World { lab, mirrors, urls }
}

fn apply(w: &World, target: &str, file_flag: &str, file: &Path, extra: &[&str]) -> Output {
    dmirror(&w.lab)
        .args(["apply", "--target", target])
        .args(["--image", "small", "--image", "ghcr.io/owner/app:v1"])
        .args(["--timeout", "2s", "--budget", "1s", "--json", "--mirrors"])
        .arg(&w.mirrors)
        .arg(file_flag)
        .arg(file)
        .args(extra)
        .output()
        .expect("run dmirror apply")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(out)
        )
    })
}

/// The report of one registry from `apply --json`.
fn registry<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["registries"]
        .as_array()
        .expect("registries")
        .iter()
        .find(|r| r["registry"] == name)
        .unwrap_or_else(|| panic!("no report for {name}: {v}"))
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string").to_owned())
        .collect()
}

/// Issue 6: apply writes one hosts.toml per registry — working mirrors
/// best first, the dead one left out, the prefix mirror with its
/// `/v2/<registry>` root and `override_path` — keeps what the user had in
/// an existing file, and a real containerd pulls Docker Hub and ghcr.io
/// images through them (both kinds of ghcr.io mirror).
#[test]
fn containerd_pulls_through_the_hosts_files_apply_wrote() {
    if isolate("containerd_pulls_through_the_hosts_files_apply_wrote") {
        return;
    }
    let w = world();
    let hosts = w.lab.path("certs.d");
    let hub_file = hosts.join("docker.io/hosts.toml");
    std::fs::create_dir_all(hub_file.parent().unwrap()).unwrap();
    let mine = "# docker.io, by the platform team\nserver = \"https://registry-1.docker.io\"\n\n[host.\"https://stale-blog-list.invalid\"]\n  capabilities = [\"pull\", \"resolve\"]\n";
    std::fs::write(&hub_file, mine).unwrap();

    let out = apply(&w, "containerd", "--hosts-dir", &hosts, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["target"], "containerd");
    let hub = registry(&v, "docker.io");
    assert_eq!(hub["outcome"], "written", "{hub}");
    assert_eq!(
        strings(&hub["old"]),
        ["https://stale-blog-list.invalid"],
        "{hub}"
    );
    let mut hub_new = strings(&hub["new"]);
    hub_new.sort();
    let mut want = vec![
        w.urls["hub"].clone(),
        format!("{}/v2/docker.io", w.urls["pre"]),
    ];
    want.sort();
    assert_eq!(hub_new, want, "{hub}");
    let gh = registry(&v, "ghcr.io");
    assert_eq!(gh["outcome"], "written", "{gh}");
    assert_eq!(gh["image"], "ghcr.io/owner/app:v1");
    let mut gh_new = strings(&gh["new"]);
    gh_new.sort();
    let mut want = vec![
        w.urls["sub"].clone(),
        format!("{}/v2/ghcr.io", w.urls["pre"]),
    ];
    want.sort();
    assert_eq!(gh_new, want, "{gh}");
    let statuses: Vec<_> = gh["mirrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].as_str().unwrap(), m["status"].as_str().unwrap()))
        .collect();
    assert!(statuses.contains(&("dead", "unreachable")), "{statuses:?}");

    let written = std::fs::read_to_string(&hub_file).unwrap();
    assert!(
        written.starts_with(
            "# docker.io, by the platform team\nserver = \"https://registry-1.docker.io\"\n"
        ),
        "{written}"
    );
    assert!(!written.contains("stale-blog-list"), "{written}");
    assert_eq!(
        std::fs::read_to_string(hosts.join("docker.io/hosts.toml.dmirror-backup")).unwrap(),
        mine
    );
    let gh_text = std::fs::read_to_string(hosts.join("ghcr.io/hosts.toml")).unwrap();
    let gh_doc: toml::Table = toml::from_str(&gh_text).unwrap();
    assert_eq!(gh_doc["server"].as_str(), Some("https://ghcr.io"));
    let pre_key = format!("{}/v2/ghcr.io", w.urls["pre"]);
    assert_eq!(
        gh_doc["host"][&pre_key]["override_path"].as_bool(),
        Some(true),
        "{gh_text}"
    );

    let c = Containerd::start(&w.lab.path("containerd"));
    let hosts_dir = hosts.to_str().unwrap();
    for image in [
        "docker.io/library/small:latest",
        "ghcr.io/owner/root-only:v1",
        "ghcr.io/owner/prefix-only:v1",
    ] {
        let out = c.ctr(&["images", "pull", "--hosts-dir", hosts_dir, image]);
        assert!(
            out.status.success(),
            "ctr pull {image}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
    }
    // Without the files there is no way to these images from here.
    let out = c.ctr(&["images", "pull", "ghcr.io/owner/app:v1"]);
    assert!(!out.status.success(), "pulled without the hosts files");

    // A second apply finds the files as they should be: nothing written.
    let before = std::fs::read_to_string(&hub_file).unwrap();
    let out = apply(&w, "containerd", "--hosts-dir", &hosts, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(registry(&v, "docker.io")["outcome"], "unchanged", "{v}");
    assert_eq!(std::fs::read_to_string(&hub_file).unwrap(), before);
}

/// Issue 6: apply writes registries.conf `[[registry]]` entries with
/// `[[registry.mirror]]` lists (http mirrors `insecure`), keeps the user's
/// other settings, and skopeo resolves Docker Hub and ghcr.io images
/// through them.
#[test]
fn skopeo_resolves_through_the_registries_conf_apply_wrote() {
    if isolate("skopeo_resolves_through_the_registries_conf_apply_wrote") {
        return;
    }
    lab::require("skopeo", "skopeo");
    let w = world();
    let conf = w.lab.path("registries.conf");
    let mine = "unqualified-search-registries = [\"docker.io\"]\n\n# never from here\n[[registry]]\nlocation = \"blocked.example\"\nblocked = true\n";
    std::fs::write(&conf, mine).unwrap();

    let out = apply(&w, "podman", "--registries-conf", &conf, &["--top", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["target"], "podman");
    let authority = |url: &str| url.trim_start_matches("http://").to_owned();
    let hub = registry(&v, "docker.io");
    assert_eq!(hub["outcome"], "written", "{hub}");
    assert_eq!(strings(&hub["new"]).len(), 1, "{hub}");
    let gh = registry(&v, "ghcr.io");
    let gh_new = strings(&gh["new"]);
    assert!(
        gh_new == [authority(&w.urls["sub"])]
            || gh_new == [format!("{}/ghcr.io", authority(&w.urls["pre"]))],
        "{gh}"
    );

    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(text.starts_with(mine.trim_end()), "{text}");
    let doc: toml::Table = toml::from_str(&text).unwrap();
    let regs = doc["registry"].as_array().unwrap();
    assert_eq!(regs.len(), 3, "{text}");
    for r in &regs[1..] {
        let m = &r["mirror"].as_array().unwrap()[0];
        assert_eq!(m["insecure"].as_bool(), Some(true), "{text}");
    }

    let inspect = |conf: &Path, image: &str| {
        Command::new("skopeo")
            .arg("--registries-conf")
            .arg(conf)
            .args(["inspect", "--raw", "--retry-times", "0"])
            .arg(format!("docker://{image}"))
            .output()
            .expect("run skopeo")
    };
    for image in ["docker.io/library/small:latest", "ghcr.io/owner/app:v1"] {
        let out = inspect(&conf, image);
        assert!(
            out.status.success(),
            "skopeo inspect {image}: {}",
            stderr(&out)
        );
    }
    // Both kinds of ghcr.io mirror work as skopeo reads them.
    let only = |name: &str, loc: String| {
        let p = w.lab.path(name);
        std::fs::write(
            &p,
            format!("[[registry]]\nlocation = \"ghcr.io\"\n[[registry.mirror]]\nlocation = \"{loc}\"\ninsecure = true\n"),
        )
        .unwrap();
        p
    };
    let out = inspect(
        &only("pre.conf", format!("{}/ghcr.io", authority(&w.urls["pre"]))),
        "ghcr.io/owner/prefix-only:v1",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // And without a mirror there is no way to the image from here.
    let none = w.lab.path("none.conf");
    std::fs::write(&none, "").unwrap();
    let out = inspect(&none, "ghcr.io/owner/app:v1");
    assert!(!out.status.success());
}

/// Bad input loses nothing: a malformed hosts.toml or a version 1
/// registries.conf is refused before any probing, untouched; `--dry-run`
/// shows the change and writes nothing; flags of one target are refused
/// for another.
#[test]
fn bad_files_and_dry_runs_change_nothing() {
    let w = world();
    let hosts = w.lab.path("certs.d");
    let bad = hosts.join("ghcr.io/hosts.toml");
    std::fs::create_dir_all(bad.parent().unwrap()).unwrap();
    std::fs::write(&bad, "server = \"https://ghcr.io\"\n[host.\"https://x\"\n").unwrap();
    let out = apply(&w, "containerd", "--hosts-dir", &hosts, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("ghcr.io/hosts.toml is not valid TOML") && err.contains("nothing was changed"),
        "{err}"
    );
    assert!(!err.contains("probing"), "probed before checking: {err}");
    assert!(!hosts.join("docker.io").exists());

    // A file that parses but that dmirror could not merge is refused as early.
    std::fs::write(&bad, "server = \"https://ghcr.io\"\nhost = \"https://x\"\n").unwrap();
    let out = apply(&w, "containerd", "--hosts-dir", &hosts, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("`host` must hold") && !err.contains("probing"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&bad).unwrap(),
        "server = \"https://ghcr.io\"\nhost = \"https://x\"\n"
    );

    std::fs::remove_file(&bad).unwrap();
    let out = apply(&w, "containerd", "--hosts-dir", &hosts, &["--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = json(&out);
    let hub = registry(&v, "docker.io");
    assert_eq!(hub["outcome"], "dry-run", "{hub}");
    assert!(
        hub["message"].as_str().unwrap().contains("+[host."),
        "{hub}"
    );
    assert!(!hosts.join("docker.io/hosts.toml").exists());

    // The metrics of a run over several registries are valid exposition
    // text: one family each, a series per registry.
    let promtool = lab::require("promtool", "prometheus");
    let dry_run = |format: &str| {
        let out = dmirror(&w.lab)
            .args(["apply", "--target", "containerd", "--dry-run"])
            .args(["--image", "small", "--image", "ghcr.io/owner/app:v1"])
            .args(["--timeout", "2s", "--budget", "1s", "--format", format])
            .arg("--mirrors")
            .arg(&w.mirrors)
            .arg("--hosts-dir")
            .arg(&hosts)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        out
    };
    let out = dry_run("prometheus");
    let text = String::from_utf8(out.stdout).unwrap();
    let metrics = w.lab.path("metrics.prom");
    std::fs::write(&metrics, &text).unwrap();
    let checked = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&metrics).unwrap())
        .output()
        .unwrap();
    assert!(checked.status.success(), "{}\n{text}", stderr(&checked));
    for line in [
        "dmirror_mirror_up{mirror=\"pre\",registry=\"ghcr.io\"",
        "dmirror_mirror_up{mirror=\"pre\",registry=\"docker.io\"",
        "dmirror_apply_outcome{target=\"containerd\",registry=\"ghcr.io\",outcome=\"dry-run\"} 1",
    ] {
        assert!(text.contains(line), "no {line} in\n{text}");
    }
    // Plain lines (the nightly job's journal) say which registry each is of.
    let plain = String::from_utf8(dry_run("plain").stdout).unwrap();
    for line in [
        "registry=docker.io rank=1 mirror=",
        "registry=ghcr.io rank=3 mirror=dead status=unreachable ",
        "apply target=containerd registry=ghcr.io outcome=dry-run ",
    ] {
        assert!(plain.contains(line), "no {line} in\n{plain}");
    }

    let conf = w.lab.path("v1.conf");
    let v1 = "[registries.search]\nregistries = [\"docker.io\"]\n";
    std::fs::write(&conf, v1).unwrap();
    let out = apply(&w, "podman", "--registries-conf", &conf, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("version 1"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), v1);

    let out = apply(&w, "docker", "--hosts-dir", &hosts, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--hosts-dir is for --target containerd"));

    // A registry with no image to probe with, named explicitly.
    let out = dmirror(&w.lab)
        .args(["apply", "--target", "containerd", "--registry", "ghcr.io"])
        .args(["--image", "small", "--mirrors"])
        .arg(&w.mirrors)
        .arg("--hosts-dir")
        .arg(&hosts)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not among --registry"),
        "{}",
        stderr(&out)
    );
}
