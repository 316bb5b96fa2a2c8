//! The nightly job: a systemd service and timer (`Persistent=true` catches
//! up a run missed while the machine was off; `RandomizedDelaySec` keeps a
//! fleet from hitting the mirrors in the same second), or a `/etc/cron.d`
//! entry with a fixed per-machine delay. Either runs `dmirror apply`
//! non-interactively; its plain-line output goes to the journal (or syslog)
//! and its exit code to the unit's state. This module writes, enables and
//! removes them; `commands::schedule` checks the options.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::files;

/// Why installing or removing the job failed.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// A file could not be written or removed: the user must fix it.
    #[error("{0}")]
    Refused(String),
    /// systemd would not enable the timer.
    #[error("{0}")]
    Systemd(String),
}

/// Where the job's files go.
#[derive(Debug, Clone)]
pub struct Places {
    pub unit_dir: PathBuf,
    pub cron_dir: PathBuf,
    /// A user's job (`systemctl --user`, their own engine, e.g. rootless
    /// Docker), not the system's.
    pub user: bool,
}

impl Places {
    /// Whether to drive systemctl for these units: the system's units
    /// where systemd runs, a user's where their manager runs.
    fn managed(&self) -> bool {
        if self.user {
            let manager = std::env::var_os("XDG_RUNTIME_DIR")
                .map(|d| PathBuf::from(d).join("systemd/private"));
            Some(&self.unit_dir) == user_unit_dir().as_ref() && manager.is_some_and(|m| m.exists())
        } else {
            manages(&self.unit_dir)
        }
    }

    fn systemctl(&self, args: &[&str]) -> Result<(), String> {
        let mut all = Vec::with_capacity(args.len() + 1);
        if self.user {
            all.push("--user");
        }
        all.extend_from_slice(args);
        systemctl(&all)
    }

    /// `systemctl` or `systemctl --user`, for messages.
    fn shown(&self) -> &'static str {
        if self.user {
            "systemctl --user"
        } else {
            "systemctl"
        }
    }

    /// Every file a job of either kind consists of.
    pub fn all(&self) -> [PathBuf; 3] {
        [
            self.unit_dir.join(TIMER),
            self.unit_dir.join(SERVICE),
            self.cron_dir.join(CRON_FILE),
        ]
    }
}

pub const SERVICE: &str = "dmirror-apply.service";
pub const TIMER: &str = "dmirror-apply.timer";
/// No dot: cron ignores files in cron.d whose names hold one.
pub const CRON_FILE: &str = "dmirror";
/// The spread of start times across machines.
pub const SPREAD_SECS: u64 = 30 * 60;
const DEFAULT_UNIT_DIR: &str = "/etc/systemd/system";

/// What the job runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub exe: PathBuf,
    /// `apply` and its options.
    pub args: Vec<String>,
    /// The user mirror file's home, as the installer sees it, so the job
    /// reads the same `mirrors.toml`.
    pub config_home: Option<PathBuf>,
}

/// Why `exe` should not be what a nightly job runs: it lives in a cargo
/// build directory or a temporary one, and will be rebuilt, cleaned or
/// deleted under the job.
pub fn transient(exe: &Path) -> Option<&'static str> {
    let text = exe.to_string_lossy();
    let parts: Vec<&str> = text.split('/').collect();
    let built = parts
        .windows(2)
        .any(|w| w[0] == "target" && matches!(w[1], "debug" | "release"))
        || parts.contains(&"deps");
    if built {
        return Some("a cargo build directory");
    }
    let temp = std::env::temp_dir();
    let temps = [
        temp.as_path(),
        Path::new("/tmp"),
        Path::new("/var/tmp"),
        Path::new("/dev/shm"),
    ];
    temps
        .iter()
        .any(|t| exe.starts_with(t))
        .then_some("a temporary directory")
}

impl Job {
    /// Refuse what no unit file or cron line can carry safely: a control
    /// character (a newline would start a new directive or job line).
    /// Everything else is quoted where it is written.
    pub fn check(&self) -> Result<(), ScheduleError> {
        let words = std::iter::once(self.exe.to_string_lossy().into_owned())
            .chain(self.args.iter().cloned())
            .chain(
                self.config_home
                    .iter()
                    .map(|d| format!("XDG_CONFIG_HOME={}", d.to_string_lossy())),
            );
        for w in words {
            if w.chars().any(char::is_control) {
                return Err(ScheduleError::Refused(format!(
                    "{} holds a control character (a newline?); a systemd unit or cron line cannot carry it, so nothing was written",
                    crate::text::clean(&w, 120)
                )));
            }
        }
        Ok(())
    }
}

/// `HH:MM`, 24-hour.
pub fn parse_at(s: &str) -> Result<(u8, u8), String> {
    let bad = || format!("--at {s:?}: give a time of day as HH:MM, e.g. 03:30");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let h: u8 = h.parse().map_err(|_| bad())?;
    let m: u8 = m.parse().map_err(|_| bad())?;
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok((h, m))
}

/// One ExecStart word, quoted as systemd.syntax(7) reads it; `%` and `$`
/// doubled so systemd expands neither specifiers nor variables.
pub(crate) fn systemd_word(w: &str) -> String {
    let w = w.replace('%', "%%").replace('$', "$$");
    if !w.is_empty() && !w.chars().any(|c| c.is_whitespace() || "\"'\\;".contains(c)) {
        return w;
    }
    format!("\"{}\"", w.replace('\\', "\\\\").replace('"', "\\\""))
}

/// One shell word for /bin/sh, with `%` escaped for cron.
fn cron_word(w: &str) -> String {
    let quoted = if !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@".contains(c))
    {
        w.to_owned()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    };
    quoted.replace('%', "\\%")
}

/// A user's systemd units (`~/.config/systemd/user`).
pub fn user_unit_dir() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join("systemd/user"))
}

/// The job's service; a user's (`user`) waits for no system target.
pub fn service_unit(job: &Job, user: bool) -> String {
    let exec = std::iter::once(job.exe.display().to_string())
        .chain(job.args.iter().cloned())
        .map(|w| systemd_word(&w))
        .collect::<Vec<_>>()
        .join(" ");
    let env = job
        .config_home
        .as_ref()
        .map(|d| {
            format!(
                "Environment={}\n",
                systemd_word(&format!("XDG_CONFIG_HOME={}", d.display()))
            )
        })
        .unwrap_or_default();
    let after = if user {
        "After=docker.service"
    } else {
        "Wants=network-online.target\nAfter=network-online.target docker.service"
    };
    format!(
        "\
# Installed by `dmirror schedule install`; remove with `dmirror schedule remove`.
[Unit]
Description=Re-rank registry mirrors and apply the best (dmirror)
{after}

[Service]
Type=oneshot
ExecStart={exec}
{env}StateDirectory=dmirror
Nice=10
IOSchedulingClass=idle
TimeoutStartSec=15min
"
    )
}

pub fn timer_unit(at: (u8, u8)) -> String {
    format!(
        "\
# Installed by `dmirror schedule install`; remove with `dmirror schedule remove`.
[Unit]
Description=Nightly re-ranking of Docker registry mirrors (dmirror)

[Timer]
OnCalendar=*-*-* {:02}:{:02}:00
RandomizedDelaySec={}min
Persistent=true

[Install]
WantedBy=timers.target
",
        at.0,
        at.1,
        SPREAD_SECS / 60
    )
}

pub fn cron_entry(job: &Job, at: (u8, u8), delay_secs: u64) -> String {
    let command: Vec<String> = std::iter::once(job.exe.display().to_string())
        .chain(job.args.iter().cloned())
        .map(|w| cron_word(&w))
        .collect();
    let env = job
        .config_home
        .as_ref()
        .map(|d| format!("XDG_CONFIG_HOME={}\n", d.display()))
        .unwrap_or_default();
    format!(
        "\
# Installed by `dmirror schedule install --cron`; remove with `dmirror schedule remove`.
# Nightly re-ranking of Docker registry mirrors. The sleep is this machine's
# fixed share of a {spread}-minute spread, so a fleet does not hit the mirrors at once.
SHELL=/bin/sh
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
{env}{m} {h} * * * root sleep {delay_secs} && {cmd} 2>&1 | logger -t dmirror
",
        spread = SPREAD_SECS / 60,
        m = at.1,
        h = at.0,
        cmd = command.join(" ")
    )
}

/// A stable per-machine delay in `0..SPREAD_SECS`, from the machine ID (or
/// the host name).
fn machine_delay() -> u64 {
    use sha2::Digest as _;
    let id = std::fs::read_to_string("/etc/machine-id")
        .or_else(|_| std::fs::read_to_string("/proc/sys/kernel/hostname"))
        .unwrap_or_default();
    let d = sha2::Sha256::digest(id.trim().as_bytes());
    let n = u64::from_be_bytes(d[..8].try_into().unwrap_or_default());
    n % SPREAD_SECS
}

fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Whether to drive systemctl for units in `dir`.
pub(crate) fn manages(dir: &Path) -> bool {
    dir == Path::new(DEFAULT_UNIT_DIR) && systemd_running()
}

pub(crate) fn systemctl(args: &[&str]) -> Result<(), String> {
    let out = Command::new("systemctl")
        .args(args)
        .output()
        .map_err(|e| format!("systemctl {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "systemctl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Write one of the job's files atomically, world-readable.
pub(crate) fn write_file(path: &Path, text: &str) -> Result<(), ScheduleError> {
    write_with(path, text.as_bytes(), false)
}

/// `write_file` of a file only root reads (a proxy's or a registry's
/// password).
pub(crate) fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), ScheduleError> {
    write_with(path, bytes, true)
}

fn write_with(path: &Path, bytes: &[u8], secret: bool) -> Result<(), ScheduleError> {
    files::check_writable(path)
        .and_then(|()| {
            if secret {
                files::atomic_write_secret(path, bytes)
            } else {
                files::atomic_write(path, bytes, None)
            }
        })
        .map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                "; run with sudo"
            } else {
                ""
            };
            ScheduleError::Refused(format!("cannot write {}: {e}{hint}", path.display()))
        })
}

/// Remove the systemd units, disabling the timer first where systemd runs.
pub fn remove_systemd(
    places: &Places,
    said: &mut dyn FnMut(String),
) -> Result<bool, ScheduleError> {
    let paths = [places.unit_dir.join(TIMER), places.unit_dir.join(SERVICE)];
    if !paths.iter().any(|p| p.exists()) {
        return Ok(false);
    }
    if places.managed() {
        if let Err(e) = places.systemctl(&["disable", "--now", TIMER]) {
            said(format!("warning: {e}"));
        }
    }
    for p in &paths {
        remove_file(p, said)?;
    }
    if places.managed() {
        if let Err(e) = places.systemctl(&["daemon-reload"]) {
            said(format!("warning: {e}"));
        }
    }
    Ok(true)
}

pub fn remove_cron(places: &Places, said: &mut dyn FnMut(String)) -> Result<bool, ScheduleError> {
    let path = places.cron_dir.join(CRON_FILE);
    if !path.exists() {
        return Ok(false);
    }
    remove_file(&path, said)?;
    Ok(true)
}

pub(crate) fn remove_file(path: &Path, said: &mut dyn FnMut(String)) -> Result<(), ScheduleError> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            said(format!("removed {}", path.display()));
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => {
            let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                "; run with sudo"
            } else {
                ""
            };
            Err(ScheduleError::Refused(format!(
                "cannot remove {}: {e}{hint}",
                path.display()
            )))
        }
    }
}

/// The files a job of the kind asked for consists of, with their text.
pub fn job_files(job: &Job, at: (u8, u8), cron: bool, places: &Places) -> Vec<(PathBuf, String)> {
    if cron {
        vec![(
            places.cron_dir.join(CRON_FILE),
            cron_entry(job, at, machine_delay()),
        )]
    } else {
        vec![
            (
                places.unit_dir.join(SERVICE),
                service_unit(job, places.user),
            ),
            (places.unit_dir.join(TIMER), timer_unit(at)),
        ]
    }
}

/// Write the job's files, remove a job of the other kind (one nightly job,
/// not two), and enable the timer where systemd manages `unit_dir`.
pub fn install(
    job: &Job,
    at: (u8, u8),
    cron: bool,
    places: &Places,
    note: &mut dyn FnMut(String),
) -> Result<(), ScheduleError> {
    job.check()?;
    for (path, text) in job_files(job, at, cron, places) {
        write_file(&path, &text)?;
        note(format!("wrote {}", path.display()));
    }
    if cron {
        remove_systemd(places, note)?;
        note(format!(
            "the nightly apply runs at {:02}:{:02} (plus this machine's fixed delay); its output goes to syslog (tag dmirror)",
            at.0, at.1
        ));
        return Ok(());
    }
    remove_cron(places, note)?;
    let ctl = places.shown();
    if places.managed() {
        places
            .systemctl(&["daemon-reload"])
            .and_then(|()| places.systemctl(&["enable", "--now", TIMER]))
            .map_err(ScheduleError::Systemd)?;
        note(format!(
            "enabled {TIMER}: the nightly apply runs at {:02}:{:02} plus up to {} minutes; see {ctl} list-timers and journalctl {}-u {SERVICE}",
            at.0,
            at.1,
            SPREAD_SECS / 60,
            if places.user { "--user " } else { "" }
        ));
    } else {
        note(format!(
            "systemd does not manage {} here; enable the timer with: {ctl} daemon-reload && {ctl} enable --now {TIMER}",
            places.unit_dir.display()
        ));
    }
    Ok(())
}

/// The binary a job or service runs: `binary`, or this one unless it
/// lives in a build or temporary directory.
pub fn installed_binary(binary: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(b) = binary {
        return b
            .canonicalize()
            .map_err(|e| format!("--binary {}: {e}", b.display()));
    }
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| format!("cannot tell where dmirror is installed: {e}"))?;
    if let Some(place) = transient(&exe) {
        return Err(format!(
            "this dmirror runs from {} ({place}), which an installed job or service cannot rely on; install it first (cargo install --locked --path . --root /usr/local), then run /usr/local/bin/dmirror from there, or name a binary with --binary",
            exe.display()
        ));
    }
    Ok(exe)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(args: &[&str]) -> Job {
        Job {
            exe: "/usr/local/bin/dmirror".into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            config_home: Some("/root/.config".into()),
        }
    }

    #[test]
    fn built_and_temporary_binaries_are_transient() {
        assert!(transient(Path::new("/home/u/dmirror/target/release/dmirror")).is_some());
        assert!(transient(Path::new("/home/u/dmirror/target/debug/deps/dmirror-1f2e")).is_some());
        assert!(transient(Path::new("/tmp/x/dmirror")).is_some());
        assert!(transient(Path::new("/usr/local/bin/dmirror")).is_none());
        assert!(transient(Path::new("/root/.cargo/bin/dmirror")).is_none());
    }

    #[test]
    fn times_of_day() {
        assert_eq!(parse_at("03:30"), Ok((3, 30)));
        assert_eq!(parse_at("23:59"), Ok((23, 59)));
        assert!(parse_at("24:00").unwrap_err().contains("HH:MM"));
        assert!(parse_at("3pm").is_err());
        assert!(parse_at("03:60").is_err());
    }

    #[test]
    fn exec_words_are_quoted_for_systemd() {
        let unit = service_unit(
            &job(&["apply", "--reload", "--mirrors", "/etc/my mirrors.toml"]),
            false,
        );
        assert!(unit.contains("After=network-online.target docker.service\n"));
        let user = service_unit(&job(&["apply", "--reload"]), true);
        assert!(!user.contains("network-online"), "{user}");
        assert!(user.contains("After=docker.service\n"), "{user}");
        assert!(
            unit.contains(
                "ExecStart=/usr/local/bin/dmirror apply --reload --mirrors \"/etc/my mirrors.toml\"\n"
            ),
            "{unit}"
        );
        assert_eq!(systemd_word("100%"), "100%%");
        assert_eq!(systemd_word("$HOME"), "$$HOME");
        assert!(unit.contains("Environment=XDG_CONFIG_HOME=/root/.config\n"));
    }

    #[test]
    fn the_timer_catches_up_and_spreads() {
        let t = timer_unit((4, 5));
        assert!(t.contains("OnCalendar=*-*-* 04:05:00\n"));
        assert!(t.contains("Persistent=true\n"));
        assert!(t.contains("RandomizedDelaySec=30min\n"));
        assert!(t.contains("WantedBy=timers.target\n"));
    }

    #[test]
    fn cron_lines_have_time_user_and_escaped_command() {
        let c = cron_entry(
            &job(&["apply", "--reload", "--textfile", "/x/it's 100%.prom"]),
            (4, 5),
            77,
        );
        let line = c
            .lines()
            .find(|l| !l.starts_with('#') && !l.contains('='))
            .unwrap();
        let fields: Vec<&str> = line.splitn(7, ' ').collect();
        assert_eq!(&fields[..6], ["5", "4", "*", "*", "*", "root"]);
        assert!(
            fields[6].starts_with("sleep 77 && /usr/local/bin/dmirror apply --reload --textfile '/x/it'\\''s 100\\%.prom'"),
            "{line}"
        );
    }
}
