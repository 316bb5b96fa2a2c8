//! A probe ranked with its history: the one input apply, pull's source
//! choice, the metrics and the renderers all read. Running the probe,
//! recording the run and ranking with the record happen here, in that order,
//! so every command ranks the same way.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc::UnboundedSender;

use crate::history::{self, History};
use crate::probe::{self, Event, MirrorResult, ProbeSettings};
use crate::rank;

/// A ranked probe and the history it was ranked with.
#[derive(Debug)]
pub struct Ranked {
    /// Best first.
    pub results: Vec<MirrorResult>,
    /// `None` with `--no-history` or without a state directory.
    pub history: Option<History>,
    pub at: SystemTime,
}

/// Nothing probed (a job that names its server instead).
impl Default for Ranked {
    fn default() -> Self {
        Self {
            results: Vec::new(),
            history: None,
            at: SystemTime::now(),
        }
    }
}

impl Ranked {
    /// A mirror's record over its recent runs, this one included.
    pub fn track(&self, name: &str) -> Option<rank::Track> {
        track(self.history.as_ref()?, name)
    }

    /// The seconds the ranking put on a result (lower is better).
    pub fn seconds(&self, r: &MirrorResult) -> Option<f64> {
        rank::effective_seconds(r, self.track(&r.mirror.name).as_ref())
    }
}

fn track(history: &History, name: &str) -> Option<rank::Track> {
    let s = history.summary(name)?;
    Some(rank::Track {
        ok_ratio: s.success_ratio(),
        throughput_bps: s.throughput_bps,
        latency: s.latency_ms.map(|ms| Duration::from_secs_f64(ms / 1000.0)),
    })
}

/// Probe, record the run in the history of the image's registry under
/// `state_dir` (none: neither read nor record), and rank with it. Progress
/// goes to `events`; warnings about the history file to `warn`.
pub async fn probe_ranked(
    settings: &ProbeSettings,
    state_dir: Option<PathBuf>,
    events: Option<UnboundedSender<Event>>,
    warn: &mut (dyn FnMut(String) + Send),
) -> Ranked {
    let mut results = probe::probe(settings, events).await;
    let at = SystemTime::now();
    let history = state_dir.map(|dir| {
        history::Store::new(history::registry_dir(dir, &settings.image.registry))
            .update(&results, at, warn)
    });
    match &history {
        Some(h) => rank::rank_with(&mut results, |name| track(h, name)),
        None => rank::rank(&mut results),
    }
    Ranked {
        results,
        history,
        at,
    }
}
