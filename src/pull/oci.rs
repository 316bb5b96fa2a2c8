//! An OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`), as
//! skopeo, podman and containerd read it. An existing layout in the
//! directory keeps its other images; an entry with the same name is replaced.
//!
//! The directory may be shared with others (`/tmp/out`): nothing is ever
//! opened through a link inside it. Blobs are hard-linked from the cache or
//! copied into a fresh temporary file (`O_EXCL`) renamed into place; a link
//! found where a directory or a blob goes is refused, not followed.

use std::fs;
use std::io;
use std::path::Path;

use serde_json::{json, Value};

use super::cache::hash_file;
use super::image::PulledImage;
use crate::files::atomic_write;
use crate::registry::manifest::{DOCKER_MANIFEST, OCI_MANIFEST};

const REF_NAME: &str = "org.opencontainers.image.ref.name";

fn link_refused(path: &Path) -> io::Error {
    io::Error::other(format!(
        "{} is a symbolic link; dmirror does not write through links it did not make. Remove it or choose another directory",
        path.display()
    ))
}

/// `path` as a real directory (created if absent), never a link.
fn real_dir(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(link_refused(path)),
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(io::Error::other(format!(
            "{} is not a directory",
            path.display()
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(path),
        Err(e) => Err(e),
    }
}

/// Whether a regular file holding `digest` is at `to` already. A link is
/// refused; a file with other bytes is replaced.
fn present(to: &Path, digest: &str) -> io::Result<bool> {
    match fs::symlink_metadata(to) {
        Ok(m) if m.file_type().is_symlink() => Err(link_refused(to)),
        Ok(m) if m.is_file() => Ok(hash_file(to)? == digest),
        Ok(_) => Err(io::Error::other(format!("{} is not a file", to.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Put the cache's copy of `digest` at `to`: a hard link when the cache
/// shares the filesystem, else a copy through a fresh temporary file.
fn place(from: &Path, to: &Path) -> io::Result<()> {
    if fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    let dir = to.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".dmirror-blob-")
        .tempfile_in(dir)?;
    io::copy(&mut fs::File::open(from)?, tmp.as_file_mut())?;
    tmp.as_file().sync_all()?;
    tmp.persist(to).map_err(|e| e.error)?;
    Ok(())
}

pub fn write(dir: &Path, image: &PulledImage) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    for sub in ["blobs", "blobs/sha256"] {
        real_dir(&dir.join(sub))?;
    }
    let blobs = dir.join("blobs/sha256");
    let layout = dir.join("oci-layout");
    if fs::symlink_metadata(&layout).is_err() {
        atomic_write(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#, None)?;
    }
    let mut digests = vec![image.config.digest.clone()];
    digests.extend(image.layers.iter().map(|l| l.digest.clone()));
    for d in &digests {
        let to = blobs.join(d.strip_prefix("sha256:").unwrap_or(d));
        if present(&to, d)? {
            continue;
        }
        let _ = fs::remove_file(&to);
        place(&image.blob_path(d), &to)?;
    }
    let (manifest, media_type) = as_oci(image)?;
    let manifest_digest = crate::registry::digest::of(&manifest);
    let manifest_path = blobs.join(
        manifest_digest
            .strip_prefix("sha256:")
            .unwrap_or(&manifest_digest),
    );
    atomic_write(&manifest_path, &manifest, None)?;

    let index_path = dir.join("index.json");
    if fs::symlink_metadata(&index_path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(link_refused(&index_path));
    }
    let existing = crate::files::read_regular(&index_path, 16 << 20)
        .map_err(|e| io::Error::other(format!("{}: {e}", index_path.display())))?;
    let mut index: Value = match existing {
        Some(b) => serde_json::from_slice(&b).map_err(|e| {
            io::Error::other(format!(
                "{} is not a readable OCI index ({e}); choose an empty directory",
                index_path.display()
            ))
        })?,
        None => {
            json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []})
        }
    };
    let name = image.reference.tag.clone();
    let mut entry = json!({
        "mediaType": media_type,
        "digest": manifest_digest,
        "size": manifest.len(),
    });
    if let Some(n) = &name {
        entry["annotations"] = json!({ REF_NAME: n });
    }
    let manifests = index
        .get_mut("manifests")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| {
            io::Error::other(format!("{} has no manifests list", index_path.display()))
        })?;
    manifests.retain(|m| match &name {
        Some(n) => m["annotations"][REF_NAME].as_str() != Some(n),
        None => m["digest"] != entry["digest"],
    });
    manifests.push(entry);
    atomic_write(
        &index_path,
        &serde_json::to_vec_pretty(&index).map_err(io::Error::other)?,
        None,
    )
}

/// The image's manifest as an OCI layout must hold it. OCI readers
/// (containers/image behind skopeo and podman) look only at index entries of
/// OCI types, so a Docker schema-2 manifest is converted the way `skopeo
/// copy` converts it: the same blobs under OCI media types. The blobs, and
/// so the image, are unchanged; only the manifest's digest differs.
fn as_oci(image: &PulledImage) -> io::Result<(Vec<u8>, String)> {
    if image.manifest_media_type != DOCKER_MANIFEST {
        return Ok((image.manifest.clone(), image.manifest_media_type.clone()));
    }
    let mut m: Value = serde_json::from_slice(&image.manifest).map_err(io::Error::other)?;
    fn oci_type(docker: &str) -> &str {
        match docker {
            "application/vnd.docker.container.image.v1+json" => {
                "application/vnd.oci.image.config.v1+json"
            }
            "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
                "application/vnd.oci.image.layer.v1.tar+gzip"
            }
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            }
            "application/vnd.docker.image.rootfs.diff.tar" => {
                "application/vnd.oci.image.layer.v1.tar"
            }
            "" => "application/vnd.oci.image.layer.v1.tar+gzip",
            other => other,
        }
    }
    let obj = m
        .as_object_mut()
        .ok_or_else(|| io::Error::other("the manifest is not a JSON object"))?;
    obj.insert("mediaType".into(), json!(OCI_MANIFEST));
    if let Some(c) = obj.get_mut("config") {
        let t = c["mediaType"].as_str().unwrap_or_default().to_owned();
        c["mediaType"] = json!(oci_type(&t));
    }
    if let Some(layers) = obj.get_mut("layers").and_then(Value::as_array_mut) {
        for l in layers {
            let t = l["mediaType"].as_str().unwrap_or_default().to_owned();
            l["mediaType"] = json!(oci_type(&t));
        }
    }
    Ok((
        serde_json::to_vec(&m).map_err(io::Error::other)?,
        OCI_MANIFEST.to_owned(),
    ))
}
