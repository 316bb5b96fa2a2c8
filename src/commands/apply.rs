//! `dmirror apply`: flags into the apply engine's target, settings and
//! registries; the engine probes, writes, activates and verifies; the
//! report goes to `output::apply`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;

use super::probe::{self, one_image, parse_image, probe_ranked, write_textfile};
use super::{load_mirrors, say, table_width, CommandResult, Failure};
use crate::apply::{self, ApplyError, Job};
use crate::cli::{ApplyArgs, Target};
use crate::daemon::control::HostControl;
use crate::daemon::engine::Engine;
use crate::exit::ExitStatus;
use crate::output;
use crate::reference::DOCKER_HUB;

pub async fn run(args: &ApplyArgs) -> CommandResult {
    for (set, flag, target, why) in [
        (
            args.hosts_dir.is_some(),
            "--hosts-dir",
            Target::Containerd,
            "--target containerd",
        ),
        (
            args.registries_conf.is_some(),
            "--registries-conf",
            Target::Podman,
            "--target podman",
        ),
    ] {
        if set && args.target != target {
            return Err(Failure::usage(anyhow!("{flag} is for {why}")));
        }
    }
    let settings = apply::Settings {
        top: args.top as usize,
        margin: args.margin,
        dry_run: args.dry_run,
    };
    let note = |line: String| say(line);
    let mut hosts: Option<apply::Report> = None;
    let list = load_mirrors(&args.probe.source)?;
    let network = super::network(&args.probe.net).await?;
    let report = match args.target {
        Target::Docker => {
            if !args.registries.is_empty() {
                return Err(Failure::usage(anyhow!(
                    "--registry is for --target containerd or podman; dockerd's registry-mirrors serve Docker Hub only"
                )));
            }
            let probe = probe::settings(&args.probe, &list, one_image(&args.probe)?, &network)?;
            if probe.image.registry != DOCKER_HUB {
                return Err(Failure::usage(anyhow!(
                    "--image {}: dockerd's registry-mirrors serve Docker Hub only; probe with a Docker Hub image (or use dmirror pull for {})",
                    probe.image,
                    probe.image.registry
                )));
            }
            let located =
                crate::daemon::locate::locate().map_err(|e| Failure::usage(anyhow!(e)))?;
            let engine = Engine::new(located.endpoint.clone(), Duration::from_secs(5));
            // With the containerd image store, dockerd also reads
            // certs.d/<registry>/hosts.toml, for every registry: write those
            // first (they need no reload), then daemon.json.
            let store = engine.info().await.is_ok_and(|i| i.uses_containerd_store());
            if store {
                let hosts_dir = match &args.probe.net.certs_dir {
                    Some(d) => d.clone(),
                    None => network.trust.dirs.first().cloned().unwrap_or_default(),
                };
                note(format!(
                    "the engine uses the containerd image store: writing its per-registry hosts files under {} too",
                    hosts_dir.display()
                ));
                let hosts_jobs = registry_jobs(args, &list, &network, &note)?;
                let target = apply::DockerHosts {
                    inner: apply::Containerd {
                        hosts_dir,
                        config: PathBuf::new(),
                        list: list.clone(),
                        trust: network.trust.clone(),
                        dial_timeout: dial_timeout(args),
                    },
                };
                hosts = Some(run_engine(&target, &settings, &hosts_jobs, args, &note).await?);
            }
            let daemon_json = match &args.daemon_json {
                Some(p) => p.clone(),
                None if located.rootless => crate::daemon::locate::rootless_daemon_json()
                    .ok_or_else(|| Failure::usage(anyhow!("no configuration directory for the rootless engine's daemon.json; pass --daemon-json")))?,
                None => PathBuf::from("/etc/docker/daemon.json"),
            };
            let target = apply::Dockerd {
                daemon_json,
                control: HostControl {
                    pidfile: args.dockerd_pidfile.clone(),
                    unit: "docker".into(),
                    engine_pid: engine.peer_pid().await,
                    user: located.rootless,
                },
                engine,
                restart: args.restart,
                verify_timeout: args.verify_timeout,
            };
            let jobs = [Job {
                registry: DOCKER_HUB.into(),
                probe: args.via.is_none().then_some(probe),
            }];
            run_engine(&target, &settings, &jobs, args, &note).await?
        }
        Target::Containerd | Target::Podman => {
            let jobs = registry_jobs(args, &list, &network, &note)?;
            if args.target == Target::Containerd {
                let target = apply::Containerd {
                    hosts_dir: args
                        .hosts_dir
                        .clone()
                        .unwrap_or_else(|| PathBuf::from(apply::containerd::DEFAULT_DIR)),
                    config: apply::containerd::CONFIG.into(),
                    list,
                    trust: network.trust.clone(),
                    dial_timeout: dial_timeout(args),
                };
                run_engine(&target, &settings, &jobs, args, &note).await?
            } else {
                let target = apply::Podman {
                    file: args
                        .registries_conf
                        .clone()
                        .unwrap_or_else(apply::podman::default_path),
                };
                run_engine(&target, &settings, &jobs, args, &note).await?
            }
        }
    };

    if let Some(path) = &args.probe.textfile {
        write_textfile(path, &output::apply::metrics(&report, hosts.as_ref()))?;
    }
    let mut out = std::io::stdout().lock();
    output::apply::write(
        &mut out,
        &report,
        hosts.as_ref(),
        args.probe.output_format(),
        table_width(),
        &network.route,
    )?;
    out.flush()?;
    let all = || std::iter::once(&report).chain(hosts.as_ref());
    Ok(if all().any(apply::Report::rolled_back) {
        ExitStatus::RolledBack
    } else if all().any(apply::Report::any_configured) {
        ExitStatus::Success
    } else {
        ExitStatus::NothingUsable
    })
}

/// One job per registry to configure: `--registry` or every registry the
/// list serves, each probed with its `--image` or its built-in image.
fn registry_jobs(
    args: &ApplyArgs,
    list: &crate::config::MirrorList,
    network: &crate::net::Network,
    note: &dyn Fn(String),
) -> Result<Vec<Job>, Failure> {
    if args.via.is_some() {
        let default_hosts = args.target == Target::Containerd;
        let registries = apply::via_registries(list, &args.registries, default_hosts);
        return Ok(registries
            .map_err(refused)?
            .into_iter()
            .map(|registry| Job {
                registry,
                probe: None,
            })
            .collect());
    }
    // The default image stands for "none given": each registry then uses
    // its own built-in one.
    let given = args.probe.image != [crate::probe::DEFAULT_IMAGE];
    let images = if given {
        args.probe
            .image
            .iter()
            .map(|s| parse_image(s))
            .collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    apply::registries(list, &args.registries, &images, note)
        .map_err(refused)?
        .into_iter()
        .map(|(registry, image)| {
            Ok(Job {
                probe: Some(probe::settings(&args.probe, list, image, network)?),
                registry,
            })
        })
        .collect()
}

/// Run the engine with the probe of `args`, drawing its progress.
async fn run_engine<T: apply::Target>(
    target: &T,
    settings: &apply::Settings,
    jobs: &[Job],
    args: &ApplyArgs,
    note: &dyn Fn(String),
) -> Result<apply::Report, Failure> {
    let via = match &args.via {
        Some(u) if args.no_check => Some(apply::via::parse(u).map_err(|e| match e {
            apply::via::ViaError::Usage(m) | apply::via::ViaError::Down(m) => {
                Failure::usage(anyhow!(m))
            }
        })?),
        Some(u) => Some(apply::via::check(u).await.map_err(|e| match e {
            apply::via::ViaError::Usage(m) => Failure::usage(anyhow!(m)),
            apply::via::ViaError::Down(m) => Failure::new(ExitStatus::NothingUsable, anyhow!(m)),
        })?),
        None => None,
    };
    apply::run(
        target,
        settings,
        jobs,
        async |job| match (&via, &job.probe) {
            (Some(url), _) => apply::via::ranked(url, &job.registry, args.target == Target::Podman),
            (None, Some(s)) => probe_ranked(s, &args.probe).await,
            (None, None) => crate::ranked::Ranked::default(),
        },
        note,
    )
    .await
    .map_err(refused)
}

fn refused(e: ApplyError) -> Failure {
    let status = match e {
        ApplyError::Refused(_) => ExitStatus::Usage,
        ApplyError::Failed(_) => ExitStatus::NothingUsable,
        ApplyError::Restore(_) => ExitStatus::RolledBack,
    };
    Failure::new(status, e)
}

/// containerd's dial bound for the server `--via` names.
fn dial_timeout(args: &ApplyArgs) -> Option<String> {
    args.via
        .as_ref()
        .map(|_| apply::via::DIAL_TIMEOUT.to_owned())
}
