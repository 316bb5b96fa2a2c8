//! `dmirror serve`: flags into the server's settings (one probe per
//! registry the list serves), run until SIGINT or SIGTERM; `serve install`
//! and `remove` for the systemd service.

use std::io::Write;

use anyhow::anyhow;

use super::{load_mirrors, parse_platform, say, CommandResult, Failure};
use crate::cli::{ServeArgs, ServeCommand, ServeInstallArgs, ServeRemoveArgs, ServeRunArgs};
use crate::exit::ExitStatus;
use crate::serve::{self, unit};

pub async fn run(args: &ServeArgs) -> CommandResult {
    match &args.action {
        Some(ServeCommand::Install(a)) => install(a).await,
        Some(ServeCommand::Remove(a)) => remove(a),
        None => serve(&args.run).await,
    }
}

async fn serve(a: &ServeRunArgs) -> CommandResult {
    let listen = serve::parse_listen(&a.listen).map_err(|e| Failure::usage(anyhow!(e)))?;
    let list = load_mirrors(&a.source)?;
    let network = super::network(&a.net).await?;
    let platform = parse_platform(a.platform.as_deref())?;
    let images = a
        .image
        .iter()
        .map(|s| super::probe::parse_image(s))
        .collect::<Result<Vec<_>, _>>()?;
    let probes = serve::probes(
        &list,
        &images,
        &platform,
        a.timeout,
        a.budget,
        &network,
        &|l| say(l),
    )
    .map_err(Failure::usage)?;
    let cache_root = a
        .cache_dir
        .clone()
        .or_else(crate::pull::cache::Cache::default_root)
        .ok_or_else(|| {
            Failure::usage(anyhow!(
                "no cache directory (HOME unset?); pass --cache-dir DIR"
            ))
        })?;
    if network.route != crate::net::Route::Direct {
        say(format!("network: {}", network.route));
    }
    if !listen.ip().is_loopback() {
        say(format!(
            "note: listening on {listen}, not loopback: every machine that reaches this address can pull through this server"
        ));
    }
    let settings = serve::ServeSettings {
        listen,
        mirrors: list.enabled().cloned().collect(),
        probes,
        cache_root,
        max_cache: a.max_cache,
        reprobe: (!a.reprobe.is_zero()).then_some(a.reprobe),
        timeout: a.timeout,
        first_byte: a.first_byte,
        stall: a.first_byte,
        network,
        state_dir: (!a.no_history).then(crate::history::default_dir).flatten(),
        allow: a.allow.clone(),
        tls: a.tls_cert.clone().zip(a.tls_key.clone()),
    };
    let cache = settings.cache_root.clone();
    let scheme = if settings.tls.is_some() {
        "https"
    } else {
        "http"
    };
    serve::run(
        settings,
        Box::new(say),
        |addr| {
            say(format!(
                "listening on {scheme}://{addr} (cache {}); use it as the only mirror: dmirror apply --via {scheme}://{addr}",
                cache.display()
            ))
        },
        serve::signalled(),
    )
    .await
    .map_err(|e| match e {
        serve::ServeError::Listen(..) | serve::ServeError::Tls(..) => Failure::usage(e),
        serve::ServeError::Cache(..) => Failure::new(ExitStatus::NothingUsable, e),
    })?;
    Ok(ExitStatus::Success)
}

async fn install(a: &ServeInstallArgs) -> CommandResult {
    let listen = serve::parse_listen(&a.listen).map_err(|e| Failure::usage(anyhow!(e)))?;
    let exe = super::schedule::installed_binary(a.binary.as_deref())?;
    let mut args = vec![
        "serve".to_owned(),
        "--listen".to_owned(),
        listen.to_string(),
    ];
    args.extend(a.serve.iter().cloned());
    let path = a.unit_dir.join(unit::SERVICE);
    let env_path = a.unit_dir.join(unit::ENV_FILE);
    let logins_path = a.unit_dir.join(unit::LOGINS_FILE);
    let usage = |e: crate::schedule::ScheduleError| Failure::usage(anyhow!(e));
    // The service runs as its own user, without the Docker socket: the
    // engine's proxy (with its login) is fixed now, in a file root reads.
    let proxy_given = a
        .serve
        .iter()
        .any(|w| w == "--proxy" || w.starts_with("--proxy="));
    let mut env = None;
    if !proxy_given {
        let engine = crate::cli::NetArgs {
            proxy: "engine".into(),
            certs_dir: None,
        };
        let route = super::network(&engine).await?.route;
        env = unit::proxy_env(&route).map_err(usage)?;
        if env.is_some() {
            args.extend(["--proxy".to_owned(), "env".to_owned()]);
            say(format!(
                "the service reaches the mirrors through {route}, from {}",
                env_path.display()
            ));
        }
    }
    // Checked by the parser the service will use.
    let cli = super::schedule::parse_installed(&args, "dmirror serve")
        .map_err(|e| Failure::usage(anyhow!(e)))?;
    let logins = match &cli.command {
        crate::cli::Command::Serve(s) => {
            // The service's list: its --mirrors, else the built-in one and
            // /etc/dmirror/mirrors.toml (its XDG_CONFIG_HOME is /etc).
            let user = std::path::Path::new("/etc/dmirror/mirrors.toml");
            let list = crate::config::MirrorList::load(&s.run.source.mirrors, Some(user))
                .map_err(Failure::usage)?;
            unit::logins(&list, &crate::net::login::Logins::docker_default()).map_err(usage)?
        }
        _ => None,
    };
    if let Some(l) = &logins {
        say(format!(
            "the service uses Docker's logins for {} from {} (a systemd credential)",
            l.keys.join(", "),
            logins_path.display()
        ));
    }
    let extras = unit::Extras {
        env: env.as_ref().map(|_| env_path.as_path()),
        logins: logins.as_ref().map(|_| logins_path.as_path()),
    };
    let text = unit::service(&exe, &args, extras).map_err(usage)?;
    if a.dry_run {
        let mut out = std::io::stdout().lock();
        writeln!(out, "# {}\n{text}", path.display())?;
        return Ok(ExitStatus::Success);
    }
    let mut secrets: Vec<(&std::path::Path, &[u8])> = Vec::new();
    if let Some(t) = &env {
        secrets.push((&env_path, t.as_bytes()));
    }
    if let Some(l) = &logins {
        secrets.push((&logins_path, &l.bytes));
    }
    unit::install(&path, &text, &secrets, &mut |l| say(l))
        .map_err(|e| Failure::new(ExitStatus::NothingUsable, anyhow!(e)))?;
    Ok(ExitStatus::Success)
}

fn remove(a: &ServeRemoveArgs) -> CommandResult {
    let path = a.unit_dir.join(unit::SERVICE);
    if a.dry_run {
        let line = match path.exists() {
            true => format!("would remove {}", path.display()),
            false => "the serve service is not installed".to_owned(),
        };
        writeln!(std::io::stdout().lock(), "{line}")?;
        return Ok(ExitStatus::Success);
    }
    if !unit::remove(&path, &mut |l| say(l))
        .map_err(|e| Failure::new(ExitStatus::NothingUsable, anyhow!(e)))?
    {
        say("the serve service is not installed; nothing to remove");
    }
    Ok(ExitStatus::Success)
}
