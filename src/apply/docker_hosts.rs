//! Docker's own per-registry hosts files: with the containerd image store
//! (the default of fresh Docker Engine 29+ installs), dockerd reads
//! `<certs.d>/<registry>/hosts.toml` live, for every registry, as
//! containerd does. The format is containerd's, so this target is the
//! containerd one writing into Docker's certs.d; what differs is what it
//! tells the user about daemon.json.

use std::path::{Path, PathBuf};

use super::{ConfError, Containerd, Merged, Target};
use crate::config::Mirror;

/// dockerd's hosts files under its certs.d.
pub struct DockerHosts {
    pub inner: Containerd,
}

impl Target for DockerHosts {
    fn name(&self) -> &'static str {
        "docker-hosts"
    }

    fn daemon(&self) -> &'static str {
        "dockerd"
    }

    fn file(&self, registry: &str) -> PathBuf {
        self.inner.file(registry)
    }

    fn lock_dir(&self, files: &[PathBuf]) -> PathBuf {
        self.inner.lock_dir(files)
    }

    fn configured(&self, text: &str, registry: &str) -> Result<Vec<String>, ConfError> {
        self.inner.configured(text, registry)
    }

    fn key(&self, mirror: &Mirror, registry: &str) -> Option<String> {
        self.inner.key(mirror, registry)
    }

    fn merge(&self, text: &str, registry: &str, chosen: &[&Mirror]) -> Result<Merged, ConfError> {
        self.inner.merge(text, registry, chosen)
    }

    fn written(&self, file: &Path, registries: &[&str], mirrors: usize) -> String {
        format!(
            "dockerd (containerd image store) uses {mirrors} mirror(s) of {} from {} from its next pull on, no restart; with the upstream and a mirror named there, daemon.json's registry-mirrors no longer apply to {}",
            registries.join(", "),
            file.display(),
            registries.join(", ")
        )
    }
}
