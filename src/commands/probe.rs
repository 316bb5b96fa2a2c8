//! `dmirror probe`: resolve flags and files into [`ProbeSettings`], run the
//! engine with progress on stderr, rank, render.

use std::io::Write;
use std::time::{Duration, SystemTime};

use anyhow::anyhow;

use super::{load_mirrors, say, table_width, CommandResult, Failure};
use crate::cli::{Format, ProbeArgs};
use crate::exit::ExitStatus;
use crate::history::{self, History};
use crate::output;
use crate::probe::{self, MirrorResult, ProbeSettings, Status};
use crate::rank;
use crate::reference::Reference;
use crate::registry::manifest::Platform;

/// Bound on one throughput sample; memory is not at stake (bytes are hashed
/// and dropped), the user's data plan is.
const SAMPLE_BYTES: u64 = 256 * 1024 * 1024;

/// Turn `probe`'s flags and the mirror files into settings.
pub fn resolve(args: &ProbeArgs) -> Result<ProbeSettings, Failure> {
    let [image] = args.image.as_slice() else {
        return Err(Failure::usage(anyhow!(
            "--image was given {} times; a probe measures one image (apply --target containerd|podman takes one per registry)",
            args.image.len()
        )));
    };
    let list = load_mirrors(&args.source)?;
    settings(args, &list, parse_image(image)?)
}

/// An `--image` argument.
pub fn parse_image(s: &str) -> Result<Reference, Failure> {
    s.parse()
        .map_err(|e| Failure::usage(anyhow!("--image {s}: {e}")))
}

/// Settings to probe `list`'s mirrors of `image`'s registry with `image`.
pub fn settings(
    args: &ProbeArgs,
    list: &crate::config::MirrorList,
    image: Reference,
) -> Result<ProbeSettings, Failure> {
    let platform = match &args.platform {
        Some(p) => p
            .parse::<Platform>()
            .map_err(|e| Failure::usage(anyhow!("--platform: {e}")))?,
        None => Platform::host(),
    };
    let mirrors = serving(list, &image)?;
    Ok(ProbeSettings {
        mirrors,
        image,
        platform,
        timeout: args.timeout,
        budget: args.budget,
        sample_bytes: SAMPLE_BYTES,
    })
}

/// The enabled mirrors that serve `image`'s registry.
pub fn serving(
    list: &crate::config::MirrorList,
    image: &Reference,
) -> Result<Vec<crate::config::Mirror>, Failure> {
    if list.enabled().next().is_none() {
        return Err(Failure::usage(anyhow!(
            "every mirror in the list is disabled; enable one (enabled = true) or pass --mirrors FILE"
        )));
    }
    let mirrors: Vec<_> = list
        .enabled()
        .filter(|m| m.serves(&image.registry))
        .cloned()
        .collect();
    if mirrors.is_empty() {
        return Err(Failure::usage(anyhow!(
            "no enabled mirror serves {0}; add one to your mirrors.toml with registry = \"{0}\" (it serves {0} at its root) or prefix_for = [\"{0}\"] (under /v2/{0}/...)",
            image.registry
        )));
    }
    Ok(mirrors)
}

/// A ranked probe and the history it was ranked with.
pub struct Ranked {
    pub results: Vec<MirrorResult>,
    /// `None` with `--no-history` or without a state directory.
    pub history: Option<History>,
    pub at: SystemTime,
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

/// Probe, record the run in the history of the image's registry, and rank
/// with it; progress on stderr.
pub async fn probe_ranked(settings: &ProbeSettings, args: &ProbeArgs) -> Ranked {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let drawer = tokio::spawn(crate::progress::draw(rx));
    let mut results = probe::probe(settings, Some(tx)).await;
    let _ = drawer.await;
    let at = SystemTime::now();
    let history = if args.no_history {
        None
    } else {
        history::default_dir().map(|dir| {
            history::Store::new(history::registry_dir(dir, &settings.image.registry)).update(
                &results,
                at,
                &mut |w| say(w),
            )
        })
    };
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

/// Write `--textfile`, atomically, world-readable.
pub fn write_textfile(path: &std::path::Path, metrics: &str) -> Result<(), Failure> {
    crate::daemon::write::atomic_write(path, metrics.as_bytes(), None).map_err(|e| {
        Failure::new(
            ExitStatus::NothingUsable,
            anyhow!("cannot write the metrics to {}: {e}", path.display()),
        )
    })
}

pub async fn run(args: &ProbeArgs) -> CommandResult {
    let settings = resolve(args)?;
    let ranked = probe_ranked(&settings, args).await;
    let results = &ranked.results;
    let metrics = || {
        output::prometheus::probe(
            &settings.image.registry,
            results,
            ranked.history.as_ref(),
            ranked.at,
        )
    };
    if let Some(path) = &args.textfile {
        write_textfile(path, &metrics())?;
    }
    let mut out = std::io::stdout().lock();
    match args.output_format() {
        Format::Json => output::json::write_probe(&mut out, results)?,
        Format::Table => output::table::write_probe(&mut out, results, table_width())?,
        Format::Plain => output::plain::write_probe(&mut out, results)?,
        Format::Prometheus => out.write_all(metrics().as_bytes())?,
    }
    out.flush()?;
    Ok(if results.iter().any(|r| r.status == Status::Ok) {
        ExitStatus::Success
    } else {
        ExitStatus::NothingUsable
    })
}
