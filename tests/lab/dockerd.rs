//! A real dockerd (and a real containerd) for the tests, each with its own
//! data root, socket and config file, so it never touches one already there.
//!
//! dockerd falls back to Docker Hub when a mirror fails, and tests must
//! never send traffic off the machine, so every test that starts one runs
//! in a fresh network namespace with only loopback (`isolate`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Run the calling test again inside a new network namespace holding only
/// loopback (`unshare -n`), unless already inside one. Returns `true` in
/// the outer process, which must then return: the inner run did the work.
pub fn isolate(test: &str) -> bool {
    if only_loopback() {
        let up = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status();
        assert!(
            up.is_ok_and(|s| s.success()),
            "cannot bring up loopback in the test's network namespace"
        );
        return false;
    }
    super::require("unshare", "util-linux");
    super::require("ip", "iproute2");
    let exe = std::env::current_exe().expect("test binary");
    let status = Command::new("unshare")
        .args(["-n", "--"])
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .status()
        .expect("run unshare");
    assert!(
        status.success(),
        "{test} failed inside its network namespace"
    );
    true
}

/// `isolate` for a benchmark's `main`: re-run the whole binary inside a
/// new network namespace. Returns `true` in the outer process.
pub fn isolate_main() -> bool {
    if only_loopback() {
        let up = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status();
        assert!(up.is_ok_and(|s| s.success()), "cannot bring up loopback");
        return false;
    }
    let exe = std::env::current_exe().expect("binary");
    let status = Command::new("unshare")
        .args(["-n", "--"])
        .arg(exe)
        .args(std::env::args().skip(1))
        .status()
        .expect("run unshare");
    assert!(status.success(), "failed inside its network namespace");
    true
}

fn only_loopback() -> bool {
    let dev = std::fs::read_to_string("/proc/self/net/dev").unwrap_or_default();
    dev.lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .all(|name| name.trim() == "lo")
}

pub struct Dockerd {
    pub socket: PathBuf,
    pub pidfile: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    child: Child,
}

impl Dockerd {
    /// Start dockerd reading `config` (which must exist), and wait until its
    /// API answers.
    pub fn start(dir: &Path, config: &Path) -> Dockerd {
        Self::start_with_env(dir, config, &[])
    }

    /// `start`, with `env` in dockerd's environment (its proxy, say).
    pub fn start_with_env(dir: &Path, config: &Path, env: &[(&str, &str)]) -> Dockerd {
        let bin = super::require("dockerd", "docker.io");
        std::fs::create_dir_all(dir).expect("mkdir");
        let socket = dir.join("docker.sock");
        let pidfile = dir.join("docker.pid");
        let log = dir.join("dockerd.log");
        let child = Command::new(bin)
            .envs(env.iter().copied())
            .args(["--iptables=false", "--ip-masq=false", "--bridge=none"])
            .arg("--config-file")
            .arg(config)
            .arg("-p")
            .arg(&pidfile)
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(std::fs::File::create(dir.join("dockerd.err")).expect("log"))
            .spawn()
            .expect("start dockerd");
        let d = Dockerd {
            socket,
            pidfile,
            config: config.to_owned(),
            log: dir.join("dockerd.err"),
            child,
        };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if d.docker(&["info", "--format", "{{.ID}}"]).status.success() {
                return d;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "dockerd did not answer within 60 s; see {}",
            d.log.display()
        );
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Run the docker CLI against this daemon.
    pub fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", self.socket.with_file_name("client"))
            .args(args)
            .output()
            .expect("run docker")
    }

    /// `mirrors`, without the trailing `/` dockerd adds.
    pub fn mirrors_trimmed(&self) -> Vec<String> {
        self.mirrors()
            .iter()
            .map(|m| m.trim_end_matches('/').to_owned())
            .collect()
    }

    /// `RegistryConfig.Mirrors` as the engine reports it.
    pub fn mirrors(&self) -> Vec<String> {
        let out = self.docker(&["info", "--format", "{{json .RegistryConfig.Mirrors}}"]);
        serde_json::from_slice::<Option<Vec<String>>>(&out.stdout)
            .unwrap_or_else(|e| {
                panic!("docker info: {e}: {}", String::from_utf8_lossy(&out.stderr))
            })
            .unwrap_or_default()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = self.socket.parent() {
            unmount_under(dir);
        }
    }
}

/// Lazily unmount what a daemon left mounted under `dir` (overlay
/// snapshots), deepest first, so the temporary directory can go.
fn unmount_under(dir: &Path) {
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "grep -o ' {}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l",
            dir.display()
        ))
        .status();
}

/// A containerd of the test's own: own root, state and socket, no CRI.
pub struct Containerd {
    socket: PathBuf,
    child: Child,
    root: PathBuf,
}

impl Containerd {
    pub fn start(dir: &Path) -> Containerd {
        let bin = super::require("containerd", "containerd");
        super::require("ctr", "containerd");
        std::fs::create_dir_all(dir).expect("mkdir");
        let socket = dir.join("containerd.sock");
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{1}\"\n",
                dir.display(),
                socket.display()
            ),
        )
        .expect("write config");
        let child = Command::new(bin)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("containerd.log")).expect("log"))
            .spawn()
            .expect("start containerd");
        let c = Containerd {
            socket,
            child,
            root: dir.to_owned(),
        };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if c.ctr(&["version"]).status.success() {
                return c;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("containerd did not answer within 30 s");
    }

    pub fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run ctr")
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        unmount_under(&self.root);
    }
}
