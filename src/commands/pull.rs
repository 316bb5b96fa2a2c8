//! `dmirror pull IMAGE`: resolve, pull over the mirrors with progress on
//! stderr, deliver the image (into the engine while it downloads, or to a
//! file), summarise.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::anyhow;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget};

use super::{load_mirrors, parse_platform, say, CommandResult, Failure};
use crate::cli::PullArgs;
use crate::daemon::engine::Engine;
use crate::exit::ExitStatus;
use crate::output;
use crate::probe::ProbeSettings;
use crate::pull::deliver::{self, Output};
use crate::pull::{self, PullEvent, PullSettings};
use crate::reference::Reference;

async fn resolve(args: &PullArgs) -> Result<(PullSettings, Output), Failure> {
    let list = load_mirrors(&args.source)?;
    let image: Reference = args.image.parse().map_err(Failure::usage)?;
    let platform = parse_platform(args.platform.as_deref())?;
    let output: Output = args
        .output
        .parse()
        .map_err(|e: String| Failure::usage(anyhow!(e)))?;
    let cache_root = pull::cache::Cache::default_root()
        .ok_or_else(|| Failure::usage(anyhow!("no cache directory: set XDG_CACHE_HOME or HOME")))?;
    let settings = PullSettings {
        probe: ProbeSettings {
            mirrors: list
                .enabled()
                .filter(|m| m.serves(&image.registry))
                .cloned()
                .collect(),
            image,
            platform,
            timeout: args.timeout,
            budget: Duration::ZERO,
            sample_bytes: 0,
            network: super::network(&args.net).await?,
            settle_early: true,
        },
        cache_root,
        per_source: args.connections as usize,
    };
    Ok((settings, output))
}

pub async fn run(args: &PullArgs) -> CommandResult {
    let (settings, output) = resolve(args).await?;
    if output == Output::Docker {
        // No engine: say so now, not after the download.
        let endpoint = crate::daemon::locate::locate()
            .map(|l| l.endpoint)
            .map_err(|e| Failure::usage(anyhow!(e)))?;
        Engine::new(endpoint, Duration::from_secs(10))
            .info()
            .await
            .map_err(|e| {
                Failure::new(
                    ExitStatus::NothingUsable,
                    anyhow!("{e}, or write the image elsewhere: --output oci:DIR or docker-archive:FILE"),
                )
            })?;
    }
    let failed = |e: anyhow::Error| Failure::new(ExitStatus::NothingUsable, e);
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let drawer: Mutex<Option<tokio::task::JoinHandle<()>>> = Mutex::new(None);
    let loader: Mutex<Option<deliver::Loader>> = Mutex::new(None);
    let spinner = multi.add(ProgressBar::new_spinner());
    output::progress::track(&spinner);
    let stop = Arc::new(AtomicBool::new(false));
    let events = |e: PullEvent| match e {
        PullEvent::Probing { mirrors } => {
            spinner.enable_steady_tick(Duration::from_millis(120));
            spinner.set_message(format!("checking {mirrors} mirrors"));
        }
        PullEvent::WaitingForCache { path } => spinner.suspend(|| {
            say(format!(
                "waiting for another dmirror to finish with the cache {} (at most {})",
                path.display(),
                humantime::format_duration(pull::CACHE_LOCK_WAIT)
            ))
        }),
        PullEvent::WaitingForDownload { digest } => spinner.suspend(|| {
            say(format!(
                "waiting for another dmirror (serve) fetching {digest} into the cache (at most {})",
                humantime::format_duration(pull::CACHE_LOCK_WAIT)
            ))
        }),
        PullEvent::Downloading {
            image,
            sources,
            progress,
        } => {
            spinner.finish_and_clear();
            if output == Output::Docker {
                if let Ok(mut l) = loader.lock() {
                    if l.is_none() {
                        *l = Some(deliver::start_load((*image).clone(), stop.clone()));
                    }
                }
            }
            let handle = tokio::spawn(output::progress::draw_pull(
                multi.clone(),
                image.layers,
                sources,
                progress,
                stop.clone(),
            ));
            if let Ok(mut d) = drawer.lock() {
                if let Some(old) = d.replace(handle) {
                    old.abort();
                }
            }
        }
    };
    let result = pull::pull(&settings, events).await;
    stop.store(true, Ordering::Release);
    let handle = drawer.lock().ok().and_then(|mut d| d.take());
    if let Some(h) = handle {
        let _ = h.await;
    }
    spinner.finish_and_clear();
    let loading = loader.lock().ok().and_then(|mut l| l.take());
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            if let Some(l) = loading {
                let _ = l.await;
            }
            return Err(failed(e.into()));
        }
    };
    let written = match loading {
        Some(l) => l.await.map_err(|e| failed(e.into()))?.map_err(failed)?,
        None => deliver::write_output(&report.image, &output)
            .await
            .map_err(failed)?,
    };
    // The summary is for a person unless a format is asked for: it goes
    // to stderr, so a pipe or a log sees it either way.
    let format = match (args.out.json, args.out.format) {
        (true, _) => crate::cli::Format::Json,
        (false, Some(f)) => f,
        (false, None) => crate::cli::Format::Table,
    };
    match format {
        crate::cli::Format::Json => output::pull::write_json(
            &mut std::io::stdout().lock(),
            &report,
            &written,
            &settings.probe.network.route,
        )?,
        crate::cli::Format::Plain => {
            output::pull::write_plain(&mut std::io::stdout().lock(), &report, &written)?
        }
        _ => output::pull::write_summary(&mut std::io::stderr().lock(), &report, &written)?,
    }
    Ok(ExitStatus::Success)
}
