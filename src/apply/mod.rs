//! The apply engine: one sequence for every target, one module per target
//! for what differs (the file format, how the runtime takes it).
//!
//! The sequence: resolve and read every file the target will write, and
//! check that it parses and can be written, before any probing (a file it
//! cannot merge is refused, nothing changed); probe each registry; choose the
//! best working mirrors (`top`, with `margin` hysteresis against what is
//! configured); lock; merge each registry into its file and write the file
//! atomically with a backup (or diff it, `dry_run`); make the runtime take
//! it and check that it did; put every file back if it did not.
//!
//! The engine never prints: lines for the person go to the `note` callback,
//! probe progress to whoever runs the `probe` closure.

pub mod containerd;
mod docker_hosts;
pub mod dockerd;
mod endpoint;
mod file;
mod plan;
pub mod podman;
mod report;
pub mod via;

use std::path::{Path, PathBuf};

pub use containerd::Containerd;
pub use docker_hosts::DockerHosts;
pub use dockerd::Dockerd;
pub use endpoint::{upstream_server, ConfError, Endpoint, Merged};
pub use file::backup_path;
pub use plan::{registries, via_registries, DEFAULT_HOSTS};
pub use podman::Podman;
pub use report::{Outcome, RegistryReport, Report};

use crate::config::Mirror;
use crate::probe::{ProbeSettings, Status};
use crate::rank;
use crate::ranked::Ranked;
use file::Current;

/// What differs between targets. Each method is one decision the engine
/// leaves to the target; the defaults fit runtimes that read their files
/// on every use.
#[allow(async_fn_in_trait)]
pub trait Target {
    /// The name in reports and metrics (`docker`, `containerd`, `podman`).
    fn name(&self) -> &'static str;
    /// The file that holds `registry`'s mirrors.
    fn file(&self, registry: &str) -> PathBuf;
    /// The directory locked while writing.
    fn lock_dir(&self, files: &[PathBuf]) -> PathBuf {
        file::parent(&files[0])
    }
    /// Checks of the machine before any probing; warnings go to `note`.
    fn preflight(&self, _note: &dyn Fn(String)) -> Result<(), ApplyError> {
        Ok(())
    }
    /// The mirrors `text` lists for `registry`, as the file names them.
    fn configured(&self, text: &str, registry: &str) -> Result<Vec<String>, ConfError>;
    /// How the file names `mirror` serving `registry`; `None` when this
    /// target cannot use that mirror for it.
    fn key(&self, mirror: &Mirror, registry: &str) -> Option<String>;
    /// `text` with `chosen` (best first) as `registry`'s mirrors.
    fn merge(&self, text: &str, registry: &str, chosen: &[&Mirror]) -> Result<Merged, ConfError>;
    /// Refuse a new text before it is written (dockerd's own check): why.
    fn validate(&self, _file: &Path, _text: &str) -> Result<(), String> {
        Ok(())
    }
    /// What to say when `file` was written and needs nothing more.
    fn written(&self, file: &Path, registries: &[&str], mirrors: usize) -> String;
    /// The program that reads the files, in messages (`dockerd`).
    fn daemon(&self) -> &'static str {
        self.name()
    }
    /// Added to "left as it is" messages (`, dockerd not reloaded`).
    fn untouched(&self) -> &'static str {
        ""
    }
    /// Make the runtime take what was written (`want`: the new list) and
    /// check that it did.
    async fn activate(&self, _want: &[String], _note: &dyn Fn(String)) -> Activation {
        Activation::OnNextUse
    }
    /// Tell the runtime again after the files were put back.
    async fn retell(&self) -> Result<String, String> {
        Ok(String::new())
    }
}

/// How the runtime took the written files.
#[derive(Debug)]
pub enum Activation {
    /// It reads them on every use: nothing to tell.
    OnNextUse,
    /// It is not running (why); it reads them when it starts.
    NotRunning(String),
    /// Told (how), and it runs `running`.
    Taken {
        action: String,
        running: Vec<String>,
    },
    /// It could not be told (why): the files are put back.
    Refused(String),
    /// Told (how), but it did not take the list (why; what it still runs):
    /// the files are put back and it is told again.
    NotTaken {
        action: String,
        running: Option<Vec<String>>,
        why: String,
    },
}

/// The settings the engine sees.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How many mirrors to keep per registry.
    pub top: usize,
    /// Keep the configured mirrors while they are within this percentage of
    /// the best ranked.
    pub margin: u32,
    /// Show the diff, write nothing.
    pub dry_run: bool,
}

/// One registry to configure, and how to probe its mirrors (`None`: not
/// probed, `apply --via` names the one server).
#[derive(Debug, Clone)]
pub struct Job {
    pub registry: String,
    pub probe: Option<ProbeSettings>,
}

/// Why apply stopped.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A file, a setting or the machine must be fixed first; nothing was
    /// changed.
    #[error("{0}")]
    Refused(String),
    /// Something could not be done (a write, a lock); nothing was changed.
    #[error("{0}")]
    Failed(String),
    /// A rollback could not put a file back.
    #[error("{0}")]
    Restore(String),
}

fn conf_error(file: &Path, e: ConfError) -> ApplyError {
    ApplyError::Refused(format!(
        "{} {e}; fix it or move it aside, nothing was changed",
        file.display()
    ))
}

/// A registry between its probe and its report.
struct Probed<'a> {
    job: &'a Job,
    file: PathBuf,
    ranked: Ranked,
    /// The best working mirrors, best first, at most `top`.
    chosen: Vec<Mirror>,
    decided: Option<Decided>,
}

/// What became of one registry's part of its file.
struct Decided {
    old: Vec<String>,
    new: Vec<String>,
    outcome: Outcome,
    message: String,
}

impl Decided {
    /// The file keeps `old` for this registry.
    fn kept(old: Vec<String>, outcome: Outcome, message: String) -> Self {
        Self {
            new: old.clone(),
            old,
            outcome,
            message,
        }
    }
}

/// Run the whole sequence for `jobs` (registries) on `target`.
pub async fn run<T: Target>(
    target: &T,
    settings: &Settings,
    jobs: &[Job],
    mut probe: impl AsyncFnMut(&Job) -> Ranked,
    note: &dyn Fn(String),
) -> Result<Report, ApplyError> {
    // Everything that can be refused is refused before any probing.
    let mut paths = Vec::new();
    for job in jobs {
        let path = file::follow(&target.file(&job.registry))?;
        let now = file::read(&path)?;
        target
            .configured(&now.text, &job.registry)
            .map_err(|e| conf_error(&path, e))?;
        if !settings.dry_run {
            file::check_writable(&path)?;
        }
        paths.push(path);
    }
    target.preflight(note)?;

    let mut probed = Vec::new();
    for (job, path) in jobs.iter().zip(paths.iter().cloned()) {
        if let (Some(p), true) = (&job.probe, jobs.len() > 1 || target.name() != "docker") {
            note(format!(
                "{}: probing its mirrors with {}",
                job.registry, p.image
            ));
        }
        let ranked = probe(job).await;
        let chosen = ranked
            .results
            .iter()
            .filter(|r| r.status == Status::Ok && !r.mirror.upstream)
            .filter(|r| target.key(&r.mirror, &job.registry).is_some())
            .take(settings.top)
            .map(|r| r.mirror.clone())
            .collect();
        probed.push(Probed {
            job,
            file: path,
            ranked,
            chosen,
            decided: None,
        });
    }

    let _lock = (!settings.dry_run)
        .then(|| {
            let dir = target.lock_dir(&paths);
            let shown = dir.display().to_string();
            file::lock(&dir, || {
                note(format!(
                    "waiting for another dmirror apply to finish with {shown}"
                ))
            })
        })
        .transpose()?;

    if !settings.dry_run {
        // Temporary files a killed run left: no live writer owns one now.
        for path in &paths {
            crate::files::remove_stale_temps(path);
            crate::files::remove_stale_temps(&backup_path(path));
        }
    }
    // One pass per file, registries merged into it in turn, so that each
    // registry's outcome says whether its own part changed.
    let mut written: Vec<(PathBuf, Current)> = Vec::new();
    let mut files: Vec<PathBuf> = Vec::new();
    for p in &probed {
        if !files.contains(&p.file) {
            files.push(p.file.clone());
        }
    }
    for path in &files {
        // Re-read under the lock: another writer may have changed the file.
        let current = file::read(path)?;
        let mut text = current.text.clone();
        let mut dropped = Vec::new();
        let mut pending = Vec::new();
        for (i, p) in probed
            .iter_mut()
            .enumerate()
            .filter(|(_, p)| &p.file == path)
        {
            let registry = &p.job.registry;
            let old = target
                .configured(&current.text, registry)
                .map_err(|e| conf_error(path, e))?;
            if p.chosen.is_empty() {
                let message = format!(
                    "no mirror of {registry} is ok; its configuration in {} was left as it is",
                    path.display()
                );
                p.decided = Some(Decided::kept(old, Outcome::Failed, message));
                continue;
            }
            let new: Vec<String> = p
                .chosen
                .iter()
                .filter_map(|m| target.key(m, registry))
                .collect();
            if let Some(why) = keep_configured(target, p, &old, &new, settings.margin) {
                let message = format!(
                    "{why}; {} left as it is{}",
                    path.display(),
                    target.untouched()
                );
                p.decided = Some(Decided::kept(old, Outcome::Unchanged, message));
                continue;
            }
            let chosen: Vec<&Mirror> = p.chosen.iter().collect();
            let merged = target
                .merge(&text, registry, &chosen)
                .map_err(|e| conf_error(path, e))?;
            if merged.text == text {
                let nothing = if settings.dry_run {
                    "nothing would change".to_owned()
                } else {
                    format!("nothing written{}", target.untouched())
                };
                let message = format!("{} already holds this list; {nothing}", path.display());
                p.decided = Some(Decided {
                    old,
                    new,
                    outcome: Outcome::Unchanged,
                    message,
                });
                continue;
            }
            text = merged.text;
            dropped.extend(merged.dropped);
            p.decided = Some(Decided {
                old,
                new,
                outcome: Outcome::Written,
                message: String::new(),
            });
            pending.push(i);
        }
        if pending.is_empty() {
            continue;
        }
        let (outcome, message) = if settings.dry_run {
            (Outcome::DryRun, file::diff(path, &current.text, &text))
        } else {
            target
                .validate(path, &text)
                .map_err(|why| ApplyError::Failed(format!("{why}; nothing was changed")))?;
            file::write_with_backup(path, &current, &text)?;
            let registries: Vec<&str> = pending
                .iter()
                .map(|&i| probed[i].job.registry.as_str())
                .collect();
            let mirrors = pending
                .iter()
                .filter_map(|&i| probed[i].decided.as_ref())
                .map(|d| d.new.len())
                .sum();
            let mut message = target.written(path, &registries, mirrors);
            if !dropped.is_empty() {
                message.push_str(&format!(
                    "; no longer listed: {} (add a host of your own to mirrors.toml to keep it ranked)",
                    dropped.join(", ")
                ));
            }
            written.push((path.clone(), current));
            (Outcome::Written, message)
        };
        for &i in &pending {
            if let Some(d) = probed[i].decided.as_mut() {
                d.outcome = outcome;
                d.message.clone_from(&message);
            }
        }
    }

    let mut report = Report {
        target: target.name(),
        registries: probed
            .into_iter()
            .map(|p| {
                let Decided {
                    old,
                    new,
                    outcome,
                    message,
                } = p.decided.unwrap_or(Decided {
                    old: Vec::new(),
                    new: Vec::new(),
                    outcome: Outcome::Failed,
                    message: String::new(),
                });
                RegistryReport {
                    registry: p.job.registry.clone(),
                    image: p.job.probe.as_ref().map(|s| s.image.clone()),
                    ranked: p.ranked,
                    file: p.file,
                    old,
                    new,
                    outcome,
                    message,
                    action: None,
                    running: None,
                }
            })
            .collect(),
    };
    if !written.is_empty() {
        activate(target, &mut report, &written, note).await?;
    }
    Ok(report)
}

/// Make the runtime take the written files; put them back if it does not.
async fn activate<T: Target>(
    target: &T,
    report: &mut Report,
    written: &[(PathBuf, Current)],
    note: &dyn Fn(String),
) -> Result<(), ApplyError> {
    let want: Vec<String> = report
        .registries
        .iter()
        .filter(|r| r.outcome == Outcome::Written)
        .flat_map(|r| r.new.iter().cloned())
        .collect();
    let shown = written
        .iter()
        .map(|(p, _)| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let restore_all = || -> Result<(), ApplyError> {
        for (path, previous) in written {
            file::restore(path, previous)?;
        }
        Ok(())
    };
    let (outcome, message, action, running) = match target.activate(&want, note).await {
        Activation::OnNextUse => return Ok(()),
        Activation::NotRunning(why) => (
            Outcome::Written,
            format!(
                "wrote {shown}; {} is not running ({why}), it will use the new list when it starts",
                target.daemon()
            ),
            None,
            None,
        ),
        Activation::Taken { action, running } => (
            Outcome::Applied,
            format!(
                "{} now uses {} mirror(s) from {shown}",
                target.daemon(),
                want.len()
            ),
            Some(action),
            Some(running),
        ),
        Activation::Refused(why) => {
            restore_all()?;
            (
                Outcome::RolledBack,
                format!(
                    "could not make {} take the new list ({why}); restored the previous {shown}",
                    target.daemon()
                ),
                None,
                None,
            )
        }
        Activation::NotTaken {
            action,
            running,
            why,
        } => {
            restore_all()?;
            let again = match target.retell().await {
                Ok(how) => format!(" and told {} again ({how})", target.daemon()),
                Err(e) => format!(", but could not tell {} again: {e}", target.daemon()),
            };
            (
                Outcome::RolledBack,
                format!("{why}; restored the previous {shown}{again}"),
                Some(action),
                running,
            )
        }
    };
    for r in report
        .registries
        .iter_mut()
        .filter(|r| r.outcome == Outcome::Written)
    {
        r.outcome = outcome;
        r.message.clone_from(&message);
        r.action.clone_from(&action);
        r.running.clone_from(&running);
    }
    Ok(())
}

/// Hysteresis: why the configured list should stay although `new` ranks
/// better, or `None` to go ahead.
fn keep_configured<T: Target>(
    target: &T,
    p: &Probed<'_>,
    configured: &[String],
    new: &[String],
    margin_percent: u32,
) -> Option<String> {
    let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
    if configured.len() == new.len() && configured.iter().zip(new).all(|(a, b)| same(a, b)) {
        return None;
    }
    let seconds = |key: &str| {
        p.ranked
            .results
            .iter()
            .find(|r| {
                r.status == Status::Ok
                    && !r.mirror.upstream
                    && target
                        .key(&r.mirror, &p.job.registry)
                        .is_some_and(|k| same(&k, key))
            })
            .and_then(|r| p.ranked.seconds(r))
    };
    let configured_secs: Vec<Option<f64>> = configured.iter().map(|u| seconds(u)).collect();
    let best: Vec<f64> = new.iter().filter_map(|u| seconds(u)).collect();
    (best.len() == new.len()
        && rank::within_margin(&configured_secs, &best, f64::from(margin_percent) / 100.0))
    .then(|| {
        format!(
            "unchanged: the configured mirrors all work and are within {margin_percent}% of the best ranked ({})",
            new.join(", ")
        )
    })
}
