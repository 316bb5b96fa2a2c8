//! The command line as clap sees it. Nothing here is used by the engine
//! directly: `commands::*` resolves these "low" arguments into settings.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod serve;
pub use serve::*;

pub use crate::output::Format;

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
    /// dockerd take them, verify, and roll back if it does not (or into
    /// containerd's hosts.toml or podman's registries.conf: --target).
    Apply(ApplyArgs),
    /// Pull an image over several mirrors at once, verify every byte, and
    /// load it into Docker or write it as an OCI layout or docker-archive.
    Pull(PullArgs),
    /// Show the mirror list that `probe` would use, without probing.
    List(ListArgs),
    /// Show what past probes found for each mirror.
    History(HistoryArgs),
    /// Install or remove the nightly job (systemd timer or cron) that
    /// re-ranks the mirrors and applies the best.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Run a local, read-only registry mirror that answers every pull from
    /// the ranked mirrors: tags resolved by upstream or their majority,
    /// every byte verified, the next mirror tried within the request.
    /// `serve install` makes it a systemd service.
    Serve(ServeArgs),
    /// See what the cache of `pull` and `serve` holds (images, blobs,
    /// unfinished downloads) and prune it.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
    /// Print the man page (roff), generated from this command line.
    #[command(hide = true)]
    Man,
}

/// The network path and the TLS trust, as the Docker engine has them.
#[derive(Debug, Args, Clone)]
pub struct NetArgs {
    /// How to reach the mirrors: `engine` (the Docker engine's own proxy, as
    /// its /info reports it; direct when it has none or no engine answers),
    /// `env` (the shell's http_proxy/https_proxy/no_proxy), `none` (direct),
    /// or a proxy URL.
    #[arg(long, value_name = "MODE", default_value = "engine")]
    pub proxy: String,

    /// Docker's per-host TLS directory: DIR/<host[:port]>/*.crt are extra CAs,
    /// *.cert with *.key a client certificate. [default: /etc/docker/certs.d,
    /// or ~/.config/docker/certs.d for rootless Docker]
    #[arg(long, value_name = "DIR")]
    pub certs_dir: Option<PathBuf>,
}

/// Where the mirror list comes from.
#[derive(Debug, Args, Clone)]
pub struct MirrorSource {
    /// Use only the mirrors in FILE (repeatable; later files override earlier
    /// entries of the same name). Replaces the built-in and user lists.
    #[arg(short = 'm', long = "mirrors", value_name = "FILE")]
    pub mirrors: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    #[command(flatten)]
    pub source: MirrorSource,

    /// Image whose manifest and largest layer are fetched from every mirror.
    /// `apply --target containerd|podman` takes one per registry (repeat the
    /// flag); registries given none use a small well-known image of theirs.
    #[arg(short = 'i', long, value_name = "REF", default_value = crate::probe::DEFAULT_IMAGE)]
    pub image: Vec<String>,

    /// Platform to pick from a multi-platform image, as os/arch[/variant].
    /// Defaults to this machine's.
    #[arg(short = 'p', long, value_name = "OS/ARCH")]
    pub platform: Option<String>,

    /// Time allowed for each mirror's health check (/v2/, token, manifest, first blob bytes).
    #[arg(short = 't', long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Total time spent measuring throughput, shared fairly among healthy mirrors.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub budget: Duration,

    #[command(flatten)]
    pub out: FormatArgs,

    /// Also write the results as Prometheus metrics to PATH, atomically
    /// (for node_exporter's textfile collector).
    #[arg(long, value_name = "PATH")]
    pub textfile: Option<PathBuf>,

    /// Neither use nor record the probe history: rank on this run alone.
    #[arg(long)]
    pub no_history: bool,

    #[command(flatten)]
    pub net: NetArgs,
}

impl ProbeArgs {
    /// The format in effect.
    pub fn output_format(&self) -> Format {
        self.out.format()
    }
}

/// How a command prints: the same flags on every printing command.
#[derive(Debug, Args, Clone)]
pub struct FormatArgs {
    /// Output format: table, plain (key=value lines), json, or prometheus
    /// where it applies. Default: a table on a terminal, plain lines
    /// (journald, cron, pipes) otherwise.
    #[arg(short = 'f', long, value_enum, value_name = "FORMAT")]
    pub format: Option<Format>,

    /// Print JSON (same as --format json).
    #[arg(short = 'j', long, conflicts_with = "format")]
    pub json: bool,
}

impl FormatArgs {
    /// The format in effect.
    pub fn format(&self) -> Format {
        use std::io::IsTerminal;
        match (self.json, self.format) {
            (true, _) => Format::Json,
            (false, Some(f)) => f,
            (false, None) if std::io::stdout().is_terminal() => Format::Table,
            (false, None) => Format::Plain,
        }
    }
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub probe: ProbeArgs,

    /// What to configure: dockerd's daemon.json (Docker Hub mirrors only),
    /// containerd's hosts.toml files, or registries.conf for podman, skopeo,
    /// buildah and CRI-O (both: every registry the mirror list serves).
    #[arg(long, value_enum, value_name = "TARGET", default_value = "docker")]
    pub target: Target,

    /// containerd's registry configuration directory (--target containerd):
    /// dmirror writes DIR/<registry>/hosts.toml. [default: /etc/containerd/certs.d]
    #[arg(long, value_name = "DIR")]
    pub hosts_dir: Option<PathBuf>,

    /// The registries.conf file to write (--target podman).
    /// [default: /etc/containers/registries.conf.d/50-dmirror.conf, or for
    /// rootless podman ~/.config/containers/registries.conf.d/50-dmirror.conf]
    #[arg(long, value_name = "FILE")]
    pub registries_conf: Option<PathBuf>,

    /// Configure only this registry (repeatable; --target containerd|podman).
    /// Default: every registry an enabled mirror serves. With --via, any
    /// registry, and for containerd `_default`: every registry without its
    /// own hosts directory.
    #[arg(short = 'r', long = "registry", value_name = "NAME")]
    pub registries: Vec<String>,

    /// How many of the best working mirrors to write (per registry).
    #[arg(short = 'n', long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub top: u32,

    /// dockerd's configuration file (created if absent; --target docker).
    /// [default: /etc/docker/daemon.json, or ~/.config/docker/daemon.json
    /// for a rootless engine]
    #[arg(long, value_name = "PATH")]
    pub daemon_json: Option<PathBuf>,

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

    /// Keep the configured list when the best list is no more than PERCENT
    /// better (measurement noise): nothing written, dockerd not reloaded.
    #[arg(long, value_name = "PERCENT", default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub margin: u32,

    /// Show the change to the configuration and change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Point the runtime at a `dmirror serve` at URL instead of probing:
    /// dockerd gets URL as its only mirror; containerd and podman one host
    /// per registry (containerd's ns, podman's path prefix), upstream kept
    /// as the fallback. containerd gives up connecting to it after 200ms,
    /// so a server that is down costs a pull nothing.
    #[arg(long, value_name = "URL")]
    pub via: Option<String>,

    /// With --via: write the files without first checking that a registry
    /// answers at URL (a node set-up that runs before its server starts;
    /// containerd and podman use upstream meanwhile).
    #[arg(long, requires = "via")]
    pub no_check: bool,
}

/// What `apply` configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// dockerd: `registry-mirrors` in daemon.json, reloaded and verified.
    Docker,
    /// containerd (Kubernetes nodes, nerdctl): <hosts-dir>/<registry>/hosts.toml.
    Containerd,
    /// podman, skopeo, buildah, CRI-O: containers-registries.conf.
    Podman,
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
    #[arg(short = 'p', long, value_name = "OS/ARCH")]
    pub platform: Option<String>,

    /// Where the image goes: docker (load into the local engine), oci:DIR
    /// (an OCI image layout) or docker-archive:FILE (a file docker load reads).
    #[arg(short = 'o', long, value_name = "DEST", default_value = "docker")]
    pub output: String,

    /// Time allowed for each mirror's health check.
    #[arg(short = 't', long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Connections per mirror.
    #[arg(short = 'c', long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub connections: u32,

    #[command(flatten)]
    pub net: NetArgs,

    /// The summary: table (lines for a person, on stderr), plain (one
    /// key=value line), json.
    #[command(flatten)]
    pub out: FormatArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub source: MirrorSource,

    #[command(flatten)]
    pub out: FormatArgs,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Show the history of the mirrors of this registry.
    #[arg(short = 'r', long, value_name = "NAME", default_value = crate::reference::DOCKER_HUB)]
    pub registry: String,

    /// Which mirrors' names to show: those in FILE (repeatable), as with
    /// probe; by default every mirror the history holds.
    #[command(flatten)]
    pub source: MirrorSource,

    #[command(flatten)]
    pub out: FormatArgs,
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Install the nightly job: a systemd service and timer, or with --cron
    /// a /etc/cron.d entry, running `dmirror apply --reload`.
    Install(ScheduleInstallArgs),
    /// Remove the nightly job, whichever kind is installed.
    Remove(ScheduleRemoveArgs),
}

#[derive(Debug, Args)]
pub struct ScheduleInstallArgs {
    /// Local time of day to run at, HH:MM (systemd adds up to 30 minutes of
    /// random delay, cron a fixed per-machine one).
    #[arg(long, value_name = "HH:MM", default_value = "03:30")]
    pub at: String,

    /// A /etc/cron.d entry instead of a systemd timer.
    #[arg(long)]
    pub cron: bool,

    /// Print what would be installed and change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// The dmirror binary the job runs. Default: this one, unless it lives
    /// in a build or temporary directory (install it first: cargo install
    /// --locked --path . --root /usr/local).
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,

    #[command(flatten)]
    pub places: SchedulePlaces,

    /// Options for the nightly `dmirror apply`, after `--`
    /// (e.g. -- --top 2 --textfile /var/lib/prometheus/node-exporter/dmirror.prom).
    #[arg(last = true, value_name = "APPLY_OPTIONS")]
    pub apply: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ScheduleRemoveArgs {
    /// Print what would be removed and change nothing.
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub places: SchedulePlaces,
}

#[derive(Debug, Args)]
pub struct SchedulePlaces {
    /// Where systemd units go. [run as a user: ~/.config/systemd/user,
    /// driven with systemctl --user]
    #[arg(long, value_name = "DIR", default_value = "/etc/systemd/system")]
    pub unit_dir: PathBuf,

    /// Where the cron entry goes.
    #[arg(long, value_name = "DIR", default_value = "/etc/cron.d")]
    pub cron_dir: PathBuf,
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

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{e} (write durations like 3s, 500ms, 1m)"))?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

/// A duration that may be `0` (off).
pub(crate) fn parse_interval(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{e} (write durations like 30m, 1h, or 0 for never)"))
}

/// A size: bytes, or with K, M, G, T (powers of 1024; `B`/`iB` optional).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let bad = || format!("{s:?} is not a size; write e.g. 20G, 500M or 1073741824");
    let t = t
        .trim_end_matches("iB")
        .trim_end_matches('B')
        .trim_end_matches('i');
    let (num, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(bad()),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: f64 = num.trim().parse().map_err(|_| bad())?;
    if !n.is_finite() || n <= 0.0 {
        return Err(bad());
    }
    let v = n * (1u64 << shift) as f64;
    if v >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("20G").unwrap(), 20 << 30);
        assert_eq!(parse_size("500MiB").unwrap(), 500 << 20);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        for bad in ["", "G", "-1G", "5X", "0"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_interval("0").unwrap(), Duration::ZERO);
    }

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
