//! `dmirror probe`: resolve flags and files into [`ProbeSettings`], run the
//! engine with progress on stderr, rank, render.

use std::io::Write;

use anyhow::anyhow;

use super::{load_mirrors, table_width, CommandResult, Failure};
use crate::cli::ProbeArgs;
use crate::exit::ExitStatus;
use crate::output;
use crate::probe::{self, MirrorResult, ProbeSettings, Status};
use crate::rank;
use crate::reference::{Reference, DOCKER_HUB};
use crate::registry::manifest::Platform;

/// Bound on one throughput sample; memory is not at stake (bytes are hashed
/// and dropped), the user's data plan is.
const SAMPLE_BYTES: u64 = 256 * 1024 * 1024;

/// Turn `probe`'s flags and the mirror files into settings.
pub fn resolve(args: &ProbeArgs) -> Result<ProbeSettings, Failure> {
    let list = load_mirrors(&args.source)?;
    let image: Reference = args
        .image
        .parse()
        .map_err(|e| Failure::usage(anyhow!("--image: {e}")))?;
    if image.registry != DOCKER_HUB {
        return Err(Failure::usage(anyhow!(
            "--image {}: the mirror list holds Docker Hub mirrors, so the image must be a Docker Hub one (e.g. library/alpine:latest)",
            args.image
        )));
    }
    let platform = match &args.platform {
        Some(p) => p
            .parse::<Platform>()
            .map_err(|e| Failure::usage(anyhow!("--platform: {e}")))?,
        None => Platform::host(),
    };
    let mirrors: Vec<_> = list.enabled().cloned().collect();
    if mirrors.is_empty() {
        return Err(Failure::usage(anyhow!(
            "every mirror in the list is disabled; enable one (enabled = true) or pass --mirrors FILE"
        )));
    }
    Ok(ProbeSettings {
        mirrors,
        image,
        platform,
        timeout: args.timeout,
        budget: args.budget,
        sample_bytes: SAMPLE_BYTES,
    })
}

/// Probe and rank, with progress on stderr.
pub async fn probe_ranked(settings: &ProbeSettings) -> Vec<MirrorResult> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let drawer = tokio::spawn(crate::progress::draw(rx));
    let mut results = probe::probe(settings, Some(tx)).await;
    let _ = drawer.await;
    rank::rank(&mut results);
    results
}

pub async fn run(args: &ProbeArgs) -> CommandResult {
    let settings = resolve(args)?;
    let results = probe_ranked(&settings).await;
    let mut out = std::io::stdout().lock();
    if args.json {
        output::json::write_probe(&mut out, &results)?;
    } else {
        output::table::write_probe(&mut out, &results, table_width())?;
    }
    out.flush()?;
    Ok(if results.iter().any(|r| r.status == Status::Ok) {
        ExitStatus::Success
    } else {
        ExitStatus::NothingUsable
    })
}
