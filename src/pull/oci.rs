//! An OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`), as
//! skopeo, podman and containerd read it. An existing layout in the
//! directory keeps its other images; an entry with the same name is replaced.

use std::fs;
use std::io;
use std::path::Path;

use serde_json::{json, Value};

use super::image::PulledImage;
use crate::files::atomic_write;

const REF_NAME: &str = "org.opencontainers.image.ref.name";

pub fn write(dir: &Path, image: &PulledImage) -> io::Result<()> {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs)?;
    let layout = dir.join("oci-layout");
    if !layout.exists() {
        atomic_write(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#, None)?;
    }
    let mut digests = vec![image.config.digest.clone()];
    digests.extend(image.layers.iter().map(|l| l.digest.clone()));
    for d in &digests {
        let to = blobs.join(d.strip_prefix("sha256:").unwrap_or(d));
        if to.exists() {
            continue;
        }
        let from = image.blob_path(d);
        // A hard link costs no space when the cache shares the filesystem.
        if fs::hard_link(&from, &to).is_err() {
            let tmp = to.with_extension("tmp");
            fs::copy(&from, &tmp)?;
            fs::rename(&tmp, &to)?;
        }
    }
    let manifest_path = blobs.join(
        image
            .manifest_digest
            .strip_prefix("sha256:")
            .unwrap_or(&image.manifest_digest),
    );
    atomic_write(&manifest_path, &image.manifest, None)?;

    let index_path = dir.join("index.json");
    let mut index: Value = match fs::read(&index_path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| {
            io::Error::other(format!(
                "{} is not a readable OCI index ({e}); choose an empty directory",
                index_path.display()
            ))
        })?,
        Err(_) => {
            json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []})
        }
    };
    let name = image.reference.tag.clone();
    let mut entry = json!({
        "mediaType": image.manifest_media_type,
        "digest": image.manifest_digest,
        "size": image.manifest.len(),
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
