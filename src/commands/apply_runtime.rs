//! `dmirror apply --target containerd|podman`: probe the mirrors of every
//! registry the list serves, each with an image of that registry, and write
//! the best of each into containerd's `hosts.toml` files or a
//! registries.conf. Neither runtime needs telling: both read the files on
//! every pull. Same safety as daemon.json: the files are read and checked
//! before any probing, merged (never clobbered), written atomically under
//! a lock with a backup, and `--dry-run` shows the diff.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use serde::Serialize;

use super::apply::{
    check_writable, diff, keep_configured, lock, parent, read_file, write_with_backup, Current,
};
use super::probe::{parse_image, probe_ranked, settings, write_textfile, Ranked};
use super::{load_mirrors, say, table_width, CommandResult, Failure};
use crate::cli::{ApplyArgs, Format, Target};
use crate::config::MirrorList;
use crate::daemon::write;
use crate::exit::ExitStatus;
use crate::output::{self, plain::value};
use crate::probe::{MirrorResult, Status};
use crate::reference::{Reference, DOCKER_HUB};
use crate::runtime::{containerd, podman, upstream_server, ConfError, Endpoint};

/// What apply did to one registry's configuration.
#[derive(Debug, Serialize)]
pub struct RegistryReport {
    pub registry: String,
    /// The image its mirrors were probed with.
    pub image: String,
    pub file: PathBuf,
    /// The mirrors the file listed before, as the file names them.
    pub old: Vec<String>,
    /// The mirrors it lists now (or would, with `--dry-run`).
    pub new: Vec<String>,
    /// One of `unchanged`, `dry-run`, `written`, `failed`.
    pub outcome: &'static str,
    pub message: String,
}

impl RegistryReport {
    /// `unchanged` until told otherwise.
    fn new(p: &Probed, file: &Path, old: Vec<String>, new: Vec<String>) -> Self {
        Self {
            registry: p.registry.clone(),
            image: p.image.to_string(),
            file: file.to_owned(),
            old,
            new,
            outcome: "unchanged",
            message: String::new(),
        }
    }
}

/// One registry's probe.
struct Probed {
    registry: String,
    image: Reference,
    ranked: Ranked,
    /// The best working mirrors, best first, at most `--top`.
    chosen: Vec<Endpoint>,
}

pub async fn run(args: &ApplyArgs) -> CommandResult {
    let target = args.target;
    if args.hosts_dir.is_some() && target != Target::Containerd {
        return Err(Failure::usage(anyhow!(
            "--hosts-dir is for --target containerd"
        )));
    }
    if args.registries_conf.is_some() && target != Target::Podman {
        return Err(Failure::usage(anyhow!(
            "--registries-conf is for --target podman"
        )));
    }
    let list = load_mirrors(&args.probe.source)?;
    let plans = plan(args, &list)?;
    let hosts_dir = args
        .hosts_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(containerd::DEFAULT_DIR));
    let conf = args
        .registries_conf
        .clone()
        .unwrap_or_else(podman::default_path);
    let follow = |p: PathBuf| {
        write::resolve(&p)
            .map_err(|e| Failure::usage(anyhow!("cannot follow {}: {e}", p.display())))
    };
    let files: Vec<PathBuf> = match target {
        Target::Containerd => plans
            .iter()
            .map(|(r, _)| follow(containerd::hosts_path(&hosts_dir, r)))
            .collect::<Result<_, _>>()?,
        _ => vec![follow(conf)?; plans.len()],
    };
    // Files we cannot read, parse or write fail before any probing.
    for ((registry, _), file) in plans.iter().zip(&files) {
        let now = read_file(file)?;
        configured(target, &now.text, registry).map_err(|e| conf_failure(file, e))?;
        check_writable(file, args.dry_run)?;
    }

    if target == Target::Containerd {
        if let Ok(config) = std::fs::read_to_string(containerd::CONFIG) {
            if let Some(warning) = containerd::cri_warning(&config, &hosts_dir) {
                say(format!("warning: {warning}"));
            }
        }
    }

    let mut probed = Vec::new();
    for (registry, image) in plans {
        say(format!("{registry}: probing its mirrors with {image}"));
        let settings = settings(&args.probe, &list, image.clone())?;
        let ranked = probe_ranked(&settings, &args.probe).await;
        let chosen = ranked
            .results
            .iter()
            .filter(|r| r.status == Status::Ok && !r.mirror.upstream)
            .filter_map(|r| Endpoint::new(&r.mirror, &registry))
            .take(args.top as usize)
            .collect();
        probed.push(Probed {
            registry,
            image,
            ranked,
            chosen,
        });
    }

    let lock_at = match target {
        Target::Containerd => hosts_dir.clone(),
        _ => parent(&files[0]),
    };
    let _lock = lock(&lock_at, &lock_at, args.dry_run)?;
    let reports = match target {
        Target::Containerd => {
            let mut reports = Vec::new();
            for (p, file) in probed.iter().zip(&files) {
                reports.push(apply_containerd(args, &list, p, file)?);
            }
            reports
        }
        _ => apply_podman(args, &probed, &files[0])?,
    };
    render(args, &probed, &reports)?;
    Ok(if reports.iter().any(|r| r.outcome != "failed") {
        ExitStatus::Success
    } else {
        ExitStatus::NothingUsable
    })
}

fn conf_failure(file: &Path, e: ConfError) -> Failure {
    Failure::usage(anyhow!(
        "{} {e}; fix it or move it aside, nothing was changed",
        file.display()
    ))
}

/// The mirrors `text` lists for `registry`, as the target names them.
fn configured(target: Target, text: &str, registry: &str) -> Result<Vec<String>, ConfError> {
    match target {
        Target::Containerd => containerd::configured(text),
        _ => podman::configured(text, registry),
    }
}

/// How the target names a mirror of `registry`.
fn key(target: Target, e: &Endpoint) -> String {
    match target {
        Target::Containerd => containerd::host_key(e),
        _ => podman::location(e),
    }
}

/// The registries to configure, each with the image to probe its mirrors
/// with: `--registry` names, or every registry an enabled mirror serves.
fn plan(args: &ApplyArgs, list: &MirrorList) -> Result<Vec<(String, Reference)>, Failure> {
    let mut images: Vec<Reference> = Vec::new();
    for s in &args.probe.image {
        let image = parse_image(s)?;
        if images.iter().any(|i| i.registry == image.registry) {
            return Err(Failure::usage(anyhow!(
                "--image: two images of {}; give one per registry",
                image.registry
            )));
        }
        images.push(image);
    }
    let served: BTreeSet<&str> = list
        .enabled()
        .filter(|m| !m.upstream)
        .flat_map(|m| {
            std::iter::once(m.registry.as_str())
                .filter(|r| !r.is_empty())
                .chain(m.prefix_for.iter().map(String::as_str))
        })
        .collect();
    let explicit = !args.registries.is_empty();
    let mut registries: Vec<String> = if explicit {
        let mut named = Vec::new();
        for r in &args.registries {
            let r = crate::config::validate_registry(r)
                .map_err(|e| Failure::usage(anyhow!("--registry: {e}")))?;
            if !named.contains(&r) {
                named.push(r);
            }
        }
        named
    } else {
        served.iter().map(|r| (*r).to_owned()).collect()
    };
    // Docker Hub first, the rest in name order.
    registries.sort_by_key(|r| (r != DOCKER_HUB, r.clone()));
    let user_images = args.probe.image != [crate::probe::DEFAULT_IMAGE];
    for i in &images {
        if !registries.contains(&i.registry) && user_images {
            return Err(Failure::usage(anyhow!(
                "--image {i}: no enabled mirror serves {} (or it is not among --registry)",
                i.registry
            )));
        }
    }
    let mut plans = Vec::new();
    for r in registries {
        if !served.contains(r.as_str()) {
            return Err(Failure::usage(anyhow!(
                "--registry {r}: no enabled mirror serves it; add one to your mirrors.toml with registry = \"{r}\" or prefix_for = [\"{r}\"]"
            )));
        }
        let image = match images.iter().find(|i| i.registry == r) {
            Some(i) => i.clone(),
            None => match crate::probe::default_image(&r) {
                Some(d) => parse_image(d)?,
                None if explicit => {
                    return Err(Failure::usage(anyhow!(
                        "no image to probe the mirrors of {r} with; pass --image {r}/<repository>:<tag>"
                    )))
                }
                None => {
                    say(format!(
                        "{r}: skipped, no image to probe its mirrors with; pass --image {r}/<repository>:<tag> to configure it"
                    ));
                    continue;
                }
            },
        };
        plans.push((r, image));
    }
    if plans.is_empty() {
        return Err(Failure::usage(anyhow!(
            "no registry to configure; pass --image <registry>/<repository>:<tag> for one the mirror list serves"
        )));
    }
    Ok(plans)
}

/// The report of a registry none of whose mirrors works.
fn failed(p: &Probed, file: &Path, old: Vec<String>) -> RegistryReport {
    RegistryReport {
        outcome: "failed",
        message: format!(
            "no mirror of {} is ok; its configuration in {} was left as it is",
            p.registry,
            file.display()
        ),
        ..RegistryReport::new(p, file, old.clone(), old)
    }
}

/// The hysteresis of `--margin`, in the target's names.
fn keep(args: &ApplyArgs, p: &Probed, old: &[String], new: &[String]) -> Option<String> {
    let target = args.target;
    keep_configured(&p.ranked, old, new, args.margin, &|r: &MirrorResult| {
        Endpoint::new(&r.mirror, &p.registry).map(|e| key(target, &e))
    })
}

/// Write `text` over `current` (or show the diff), and say what happened.
fn finish(
    args: &ApplyArgs,
    file: &Path,
    current: &Current,
    text: &str,
    done: String,
) -> Result<(&'static str, String), Failure> {
    if current.bytes.as_deref() == Some(text.as_bytes()) {
        let nothing = if args.dry_run {
            "nothing would change"
        } else {
            "nothing written"
        };
        return Ok((
            "unchanged",
            format!("{} already holds this list; {nothing}", file.display()),
        ));
    }
    if args.dry_run {
        return Ok(("dry-run", diff(file, &current.text, text)));
    }
    write::remove_stale_temps(file);
    write_with_backup(file, current, text)?;
    Ok(("written", done))
}

fn apply_containerd(
    args: &ApplyArgs,
    list: &MirrorList,
    p: &Probed,
    file: &Path,
) -> Result<RegistryReport, Failure> {
    // Re-read under the lock: another writer may have changed the file.
    let current = read_file(file)?;
    let old = containerd::configured(&current.text).map_err(|e| conf_failure(file, e))?;
    if p.chosen.is_empty() {
        return Ok(failed(p, file, old));
    }
    let new: Vec<String> = p.chosen.iter().map(containerd::host_key).collect();
    let mut report = RegistryReport::new(p, file, old, new);
    if let Some(why) = keep(args, p, &report.old, &report.new) {
        report.message = format!("{why}; {} left as it is", file.display());
        report.new = report.old.clone();
        return Ok(report);
    }
    let server = upstream_server(&p.registry, list.enabled());
    let merged = containerd::merge(&current.text, &p.registry, &server, &p.chosen)
        .map_err(|e| conf_failure(file, e))?;
    let done = format!(
        "containerd uses {} mirror(s) of {} from {} from its next pull on (no restart needed){}",
        report.new.len(),
        p.registry,
        file.display(),
        dropped_note(&merged.dropped)
    );
    (report.outcome, report.message) = finish(args, file, &current, &merged.text, done)?;
    Ok(report)
}

fn dropped_note(dropped: &[String]) -> String {
    if dropped.is_empty() {
        String::new()
    } else {
        format!(
            "; no longer listed: {} (add a host of your own to mirrors.toml to keep it ranked)",
            dropped.join(", ")
        )
    }
}

fn apply_podman(
    args: &ApplyArgs,
    probed: &[Probed],
    file: &Path,
) -> Result<Vec<RegistryReport>, Failure> {
    let current = read_file(file)?;
    // One file for every registry: merge them in turn, so that each
    // registry's outcome says whether its own part changed.
    let mut text = current.text.clone();
    let mut dropped = Vec::new();
    let mut reports = Vec::new();
    for p in probed {
        let old =
            podman::configured(&current.text, &p.registry).map_err(|e| conf_failure(file, e))?;
        if p.chosen.is_empty() {
            reports.push(failed(p, file, old));
            continue;
        }
        let new: Vec<String> = p.chosen.iter().map(podman::location).collect();
        let mut report = RegistryReport::new(p, file, old, new);
        if let Some(why) = keep(args, p, &report.old, &report.new) {
            report.message = format!("{why}; left as it is in {}", file.display());
            report.new = report.old.clone();
        } else {
            let merged =
                podman::merge(&text, &p.registry, &p.chosen).map_err(|e| conf_failure(file, e))?;
            if merged.text == text {
                report.message = format!("{} already holds this list", file.display());
            } else {
                report.outcome = "pending";
                text = merged.text;
                dropped.extend(merged.dropped);
            }
        }
        reports.push(report);
    }
    if text == current.text {
        return Ok(reports);
    }
    let done = format!(
        "podman, skopeo and buildah use the new mirrors from {} on their next pull{}",
        file.display(),
        dropped_note(&dropped)
    );
    let (outcome, message) = finish(args, file, &current, &text, done)?;
    for r in reports.iter_mut().filter(|r| r.outcome == "pending") {
        r.outcome = outcome;
        r.message.clone_from(&message);
    }
    Ok(reports)
}

fn render(args: &ApplyArgs, probed: &[Probed], reports: &[RegistryReport]) -> Result<(), Failure> {
    let target = match args.target {
        Target::Containerd => "containerd",
        _ => "podman",
    };
    let metrics = || {
        let groups: Vec<_> = probed
            .iter()
            .map(|p| output::prometheus::Group {
                registry: &p.registry,
                results: &p.ranked.results,
                history: p.ranked.history.as_ref(),
            })
            .collect();
        let at = probed
            .first()
            .map_or_else(std::time::SystemTime::now, |p| p.ranked.at);
        let applied: Vec<_> = reports
            .iter()
            .map(|r| output::prometheus::Applied {
                target,
                registry: &r.registry,
                outcome: r.outcome,
                mirrors: r.new.len(),
            })
            .collect();
        output::prometheus::probes(&groups, at) + &output::prometheus::applied(&applied)
    };
    if let Some(path) = &args.probe.textfile {
        write_textfile(path, &metrics())?;
    }
    let mut out = std::io::stdout().lock();
    match args.probe.output_format() {
        Format::Json => {
            let mut registries = Vec::new();
            for (p, r) in probed.iter().zip(reports) {
                let mut entry = serde_json::to_value(r).map_err(std::io::Error::other)?;
                entry["mirrors"] = output::json::probe_mirrors(&p.ranked.results);
                registries.push(entry);
            }
            let doc = serde_json::json!({ "target": target, "registries": registries });
            serde_json::to_writer_pretty(&mut out, &doc).map_err(std::io::Error::other)?;
            writeln!(out)?;
        }
        Format::Table => {
            for p in probed {
                writeln!(out, "{}: probed with {}", p.registry, p.image)?;
                output::table::write_probe(&mut out, &p.ranked.results, table_width())?;
            }
            output::table::write_runtime_apply(&mut out, target, reports, table_width())?;
        }
        Format::Plain => {
            for p in probed {
                output::plain::write_probe_of(&mut out, Some(&p.registry), &p.ranked.results)?;
            }
            for r in reports {
                writeln!(
                    out,
                    "apply target={target} registry={} outcome={} file={} old={} new={} message={}",
                    value(&r.registry),
                    r.outcome,
                    value(&r.file.display().to_string()),
                    value(&r.old.join(",")),
                    value(&r.new.join(",")),
                    value(&r.message)
                )?;
            }
        }
        Format::Prometheus => out.write_all(metrics().as_bytes())?,
    }
    out.flush()?;
    Ok(())
}
