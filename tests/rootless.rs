//! A real rootless Docker engine (`dockerd-rootless.sh` under rootlesskit,
//! run by an unprivileged user) and `dmirror apply` run by that user with
//! nothing but their environment: the engine is found at
//! `$XDG_RUNTIME_DIR/docker.sock`, its own daemon.json
//! (`~/.config/docker/daemon.json`) is merged, the engine reloads and
//! reports the new list, and it pulls through it; `dmirror pull` loads
//! into it. The system's daemon.json is not touched. In a network namespace holding only loopback;
//! rootlesskit shares it (`--net=host`), so the engine reaches the lab.

mod lab;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use lab::dockerd::isolate;
use lab::{Front, Image, Lab};

const USER: &str = "dmirror-rootless";
const CONTRIB: &str = "/usr/share/docker.io/contrib";

/// The unprivileged user, made if missing (with subordinate ids, as
/// rootless Docker needs), and their runtime directory.
struct User {
    uid: u32,
    home: PathBuf,
    runtime: PathBuf,
}

impl User {
    fn ensure() -> User {
        let exists = Command::new("id")
            .arg(USER)
            .output()
            .unwrap()
            .status
            .success();
        if !exists {
            let made = Command::new("useradd")
                .args(["--create-home", "--shell", "/bin/sh", USER])
                .status()
                .unwrap();
            assert!(made.success(), "useradd {USER}");
        }
        for file in ["/etc/subuid", "/etc/subgid"] {
            let text = fs::read_to_string(file).unwrap_or_default();
            if !text.lines().any(|l| l.starts_with(&format!("{USER}:"))) {
                let mut t = text;
                t.push_str(&format!("{USER}:300000:65536\n"));
                fs::write(file, t).unwrap();
            }
        }
        let id = Command::new("id").args(["-u", USER]).output().unwrap();
        let uid: u32 = String::from_utf8_lossy(&id.stdout).trim().parse().unwrap();
        let home = PathBuf::from(format!("/home/{USER}"));
        let runtime = PathBuf::from(format!("/run/user/{uid}"));
        // A clean start: what an earlier run left goes.
        let _ = fs::remove_dir_all(&runtime);
        for d in [
            ".config/docker",
            ".local/share/docker",
            "lab",
            ".config/systemd",
        ] {
            let _ = fs::remove_dir_all(home.join(d));
        }
        fs::create_dir_all(&runtime).unwrap();
        fs::set_permissions(&runtime, fs::Permissions::from_mode(0o700)).unwrap();
        let user = User { uid, home, runtime };
        user.own(&user.runtime);
        user
    }

    fn own(&self, path: &Path) {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.uid)).unwrap();
    }

    /// Write `bytes` at `rel` under the home, owned by the user.
    fn write(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let path = self.home.join(rel);
        let mut dir = self.home.clone();
        for part in Path::new(rel).parent().unwrap().components() {
            dir.push(part);
            fs::create_dir_all(&dir).unwrap();
            self.own(&dir);
        }
        fs::write(&path, bytes).unwrap();
        self.own(&path);
        path
    }

    /// `program args` as the user, with only their environment.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("runuser");
        c.args(["-u", USER, "--", "env", "-i"])
            .arg(format!("HOME={}", self.home.display()))
            .arg(format!("XDG_RUNTIME_DIR={}", self.runtime.display()))
            .arg(format!("PATH={CONTRIB}:/usr/sbin:/usr/bin:/sbin:/bin"))
            .arg(program)
            .stdin(Stdio::null());
        c
    }

    /// The docker CLI as rootless Docker's guide sets it up (this CLI
    /// does not look for the rootless socket itself; dmirror does).
    fn docker(&self, args: &[&str]) -> Output {
        let mut c = self.command("env");
        c.arg(format!(
            "DOCKER_HOST=unix://{}/docker.sock",
            self.runtime.display()
        ))
        .arg("docker")
        .args(args)
        .output()
        .unwrap()
    }
}

/// The rootless engine, stopped (with everything rootlesskit started) on drop.
struct Rootless {
    child: Child,
}

impl Rootless {
    fn start(user: &User) -> Rootless {
        let log = fs::File::create(user.home.join("lab/dockerd.log")).unwrap();
        let mut cmd = user.command("env");
        // No tap device or iptables for an unprivileged user here: the
        // engine shares the test's network namespace (loopback only).
        cmd.args([
            "DOCKERD_ROOTLESS_ROOTLESSKIT_NET=host",
            "DOCKERD_ROOTLESS_ROOTLESSKIT_PORT_DRIVER=none",
            "dockerd-rootless.sh",
            "--iptables=false",
            "--ip-forward=false",
            "--ip-masq=false",
            "--bridge=none",
        ])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0);
        let child = cmd.spawn().expect("start dockerd-rootless.sh");
        let engine = Rootless { child };
        let start = Instant::now();
        loop {
            if user
                .docker(&["info", "--format", "{{.ID}}"])
                .status
                .success()
            {
                return engine;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the rootless engine did not start:\n{}",
                fs::read_to_string(user.home.join("lab/dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Rootless {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Issue 14's rootless case with the real part: apply, run by the user
/// with no flag naming the engine or its files, finds the rootless
/// engine, merges its daemon.json, reloads it, and the engine reports and
/// uses the new list.
#[test]
fn apply_finds_merges_and_reloads_a_real_rootless_engine() {
    if isolate("apply_finds_merges_and_reloads_a_real_rootless_engine") {
        return;
    }
    for (binary, package) in [
        ("rootlesskit", "rootlesskit"),
        ("newuidmap", "uidmap"),
        ("runuser", "util-linux"),
        ("docker", "docker.io"),
    ] {
        lab::require(binary, package);
    }
    assert!(
        Path::new(CONTRIB).join("dockerd-rootless.sh").exists(),
        "dockerd-rootless.sh (Debian's docker.io) is missing"
    );
    let user = User::ensure();
    let mut lab = Lab::new();
    let origin = lab.registry("origin");
    let image = Image::synthetic(191, "amd64", &[256 * 1024]);
    origin.push("library/small", "latest", &image);
    let other = Image::synthetic(192, "amd64", &[128 * 1024]);
    origin.push("library/other", "latest", &other);
    let proxy = || Front::Proxy {
        upstream: origin.port,
        rate: None,
    };
    let urls = lab.nginx(&[("good", proxy()), ("other", proxy())]);
    let good = urls["good"].clone();
    let other_mirror = urls["other"].clone();
    let mirrors = user.write(
        "lab/mirrors.toml",
        format!(
            "[[mirror]]\nname = \"good\"\nurl = \"{good}\"\n\n[[mirror]]\nname = \"origin\"\nurl = \"http://127.0.0.1:{}\"\nupstream = true\n",
            lab.refused_port()
        )
        .as_bytes(),
    );
    let daemon_json = user.write(
        ".config/docker/daemon.json",
        b"{\n  \"log-level\": \"warn\",\n  \"features\": { \"buildkit\": true }\n}\n",
    );
    let system = Path::new("/etc/docker/daemon.json");
    let system_before = fs::read(system).ok();
    let engine = Rootless::start(&user);

    let out = user
        .command(env!("CARGO_BIN_EXE_dmirror"))
        .args(["apply", "--reload", "--image", "small", "--timeout", "3s"])
        .args(["--budget", "1s", "--no-history", "--mirrors"])
        .arg(&mirrors)
        .output()
        .unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains(&daemon_json.display().to_string()), "{said}");
    assert!(
        said.contains("SIGHUP to dockerd"),
        "a reload, no restart: {said}"
    );

    let merged: serde_json::Value =
        serde_json::from_slice(&fs::read(&daemon_json).unwrap()).unwrap();
    assert_eq!(
        merged["registry-mirrors"],
        serde_json::json!([good]),
        "{merged}"
    );
    assert_eq!(merged["log-level"], "warn", "{merged}");
    assert_eq!(merged["features"]["buildkit"], true, "{merged}");
    let meta = fs::metadata(&daemon_json).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&meta),
        user.uid,
        "the user's file stays theirs"
    );
    assert_eq!(
        fs::read(system).ok(),
        system_before,
        "the system's daemon.json"
    );

    let info = user.docker(&["info", "--format", "{{json .RegistryConfig.Mirrors}}"]);
    assert!(
        text(&info).contains(&format!("{good}/")),
        "the engine runs the new list: {}",
        text(&info)
    );
    let pull = user.docker(&["pull", "small"]);
    assert!(pull.status.success(), "{}", text(&pull));
    let id = user.docker(&["image", "inspect", "--format", "{{.Id}}", "small"]);
    assert_eq!(
        String::from_utf8_lossy(&id.stdout).trim(),
        image.config.digest,
        "the image pulled through the mirror"
    );

    // dmirror pull, run by the user, loads into the same engine.
    let out = user
        .command(env!("CARGO_BIN_EXE_dmirror"))
        .args(["pull", "other", "--timeout", "3s", "--mirrors"])
        .arg(&mirrors)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let id = user.docker(&["image", "inspect", "--format", "{{.Id}}", "other"]);
    assert_eq!(
        String::from_utf8_lossy(&id.stdout).trim(),
        other.config.digest,
        "dmirror pull loaded the image into the rootless engine: {}",
        text(&id)
    );

    // The nightly job, installed by the user: their own systemd timer (no
    // user manager runs here, so the files and the commands to enable
    // them), whose command, run as the user, applies to their engine.
    let nightly = user.write(
        "lab/nightly.toml",
        format!(
            "[[mirror]]\nname = \"other\"\nurl = \"{other_mirror}\"\n\n[[mirror]]\nname = \"origin\"\nurl = \"http://127.0.0.1:{}\"\nupstream = true\n",
            lab.refused_port()
        )
        .as_bytes(),
    );
    let bin = env!("CARGO_BIN_EXE_dmirror");
    let schedule = |extra: &[&str]| {
        user.command(bin)
            .args(["schedule", "install", "--binary", bin])
            .args(extra)
            .args(["--", "--image", "small", "--timeout", "3s", "--mirrors"])
            .arg(&nightly)
            .output()
            .unwrap()
    };
    let out = schedule(&["--cron"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("systemd user timer"), "{}", text(&out));
    let out = schedule(&[]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains(
            "systemctl --user daemon-reload && systemctl --user enable --now dmirror-apply.timer"
        ),
        "{said}"
    );
    let units = user.home.join(".config/systemd/user");
    let service =
        fs::read_to_string(units.join("dmirror-apply.service")).expect("the user's service");
    assert!(units.join("dmirror-apply.timer").exists());
    assert!(!service.contains("network-online"), "{service}");
    let exec: Vec<&str> = service
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart")
        .split(' ')
        .collect();
    let out = user.command(exec[0]).args(&exec[1..]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let info = user.docker(&["info", "--format", "{{json .RegistryConfig.Mirrors}}"]);
    assert!(
        text(&info).contains(&format!("{other_mirror}/")),
        "the nightly job applied to the rootless engine: {}",
        text(&info)
    );
    let out = user
        .command(bin)
        .args(["schedule", "remove"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!units.join("dmirror-apply.service").exists());

    drop(engine);
    for d in [".local/share/docker", "lab", ".config/systemd"] {
        let _ = fs::remove_dir_all(user.home.join(d));
    }
}
