//! A running `dmirror serve` for tests and benchmarks: started on a free
//! loopback port, its log collected line by line, stopped with SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{dmirror, Lab};

/// A running `dmirror serve`, its log collected; stopped with SIGTERM.
pub struct Serve {
    child: Child,
    pub url: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Serve {
    pub fn start(lab: &Lab, mirrors: &Path, extra: &[&str]) -> Serve {
        Self::start_with_env(lab, mirrors, extra, &[])
    }

    /// `start`, with `env` added to the clean environment.
    pub fn start_with_env(
        lab: &Lab,
        mirrors: &Path,
        extra: &[&str],
        env: &[(&str, String)],
    ) -> Serve {
        // Quick defaults for the lab, each unless `extra` sets it.
        let defaults = [
            ("--listen", "127.0.0.1:0"),
            ("--timeout", "2s"),
            ("--first-byte", "1s"),
            ("--budget", "1s"),
            ("--proxy", "none"),
        ];
        let mut cmd = dmirror(lab);
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        cmd.args(["serve", "--no-history", "--mirrors"])
            .arg(mirrors);
        for (flag, value) in defaults {
            if !extra.contains(&flag) {
                cmd.args([flag, value]);
            }
        }
        let mut child = cmd
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start dmirror serve");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("listening on ") {
                    let url = rest.split_whitespace().next().unwrap_or("").to_owned();
                    let _ = tx.send(url);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("serve did not start: {:?}", log.lock().unwrap()));
        Serve { child, url, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Wait until the log holds `needle`.
    pub fn wait_for(&self, needle: &str, within: Duration) {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.log().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "no {needle:?} in the log within {within:?}:\n{}",
            self.log()
        );
    }

    /// `repo:latest`'s manifest through the server, as an OCI client asks.
    pub fn manifest(&self, repo: &str) -> reqwest::blocking::Response {
        reqwest::blocking::Client::new()
            .get(format!("{}/v2/{repo}/manifests/latest", self.url))
            .header("Accept", super::OCI_MANIFEST)
            .send()
            .expect("manifest")
    }

    /// The bytes the server fetched from each source so far (`/metrics`).
    pub fn fetched(&self) -> std::collections::HashMap<String, u64> {
        let text = reqwest::blocking::get(format!("{}/metrics", self.url))
            .and_then(|r| r.text())
            .expect("metrics");
        text.lines()
            .filter_map(|l| l.strip_prefix("dmirror_serve_fetched_bytes_total{mirror=\""))
            .filter_map(|l| l.split_once("\"} "))
            .map(|(m, v)| (m.to_owned(), v.parse().unwrap_or(0)))
            .collect()
    }

    pub fn authority(&self) -> String {
        self.url.trim_start_matches("http://").to_owned()
    }

    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(40) {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("serve did not stop on SIGTERM");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
