//! Where a pulled image goes: streamed into the Docker engine while its
//! blobs still download (`POST /images/load`, with the leading layers
//! warmed early), or written as an OCI layout or a docker-archive.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;

use super::PulledImage;
use crate::daemon::engine::Engine;

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

/// The image load into the engine, started while the pull still runs.
pub type Loader = tokio::task::JoinHandle<anyhow::Result<String>>;

/// Stream a docker-archive of `image` into the engine as its blobs arrive
/// (each one only once verified). `stop` set with a blob still missing means
/// the pull failed: the stream is cut and the engine loads nothing.
///
/// Alongside, a warmer loads the image's leading layers as soon as they are
/// all in, as throwaway untagged images: the engine registers those layers
/// while later ones still download, and the final load, finding them
/// registered, only has the rest to do. The throwaway images are removed.
pub fn start_load(image: PulledImage, stop: Arc<std::sync::atomic::AtomicBool>) -> Loader {
    tokio::spawn(async move {
        let endpoint = crate::daemon::locate::locate()
            .map(|l| l.endpoint)
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
            super::archive::write_as_ready(w, &image, &ready)
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
            super::archive::write_prefix(w, &img, &bytes, leading, from)
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

pub async fn write_output(image: &PulledImage, output: &Output) -> anyhow::Result<String> {
    let fail = |e: anyhow::Error| e;
    match output {
        Output::Oci(dir) => {
            let (dir2, image2) = (dir.clone(), image.clone());
            tokio::task::spawn_blocking(move || super::oci::write(&dir2, &image2))
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
                // The archive holds every blob: check the room before writing.
                let need: u64 = image2.layers.iter().map(|l| l.size).sum::<u64>()
                    + image2.config.size
                    + 1024 * 1024;
                let free = super::free_space(dir)?;
                if need > free {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::StorageFull,
                        format!(
                            "it needs {need} bytes in {}, {free} are free",
                            dir.display()
                        ),
                    ));
                }
                let tmp = tempfile::NamedTempFile::new_in(dir)?;
                let f = super::archive::write(std::io::BufWriter::new(tmp.reopen()?), &image2)?;
                f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                tmp.persist(&file2).map_err(|e| e.error)?;
                Ok(())
            })
            .await
            .map_err(|e| fail(anyhow!(e)))?
            .map_err(|e| fail(anyhow!("cannot write {}: {e}", file.display())))?;
            Ok(format!("wrote docker-archive {}", file.display()))
        }
        Output::Docker => Err(anyhow!("the image load into the engine never started")),
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
