//! Making dockerd take a new daemon.json: reload (SIGHUP; no container
//! downtime) or restart. Behind a small trait so tests and other service
//! managers can stand in.

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No dockerd runs: the new file takes effect when it starts.
    #[error("{0}")]
    NotRunning(String),
    #[error("{0}")]
    Failed(String),
}

pub trait DaemonControl {
    /// Make dockerd re-read its configuration; says how it was done.
    fn reload(&self) -> Result<String, ControlError>;
    /// Restart dockerd; says how it was done.
    fn restart(&self) -> Result<String, ControlError>;
    /// The running dockerd's command line, when it can be read.
    fn command_line(&self) -> Option<Vec<String>>;
}

/// systemd where it manages docker, otherwise a signal to the pid in the
/// pidfile (reload) or the `service` command (restart).
pub struct HostControl {
    pub pidfile: PathBuf,
    pub unit: String,
    /// The process serving the Engine API's socket, when one answers: the
    /// dockerd whose `/info` verifies the change, so the one to tell,
    /// whatever the pidfile says.
    pub engine_pid: Option<i32>,
    /// A rootless engine: its unit is the user's (`systemctl --user`).
    pub user: bool,
}

impl HostControl {
    /// `systemctl`, or `systemctl --user` for a rootless engine.
    fn systemctl(&self) -> Command {
        let mut c = Command::new("systemctl");
        if self.user {
            c.arg("--user");
        }
        c
    }

    fn shown(&self) -> &'static str {
        if self.user {
            "systemctl --user"
        } else {
            "systemctl"
        }
    }

    fn systemd_manages_docker(&self) -> bool {
        Path::new("/run/systemd/system").exists()
            && self
                .systemctl()
                .args(["is-active", "--quiet", &self.unit])
                .status()
                .is_ok_and(|s| s.success())
    }

    /// The dockerd to tell: the one behind the Engine API's socket when it
    /// answers (checked to be dockerd), else the pid in the pidfile.
    fn dockerd_pid(&self) -> Result<i32, ControlError> {
        let Some(pid) = self.engine_pid else {
            return self.pidfile_pid();
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "dockerd" {
            return Ok(pid);
        }
        Err(ControlError::Failed(format!(
            "the Engine API answers from pid {pid}, which is {:?}, not dockerd (a proxy in front of it?); reload dockerd yourself",
            comm.trim()
        )))
    }

    /// The pid in the pidfile, if that process is a live dockerd.
    fn pidfile_pid(&self) -> Result<i32, ControlError> {
        let text = std::fs::read_to_string(&self.pidfile).map_err(|e| {
            ControlError::NotRunning(format!(
                "no dockerd pid in {} ({e})",
                self.pidfile.display()
            ))
        })?;
        let pid: i32 = text.trim().parse().ok().filter(|p| *p > 1).ok_or_else(|| {
            ControlError::Failed(format!(
                "{} holds {:?}, not a pid",
                self.pidfile.display(),
                text.trim()
            ))
        })?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() != "dockerd" {
            return Err(ControlError::NotRunning(format!(
                "{} names pid {pid}, which is not a running dockerd (stale pidfile?)",
                self.pidfile.display()
            )));
        }
        Ok(pid)
    }
}

fn run(cmd: &mut Command) -> Result<(), ControlError> {
    let shown = format!("{cmd:?}").replace('"', "");
    let out = cmd
        .output()
        .map_err(|e| ControlError::Failed(format!("cannot run {shown}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ControlError::Failed(format!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

impl DaemonControl for HostControl {
    fn reload(&self) -> Result<String, ControlError> {
        if self.systemd_manages_docker() {
            run(self.systemctl().args(["reload", &self.unit]))?;
            return Ok(format!("{} reload {}", self.shown(), self.unit));
        }
        let pid = self.dockerd_pid()?;
        // SAFETY: plain kill(2) on a pid we just checked is a dockerd.
        if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(ControlError::Failed(format!(
                "cannot signal dockerd (pid {pid}): {e}; run with sudo"
            )));
        }
        Ok(format!("SIGHUP to dockerd (pid {pid})"))
    }

    fn restart(&self) -> Result<String, ControlError> {
        if self.systemd_manages_docker() {
            run(self.systemctl().args(["restart", &self.unit]))?;
            return Ok(format!("{} restart {}", self.shown(), self.unit));
        }
        if which("service").is_some() {
            run(Command::new("service").args([self.unit.as_str(), "restart"]))?;
            return Ok(format!("service {} restart", self.unit));
        }
        Err(ControlError::Failed(
            "cannot restart dockerd: neither systemd nor the service command manages it here; restart it yourself, or use --reload".into(),
        ))
    }

    fn command_line(&self) -> Option<Vec<String>> {
        let pid = self.dockerd_pid().ok()?;
        let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        Some(
            raw.split(|b| *b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect(),
        )
    }
}

/// The first `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// A dockerd command line that sets mirrors with a flag: then the same key
/// in daemon.json stops dockerd from starting ("specified both as a flag
/// and in the configuration file").
pub fn has_mirror_flag(cmdline: &[String]) -> bool {
    cmdline
        .iter()
        .any(|a| a == "--registry-mirror" || a.starts_with("--registry-mirror="))
}

/// Ask `dockerd --validate` about `file`. `None` when this dockerd cannot
/// validate (before 23.0) or is not installed.
pub fn validate(file: &Path) -> Option<Result<(), String>> {
    let dockerd = which("dockerd")?;
    let out = Command::new(dockerd)
        .arg("--validate")
        .arg("--config-file")
        .arg(file)
        .output()
        .ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        return Some(Ok(()));
    }
    if text.contains("unknown flag") {
        return None;
    }
    Some(Err(text.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_flags_are_spotted() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(has_mirror_flag(&s(&[
            "dockerd",
            "--registry-mirror",
            "https://a"
        ])));
        assert!(has_mirror_flag(&s(&[
            "dockerd",
            "--registry-mirror=https://a"
        ])));
        assert!(!has_mirror_flag(&s(&[
            "dockerd",
            "--config-file",
            "/etc/docker/daemon.json"
        ])));
    }

    #[test]
    fn stale_pidfiles_are_not_signalled() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("docker.pid");
        std::fs::write(&pidfile, std::process::id().to_string()).unwrap();
        let c = HostControl {
            pidfile: pidfile.clone(),
            unit: "docker".into(),
            engine_pid: None,
            user: false,
        };
        assert!(matches!(c.dockerd_pid(), Err(ControlError::NotRunning(_))));
        std::fs::write(&pidfile, "garbage").unwrap();
        assert!(matches!(c.dockerd_pid(), Err(ControlError::Failed(_))));
    }
}
