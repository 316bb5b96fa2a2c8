//! The command line as clap sees it. Nothing here is used by the engine
//! directly: `commands::*` resolves these "low" arguments into settings.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Measure Docker registry mirrors, rank the working ones, and use them.
#[derive(Debug, Parser)]
#[command(name = "dmirror", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Probe every mirror at the registry level and rank the working ones.
    Probe(ProbeArgs),
    /// Probe, then write the best mirrors into dockerd's daemon.json, make
    /// dockerd take them, verify, and roll back if it does not.
    Apply(ApplyArgs),
    /// Pull an image over several mirrors at once, verify every byte, and
    /// load it into Docker or write it as an OCI layout or docker-archive.
    Pull(PullArgs),
    /// Show the mirror list that `probe` would use, without probing.
    List(ListArgs),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
}

/// Where the mirror list comes from.
#[derive(Debug, Args, Clone)]
pub struct MirrorSource {
    /// Use only the mirrors in FILE (repeatable; later files override earlier
    /// entries of the same name). Replaces the built-in and user lists.
    #[arg(long = "mirrors", value_name = "FILE")]
    pub mirrors: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    #[command(flatten)]
    pub source: MirrorSource,

    /// Image whose manifest and largest layer are fetched from every mirror.
    #[arg(long, value_name = "REF", default_value = crate::probe::DEFAULT_IMAGE)]
    pub image: String,

    /// Platform to pick from a multi-platform image, as os/arch[/variant].
    /// Defaults to this machine's.
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,

    /// Time allowed for each mirror's health check (/v2/, token, manifest, first blob bytes).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Total time spent measuring throughput, shared fairly among healthy mirrors.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub budget: Duration,

    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub probe: ProbeArgs,

    /// How many of the best working mirrors to write.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub top: u32,

    /// dockerd's configuration file (created if absent).
    #[arg(long, value_name = "PATH", default_value = "/etc/docker/daemon.json")]
    pub daemon_json: PathBuf,

    /// Make dockerd re-read its configuration (SIGHUP; running containers
    /// keep running). The default.
    #[arg(long, conflicts_with = "restart")]
    pub reload: bool,

    /// Restart dockerd instead (containers without live-restore stop).
    #[arg(long)]
    pub restart: bool,

    /// dockerd's pidfile, for the reload signal when systemd does not manage it.
    #[arg(long, value_name = "PATH", default_value = "/var/run/docker.pid")]
    pub dockerd_pidfile: PathBuf,

    /// How long to wait for the engine to report the new list before rolling back.
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = parse_duration)]
    pub verify_timeout: Duration,

    /// Show the change to daemon.json and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Image to pull, as Docker reads it (ubuntu, library/ubuntu:24.04, name@sha256:…).
    #[arg(value_name = "IMAGE")]
    pub image: String,

    #[command(flatten)]
    pub source: MirrorSource,

    /// Platform to pick from a multi-platform image, as os/arch[/variant].
    /// Defaults to this machine's.
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,

    /// Where the image goes: docker (load into the local engine), oci:DIR
    /// (an OCI image layout) or docker-archive:FILE (a file docker load reads).
    #[arg(long, value_name = "DEST", default_value = "docker")]
    pub output: String,

    /// Time allowed for each mirror's health check.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Connections per mirror.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub connections: u32,

    /// Print a JSON summary instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub source: MirrorSource,

    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to generate completions for.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{e} (write durations like 3s, 500ms, 1m)"))?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_parse_in_humantime_form() {
        assert_eq!(parse_duration("3s").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("fast").unwrap_err().contains("3s"));
    }
}
