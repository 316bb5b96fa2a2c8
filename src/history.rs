//! What past probes found, per mirror: the state file behind
//! history-aware ranking, `dmirror history` and the metrics.
//!
//! One JSON file, `history.json`, under the XDG state dir
//! (`$XDG_STATE_HOME/dmirror`; `/var/lib/dmirror` for root without
//! `XDG_STATE_HOME`; else `~/.local/state/dmirror`). It keeps the last
//! [`WINDOW`] runs of every mirror. Updates are read-modify-write under a
//! lock on the directory and land by atomic rename, so a crash leaves the old
//! file or the new one. A file that cannot be read as history is set aside
//! (`history.json.corrupt`) with a warning and a fresh one started: history
//! improves the ranking, it must never stop the nightly job.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::files as write;
use crate::probe::{MirrorResult, Status};

/// Runs kept per mirror: two weeks of nightly jobs.
pub const WINDOW: usize = 14;
/// Weight of the newest sample in the smoothed throughput and latency.
const ALPHA: f64 = 0.5;
const FILE: &str = "history.json";
const VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct History {
    version: u32,
    /// By mirror name.
    mirrors: BTreeMap<String, Record>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Record {
    /// The URL the runs were measured at; a new URL starts a new record.
    pub url: String,
    /// Oldest first, at most [`WINDOW`].
    pub runs: Vec<Run>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    /// Seconds since the Unix epoch.
    pub at: u64,
    pub status: String,
    pub latency_ms: Option<f64>,
    pub throughput_bps: Option<f64>,
}

/// One mirror's record, condensed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub name: String,
    pub runs: usize,
    pub ok_runs: usize,
    pub last_status: String,
    /// When the mirror was last `ok`, seconds since the Unix epoch.
    pub last_ok: Option<u64>,
    /// Smoothed over the `ok` runs, newest weighing most.
    pub throughput_bps: Option<f64>,
    pub latency_ms: Option<f64>,
}

impl Summary {
    /// Share of the kept runs that were `ok`.
    pub fn success_ratio(&self) -> f64 {
        if self.runs == 0 {
            0.0
        } else {
            self.ok_runs as f64 / self.runs as f64
        }
    }
}

impl Record {
    pub fn summary(&self, name: &str) -> Summary {
        let ok: Vec<&Run> = self
            .runs
            .iter()
            .filter(|r| r.status == Status::Ok.as_str())
            .collect();
        Summary {
            name: name.to_owned(),
            runs: self.runs.len(),
            ok_runs: ok.len(),
            last_status: self
                .runs
                .last()
                .map(|r| r.status.clone())
                .unwrap_or_default(),
            last_ok: ok.last().map(|r| r.at),
            throughput_bps: smooth(ok.iter().filter_map(|r| r.throughput_bps)),
            latency_ms: smooth(ok.iter().filter_map(|r| r.latency_ms)),
        }
    }
}

/// Exponentially weighted mean, oldest sample first.
pub fn smooth(samples: impl Iterator<Item = f64>) -> Option<f64> {
    samples
        .filter(|v| v.is_finite() && *v >= 0.0)
        .fold(None, |acc, v| {
            Some(match acc {
                None => v,
                Some(m) => ALPHA * v + (1.0 - ALPHA) * m,
            })
        })
}

impl History {
    /// Append this probe's results, one run per mirror.
    pub fn record(&mut self, results: &[MirrorResult], at: SystemTime) {
        let at = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        for r in results {
            let url = r.mirror.url.as_str().to_owned();
            let record = self.mirrors.entry(r.mirror.name.clone()).or_default();
            if record.url != url {
                *record = Record {
                    url,
                    runs: Vec::new(),
                };
            }
            record.runs.push(Run {
                at,
                status: r.status.as_str().to_owned(),
                latency_ms: r.latency.map(|d| d.as_secs_f64() * 1000.0),
                throughput_bps: r.throughput_bps,
            });
            let excess = record.runs.len().saturating_sub(WINDOW);
            record.runs.drain(..excess);
        }
    }

    pub fn summary(&self, name: &str) -> Option<Summary> {
        self.mirrors.get(name).map(|r| r.summary(name))
    }

    pub fn summaries(&self) -> Vec<Summary> {
        self.mirrors.iter().map(|(n, r)| r.summary(n)).collect()
    }

    /// Every mirror's summary, most reliable first, then fastest.
    pub fn ranked_summaries(&self) -> Vec<Summary> {
        let mut summaries = self.summaries();
        summaries.sort_by(|a, b| {
            b.success_ratio()
                .total_cmp(&a.success_ratio())
                .then_with(|| {
                    b.throughput_bps
                        .unwrap_or(0.0)
                        .total_cmp(&a.throughput_bps.unwrap_or(0.0))
                })
                .then_with(|| a.name.cmp(&b.name))
        });
        summaries
    }
}

/// Where the history of mirrors of `registry` lives under the state
/// directory: Docker Hub's at its root (where it always was), others in
/// `registries/<registry>/`, so that a prefix mirror's record for one
/// registry does not mix with its record for another.
pub fn registry_dir(state: PathBuf, registry: &str) -> PathBuf {
    if registry == crate::reference::DOCKER_HUB {
        state
    } else {
        state.join("registries").join(registry)
    }
}

/// The state directory, as the module documentation says.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").map(PathBuf::from) {
        if d.is_absolute() {
            return Some(d.join("dmirror"));
        }
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return Some(PathBuf::from("/var/lib/dmirror"));
    }
    dirs::state_dir().map(|d| d.join("dmirror"))
}

/// The history file in a state directory.
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// Read the history; `warn` hears about a file set aside. A missing
    /// file is an empty history.
    pub fn load(&self, warn: &mut dyn FnMut(String)) -> History {
        let path = self.path();
        let bytes = match write::read_regular(&path, 16 << 20) {
            Ok(Some(b)) => b,
            Ok(None) => return History::default(),
            Err(e) => {
                warn(format!(
                    "warning: cannot read the probe history {}: {e}; ranking without it",
                    path.display()
                ));
                return History::default();
            }
        };
        match parse(&bytes) {
            Ok(h) => h,
            Err(why) => {
                let aside = self.dir.join(format!("{FILE}.corrupt"));
                let moved = std::fs::rename(&path, &aside);
                warn(match moved {
                    Ok(()) => format!(
                        "warning: the probe history {} is unreadable ({why}); set aside as {}, starting a fresh one",
                        path.display(),
                        aside.display()
                    ),
                    Err(e) => format!(
                        "warning: the probe history {} is unreadable ({why}) and cannot be set aside ({e}); starting a fresh one",
                        path.display()
                    ),
                });
                History::default()
            }
        }
    }

    /// Record `results` into the stored history, under the directory lock,
    /// and return the updated history. Failing to store is a warning: the
    /// returned history still holds this run.
    pub fn update(
        &self,
        results: &[MirrorResult],
        at: SystemTime,
        warn: &mut dyn FnMut(String),
    ) -> History {
        let lock = write::lock_dir(&self.dir, Duration::from_secs(30), || {});
        let mut history = self.load(warn);
        history.record(results, at);
        let stored = match &lock {
            Ok(_) => serde_json::to_vec_pretty(&history)
                .map_err(std::io::Error::other)
                .and_then(|b| write::atomic_write(&self.path(), &b, None)),
            Err(e) => Err(std::io::Error::other(e.to_string())),
        };
        if let Err(e) = stored {
            warn(format!(
                "warning: cannot store the probe history in {}: {e}",
                self.path().display()
            ));
        }
        history
    }
}

fn parse(bytes: &[u8]) -> Result<History, String> {
    let h: History = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if h.version != VERSION {
        return Err(format!("version {} is not {VERSION}", h.version));
    }
    Ok(h)
}

impl History {
    pub fn new() -> Self {
        Self {
            version: VERSION,
            mirrors: BTreeMap::new(),
        }
    }
}

impl Default for History {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Mirror;

    fn result(name: &str, status: Status, bps: Option<f64>) -> MirrorResult {
        MirrorResult {
            mirror: Mirror::new(name, format!("https://{name}.example").parse().unwrap()),
            status,
            latency: Some(Duration::from_millis(20)),
            throughput_bps: bps,
            digest: None,
            error: None,
        }
    }

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn counts_runs_and_keeps_a_window() {
        let mut h = History::new();
        for i in 0..20 {
            let status = if i % 4 == 0 {
                Status::Timeout
            } else {
                Status::Ok
            };
            h.record(&[result("a", status, Some(1e6))], at(i));
        }
        let s = h.summary("a").unwrap();
        assert_eq!(s.runs, WINDOW);
        // Runs 6..20 kept: 8, 12, 16 timed out.
        assert_eq!(s.ok_runs, WINDOW - 3);
        assert_eq!(s.last_status, "ok");
        assert_eq!(s.last_ok, Some(19));
        assert!((s.success_ratio() - 11.0 / 14.0).abs() < 1e-9);
    }

    #[test]
    fn smoothing_weighs_the_newest_most_and_skips_failures() {
        let mut h = History::new();
        h.record(&[result("a", Status::Ok, Some(1e6))], at(1));
        h.record(&[result("a", Status::Ok, Some(3e6))], at(2));
        h.record(&[result("a", Status::Broken, None)], at(3));
        let s = h.summary("a").unwrap();
        assert_eq!(s.throughput_bps, Some(2e6));
        assert_eq!(s.last_status, "broken");
        assert_eq!(s.last_ok, Some(2));
    }

    #[test]
    fn a_new_url_starts_a_new_record() {
        let mut h = History::new();
        h.record(&[result("a", Status::Ok, Some(1e6))], at(1));
        let mut moved = result("a", Status::Ok, Some(1e6));
        moved.mirror.url = "https://elsewhere.example".parse().unwrap();
        h.record(&[moved], at(2));
        assert_eq!(h.summary("a").unwrap().runs, 1);
    }

    #[test]
    fn a_corrupt_file_is_set_aside_and_never_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().to_owned());
        std::fs::write(store.path(), b"{\"version\": 1, \"mirrors\": {\"a\": [tru").unwrap();
        let mut warnings = Vec::new();
        let h = store.update(&[result("a", Status::Ok, Some(1e6))], at(5), &mut |w| {
            warnings.push(w)
        });
        assert_eq!(h.summary("a").unwrap().runs, 1);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("set aside"), "{warnings:?}");
        assert!(dir.path().join("history.json.corrupt").exists());
        // The fresh file is whole and holds the run.
        let again = store.load(&mut |w| panic!("{w}"));
        assert_eq!(again.summary("a").unwrap().runs, 1);
    }
}
