//! `dmirror serve install`: a systemd service for the server, with its own
//! dynamic user, state and cache directories, and a sandbox; ordered
//! before docker.service and containerd.service so the engines find their
//! mirror up when they start.

use std::path::Path;

use crate::schedule::{self, ScheduleError};

pub const SERVICE: &str = "dmirror-serve.service";

/// The unit running `exe args…`.
pub fn service(exe: &Path, args: &[String]) -> Result<String, ScheduleError> {
    schedule::Job {
        exe: exe.to_owned(),
        args: args.to_vec(),
        config_home: None,
    }
    .check()?;
    let words: Vec<String> = std::iter::once(exe.display().to_string())
        .chain(args.iter().cloned())
        .collect();
    let exec = words
        .iter()
        .map(|w| schedule::systemd_word(w))
        .collect::<Vec<_>>()
        .join(" ");
    Ok(format!(
        "\
# Installed by `dmirror serve install`; remove with `dmirror serve remove`.
[Unit]
Description=Local registry mirror over the ranked mirrors (dmirror serve)
Wants=network-online.target
After=network-online.target
Before=docker.service containerd.service

[Service]
Type=exec
ExecStart={exec}
Restart=on-failure
RestartSec=2s
# Running transfers get time to finish on stop.
TimeoutStopSec=45s
DynamicUser=yes
StateDirectory=dmirror
CacheDirectory=dmirror
Environment=XDG_STATE_HOME=/var/lib XDG_CACHE_HOME=/var/cache XDG_CONFIG_HOME=/etc
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
CapabilityBoundingSet=
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
"
    ))
}

/// Write the unit and start it where systemd manages its directory.
pub fn install(path: &Path, text: &str, note: &mut dyn FnMut(String)) -> Result<(), ScheduleError> {
    schedule::write_file(path, text)?;
    note(format!("wrote {}", path.display()));
    let dir = path.parent().unwrap_or(Path::new("/"));
    if schedule::manages(dir) {
        schedule::systemctl(&["daemon-reload"])
            .and_then(|()| schedule::systemctl(&["enable", "--now", SERVICE]))
            .map_err(ScheduleError::Systemd)?;
        note(format!(
            "enabled and started {SERVICE}; see journalctl -u {SERVICE}"
        ));
    } else {
        note(format!(
            "systemd does not manage {} here; start it with: systemctl daemon-reload && systemctl enable --now {SERVICE}",
            dir.display()
        ));
    }
    Ok(())
}

/// Stop, disable and remove the unit. `false` when none was installed.
pub fn remove(path: &Path, said: &mut dyn FnMut(String)) -> Result<bool, ScheduleError> {
    if !path.exists() {
        return Ok(false);
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    if schedule::manages(dir) {
        if let Err(e) = schedule::systemctl(&["disable", "--now", SERVICE]) {
            said(format!("warning: {e}"));
        }
    }
    schedule::remove_file(path, said)?;
    if schedule::manages(dir) {
        if let Err(e) = schedule::systemctl(&["daemon-reload"]) {
            said(format!("warning: {e}"));
        }
    }
    Ok(true)
}
