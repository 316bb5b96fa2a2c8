//! `dmirror serve install`: a systemd service for the server, with its own
//! dynamic user, state and cache directories, and a sandbox; ordered
//! before docker.service and containerd.service so the engines find their
//! mirror up when they start.

use std::path::Path;

use crate::schedule::{self, ScheduleError};

pub const SERVICE: &str = "dmirror-serve.service";

/// The unit running `exe args…`.
/// The file holding the proxy the service reaches the mirrors through
/// (root's only: a proxy's URL may carry its password), beside the unit.
pub const ENV_FILE: &str = "dmirror-serve.env";

/// The environment file for a service reaching the mirrors through
/// `route` (the engine's proxy, read at install time); `None` when it is
/// not a proxy.
pub fn proxy_env(route: &crate::net::Route) -> Result<Option<String>, ScheduleError> {
    let crate::net::Route::Proxy {
        http,
        https,
        no_proxy,
        ..
    } = route
    else {
        return Ok(None);
    };
    let vars: Vec<(&str, String)> = [
        ("HTTP_PROXY", http),
        ("HTTPS_PROXY", https),
        ("NO_PROXY", no_proxy),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k, v.clone()?)))
    .collect();
    env_file(&vars).map(Some)
}

/// Docker's logins for the mirrors of `list`, for the service (its own
/// user reads neither the installer's config nor its credential helpers).
pub fn logins(
    list: &crate::config::MirrorList,
    docker: &crate::net::login::Logins,
) -> Result<Option<crate::net::login::Exported>, ScheduleError> {
    let urls: Vec<reqwest::Url> = list.enabled().map(|m| m.url.clone()).collect();
    docker
        .export(&urls)
        .map_err(|e| {
            ScheduleError::Refused(format!(
                "cannot read Docker's logins for the service: {e}; fix it and install again (nothing was written)"
            ))
        })
}

/// The environment file's text: one `NAME=value` line each. Values a
/// systemd environment file cannot carry plainly are refused.
fn env_file(vars: &[(&str, String)]) -> Result<String, ScheduleError> {
    let mut text =
        String::from("# Written by `dmirror serve install`: the Docker engine's proxy.\n");
    for (name, value) in vars {
        if let Some(c) = value
            .chars()
            .find(|c| c.is_control() || c.is_whitespace() || "\"'\\$".contains(*c))
        {
            return Err(ScheduleError::Refused(format!(
                "the engine's {name} holds {c:?}, which a systemd environment file cannot carry plainly; percent-encode it in the URL, or pass -- --proxy URL"
            )));
        }
        text.push_str(&format!("{name}={value}\n"));
    }
    Ok(text)
}

/// Docker's logins for the service's mirrors (root's only), passed to the
/// service as a systemd credential: its own user cannot read root's files.
pub const LOGINS_FILE: &str = "dmirror-serve.docker-config.json";

/// Files beside the unit the service reads: the proxy's environment, the
/// logins.
#[derive(Debug, Default, Clone, Copy)]
pub struct Extras<'a> {
    pub env: Option<&'a Path>,
    pub logins: Option<&'a Path>,
}

pub fn service(exe: &Path, args: &[String], extras: Extras<'_>) -> Result<String, ScheduleError> {
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
    let word = |p: &Path| schedule::systemd_word(&p.display().to_string());
    let mut env = extras
        .env
        .map(|p| format!("EnvironmentFile={}\n", word(p)))
        .unwrap_or_default();
    if let Some(p) = extras.logins {
        // %d: the service's credentials directory; Docker's config dir.
        env.push_str(&format!(
            "LoadCredential=config.json:{}\nEnvironment=DOCKER_CONFIG=%d\n",
            word(p)
        ));
    }
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
{env}NoNewPrivileges=yes
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
pub fn install(
    path: &Path,
    text: &str,
    secrets: &[(&Path, &[u8])],
    note: &mut dyn FnMut(String),
) -> Result<(), ScheduleError> {
    for (p, bytes) in secrets {
        schedule::write_secret(p, bytes)?;
        note(format!("wrote {} (readable by root only)", p.display()));
    }
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
    schedule::remove_file(&dir.join(ENV_FILE), said)?;
    schedule::remove_file(&dir.join(LOGINS_FILE), said)?;
    if schedule::manages(dir) {
        if let Err(e) = schedule::systemctl(&["daemon-reload"]) {
            said(format!("warning: {e}"));
        }
    }
    Ok(true)
}
