//! The arguments of `dmirror serve` and `dmirror cache`: the server and
//! the cache it shares with pull.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::{parse_duration, parse_interval, parse_size, FormatArgs, MirrorSource, NetArgs};

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// The cached images, named by the tags pull and serve resolved, with
    /// their platforms, size and last use (--blobs: every blob).
    List(CacheListArgs),
    /// How much the cache holds (blobs, unfinished downloads) and the free
    /// space left on its disk.
    Size(CacheSizeArgs),
    /// Remove what has not been used for a while (--unused-for), the least
    /// recently used beyond a size (--keep), or everything (--all).
    /// Downloads under way are left alone.
    Prune(CachePruneArgs),
}

/// Which cache.
#[derive(Debug, Args)]
pub struct CacheDirArg {
    /// The cache directory. [default: the user's cache directory, e.g.
    /// ~/.cache/dmirror; the serve service (serve install) keeps its cache
    /// in /var/cache/dmirror]
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CacheListArgs {
    #[command(flatten)]
    pub dir: CacheDirArg,

    /// List every blob (digest, size, last use, the images using it)
    /// instead of the images.
    #[arg(short = 'b', long)]
    pub blobs: bool,

    #[command(flatten)]
    pub out: FormatArgs,
}

#[derive(Debug, Args)]
pub struct CacheSizeArgs {
    #[command(flatten)]
    pub dir: CacheDirArg,

    #[command(flatten)]
    pub out: FormatArgs,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("rule").required(true).multiple(true).args(["keep", "unused_for", "all"])))]
pub struct CachePruneArgs {
    #[command(flatten)]
    pub dir: CacheDirArg,

    /// Remove the least recently used blobs until the cache holds at most
    /// SIZE (e.g. 20G, 500M).
    #[arg(short = 'k', long, value_name = "SIZE", value_parser = parse_size)]
    pub keep: Option<u64>,

    /// Remove what has not been used for DURATION (e.g. 30d, 2weeks).
    #[arg(short = 'u', long, value_name = "DURATION", value_parser = parse_duration)]
    pub unused_for: Option<Duration>,

    /// Remove everything (downloads under way excepted).
    #[arg(short = 'a', long, conflicts_with_all = ["keep", "unused_for"])]
    pub all: bool,

    /// Show what would be removed and remove nothing.
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub out: FormatArgs,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ServeArgs {
    #[command(subcommand)]
    pub action: Option<ServeCommand>,

    #[command(flatten)]
    pub run: ServeRunArgs,
}

#[derive(Debug, Subcommand)]
pub enum ServeCommand {
    /// Install `dmirror serve` as a systemd service (its own user, its own
    /// state and cache directories, sandboxed), started before docker and
    /// containerd.
    Install(ServeInstallArgs),
    /// Stop and remove the service.
    Remove(ServeRemoveArgs),
}

#[derive(Debug, Args)]
pub struct ServeRunArgs {
    /// Address to listen on. Loopback unless you name another address.
    #[arg(short = 'l', long, value_name = "ADDR", default_value = crate::serve::DEFAULT_LISTEN)]
    pub listen: String,

    #[command(flatten)]
    pub source: MirrorSource,

    /// The blob cache (shared with dmirror pull). [default: the user's
    /// cache directory, e.g. ~/.cache/dmirror]
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Keep the cache under SIZE (e.g. 20G, 500M), least recently used
    /// blobs removed first. Default: no limit.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_cache: Option<u64>,

    /// Probe the mirrors again this often (`0` probes only at start).
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = parse_interval)]
    pub reprobe: Duration,

    /// Image to probe a registry's mirrors with (one per registry; the
    /// others use a small well-known image of theirs).
    #[arg(short = 'i', long, value_name = "REF")]
    pub image: Vec<String>,

    /// Platform the probe picks from a multi-platform image. Defaults to
    /// this machine's.
    #[arg(short = 'p', long, value_name = "OS/ARCH")]
    pub platform: Option<String>,

    /// Time allowed for each mirror's health check, and for one source's
    /// answer to a manifest request.
    #[arg(short = 't', long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Time allowed for a source's first byte of a blob, and for any gap
    /// in its transfer, before the next source takes over.
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_duration)]
    pub first_byte: Duration,

    /// Total time the probe spends measuring throughput.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub budget: Duration,

    /// Neither use nor record the probe history.
    #[arg(long)]
    pub no_history: bool,

    /// Answer only clients from this network (e.g. 10.0.0.0/8) or address;
    /// repeat for more. This machine is always answered; others get 403.
    /// Default: everyone who reaches --listen.
    #[arg(long, value_name = "CIDR", value_parser = crate::serve::gate::parse_allow)]
    pub allow: Vec<ipnet::IpNet>,

    /// Serve HTTPS with this certificate (PEM, chain after it), so other
    /// machines' engines trust the server without insecure-registries.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    #[command(flatten)]
    pub net: NetArgs,
}

#[derive(Debug, Args)]
pub struct ServeInstallArgs {
    /// Address the service listens on.
    #[arg(short = 'l', long, value_name = "ADDR", default_value = crate::serve::DEFAULT_LISTEN)]
    pub listen: String,

    /// Print the unit and change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// The dmirror binary the service runs (default: this one, unless it
    /// lives in a build or temporary directory).
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,

    /// Where systemd units go.
    #[arg(long, value_name = "DIR", default_value = "/etc/systemd/system")]
    pub unit_dir: PathBuf,

    /// More options for `dmirror serve`, after `--` (e.g. -- --max-cache 20G).
    #[arg(last = true, value_name = "SERVE_OPTIONS")]
    pub serve: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ServeRemoveArgs {
    /// Print what would be removed and change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Where systemd units go.
    #[arg(long, value_name = "DIR", default_value = "/etc/systemd/system")]
    pub unit_dir: PathBuf,
}
