//! `dmirror apply`: probe, take the best working mirrors, merge them into
//! daemon.json safely, make dockerd take them, check through the Engine API
//! that it did, and roll back if it did not.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use serde::Serialize;

use super::probe::{probe_ranked, resolve, write_textfile, Ranked};
use super::{say, table_width, CommandResult, Failure};
use crate::cli::{ApplyArgs, Format, Target};
use crate::daemon::config_file::DaemonJson;
use crate::daemon::control::{self, ControlError, DaemonControl, HostControl};
use crate::daemon::engine::{Endpoint, Engine};
use crate::daemon::{same_mirrors, write};
use crate::exit::ExitStatus;
use crate::output;
use crate::probe::{MirrorResult, Status};
use crate::rank;

/// How long a second apply waits for the first to finish.
const LOCK_WAIT: Duration = Duration::from_secs(120);

/// What apply did, for the table and `--json`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub daemon_json: PathBuf,
    pub old: Vec<String>,
    pub new: Vec<String>,
    /// One of `unchanged`, `dry-run`, `written`, `applied`, `rolled-back`,
    /// `failed`.
    pub outcome: &'static str,
    /// How dockerd was told (`SIGHUP to dockerd (pid 42)`, ...), if it was.
    pub action: Option<String>,
    /// What the engine reports running after the change, if it was asked.
    pub engine_mirrors: Option<Vec<String>>,
    pub message: String,
}

/// A configuration file as it is now.
pub(super) struct Current {
    /// The file's bytes; `None` when it does not exist.
    pub bytes: Option<Vec<u8>>,
    pub meta: Option<std::fs::Metadata>,
    /// The text, empty for a missing file.
    pub text: String,
}

/// Read a configuration file that must be UTF-8 text, if it exists.
pub(super) fn read_file(path: &Path) -> Result<Current, Failure> {
    let bytes = match std::fs::read(path) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(Failure::usage(anyhow!(
                "cannot read {}: permission denied; run with sudo",
                path.display()
            )))
        }
        Err(e) => {
            return Err(Failure::usage(anyhow!(
                "cannot read {}: {e}",
                path.display()
            )))
        }
    };
    let text = match &bytes {
        Some(b) => std::str::from_utf8(b)
            .map_err(|_| {
                Failure::usage(anyhow!(
                    "{} is not UTF-8 text; fix it by hand, nothing was changed",
                    path.display()
                ))
            })?
            .to_owned(),
        None => String::new(),
    };
    let meta = std::fs::metadata(path).ok();
    Ok(Current { bytes, meta, text })
}

fn read_current(path: &Path) -> Result<(Current, DaemonJson), Failure> {
    let current = read_file(path)?;
    let doc = DaemonJson::parse(&current.text)
        .map_err(|e| Failure::usage(anyhow!("{} {e}; nothing was changed", path.display())))?;
    Ok((current, doc))
}

/// Fail before probing when `path` cannot be written (unless nothing will be).
pub(super) fn check_writable(path: &Path, dry_run: bool) -> Result<(), Failure> {
    if dry_run {
        return Ok(());
    }
    write::check_writable(path).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
            "; run with sudo"
        } else {
            ""
        };
        Failure::usage(anyhow!("cannot write {}: {e}{hint}", path.display()))
    })
}

/// The directory holding `path`.
pub(super) fn parent(path: &Path) -> PathBuf {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned()
}

/// Lock `dir` for writing `what` (unless nothing will be written), saying
/// so when another apply makes us wait.
pub(super) fn lock(
    dir: &Path,
    what: &Path,
    dry_run: bool,
) -> Result<Option<write::DirLock>, Failure> {
    (!dry_run)
        .then(|| {
            write::lock_dir(dir, LOCK_WAIT, || {
                say(format!(
                    "waiting for another dmirror apply to finish with {}",
                    what.display()
                ))
            })
        })
        .transpose()
        .map_err(|e| Failure::new(ExitStatus::NothingUsable, e))
}

/// A unified diff of a configuration file, for `--dry-run`.
pub(super) fn diff(path: &Path, old: &str, new: &str) -> String {
    let shown = path.display().to_string();
    let diff = similar::TextDiff::from_lines(old, new);
    let unified = diff.unified_diff().header(&shown, &shown).to_string();
    format!("would change {}:\n{}", path.display(), unified.trim_end())
}

pub async fn run(args: &ApplyArgs) -> CommandResult {
    match args.target {
        Target::Docker => run_docker(args).await,
        Target::Containerd | Target::Podman => super::apply_runtime::run(args).await,
    }
}

async fn run_docker(args: &ApplyArgs) -> CommandResult {
    for (set, flag) in [
        (args.hosts_dir.is_some(), "--hosts-dir"),
        (args.registries_conf.is_some(), "--registries-conf"),
        (!args.registries.is_empty(), "--registry"),
    ] {
        if set {
            return Err(Failure::usage(anyhow!(
                "{flag} is for --target containerd or podman; dockerd's registry-mirrors serve Docker Hub only"
            )));
        }
    }
    let settings = resolve(&args.probe)?;
    if settings.image.registry != crate::reference::DOCKER_HUB {
        return Err(Failure::usage(anyhow!(
            "--image {}: dockerd's registry-mirrors serve Docker Hub only; probe with a Docker Hub image (or use dmirror pull for {})",
            settings.image,
            settings.image.registry
        )));
    }
    let path = write::resolve(&args.daemon_json).map_err(|e| {
        Failure::usage(anyhow!("cannot follow {}: {e}", args.daemon_json.display()))
    })?;
    // A file we cannot read, or cannot write, fails before any probing.
    let first = read_current(&path)?;
    check_writable(&path, args.dry_run)?;
    let control = HostControl {
        pidfile: args.dockerd_pidfile.clone(),
        unit: "docker".into(),
    };
    if let Some(cmdline) = control
        .command_line()
        .filter(|c| control::has_mirror_flag(c))
    {
        return Err(Failure::usage(anyhow!(
            "dockerd runs with --registry-mirror on its command line ({}); a \"registry-mirrors\" key in {} would stop it from starting. Remove the flag from its service first (systemctl edit docker)",
            cmdline.join(" "),
            path.display()
        )));
    }
    let endpoint = Endpoint::from_docker_host(std::env::var("DOCKER_HOST").ok().as_deref())
        .map_err(|e| Failure::usage(anyhow!(e)))?;
    let engine = Engine::new(endpoint, Duration::from_secs(5));
    drop(first);

    let ranked = probe_ranked(&settings, &args.probe).await;
    let chosen: Vec<String> = ranked
        .results
        .iter()
        .filter(|r| r.status == Status::Ok && !r.mirror.upstream && r.mirror.is_docker_hub_mirror())
        .take(args.top as usize)
        .map(|r| r.mirror.url.as_str().trim_end_matches('/').to_owned())
        .collect();

    let mut report = Report {
        daemon_json: path.clone(),
        old: Vec::new(),
        new: chosen.clone(),
        outcome: "unchanged",
        action: None,
        engine_mirrors: None,
        message: String::new(),
    };
    if chosen.is_empty() {
        report.outcome = "failed";
        report.message = format!("no mirror is ok; {} was left as it is", path.display());
        report.new = Vec::new();
        render(args, &ranked, &report)?;
        return Ok(ExitStatus::NothingUsable);
    }

    let dir = parent(&path);
    let _lock = lock(&dir, &path, args.dry_run)?;
    if !args.dry_run {
        write::remove_stale_temps(&path);
    }
    // Re-read under the lock: another writer may have changed the file.
    let (current, current_doc) = read_current(&path)?;
    report.old = current_doc.mirrors().unwrap_or_default();
    if let Some(why) = keep_configured(&ranked, &report.old, &chosen, args.margin, &|r| {
        Some(r.mirror.url.as_str().to_owned())
    }) {
        report.new = report.old.clone();
        report.message = format!(
            "{why}; {} left as it is, dockerd not reloaded",
            path.display()
        );
        render(args, &ranked, &report)?;
        return Ok(ExitStatus::Success);
    }
    let mut doc = current_doc;
    doc.set_mirrors(&chosen);
    let new_text = doc.render();

    if args.dry_run {
        report.outcome = "dry-run";
        report.message = if current.bytes.as_deref() == Some(new_text.as_bytes()) {
            format!(
                "{} already holds this list; nothing would change",
                path.display()
            )
        } else {
            diff(&path, &current.text, &new_text)
        };
        render(args, &ranked, &report)?;
        return Ok(ExitStatus::Success);
    }
    if current.bytes.as_deref() == Some(new_text.as_bytes()) {
        report.message = format!(
            "{} already holds this list; nothing written, dockerd not reloaded",
            path.display()
        );
        render(args, &ranked, &report)?;
        return Ok(ExitStatus::Success);
    }

    if let Some(Err(why)) = validate(&dir, &new_text) {
        return Err(Failure::new(
            ExitStatus::NothingUsable,
            anyhow!(
                "dockerd --validate rejects the new {}; nothing was changed: {why}",
                path.display()
            ),
        ));
    }
    write_with_backup(&path, &current, &new_text)?;
    report.outcome = "written";

    if args.restart {
        warn_about_containers(&engine).await;
    }
    let told = if args.restart {
        control.restart()
    } else {
        control.reload()
    };
    match told {
        Ok(how) => report.action = Some(how),
        Err(ControlError::NotRunning(why)) => {
            report.message = format!(
                "wrote {}; dockerd is not running ({why}), it will use the new list when it starts",
                path.display()
            );
            render(args, &ranked, &report)?;
            return Ok(ExitStatus::Success);
        }
        Err(ControlError::Failed(why)) => {
            restore(&path, &current)?;
            report.outcome = "rolled-back";
            report.message = format!(
                "could not make dockerd take the new list ({why}); restored the previous {}",
                path.display()
            );
            render(args, &ranked, &report)?;
            return Ok(ExitStatus::RolledBack);
        }
    }

    let seen = wait_for(&engine, &chosen, args.verify_timeout).await;
    match seen {
        Ok(mirrors) => {
            report.outcome = "applied";
            report.engine_mirrors = Some(mirrors);
            report.message = format!(
                "dockerd now uses {} mirror(s) from {}",
                chosen.len(),
                path.display()
            );
            render(args, &ranked, &report)?;
            Ok(ExitStatus::Success)
        }
        Err((last, why)) => {
            restore(&path, &current)?;
            let again = if args.restart {
                control.restart()
            } else {
                control.reload()
            };
            report.outcome = "rolled-back";
            report.engine_mirrors = last;
            report.message = format!(
                "dockerd did not take the new list within {} ({why}); restored the previous {}{}",
                humantime::format_duration(args.verify_timeout),
                path.display(),
                match again {
                    Ok(how) => format!(" and told dockerd again ({how})"),
                    Err(e) => format!(", but could not tell dockerd again: {e}"),
                }
            );
            render(args, &ranked, &report)?;
            Ok(ExitStatus::RolledBack)
        }
    }
}

/// Hysteresis: why the configured list should stay although `chosen`
/// ranks better, or `None` to go ahead. `key` is how the configuration
/// names a probed mirror (its URL, its hosts.toml key, ...).
pub(super) fn keep_configured(
    ranked: &Ranked,
    configured: &[String],
    chosen: &[String],
    margin_percent: u32,
    key: &dyn Fn(&MirrorResult) -> Option<String>,
) -> Option<String> {
    if same_mirrors(configured, chosen) {
        return None;
    }
    let seconds = |url: &str| {
        ranked
            .results
            .iter()
            .find(|r| {
                r.status == Status::Ok
                    && !r.mirror.upstream
                    && key(r).is_some_and(|k| k.trim_end_matches('/') == url.trim_end_matches('/'))
            })
            .and_then(|r| ranked.seconds(r))
    };
    let configured_secs: Vec<Option<f64>> = configured.iter().map(|u| seconds(u)).collect();
    let best: Vec<f64> = chosen.iter().filter_map(|u| seconds(u)).collect();
    (best.len() == chosen.len()
        && rank::within_margin(&configured_secs, &best, f64::from(margin_percent) / 100.0))
    .then(|| {
        format!(
            "unchanged: the configured mirrors all work and are within {margin_percent}% of the best ranked ({})",
            chosen.join(", ")
        )
    })
}

/// Keep the current file as `<name>.dmirror-backup`, then replace it with
/// `new_text` atomically, with its mode and owner.
pub(super) fn write_with_backup(
    path: &Path,
    current: &Current,
    new_text: &str,
) -> Result<(), Failure> {
    let write_err = |e: std::io::Error| {
        Failure::new(
            ExitStatus::NothingUsable,
            anyhow!("cannot write {}: {e}; nothing was changed", path.display()),
        )
    };
    if let Some(old) = &current.bytes {
        write::atomic_write(&backup_path(path), old, current.meta.as_ref()).map_err(write_err)?;
    }
    write::atomic_write(path, new_text.as_bytes(), current.meta.as_ref()).map_err(write_err)
}

pub(super) fn backup_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".dmirror-backup");
    path.with_file_name(name)
}

/// Put the previous file back (or remove the new one if there was none).
fn restore(path: &Path, previous: &Current) -> Result<(), Failure> {
    let result = match &previous.bytes {
        Some(b) => write::atomic_write(path, b, previous.meta.as_ref()),
        None => std::fs::remove_file(path),
    };
    result.map_err(|e| {
        Failure::new(
            ExitStatus::RolledBack,
            anyhow!(
                "could not restore {} ({e}); the previous version is in {}",
                path.display(),
                backup_path(path).display()
            ),
        )
    })
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

async fn warn_about_containers(engine: &Engine) {
    if let Ok(info) = engine.info().await {
        if info.containers_running > 0 && !info.live_restore_enabled {
            say(format!(
                "warning: restarting dockerd stops {} running container(s) (live-restore is off); --reload would not",
                info.containers_running
            ));
        }
    }
}

fn render(args: &ApplyArgs, ranked: &Ranked, report: &Report) -> Result<(), Failure> {
    let results = &ranked.results;
    let metrics = || {
        output::prometheus::probe(
            crate::reference::DOCKER_HUB,
            results,
            ranked.history.as_ref(),
            ranked.at,
        ) + &output::prometheus::apply(report)
    };
    if let Some(path) = &args.probe.textfile {
        write_textfile(path, &metrics())?;
    }
    let mut out = std::io::stdout().lock();
    match args.probe.output_format() {
        Format::Json => output::json::write_apply(&mut out, results, report)?,
        Format::Table => {
            output::table::write_probe(&mut out, results, table_width())?;
            output::table::write_apply(&mut out, report, table_width())?;
        }
        Format::Plain => {
            output::plain::write_probe(&mut out, results)?;
            output::plain::write_apply(&mut out, report)?;
        }
        Format::Prometheus => out.write_all(metrics().as_bytes())?,
    }
    out.flush()?;
    Ok(())
}
