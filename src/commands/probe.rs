//! `dmirror probe`, and the probe settings every probing command shares:
//! flags and mirror files resolved into [`ProbeSettings`], the probe run
//! with progress on stderr and ranked with its history.

use std::io::Write;

use anyhow::anyhow;

use super::{load_mirrors, parse_platform, say, table_width, CommandResult, Failure};
use crate::cli::{Format, ProbeArgs};
use crate::config::{Mirror, MirrorList};
use crate::exit::ExitStatus;
use crate::output;
use crate::probe::{ProbeSettings, Status};
use crate::ranked::{self, Ranked};
use crate::reference::Reference;

/// Bound on one throughput sample; memory is not at stake (bytes are hashed
/// and dropped), the user's data plan is.
const SAMPLE_BYTES: u64 = 256 * 1024 * 1024;

/// Turn `probe`'s flags and the mirror files into settings.
pub async fn resolve(args: &ProbeArgs) -> Result<ProbeSettings, Failure> {
    let list = load_mirrors(&args.source)?;
    let image = one_image(args)?;
    let network = super::network(&args.net).await?;
    settings(args, &list, image, &network)
}

/// The one `--image` of a probe of one registry.
pub fn one_image(args: &ProbeArgs) -> Result<Reference, Failure> {
    let [image] = args.image.as_slice() else {
        return Err(Failure::usage(anyhow!(
            "--image was given {} times; a probe measures one image (apply --target containerd|podman takes one per registry)",
            args.image.len()
        )));
    };
    parse_image(image)
}

/// An `--image` argument.
pub fn parse_image(s: &str) -> Result<Reference, Failure> {
    s.parse()
        .map_err(|e| Failure::usage(anyhow!("--image {s}: {e}")))
}

/// Settings to probe `list`'s mirrors of `image`'s registry with `image`.
pub fn settings(
    args: &ProbeArgs,
    list: &MirrorList,
    image: Reference,
    network: &crate::net::Network,
) -> Result<ProbeSettings, Failure> {
    Ok(ProbeSettings {
        mirrors: serving(list, &image)?,
        image,
        platform: parse_platform(args.platform.as_deref())?,
        timeout: args.timeout,
        budget: args.budget,
        sample_bytes: SAMPLE_BYTES,
        network: network.clone(),
        settle_early: false,
    })
}

/// The enabled mirrors that serve `image`'s registry.
fn serving(list: &MirrorList, image: &Reference) -> Result<Vec<Mirror>, Failure> {
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

/// Probe with a progress bar on stderr, record the run in the history
/// (unless `--no-history`) and rank with it.
pub async fn probe_ranked(settings: &ProbeSettings, args: &ProbeArgs) -> Ranked {
    let (events, drawer) = output::progress::probe_bar();
    let state = (!args.no_history)
        .then(crate::history::default_dir)
        .flatten();
    let ranked = ranked::probe_ranked(settings, state, Some(events), &mut |w| say(w)).await;
    let _ = drawer.await;
    let of = if settings.image.registry == crate::reference::DOCKER_HUB {
        String::new()
    } else {
        format!("{}: ", settings.image.registry)
    };
    say(format!("{of}{}", crate::probe::summary(&ranked.results)));
    if let Some(line) = crate::probe::offline(&ranked.results) {
        say(format!("note: {line}"));
    }
    ranked
}

/// Write `--textfile`, atomically, world-readable.
pub fn write_textfile(path: &std::path::Path, metrics: &str) -> Result<(), Failure> {
    crate::files::atomic_write(path, metrics.as_bytes(), None).map_err(|e| {
        Failure::new(
            ExitStatus::NothingUsable,
            anyhow!("cannot write the metrics to {}: {e}", path.display()),
        )
    })
}

pub async fn run(args: &ProbeArgs) -> CommandResult {
    let settings = resolve(args).await?;
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
        Format::Json => output::json::write_probe(&mut out, results, &settings.network.route)?,
        Format::Table => {
            output::table::write_probe(&mut out, results, table_width())?;
            output::table::write_route(&mut out, &settings.network.route)?;
        }
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
