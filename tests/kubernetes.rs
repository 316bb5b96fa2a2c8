//! Issue 17, item 3: the Kubernetes manifests in `contrib/kubernetes/`
//! validate against the Kubernetes schemas (the `kubernetes-validate`
//! package, strict: no unknown field), and the node set-up they run —
//! the init container's `dmirror apply`, then the `serve` container — works
//! against a real containerd: its pulls go through serve for the registries
//! the list serves and, with `_default`, for every other one; with serve
//! down, containerd falls back to upstream.

mod lab;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lab::dockerd::{isolate, Containerd};
use lab::serve::Serve;
use lab::{dmirror, Image, Lab};

fn manifests() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/kubernetes");
    let mut all: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("contrib/kubernetes")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    all.sort();
    assert!(all.len() >= 2, "manifests: {all:?}");
    all
}

/// The `kubernetes-validate` virtualenv `.ci/run` installs.
fn venv_bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("KUBERNETES_VALIDATE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/k8s-validate"));
    let p = dir.join("bin").join(name);
    assert!(
        p.exists(),
        "{} not found: python3 -m venv /opt/k8s-validate && /opt/k8s-validate/bin/pip install kubernetes-validate (.ci/run does)",
        p.display()
    );
    p
}

fn validate(files: &[&Path]) -> Output {
    Command::new(venv_bin("kubernetes-validate"))
        .args(["--strict", "--no-warn"])
        .args(files)
        .output()
        .expect("run kubernetes-validate")
}

/// Every document of a YAML file, as JSON (PyYAML comes with the validator).
fn documents(file: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(venv_bin("python3"))
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
        ])
        .arg(file)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).expect("json")
}

#[test]
fn the_manifests_validate_against_the_kubernetes_schemas() {
    let files = manifests();
    for f in &files {
        let out = validate(&[f.as_path()]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {text}", f.display());
        let docs = documents(f).len();
        assert_eq!(
            text.matches(" passed for resource ").count(),
            docs,
            "{}: every document checked: {text}",
            f.display()
        );
    }
    // The README's manifests too (its yaml blocks, unindented).
    let lab = Lab::new();
    for (i, block) in readme_yaml().iter().enumerate() {
        let f = lab.path(&format!("readme-{i}.yaml"));
        std::fs::write(&f, block).unwrap();
        let out = validate(&[f.as_path()]);
        assert!(
            out.status.success(),
            "README.md's yaml block {i}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The validator does reject: a misspelt field and a wrong type.
    let node = files
        .iter()
        .find(|f| f.ends_with("node.yaml"))
        .expect("node.yaml");
    let node = std::fs::read_to_string(node).unwrap();
    for (from, to) in [
        ("hostNetwork: true", "hostNetwerk: true"),
        ("containerPort: 5280", "containerPort: \"five\""),
    ] {
        assert!(node.contains(from), "node.yaml no longer has {from}");
        let bad = lab.path("bad.yaml");
        std::fs::write(&bad, node.replace(from, to)).unwrap();
        let out = validate(&[bad.as_path()]);
        assert!(!out.status.success(), "{to} was accepted");
    }
}

/// The Kubernetes objects in ```yaml blocks of README.md (and its
/// translation), unindented.
fn readme_yaml() -> Vec<String> {
    let mut out = Vec::new();
    for readme in ["README.md", "README.zh-CN.md"] {
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(readme))
            .expect("README");
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            let Some(indent) = line.strip_suffix("```yaml") else {
                continue;
            };
            if !indent.trim().is_empty() {
                continue;
            }
            let block: Vec<&str> = lines
                .by_ref()
                .take_while(|l| l.trim() != "```")
                .map(|l| l.strip_prefix(indent).unwrap_or(l))
                .collect();
            // Kubernetes objects only (the README also shows registry configs).
            if block.iter().any(|l| l.starts_with("apiVersion:")) {
                out.push(block.join("\n") + "\n");
            }
        }
    }
    assert!(!out.is_empty(), "README.md has no yaml block");
    out
}

/// The pod spec of the named workload in `file`.
fn pod_of(file: &str, kind: &str, name: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib/kubernetes")
        .join(file);
    documents(&path)
        .into_iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind}/{name} not in {file}"))["spec"]["template"]["spec"]
        .clone()
}

fn container<'a>(pod: &'a serde_json::Value, list: &str, name: &str) -> &'a serde_json::Value {
    pod[list]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no {list} {name}"))
}

/// A container's args with every path under one of its mounts moved to
/// where the test keeps that volume (`volumes`: volume name → lab dir).
fn args_here(c: &serde_json::Value, volumes: &HashMap<&str, PathBuf>) -> Vec<String> {
    let mounts: Vec<(String, PathBuf)> = c["volumeMounts"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|m| {
                    let dir = volumes.get(m["name"].as_str()?)?;
                    Some((m["mountPath"].as_str()?.to_owned(), dir.clone()))
                })
                .collect()
        })
        .unwrap_or_default();
    c["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| {
            let a = a.as_str().expect("string arg");
            for (at, dir) in &mounts {
                if let Some(rest) = a.strip_prefix(at.as_str()) {
                    return format!("{}{rest}", dir.display());
                }
            }
            a.to_owned()
        })
        .collect()
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_node_set_up_points_a_real_containerd_at_serve() {
    if isolate("the_node_set_up_points_a_real_containerd_at_serve") {
        return;
    }
    let mut lab = Lab::new();
    let origin = lab.registry("origin");
    let small = Image::synthetic(81, "amd64", &[256 * 1024]);
    origin.push("library/small", "latest", &small);
    origin.push(
        "library/small",
        "v2",
        &Image::synthetic(82, "amd64", &[128 * 1024]),
    );
    origin.push(
        "team/app",
        "1",
        &Image::synthetic(83, "amd64", &[64 * 1024]),
    );
    // The list: a mirror of Docker Hub; upstream of Docker Hub and of
    // quay.io is the lab's registry too (nothing leaves the machine).
    let mirrors = lab.mirrors_toml(
        "lab.toml",
        &[
            ("hub", origin.url(), ""),
            (
                "hub-up",
                origin.url(),
                "upstream = true\nregistry = \"docker.io\"",
            ),
            (
                "quay-up",
                origin.url(),
                "upstream = true\nregistry = \"quay.io\"",
            ),
        ],
    );
    let pod = pod_of("node.yaml", "DaemonSet", "dmirror-node");
    assert_eq!(
        pod["hostNetwork"], true,
        "serve must be on the node's loopback"
    );
    let etc = lab.path("etc-containerd");
    let volumes: HashMap<&str, PathBuf> = [
        ("containerd-config", etc.clone()),
        ("cache", lab.path("node-cache")),
        ("state", lab.path("node-state")),
        ("mirrors", lab.path("config/dmirror")),
    ]
    .into_iter()
    .collect();
    for d in volumes.values() {
        std::fs::create_dir_all(d).unwrap();
    }
    // The ConfigMap's mirrors.toml is a valid addition to the list.
    let cm = documents(&Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/kubernetes/node.yaml"))
        .into_iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("ConfigMap");
    std::fs::write(
        volumes["mirrors"].join("mirrors.toml"),
        cm["data"]["mirrors.toml"].as_str().unwrap(),
    )
    .unwrap();
    ok(
        &dmirror(&lab).arg("list").output().unwrap(),
        "dmirror list with the ConfigMap's file",
    );

    // The init container runs before serve: --no-check writes anyway.
    let configure = container(&pod, "initContainers", "configure-containerd");
    let mut args = args_here(configure, &volumes);
    args.extend(["--mirrors".to_owned(), mirrors.display().to_string()]);
    ok(&dmirror(&lab).args(&args).output().unwrap(), "configure");
    // What the commented `_default` container adds.
    let mut default = args.clone();
    default.extend(["--registry".to_owned(), "_default".to_owned()]);
    ok(
        &dmirror(&lab).args(&default).output().unwrap(),
        "configure _default",
    );

    let hosts = etc.join("certs.d");
    let hub: toml::Table =
        toml::from_str(&std::fs::read_to_string(hosts.join("docker.io/hosts.toml")).unwrap())
            .unwrap();
    assert_eq!(hub["server"].as_str(), Some(origin.url().as_str()), "{hub}");
    let local = &hub["host"]["http://127.0.0.1:5280"];
    assert_eq!(local["dial_timeout"].as_str(), Some("200ms"), "{hub}");
    let fallback: toml::Table =
        toml::from_str(&std::fs::read_to_string(hosts.join("_default/hosts.toml")).unwrap())
            .unwrap();
    assert!(fallback.get("server").is_none(), "{fallback}");
    assert!(
        fallback["host"].get("http://127.0.0.1:5280").is_some(),
        "{fallback}"
    );

    // serve, as the DaemonSet's container runs it.
    let serve = container(&pod, "containers", "serve");
    let mut sargs = args_here(serve, &volumes);
    assert_eq!(sargs.first().map(String::as_str), Some("serve"));
    sargs.remove(0);
    let refs: Vec<&str> = sargs.iter().map(String::as_str).collect();
    let mut s = Serve::start(&lab, &mirrors, &refs);
    assert!(s.url.ends_with("127.0.0.1:5280"), "{}", s.url);

    let c = Containerd::start(&lab.path("containerd"));
    let hosts_dir = hosts.to_str().unwrap();
    for image in ["docker.io/library/small:latest", "quay.io/team/app:1"] {
        ok(
            &c.ctr(&["images", "pull", "--hosts-dir", hosts_dir, image]),
            image,
        );
    }
    s.wait_for(
        "registry=docker.io repo=library/small",
        std::time::Duration::from_secs(5),
    );
    s.wait_for(
        "registry=quay.io repo=team/app",
        std::time::Duration::from_secs(5),
    );

    // serve down: containerd goes to upstream, the pull still works.
    s.stop();
    ok(
        &c.ctr(&[
            "images",
            "pull",
            "--hosts-dir",
            hosts_dir,
            "docker.io/library/small:v2",
        ]),
        "pull with serve down",
    );
}
