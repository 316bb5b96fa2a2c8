//! What a pull produces: the verified manifest, config and layers of one
//! platform's image, all in the cache, ready for any output format.

use std::path::PathBuf;

use crate::reference::{Reference, DOCKER_HUB};
use crate::registry::manifest::Descriptor;

#[derive(Debug, Clone)]
pub struct PulledImage {
    pub reference: Reference,
    /// The platform manifest's exact bytes, its media type and digest.
    pub manifest: Vec<u8>,
    pub manifest_media_type: String,
    pub manifest_digest: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    /// Where each verified blob is, by digest.
    pub blob_dir: PathBuf,
}

impl PulledImage {
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.blob_dir
            .join(digest.strip_prefix("sha256:").unwrap_or(digest))
    }

    /// The name `docker load` tags the image with, the way Docker prints it
    /// (`ubuntu:latest`, `bitnami/redis:7`, `ghcr.io/o/app:v1`); `None` for a
    /// reference pinned only by digest.
    pub fn repo_tag(&self) -> Option<String> {
        let tag = self.reference.tag.as_deref()?;
        let r = &self.reference;
        let name = if r.registry == DOCKER_HUB {
            r.repository
                .strip_prefix("library/")
                .unwrap_or(&r.repository)
                .to_owned()
        } else {
            format!("{}/{}", r.registry, r.repository)
        };
        Some(format!("{name}:{tag}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(r: &str) -> PulledImage {
        let d = Descriptor {
            media_type: None,
            digest: format!("sha256:{}", "0".repeat(64)),
            size: 0,
            platform: None,
            annotations: None,
        };
        PulledImage {
            reference: r.parse().unwrap(),
            manifest: Vec::new(),
            manifest_media_type: String::new(),
            manifest_digest: String::new(),
            config: d,
            layers: Vec::new(),
            blob_dir: PathBuf::new(),
        }
    }

    #[test]
    fn repo_tags_read_like_docker() {
        assert_eq!(image("ubuntu").repo_tag().unwrap(), "ubuntu:latest");
        assert_eq!(
            image("bitnami/redis:7").repo_tag().unwrap(),
            "bitnami/redis:7"
        );
        assert_eq!(
            image("ghcr.io/o/app:v1").repo_tag().unwrap(),
            "ghcr.io/o/app:v1"
        );
        assert_eq!(
            image(&format!("ubuntu@sha256:{}", "a".repeat(64))).repo_tag(),
            None
        );
    }
}
