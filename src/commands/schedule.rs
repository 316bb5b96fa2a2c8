//! `dmirror schedule install|remove`: the options of the nightly apply
//! checked by the same parser the job will use, then `schedule` writes or
//! removes the job.

use std::io::Write;

use anyhow::anyhow;
use clap::Parser;

use super::{say, CommandResult, Failure};
use crate::cli::{Cli, ScheduleCommand, ScheduleInstallArgs, SchedulePlaces, ScheduleRemoveArgs};
use crate::exit::ExitStatus;
use crate::schedule::{self, Job, Places};

pub fn run(command: &ScheduleCommand) -> CommandResult {
    match command {
        ScheduleCommand::Install(args) => install(args),
        ScheduleCommand::Remove(args) => remove(args),
    }
}

/// Where the job goes: the system's (root), else the user's own systemd
/// units (`~/.config/systemd/user`, `systemctl --user`): a user's nightly
/// apply reaches their engine (rootless Docker), not the system's.
fn places(p: &SchedulePlaces) -> Places {
    // SAFETY: geteuid cannot fail.
    let user = unsafe { libc::geteuid() } != 0;
    let default = p.unit_dir == std::path::Path::new("/etc/systemd/system");
    Places {
        unit_dir: match schedule::user_unit_dir() {
            Some(d) if user && default => d,
            _ => p.unit_dir.clone(),
        },
        cron_dir: p.cron_dir.clone(),
        user,
    }
}

/// The apply command line, checked by the same parser the job will use.
pub fn apply_args(extra: &[String]) -> Result<Vec<String>, String> {
    let mut args = vec!["apply".to_owned()];
    if !extra.iter().any(|a| a == "--reload" || a == "--restart") {
        args.push("--reload".into());
    }
    args.extend(extra.iter().cloned());
    if extra.iter().any(|a| a == "--dry-run") {
        return Err("--dry-run in the nightly job would never apply anything".into());
    }
    let cli = parse_installed(&args, "the nightly apply")?;
    // containerd and podman read their files on every pull: nothing to reload.
    let told = extra.iter().any(|a| a == "--reload" || a == "--restart");
    if let crate::cli::Command::Apply(a) = &cli.command {
        if a.target != crate::cli::Target::Docker && !told {
            args.retain(|a| a != "--reload");
        }
    }
    Ok(args)
}

fn install(args: &ScheduleInstallArgs) -> CommandResult {
    let at = schedule::parse_at(&args.at).map_err(|e| Failure::usage(anyhow!(e)))?;
    let apply = apply_args(&args.apply).map_err(|e| Failure::usage(anyhow!(e)))?;
    let exe = installed_binary(args.binary.as_deref())?;
    let job = Job {
        exe,
        args: apply,
        config_home: dirs::config_dir(),
    };
    job.check().map_err(failure)?;
    let places = places(&args.places);
    if places.user && args.cron {
        return Err(Failure::usage(anyhow!(
            "--cron writes /etc/cron.d, which is root's; as a user the nightly job is a systemd user timer (leave out --cron)"
        )));
    }
    if args.dry_run {
        let mut out = std::io::stdout().lock();
        for (path, text) in schedule::job_files(&job, at, args.cron, &places) {
            writeln!(out, "# {}\n{text}", path.display())?;
        }
        return Ok(ExitStatus::Success);
    }
    schedule::install(&job, at, args.cron, &places, &mut |l| say(l)).map_err(failure)?;
    Ok(ExitStatus::Success)
}

/// `args` parsed as the installed job or service will parse them; the
/// error names `what` and clap's first line.
pub fn parse_installed(args: &[String], what: &str) -> Result<Cli, String> {
    let argv = std::iter::once("dmirror".to_owned()).chain(args.iter().cloned());
    Cli::try_parse_from(argv).map_err(|e| {
        let text = e.to_string();
        let first = text
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("error: ");
        format!("the options for {what} are wrong: {first}")
    })
}

/// The binary a job or service runs (`schedule::installed_binary`).
pub fn installed_binary(binary: Option<&std::path::Path>) -> Result<std::path::PathBuf, Failure> {
    schedule::installed_binary(binary).map_err(|e| Failure::usage(anyhow!(e)))
}

fn remove(args: &ScheduleRemoveArgs) -> CommandResult {
    let places = places(&args.places);
    if args.dry_run {
        let present: Vec<_> = places.all().into_iter().filter(|p| p.exists()).collect();
        let mut out = std::io::stdout().lock();
        for p in &present {
            writeln!(out, "would remove {}", p.display())?;
        }
        if present.is_empty() {
            writeln!(out, "no nightly job is installed")?;
        }
        return Ok(ExitStatus::Success);
    }
    let systemd = schedule::remove_systemd(&places, &mut |l| say(l)).map_err(failure)?;
    let cron = schedule::remove_cron(&places, &mut |l| say(l)).map_err(failure)?;
    if !systemd && !cron {
        say("no nightly job is installed; nothing to remove");
    }
    Ok(ExitStatus::Success)
}

fn failure(e: schedule::ScheduleError) -> Failure {
    match e {
        schedule::ScheduleError::Refused(_) => Failure::usage(e),
        schedule::ScheduleError::Systemd(_) => Failure::new(ExitStatus::NothingUsable, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_options_are_checked_and_reload_is_the_default() {
        assert_eq!(apply_args(&[]).unwrap(), ["apply", "--reload"]);
        assert_eq!(
            apply_args(&["--target".into(), "containerd".into()]).unwrap(),
            ["apply", "--target", "containerd"]
        );
        let with = apply_args(&["--restart".into(), "--top".into(), "2".into()]).unwrap();
        assert_eq!(with, ["apply", "--restart", "--top", "2"]);
        assert!(apply_args(&["--top".into(), "zero".into()])
            .unwrap_err()
            .contains("nightly apply"));
        assert!(apply_args(&["--dry-run".into()]).is_err());
    }
}
