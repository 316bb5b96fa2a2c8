//! `dmirror pull IMAGE`: resolve, pull over the mirrors with progress on
//! stderr, write the chosen output, summarise.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{load_mirrors, say, CommandResult, Failure};
use crate::cli::PullArgs;
use crate::daemon::engine::{Endpoint, Engine};
use crate::exit::ExitStatus;
use crate::output::format_throughput;
use crate::probe::ProbeSettings;
use crate::pull::{self, PullEvent, PullReport, PullSettings, PulledImage};
use crate::reference::Reference;
use crate::registry::manifest::Platform;

/// Where the pulled image goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Docker,
    Oci(PathBuf),
    Archive(PathBuf),
}

impl std::str::FromStr for Output {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("--output {s:?}: use docker, oci:DIR or docker-archive:FILE");
        match s.split_once(':') {
            None if s == "docker" => Ok(Output::Docker),
            Some(("oci", dir)) if !dir.is_empty() => Ok(Output::Oci(dir.into())),
            Some(("docker-archive", file)) if !file.is_empty() => Ok(Output::Archive(file.into())),
            _ => Err(bad()),
        }
    }
}

fn resolve(args: &PullArgs) -> Result<(PullSettings, Output), Failure> {
    let list = load_mirrors(&args.source)?;
    let image: Reference = args.image.parse().map_err(Failure::usage)?;
    let platform = match &args.platform {
        Some(p) => p
            .parse::<Platform>()
            .map_err(|e| Failure::usage(anyhow!("--platform: {e}")))?,
        None => Platform::host(),
    };
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
        },
        cache_root,
        per_source: args.connections as usize,
    };
    Ok((settings, output))
}

pub async fn run(args: &PullArgs) -> CommandResult {
    let (settings, output) = resolve(args)?;
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let drawer: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>> = std::sync::Mutex::new(None);
    let loader: std::sync::Mutex<Option<Loader>> = std::sync::Mutex::new(None);
    let spinner = multi.add(ProgressBar::new_spinner());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let events = |e: PullEvent| match e {
        PullEvent::Probing { mirrors } => {
            spinner.enable_steady_tick(Duration::from_millis(120));
            spinner.set_message(format!("checking {mirrors} mirrors"));
        }
        PullEvent::Downloading {
            image,
            sources,
            progress,
        } => {
            spinner.finish_and_clear();
            if output == Output::Docker {
                if let Ok(mut l) = loader.lock() {
                    if l.is_none() {
                        *l = Some(start_load((*image).clone(), stop.clone()));
                    }
                }
            }
            let handle = tokio::spawn(draw(
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
            return Err(Failure::new(ExitStatus::NothingUsable, e));
        }
    };
    let written = match loading {
        Some(l) => l
            .await
            .map_err(|e| Failure::new(ExitStatus::NothingUsable, e))?
            .map_err(|e| Failure::new(ExitStatus::NothingUsable, e))?,
        None => write_output(&report.image, &output).await?,
    };
    summarise(args, &report, &written)?;
    Ok(ExitStatus::Success)
}

/// The image load into the engine, started while the pull still runs.
type Loader = tokio::task::JoinHandle<anyhow::Result<String>>;

/// Stream a docker-archive of `image` into the engine as its blobs arrive
/// (each one only once verified). `stop` set with a blob still missing means
/// the pull failed: the stream is cut and the engine loads nothing.
///
/// Alongside, a warmer loads the image's leading layers as soon as they are
/// all in, as throwaway untagged images: the engine registers those layers
/// while later ones still download, and the final load, finding them
/// registered, only has the rest to do. The throwaway images are removed.
fn start_load(image: PulledImage, stop: Arc<std::sync::atomic::AtomicBool>) -> Loader {
    tokio::spawn(async move {
        let endpoint = Endpoint::from_docker_host(std::env::var("DOCKER_HOST").ok().as_deref())
            .map_err(|e| anyhow!(e))?;
        let engine = Arc::new(Engine::new(endpoint, Duration::from_secs(10)));
        let warmer = tokio::spawn(warm(engine.clone(), image.clone(), stop.clone()));
        let stop2 = stop.clone();
        let loaded = stream_load(&engine, move |w| {
            let ready = |path: &std::path::Path| -> std::io::Result<()> {
                loop {
                    if path.exists() {
                        return Ok(());
                    }
                    if stop2.load(Ordering::Acquire) && !path.exists() {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::Interrupted,
                            "the pull stopped",
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            };
            pull::archive::write_as_ready(w, &image, &ready)
        })
        .await;
        stop.store(true, Ordering::Release);
        if let Ok(Some(partial)) = warmer.await {
            let _ = engine.remove_image(&partial).await;
        }
        let said = loaded?;
        Ok(format!("loaded into the Docker engine: {said}"))
    })
}

/// Feed the archive `produce` writes into `POST /images/load`.
async fn stream_load<F>(engine: &Engine, produce: F) -> anyhow::Result<String>
where
    F: FnOnce(ChannelWriter) -> std::io::Result<ChannelWriter> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let producer = tokio::task::spawn_blocking(move || {
        let w = ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        produce(w).and_then(|mut w| w.flush())
    });
    let load = engine.load(rx);
    tokio::pin!(load);
    let mut producer = producer;
    // If the stream cannot be finished, drop the connection mid-body so
    // the engine sees a broken upload, never a short archive that ends well.
    let loaded = tokio::select! {
        loaded = &mut load => {
            let produced = (&mut producer).await.map_err(|e| anyhow!(e))?;
            produced.map_err(|e| anyhow!("cannot stream the image to the engine: {e}"))?;
            loaded
        }
        produced = &mut producer => {
            produced
                .map_err(|e| anyhow!(e))?
                .map_err(|e| anyhow!("cannot stream the image to the engine: {e}"))?;
            load.await
        }
    };
    loaded.map_err(|e| anyhow!("{e}; the image is in the cache, try --output docker-archive:FILE"))
}

/// Load ever longer runs of the image's leading layers (those fully
/// downloaded) as untagged images until the last layer is in or `stop` is
/// set. Returns the ID of the throwaway image still in the engine. Any
/// failure just ends the warming: the final load does all the work then.
async fn warm(
    engine: Arc<Engine>,
    image: PulledImage,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Option<String> {
    use sha2::Digest as _;
    let n = image.layers.len();
    let mut loaded = 0;
    let mut partial: Option<String> = None;
    let mut config: Option<serde_json::Value> = None;
    while !stop.load(Ordering::Acquire) {
        let leading = image
            .layers
            .iter()
            .take_while(|l| image.blob_path(&l.digest).exists())
            .count();
        if leading >= n {
            break;
        }
        if leading == loaded {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        if config.is_none() {
            let path = image.blob_path(&image.config.digest);
            match std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
            {
                Some(c) => config = Some(c),
                None => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let Some(bytes) = prefix_config(config.as_ref()?, leading) else {
            break;
        };
        let id = format!("sha256:{:x}", sha2::Sha256::digest(&bytes));
        let img = image.clone();
        let from = loaded;
        let warmed = stream_load(&engine, move |w| {
            pull::archive::write_prefix(w, &img, &bytes, leading, from)
        })
        .await;
        if warmed.is_err() {
            break;
        }
        if let Some(old) = partial.replace(id) {
            let _ = engine.remove_image(&old).await;
        }
        loaded = leading;
    }
    partial
}

/// The image config cut down to its first `layers` layers (no history).
fn prefix_config(config: &serde_json::Value, layers: usize) -> Option<Vec<u8>> {
    let mut c = config.clone();
    let obj = c.as_object_mut()?;
    obj.remove("history");
    let ids = obj.get_mut("rootfs")?.get_mut("diff_ids")?.as_array_mut()?;
    if ids.len() < layers {
        return None;
    }
    ids.truncate(layers);
    serde_json::to_vec(&c).ok()
}

async fn write_output(image: &PulledImage, output: &Output) -> Result<String, Failure> {
    let fail = |e: anyhow::Error| Failure::new(ExitStatus::NothingUsable, e);
    match output {
        Output::Oci(dir) => {
            let (dir2, image2) = (dir.clone(), image.clone());
            tokio::task::spawn_blocking(move || pull::oci::write(&dir2, &image2))
                .await
                .map_err(|e| fail(anyhow!(e)))?
                .map_err(|e| {
                    fail(anyhow!(
                        "cannot write the OCI layout {}: {e}",
                        dir.display()
                    ))
                })?;
            Ok(format!("wrote OCI layout {}", dir.display()))
        }
        Output::Archive(file) => {
            let (file2, image2) = (file.clone(), image.clone());
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                let dir = file2
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(std::path::Path::new("."));
                let tmp = tempfile::NamedTempFile::new_in(dir)?;
                let f = pull::archive::write(std::io::BufWriter::new(tmp.reopen()?), &image2)?;
                f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                tmp.persist(&file2).map_err(|e| e.error)?;
                Ok(())
            })
            .await
            .map_err(|e| fail(anyhow!(e)))?
            .map_err(|e| fail(anyhow!("cannot write {}: {e}", file.display())))?;
            Ok(format!("wrote docker-archive {}", file.display()))
        }
        Output::Docker => Err(Failure::new(
            ExitStatus::NothingUsable,
            anyhow!("the image load into the engine never started"),
        )),
    }
}

const CHUNK: usize = 256 * 1024;

/// A `Write` that hands 256 KiB pieces to an async receiver, so the tar
/// writer (sync) can feed the engine connection (async) with bounded memory.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx.blocking_send(piece).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the engine closed the connection",
            )
        })
    }
}

async fn draw(
    multi: MultiProgress,
    layers: Vec<crate::registry::manifest::Descriptor>,
    sources: Vec<String>,
    progress: Arc<pull::download::Progress>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let total: u64 = layers.iter().map(|l| l.size).sum();
    let style = |t: &str| {
        ProgressStyle::with_template(t)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ")
    };
    let bars: Vec<ProgressBar> = layers
        .iter()
        .map(|l| {
            let b = multi.add(ProgressBar::new(l.size));
            b.set_style(style("  {prefix} [{bar:30}] {bytes}/{total_bytes}"));
            b.set_prefix(l.digest.chars().skip(7).take(12).collect::<String>());
            b
        })
        .collect();
    let all = multi.add(ProgressBar::new(total));
    all.set_style(style(
        "{prefix:.bold} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {wide_msg}",
    ));
    all.set_prefix("total");
    loop {
        let done = stop.load(Ordering::Acquire);
        let mut sum = 0;
        for (i, l) in layers.iter().enumerate() {
            // Blob 0 is the config; layers follow in order (duplicates share).
            let n = progress
                .blob_bytes
                .get(i + 1)
                .map(|b| b.load(Ordering::Relaxed))
                .unwrap_or(l.size)
                .min(l.size);
            bars[i].set_position(n);
            sum += n;
        }
        all.set_position(sum);
        let serving: Vec<String> = sources
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                progress
                    .source_active
                    .get(*i)
                    .is_some_and(|a| a.load(Ordering::Relaxed) > 0)
            })
            .map(|(_, s)| s.clone())
            .collect();
        all.set_message(format!("from {}", serving.join(", ")));
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for b in bars {
        b.finish_and_clear();
    }
    all.finish_and_clear();
}

fn summarise(args: &PullArgs, report: &PullReport, written: &str) -> Result<(), Failure> {
    let secs = report.elapsed.as_secs_f64().max(1e-3);
    if args.json {
        let doc = serde_json::json!({
            "reference": report.image.reference.to_string(),
            "digest": report.image.manifest_digest,
            "bytes": report.bytes,
            "seconds": (secs * 1000.0).round() / 1000.0,
            "upstream_used": report.used_upstream,
            "sources": report.sources.iter().map(|s| serde_json::json!({"name": s.name, "bytes": s.bytes, "dropped": s.dropped})).collect::<Vec<_>>(),
            "output": written,
        });
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &doc)
            .map_err(|e| Failure::new(ExitStatus::NothingUsable, e))?;
        writeln!(out)?;
        return Ok(());
    }
    say(format!(
        "pulled {} ({}): {} in {:.1} s ({})",
        report.image.reference,
        report.image.manifest_digest,
        format_bytes(report.bytes),
        secs,
        format_throughput(Some(report.bytes as f64 / secs)),
    ));
    let used: Vec<String> = report
        .sources
        .iter()
        .filter(|s| s.bytes > 0)
        .map(|s| format!("{} {}", s.name, format_bytes(s.bytes)))
        .collect();
    if !used.is_empty() {
        say(format!("  from {}", used.join(", ")));
    }
    for s in report.sources.iter().filter(|s| s.dropped.is_some()) {
        say(format!(
            "  dropped {}: {}",
            s.name,
            s.dropped.as_deref().unwrap_or_default()
        ));
    }
    if report.used_upstream {
        say("  no mirror could serve it all; upstream did");
    }
    say(format!("  {written}"));
    Ok(())
}

fn format_bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} kB", n / 1e3)
    } else {
        format!("{n} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_parse() {
        assert_eq!("docker".parse::<Output>().unwrap(), Output::Docker);
        assert_eq!(
            "oci:/tmp/x".parse::<Output>().unwrap(),
            Output::Oci("/tmp/x".into())
        );
        assert_eq!(
            "docker-archive:a.tar".parse::<Output>().unwrap(),
            Output::Archive("a.tar".into())
        );
        for bad in ["", "oci:", "tar:x", "docker:x"] {
            assert!(
                bad.parse::<Output>()
                    .unwrap_err()
                    .contains("docker, oci:DIR"),
                "{bad}"
            );
        }
    }
}
