//! The network as the user's Docker engine has it (issue 14): the engine's
//! own proxy (a real tinyproxy, configured as a real dockerd's), not the
//! shell's; TLS trust as Docker has it (the system store, Docker's certs.d
//! CAs and client certificates, behind real nginx TLS fronts with private
//! CAs made by openssl).

mod lab;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use lab::dockerd::{isolate, Dockerd};
use lab::{dmirror, free_port, require, Image, Lab};

const REPO: &str = "library/small";

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn probe(lab: &Lab, mirrors: &Path, extra: &[&str], env: &[(&str, String)]) -> serde_json::Value {
    let out = dmirror(lab)
        .args([
            "probe",
            "--json",
            "--no-history",
            "--image",
            REPO,
            "--timeout",
            "3s",
            "--budget",
            "1s",
        ])
        .arg("--mirrors")
        .arg(mirrors)
        .args(extra)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run dmirror");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stderr(&out)))
}

fn status<'a>(doc: &'a serde_json::Value, name: &str) -> &'a str {
    doc["mirrors"]
        .as_array()
        .expect("mirrors")
        .iter()
        .find(|m| m["name"] == name)
        .and_then(|m| m["status"].as_str())
        .unwrap_or("missing")
}

/// A tinyproxy on loopback that wants `login` (user, password) when
/// given; its port and log file.
fn tinyproxy(lab: &mut Lab, login: Option<(&str, &str)>) -> (u16, PathBuf) {
    let bin = require("tinyproxy", "tinyproxy");
    let port = free_port();
    let log = lab.path("tinyproxy.log");
    let conf = lab.path("tinyproxy.conf");
    std::fs::write(
        &conf,
        format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 30\nLogFile \"{}\"\nLogLevel Connect\nMaxClients 50\nAllow 127.0.0.1\nDisableViaHeader Yes\n{}",
            log.display(),
            login.map(|(u, p)| format!("BasicAuth {u} {p}\n")).unwrap_or_default()
        ),
    )
    .expect("write tinyproxy.conf");
    let child = Command::new(bin)
        .args(["-d", "-c"])
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tinyproxy");
    lab.adopt("tinyproxy", child, port);
    (port, log)
}

/// A real dockerd whose proxy (HTTP_PROXY and HTTPS_PROXY in its
/// environment, as a systemd drop-in sets them) is a real tinyproxy,
/// wanting `login` when given.
struct ProxiedEngine {
    /// The proxy's URL, with its login.
    proxy: String,
    port: u16,
    log: PathBuf,
    dockerd: Dockerd,
}

fn engine_behind_a_proxy(lab: &mut Lab, login: Option<(&str, &str)>) -> ProxiedEngine {
    let (port, log) = tinyproxy(lab, login);
    let proxy = match login {
        Some((u, p)) => format!("http://{u}:{p}@127.0.0.1:{port}"),
        None => format!("http://127.0.0.1:{port}"),
    };
    let config = lab.path("daemon.json");
    std::fs::write(&config, "{}\n").expect("write");
    let dockerd = Dockerd::start_with_env(
        &lab.path("docker"),
        &config,
        &[("HTTP_PROXY", &proxy), ("HTTPS_PROXY", &proxy)],
    );
    ProxiedEngine {
        proxy,
        port,
        log,
        dockerd,
    }
}

/// Issue 14, item 1: probe goes the engine's way. With a real dockerd whose
/// proxy is a real tinyproxy, the mirror is reached through that proxy,
/// whatever the shell says (a dead http_proxy must not matter), and the
/// output says so; the shell's proxy is used only with --proxy env.
#[test]
fn the_engines_proxy_not_the_shells() {
    if isolate("the_engines_proxy_not_the_shells") {
        return;
    }
    let mut lab = Lab::new();
    let origin = lab.registry("origin");
    origin.push(
        REPO,
        "latest",
        &Image::synthetic(60, "amd64", &[256 * 1024]),
    );
    let ProxiedEngine {
        proxy,
        log: proxy_log,
        dockerd: d,
        ..
    } = engine_behind_a_proxy(&mut lab, None);
    let m = lab.mirrors_toml("m.toml", &[("mirror", origin.url(), "")]);
    let dead = format!("http://127.0.0.1:{}", lab.refused_port());
    let shell = [
        ("DOCKER_HOST", d.host()),
        ("http_proxy", dead.clone()),
        ("HTTP_PROXY", dead.clone()),
        ("https_proxy", dead.clone()),
    ];

    let doc = probe(&lab, &m, &[], &shell);
    assert_eq!(status(&doc, "mirror"), "ok", "{doc}");
    let network = doc["network"].as_str().unwrap_or_default();
    assert!(
        network.contains(&proxy) && network.contains("Docker engine"),
        "{network}"
    );
    let log = std::fs::read_to_string(&proxy_log).unwrap_or_default();
    let origin_port = origin.port.to_string();
    assert!(
        log.contains(&origin_port),
        "tinyproxy saw no request for the mirror:\n{log}"
    );

    // The shell's proxy only when asked: here it is dead.
    let doc = probe(&lab, &m, &["--proxy", "env"], &shell);
    assert_eq!(status(&doc, "mirror"), "unreachable", "{doc}");
    // Direct when asked.
    let doc = probe(&lab, &m, &["--proxy", "none"], &shell);
    assert_eq!(status(&doc, "mirror"), "ok", "{doc}");
    assert_eq!(doc["network"], "direct");
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new(require("openssl", "openssl"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
}

/// A CA `name` in `dir`: name.key, name.crt.
fn ca(dir: &Path, name: &str) {
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
        ],
        dir,
    );
}

/// A certificate `name` signed by `ca`, for 127.0.0.1 (server) or a client.
fn leaf(dir: &Path, ca: &str, name: &str) {
    openssl(
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
        dir,
    );
    std::fs::write(
        dir.join(format!("{name}.ext")),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .expect("ext");
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.crt"),
        ],
        dir,
    );
}

/// Issue 14, item 2: trust what Docker trusts. Three TLS fronts of one
/// registry: one whose CA is in the system store (SSL_CERT_FILE), one whose
/// CA is only in certs.d, one that demands a client certificate (certs.d's
/// client.cert/client.key). With Docker's certs.d all three are ok; without
/// it only the first.
#[test]
fn tls_trust_as_docker_has_it() {
    let mut lab = Lab::new();
    let origin = lab.registry("origin");
    origin.push(
        REPO,
        "latest",
        &Image::synthetic(61, "amd64", &[128 * 1024]),
    );
    let pki = lab.path("pki");
    std::fs::create_dir_all(&pki).expect("mkdir");
    for c in ["system-ca", "private-ca", "client-ca"] {
        ca(&pki, c);
    }
    leaf(&pki, "system-ca", "system-server");
    leaf(&pki, "private-ca", "private-server");
    leaf(&pki, "client-ca", "client");
    let upstream = origin.port.to_string();
    let ports = [free_port(), free_port(), free_port()];
    let server = |port: u16, cert: &str, client_ca: Option<&str>| {
        let verify = client_ca
            .map(|c| {
                format!(
                    "    ssl_client_certificate {};\n    ssl_verify_client on;\n",
                    pki.join(format!("{c}.crt")).display()
                )
            })
            .unwrap_or_default();
        format!(
            "  server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {crt};\n    ssl_certificate_key {key};\n{verify}    location / {{\n      proxy_pass http://127.0.0.1:{upstream};\n      proxy_set_header Host $host:$server_port;\n    }}\n  }}\n",
            crt = pki.join(format!("{cert}.crt")).display(),
            key = pki.join(format!("{cert}.key")).display(),
        )
    };
    let servers = server(ports[0], "system-server", None)
        + &server(ports[1], "private-server", None)
        + &server(ports[2], "private-server", Some("client-ca"));
    lab.nginx_raw(&servers, &ports);

    let certs = lab.path("certs.d");
    for (i, port) in ports.iter().enumerate().skip(1) {
        let dir = certs.join(format!("127.0.0.1:{port}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::copy(pki.join("private-ca.crt"), dir.join("ca.crt")).expect("ca");
        if i == 2 {
            std::fs::copy(pki.join("client.crt"), dir.join("client.cert")).expect("cert");
            std::fs::copy(pki.join("client.key"), dir.join("client.key")).expect("key");
        }
    }
    let m = lab.mirrors_toml(
        "m.toml",
        &[
            ("system", format!("https://127.0.0.1:{}", ports[0]), ""),
            ("private", format!("https://127.0.0.1:{}", ports[1]), ""),
            ("mtls", format!("https://127.0.0.1:{}", ports[2]), ""),
        ],
    );
    let system_store = [(
        "SSL_CERT_FILE",
        pki.join("system-ca.crt").display().to_string(),
    )];
    let with = probe(
        &lab,
        &m,
        &["--certs-dir", certs.to_str().unwrap()],
        &system_store,
    );
    for name in ["system", "private", "mtls"] {
        assert_eq!(status(&with, name), "ok", "{name}: {with}");
    }
    let empty = lab.path("empty-certs.d");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let without = probe(
        &lab,
        &m,
        &["--certs-dir", empty.to_str().unwrap()],
        &system_store,
    );
    assert_eq!(status(&without, "system"), "ok", "{without}");
    assert_eq!(status(&without, "private"), "unreachable", "{without}");
    assert_ne!(status(&without, "mtls"), "ok", "{without}");
}

/// The engine's proxy wants a login. The Engine API's `/info` shows it as
/// `xxxxx:xxxxx` (moby masks it), so a route built from `/info` alone is
/// refused by the proxy (407) and every mirror looks unreachable. dmirror
/// reads the real URL where dockerd read it (its environment), probes
/// through it, and never prints the password.
#[test]
fn the_engines_proxy_with_a_login() {
    if isolate("the_engines_proxy_with_a_login") {
        return;
    }
    let mut lab = Lab::new();
    let origin = lab.registry("origin");
    origin.push(
        REPO,
        "latest",
        &Image::synthetic(62, "amd64", &[256 * 1024]),
    );
    let ProxiedEngine {
        proxy,
        port: proxy_port,
        log: proxy_log,
        dockerd: d,
    } = engine_behind_a_proxy(&mut lab, Some(("dm", "s3cret")));
    let info = engine_info(&d.host());
    assert!(
        info.contains("xxxxx:xxxxx@127.0.0.1"),
        "the engine masks its proxy's login: {info}"
    );
    let m = lab.mirrors_toml("m.toml", &[("mirror", origin.url(), "")]);
    let out = dmirror(&lab)
        .args(["probe", "--json", "--no-history", "--image", REPO])
        .args(["--timeout", "3s", "--budget", "1s", "--mirrors"])
        .arg(&m)
        .env("DOCKER_HOST", d.host())
        .output()
        .expect("run dmirror");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(!said.contains("s3cret"), "the password was printed: {said}");
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {said}"));
    assert_eq!(status(&doc, "mirror"), "ok", "{doc}");
    let network = doc["network"].as_str().unwrap_or_default();
    assert!(
        network.contains(&format!("127.0.0.1:{proxy_port}")) && network.contains("Docker engine"),
        "{network}"
    );
    let log = std::fs::read_to_string(&proxy_log).unwrap_or_default();
    assert!(
        log.contains(&origin.port.to_string()),
        "tinyproxy saw no request for the mirror:\n{log}"
    );

    // Another user (nobody) reaches the engine's socket but cannot read
    // dockerd's environment: dmirror says what is missing and how to give
    // it (exit 2) rather than judge every mirror through a proxy that
    // refuses it; the explicit --proxy works, its password not shown.
    use std::os::unix::fs::PermissionsExt;
    let open = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod")
    };
    open(lab.dir.path(), 0o711);
    open(&lab.path("docker"), 0o711);
    open(&d.socket, 0o666);
    let shared = tempfile::Builder::new()
        .prefix("dmirror-nobody-")
        .tempdir_in("/tmp")
        .expect("dir");
    open(shared.path(), 0o777);
    let list = shared.path().join("m.toml");
    std::fs::copy(&m, &list).expect("copy");
    open(&list, 0o644);
    let as_nobody = |extra: &[&str]| {
        Command::new("runuser")
            .args(["-u", "nobody", "--", "env", "-i"])
            .arg(format!("HOME={}", shared.path().display()))
            .arg(format!("DOCKER_HOST={}", d.host()))
            .arg(env!("CARGO_BIN_EXE_dmirror"))
            .args(["probe", "--json", "--no-history", "--image", REPO])
            .args(["--timeout", "3s", "--budget", "1s", "--mirrors"])
            .arg(&list)
            .args(extra)
            .output()
            .expect("runuser")
    };
    let out = as_nobody(&[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("needs a login its /info hides")
            && err.contains("--proxy http://USER:PASSWORD@"),
        "{err}"
    );
    let out = as_nobody(&["--proxy", &proxy]);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(!said.contains("s3cret"), "the password was printed: {said}");
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {said}"));
    assert_eq!(status(&doc, "mirror"), "ok", "{doc}");
}

/// `serve install` on a machine whose engine has a proxy with a login: the
/// service (its own user, no Docker socket) cannot ask the engine, so the
/// proxy is fixed at install time in a file only root reads, named by the
/// unit, never printed; the service's command line, run with just that
/// environment, reaches the mirror through the proxy. `serve remove`
/// removes the file too.
#[test]
fn serve_install_gives_the_service_the_engines_proxy() {
    if isolate("serve_install_gives_the_service_the_engines_proxy") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let mut lab = Lab::new();
    let origin = lab.registry("origin");
    origin.push(REPO, "latest", &Image::synthetic(64, "amd64", &[64 * 1024]));
    let ProxiedEngine {
        proxy,
        log: proxy_log,
        dockerd: d,
        ..
    } = engine_behind_a_proxy(&mut lab, Some(("dm", "s3cret")));
    let m = lab.mirrors_toml("m.toml", &[("mirror", origin.url(), "")]);
    let units = lab.path("units");
    std::fs::create_dir_all(&units).expect("mkdir");
    let out = dmirror(&lab)
        .args([
            "serve",
            "install",
            "--binary",
            env!("CARGO_BIN_EXE_dmirror"),
        ])
        .arg("--unit-dir")
        .arg(&units)
        .args(["--", "--image", "small", "--mirrors"])
        .arg(&m)
        .env("DOCKER_HOST", d.host())
        .output()
        .expect("serve install");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(!said.contains("s3cret"), "the password was printed: {said}");
    let env_path = units.join("dmirror-serve.env");
    assert!(said.contains(&env_path.display().to_string()), "{said}");
    let unit = std::fs::read_to_string(units.join("dmirror-serve.service")).expect("unit");
    assert!(!unit.contains("s3cret"), "{unit}");
    assert!(
        unit.contains(&format!("EnvironmentFile={}", env_path.display())),
        "{unit}"
    );
    assert!(unit.contains("--proxy env"), "{unit}");
    let meta = std::fs::metadata(&env_path).expect("env file");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&env_path).unwrap();
    assert!(text.contains(&format!("HTTPS_PROXY={proxy}")), "{text}");
    let verify = Command::new(require("systemd-analyze", "systemd"))
        .arg("verify")
        .arg(units.join("dmirror-serve.service"))
        .output()
        .expect("systemd-analyze");
    assert!(verify.status.success(), "{}", stderr(&verify));

    // The service's command, with only the file's environment.
    let env: Vec<(&str, String)> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k, v.to_owned()))
        .collect();
    let s =
        lab::serve::Serve::start_with_env(&lab, &m, &["--proxy", "env", "--image", "small"], &env);
    s.wait_for("order: mirror", Duration::from_secs(30));
    let log = std::fs::read_to_string(&proxy_log).unwrap_or_default();
    assert!(
        log.contains(&origin.port.to_string()),
        "the service did not go through the proxy:\n{log}\n{}",
        s.log()
    );
    assert!(!s.log().contains("s3cret"), "{}", s.log());
    drop(s);

    let out = dmirror(&lab)
        .args(["serve", "remove", "--unit-dir"])
        .arg(&units)
        .output()
        .expect("serve remove");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!env_path.exists(), "the proxy file stays after remove");
}

/// A proxy on the way that wants a login answers 407 (here a real nginx
/// playing that proxy): the mirror was never reached, so it is
/// unreachable, with the proxy named as the cause, not "login-only" or
/// "broken".
#[test]
fn a_proxy_wanting_a_login_is_not_blamed_on_the_mirror() {
    let mut lab = Lab::new();
    let origin = lab.registry("origin");
    origin.push(REPO, "latest", &Image::synthetic(63, "amd64", &[64 * 1024]));
    let port = free_port();
    lab.nginx_raw(
        &format!(
            "  server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      add_header Proxy-Authenticate 'Basic realm=\"corp\"' always;\n      return 407;\n    }}\n  }}\n"
        ),
        &[port],
    );
    let m = lab.mirrors_toml("m.toml", &[("mirror", origin.url(), "")]);
    let doc = probe(
        &lab,
        &m,
        &["--proxy", &format!("http://127.0.0.1:{port}")],
        &[],
    );
    assert_eq!(status(&doc, "mirror"), "unreachable", "{doc}");
    let error = doc["mirrors"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("407")
            && error.contains("proxy")
            && error.contains("--proxy http://USER:PASSWORD@"),
        "{error}"
    );
}

/// `GET /info` of the engine at `host` (`unix://PATH`), as text.
fn engine_info(host: &str) -> String {
    let path = host.trim_start_matches("unix://");
    let out = Command::new("curl")
        .args(["-s", "--unix-socket", path, "http://d/info"])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// serve goes the engine's way too: with a real dockerd whose proxy is a
/// real tinyproxy, `dmirror serve` (default `--proxy engine`) probes and
/// fetches blobs through that proxy, and says so when it starts.
#[test]
fn serve_reaches_the_mirrors_through_the_engines_proxy() {
    if isolate("serve_reaches_the_mirrors_through_the_engines_proxy") {
        return;
    }
    let mut lab = Lab::new();
    let origin = lab.registry("origin");
    let image = Image::synthetic(61, "amd64", &[512 * 1024]);
    origin.push(REPO, "latest", &image);
    let ProxiedEngine {
        proxy,
        log: proxy_log,
        dockerd: d,
        ..
    } = engine_behind_a_proxy(&mut lab, None);
    let refused = format!("http://127.0.0.1:{}", lab.refused_port());
    let m = lab.mirrors_toml(
        "m.toml",
        &[
            ("mirror", origin.url(), ""),
            ("origin", refused, "upstream = true"),
        ],
    );
    let s = lab::serve::Serve::start_with_env(
        &lab,
        &m,
        &["--proxy", "engine", "--image", "small"],
        &[("DOCKER_HOST", d.host())],
    );
    s.wait_for("order: mirror", Duration::from_secs(30));
    let log = s.log();
    assert!(log.contains(&proxy), "serve names its network: {log}");
    let seen = || {
        std::fs::read_to_string(&proxy_log)
            .unwrap_or_default()
            .matches(&origin.port.to_string())
            .count()
    };
    let before = seen();
    assert!(before > 0, "the probe went around the proxy");
    let layer = &image.layers[0];
    let body = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{}/v2/{REPO}/blobs/{}", s.url, layer.digest))
        .send()
        .and_then(|r| r.bytes())
        .expect("the layer through serve");
    assert_eq!(lab::sha256(&body), layer.digest);
    assert!(
        seen() > before,
        "the blob went around the proxy:\n{}",
        std::fs::read_to_string(&proxy_log).unwrap_or_default()
    );
}

fn b64(s: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", &format!("printf '%s' '{s}' | base64 -w0")])
        .output()
        .expect("base64");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Issue 14, item 3: logins as Docker has them. A mirror behind nginx
/// auth_basic (login in config.json's auths), a mirror whose token service
/// wants a login (given by a credential helper), a spy mirror asking for a
/// login nobody configured for it: Docker Hub's login must never reach it.
/// Without Docker's config the two are unauthorized, with the fix named.
#[test]
fn logins_as_docker_has_them() {
    let mut lab = Lab::new();
    let origin = lab.registry("origin");
    origin.push(REPO, "latest", &Image::synthetic(62, "amd64", &[64 * 1024]));
    let upstream = origin.port.to_string();
    let htpasswd = lab.path("htpasswd");
    let hash = Command::new(require("openssl", "openssl"))
        .args(["passwd", "-apr1", "basic-secret"])
        .output()
        .expect("openssl passwd");
    std::fs::write(
        &htpasswd,
        format!("alice:{}", String::from_utf8_lossy(&hash.stdout)),
    )
    .expect("htpasswd");
    let (basic_port, registry_port, token_port) = (free_port(), free_port(), free_port());
    let helper_basic = b64("bob:helper-secret");
    let servers = format!(
        "  server {{\n    listen 127.0.0.1:{basic_port};\n    location / {{\n      auth_basic \"lab\";\n      auth_basic_user_file {htpasswd};\n      proxy_pass http://127.0.0.1:{upstream};\n      proxy_set_header Host $host:$server_port;\n      proxy_set_header Authorization \"\";\n    }}\n  }}\n\
  server {{\n    listen 127.0.0.1:{registry_port};\n    location /v2/ {{\n      if ($http_authorization != \"Bearer login-token\") {{\n        add_header WWW-Authenticate 'Bearer realm=\"http://127.0.0.1:{token_port}/token\",service=\"lab\"' always;\n        return 401 '{{\"errors\":[{{\"code\":\"UNAUTHORIZED\"}}]}}';\n      }}\n      proxy_pass http://127.0.0.1:{upstream};\n      proxy_set_header Host $host:$server_port;\n      proxy_set_header Authorization \"\";\n    }}\n  }}\n\
  server {{\n    listen 127.0.0.1:{token_port};\n    location = /token {{\n      default_type application/json;\n      if ($http_authorization != \"Basic {helper_basic}\") {{ return 401 '{{\"details\":\"login required\"}}'; }}\n      return 200 '{{\"token\":\"login-token\"}}';\n    }}\n  }}\n",
        htpasswd = htpasswd.display(),
    );
    lab.nginx_raw(&servers, &[basic_port, registry_port, token_port]);

    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let spy_seen = seen.clone();
    let spy = lab::hostile::serve(move |req| {
        if let Some(a) = req.header("Authorization") {
            spy_seen.lock().unwrap().push(a.to_owned());
        }
        lab::hostile::Reply::new(401, "{}").header("WWW-Authenticate", "Basic realm=\"spy\"")
    });

    let m = lab.mirrors_toml(
        "m.toml",
        &[
            ("basic", format!("http://127.0.0.1:{basic_port}"), ""),
            ("token", format!("http://127.0.0.1:{registry_port}"), ""),
            ("spy", spy, ""),
        ],
    );
    let docker_config = lab.path("docker-config");
    let bin = lab.path("bin");
    std::fs::create_dir_all(&docker_config).expect("mkdir");
    std::fs::create_dir_all(&bin).expect("mkdir");
    std::fs::write(
        docker_config.join("config.json"),
        serde_json::json!({
            "auths": {
                format!("127.0.0.1:{basic_port}"): {"auth": b64("alice:basic-secret")},
                "https://index.docker.io/v1/": {"auth": b64("hub-user:hub-secret")},
            },
            "credHelpers": {format!("127.0.0.1:{registry_port}"): "lab"},
        })
        .to_string(),
    )
    .expect("config.json");
    let helper = bin.join("docker-credential-lab");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread host\n[ \"$1\" = get ] && [ \"$host\" = \"127.0.0.1:{registry_port}\" ] || exit 1\necho '{{\"ServerURL\":\"'$host'\",\"Username\":\"bob\",\"Secret\":\"helper-secret\"}}'\n"
        ),
    )
    .expect("helper");
    let mut perms = std::fs::metadata(&helper).expect("meta").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&helper, perms).expect("chmod");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let with = probe(
        &lab,
        &m,
        &["--proxy", "none"],
        &[
            ("DOCKER_CONFIG", docker_config.display().to_string()),
            ("PATH", path),
        ],
    );
    assert_eq!(status(&with, "basic"), "ok", "{with}");
    assert_eq!(status(&with, "token"), "ok", "{with}");
    assert_eq!(status(&with, "spy"), "unauthorized", "{with}");
    assert!(
        seen.lock().unwrap().is_empty(),
        "a login reached a mirror it was not for: {:?}",
        seen.lock().unwrap()
    );

    let empty = lab.path("no-docker-config");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let without = probe(
        &lab,
        &m,
        &["--proxy", "none"],
        &[("DOCKER_CONFIG", empty.display().to_string())],
    );
    for name in ["basic", "token"] {
        assert_eq!(status(&without, name), "unauthorized", "{without}");
    }
    let basic_error = without["mirrors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "basic")
        .and_then(|m| m["error"].as_str())
        .unwrap_or_default()
        .to_owned();
    assert!(
        basic_error.contains("docker login 127.0.0.1:"),
        "{basic_error}"
    );

    // serve install: the service runs as its own user, with no home and no
    // credential helper, so the logins for its mirrors (the helper asked
    // now) go into a file only root reads, passed as a systemd credential.
    use std::os::unix::fs::PermissionsExt;
    let units = lab.path("units");
    std::fs::create_dir_all(&units).expect("mkdir");
    let path_with_helper = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let install = |config: &Path| {
        dmirror(&lab)
            .args([
                "serve",
                "install",
                "--binary",
                env!("CARGO_BIN_EXE_dmirror"),
            ])
            .arg("--unit-dir")
            .arg(&units)
            .args(["--", "--proxy", "none", "--mirrors"])
            .arg(&m)
            .env("DOCKER_CONFIG", config)
            .env("PATH", &path_with_helper)
            .output()
            .expect("serve install")
    };
    // A Docker config that cannot be read stops the install, naming it,
    // before anything is written: the service would run without logins.
    let broken = lab.path("broken-docker-config");
    std::fs::create_dir_all(&broken).expect("mkdir");
    std::fs::write(broken.join("config.json"), "{\"auths\": ").expect("write");
    let out = install(&broken);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&broken.join("config.json").display().to_string()),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_dir(&units).unwrap().count(),
        0,
        "something was written"
    );
    let out = install(&docker_config);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(!said.contains("secret"), "a password was printed: {said}");
    let exported = units.join("dmirror-serve.docker-config.json");
    let unit = std::fs::read_to_string(units.join("dmirror-serve.service")).expect("unit");
    assert!(
        unit.contains(&format!(
            "LoadCredential=config.json:{}",
            exported.display()
        )) && unit.contains("Environment=DOCKER_CONFIG=%d"),
        "{unit}"
    );
    assert_eq!(
        std::fs::metadata(&exported).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&exported).unwrap()).expect("json");
    let mut keys: Vec<&String> = doc["auths"].as_object().expect("auths").keys().collect();
    keys.sort();
    let mut want = [
        format!("127.0.0.1:{basic_port}"),
        format!("127.0.0.1:{registry_port}"),
    ];
    want.sort();
    assert_eq!(
        keys,
        want.iter().collect::<Vec<_>>(),
        "only the list's mirrors: {doc}"
    );
    let verify = Command::new(require("systemd-analyze", "systemd"))
        .arg("verify")
        .arg(units.join("dmirror-serve.service"))
        .output()
        .expect("systemd-analyze");
    assert!(verify.status.success(), "{}", stderr(&verify));

    // The service as systemd runs it: DOCKER_CONFIG is its credentials
    // directory, holding the file as config.json; no helper on its PATH.
    let credentials = lab.path("credentials");
    std::fs::create_dir_all(&credentials).expect("mkdir");
    std::fs::copy(&exported, credentials.join("config.json")).expect("copy");
    let s = lab::serve::Serve::start_with_env(
        &lab,
        &m,
        &["--image", REPO],
        &[("DOCKER_CONFIG", credentials.display().to_string())],
    );
    s.wait_for("probe docker.io: 2 ok", Duration::from_secs(30));
    assert!(
        seen.lock().unwrap().is_empty(),
        "a login reached a mirror it was not for: {:?}",
        seen.lock().unwrap()
    );
    drop(s);
    let out = dmirror(&lab)
        .args(["serve", "remove", "--unit-dir"])
        .arg(&units)
        .output()
        .expect("serve remove");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!exported.exists(), "the logins stay after remove");
}
