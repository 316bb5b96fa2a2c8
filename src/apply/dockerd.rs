//! The dockerd target: `registry-mirrors` in daemon.json (Docker Hub
//! mirrors at a root only: dockerd can use nothing else there), taken by a
//! reload (SIGHUP: no container downtime) or a restart, and checked through
//! the Engine API's `/info`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Activation, ApplyError, ConfError, Merged, Target};
use crate::config::Mirror;
use crate::daemon::config_file::DaemonJson;
use crate::daemon::control::{self, ControlError, DaemonControl};
use crate::daemon::engine::Engine;
use crate::daemon::same_mirrors;

/// dockerd, its configuration file and how to reach it.
pub struct Dockerd<C: DaemonControl> {
    /// daemon.json.
    pub daemon_json: PathBuf,
    pub control: C,
    pub engine: Engine,
    /// Restart instead of reload.
    pub restart: bool,
    /// How long dockerd has to report the new list.
    pub verify_timeout: Duration,
}

impl<C: DaemonControl> Dockerd<C> {
    fn tell(&self) -> Result<String, ControlError> {
        if self.restart {
            self.control.restart()
        } else {
            self.control.reload()
        }
    }
}

impl<C: DaemonControl> Target for Dockerd<C> {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn daemon(&self) -> &'static str {
        "dockerd"
    }

    fn file(&self, _registry: &str) -> PathBuf {
        self.daemon_json.clone()
    }

    fn preflight(&self, _note: &dyn Fn(String)) -> Result<(), ApplyError> {
        match self
            .control
            .command_line()
            .filter(|c| control::has_mirror_flag(c))
        {
            Some(cmdline) => Err(ApplyError::Refused(format!(
                "dockerd runs with --registry-mirror on its command line ({}); a \"registry-mirrors\" key in {} would stop it from starting. Remove the flag from its service first (systemctl edit docker)",
                cmdline.join(" "),
                self.daemon_json.display()
            ))),
            None => Ok(()),
        }
    }

    fn configured(&self, text: &str, _registry: &str) -> Result<Vec<String>, ConfError> {
        let doc = DaemonJson::parse(text).map_err(|e| ConfError::Shape(e.to_string()))?;
        doc.mirrors().map_err(|e| ConfError::Shape(e.to_string()))
    }

    fn key(&self, mirror: &Mirror, _registry: &str) -> Option<String> {
        mirror
            .is_docker_hub_mirror()
            .then(|| mirror.url.as_str().trim_end_matches('/').to_owned())
    }

    fn merge(&self, text: &str, registry: &str, chosen: &[&Mirror]) -> Result<Merged, ConfError> {
        let mut doc = DaemonJson::parse(text).map_err(|e| ConfError::Shape(e.to_string()))?;
        let urls: Vec<String> = chosen
            .iter()
            .filter_map(|m| self.key(m, registry))
            .collect();
        doc.set_mirrors(&urls);
        Ok(Merged {
            text: doc.render(),
            dropped: Vec::new(),
        })
    }

    fn validate(&self, file: &Path, text: &str) -> Result<(), String> {
        match validate(&super::file::parent(file), text) {
            Some(Err(why)) => Err(format!(
                "dockerd --validate rejects the new {}: {why}",
                file.display()
            )),
            _ => Ok(()),
        }
    }

    fn written(&self, file: &Path, _registries: &[&str], _mirrors: usize) -> String {
        format!("wrote {}", file.display())
    }

    fn untouched(&self) -> &'static str {
        ", dockerd not reloaded"
    }

    async fn activate(&self, want: &[String], note: &dyn Fn(String)) -> Activation {
        if self.restart {
            warn_about_containers(&self.engine, note).await;
        }
        let action = match self.tell() {
            Ok(how) => how,
            // "Not running" is the Engine API's answer, not a pidfile's.
            Err(ControlError::NotRunning(why)) => match self.engine.info().await {
                Err(_) => return Activation::NotRunning(why),
                Ok(_) => {
                    return Activation::Refused(format!(
                        "a Docker engine answers at {}, but dmirror cannot tell which process it is ({why}); reload dockerd yourself, or name its pidfile with --dockerd-pidfile",
                        self.engine.endpoint()
                    ))
                }
            },
            Err(ControlError::Failed(why)) => return Activation::Refused(why),
        };
        match wait_for(&self.engine, want, self.verify_timeout).await {
            Ok(running) => Activation::Taken { action, running },
            Err((running, why)) => Activation::NotTaken {
                action,
                running,
                why: format!(
                    "dockerd did not take the new list within {} ({why})",
                    humantime::format_duration(self.verify_timeout)
                ),
            },
        }
    }

    async fn retell(&self) -> Result<String, String> {
        self.tell().map_err(|e| e.to_string())
    }
}

/// `dockerd --validate` on the new text, where this dockerd can.
fn validate(dir: &Path, text: &str) -> Option<Result<(), String>> {
    control::which("dockerd")?;
    let tmp = tempfile::Builder::new()
        .prefix(".dmirror-validate-")
        .tempfile_in(dir)
        .or_else(|_| tempfile::NamedTempFile::new())
        .ok()?;
    std::fs::write(tmp.path(), text).ok()?;
    control::validate(tmp.path())
}

/// Poll the engine until it runs `want`. On failure, the last list seen and why.
async fn wait_for(
    engine: &Engine,
    want: &[String],
    timeout: Duration,
) -> Result<Vec<String>, (Option<Vec<String>>, String)> {
    let start = Instant::now();
    let mut last: Option<Vec<String>> = None;
    let mut why: String;
    loop {
        match engine.info().await {
            Ok(info) => {
                let mirrors = info.registry_config.mirrors.unwrap_or_default();
                if same_mirrors(&mirrors, want) {
                    return Ok(mirrors);
                }
                why = format!("it still reports {mirrors:?}");
                last = Some(mirrors);
            }
            Err(e) => why = format!("{e}; set DOCKER_HOST if dockerd listens elsewhere"),
        }
        if start.elapsed() >= timeout {
            return Err((last, why));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn warn_about_containers(engine: &Engine, note: &dyn Fn(String)) {
    if let Ok(info) = engine.info().await {
        if info.containers_running > 0 && !info.live_restore_enabled {
            note(format!(
                "warning: restarting dockerd stops {} running container(s) (live-restore is off); --reload would not",
                info.containers_running
            ));
        }
    }
}
