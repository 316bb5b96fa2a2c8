//! The docker-archive format `docker load` reads: `manifest.json`
//! (`[{Config, RepoTags, Layers}]`), the config, and each layer as stored
//! (compressed layers are accepted). Written as a stream into any `Write`,
//! so the same code fills a file or feeds the Engine API.

use std::fs::File;
use std::io::{self, Write};

use super::image::PulledImage;

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_size(bytes.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    tar.append_data(&mut h, name, bytes)
}

/// Write the archive of `image`, whose blobs are all in the cache.
pub fn write<W: Write>(out: W, image: &PulledImage) -> io::Result<W> {
    write_as_ready(out, image, &|_| Ok(()))
}

/// Write the archive while the pull is still running: `ready` is called
/// before each blob is read and returns once that verified blob is in the
/// cache (or fails to stop the stream). The tar lists blobs in manifest
/// order, so the engine ingests the first layers while the last download.
pub fn write_as_ready<W: Write>(
    out: W,
    image: &PulledImage,
    ready: &dyn Fn(&std::path::Path) -> io::Result<()>,
) -> io::Result<W> {
    ready(&image.blob_path(&image.config.digest))?;
    let config = std::fs::read(image.blob_path(&image.config.digest))?;
    let tags: Vec<String> = image.repo_tag().into_iter().collect();
    write_parts(out, image, &config, &tags, image.layers.len(), 0, ready)
}

/// The archive of an untagged image made of the first `upto` layers of
/// `image`, under `config` (whose diff IDs name those layers). Layers
/// before `from` are left out: the engine must hold them already.
pub fn write_prefix<W: Write>(
    out: W,
    image: &PulledImage,
    config: &[u8],
    upto: usize,
    from: usize,
) -> io::Result<W> {
    write_parts(out, image, config, &[], upto, from, &|_| Ok(()))
}

fn write_parts<W: Write>(
    out: W,
    image: &PulledImage,
    config: &[u8],
    tags: &[String],
    upto: usize,
    from: usize,
    ready: &dyn Fn(&std::path::Path) -> io::Result<()>,
) -> io::Result<W> {
    use sha2::Digest as _;
    let mut tar = tar::Builder::new(out);
    let config_name = format!("{:x}.json", sha2::Sha256::digest(config));
    let layers = &image.layers[..upto.min(image.layers.len())];
    let layer_names: Vec<String> = layers
        .iter()
        .map(|l| format!("{}/layer.tar", hex(&l.digest)))
        .collect();
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": tags,
        "Layers": layer_names,
    }]);
    append_bytes(
        &mut tar,
        "manifest.json",
        &serde_json::to_vec(&manifest).map_err(io::Error::other)?,
    )?;
    append_bytes(&mut tar, &config_name, config)?;
    let mut written = std::collections::HashSet::new();
    for (layer, name) in layers.iter().zip(&layer_names).skip(from) {
        if !written.insert(layer.digest.clone()) {
            continue;
        }
        ready(&image.blob_path(&layer.digest))?;
        let mut f = File::open(image.blob_path(&layer.digest))?;
        let mut h = tar::Header::new_ustar();
        h.set_size(f.metadata()?.len());
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        tar.append_data(&mut h, name, &mut f)?;
    }
    tar.into_inner()
}
