//! `dmirror cache`: what the cache of pull and serve holds, and pruning it.

use anyhow::anyhow;

use super::{print, say, table_width, CommandResult, Failure};
use crate::cli::{CacheCommand, CacheDirArg, Format};
use crate::exit::ExitStatus;
use crate::output::cache as out;
use crate::pull::inventory::{self, Inventory, Rule};
use crate::pull::store::Store;

pub fn run(cmd: &CacheCommand) -> CommandResult {
    match cmd {
        CacheCommand::List(a) => {
            let inv = read(&locate(&a.dir)?)?;
            print(&a.out, "cache list", |w, f| match f {
                Format::Json => out::write_list_json(w, &inv, a.blobs),
                Format::Plain => out::write_list_plain(w, &inv, a.blobs),
                _ => out::write_list_table(w, &inv, a.blobs, table_width()),
            })
        }
        CacheCommand::Size(a) => {
            let inv = read(&locate(&a.dir)?)?;
            print(&a.out, "cache size", |w, f| out::write_size(w, &inv, f))
        }
        CacheCommand::Prune(a) => {
            let store = locate(&a.dir)?;
            let rule = Rule {
                keep: a.keep,
                unused_for: a.unused_for,
                all: a.all,
            };
            let waiting = || say("waiting for a dmirror pull writing in the cache");
            let pruned = inventory::prune(&store, &rule, a.dry_run, waiting)
                .map_err(|e| failed(anyhow!("cannot prune the cache: {e}")))?;
            print(&a.out, "cache prune", |w, f| {
                out::write_pruned(w, store.root(), &pruned, f, table_width())
            })
        }
    }
}

fn locate(dir: &CacheDirArg) -> Result<Store, Failure> {
    inventory::locate(dir.cache_dir.as_deref()).map_err(|e| Failure::usage(anyhow!(e)))
}

fn read(store: &Store) -> Result<Inventory, Failure> {
    Inventory::read(store).map_err(|e| failed(anyhow!("cannot read the cache: {e}")))
}

fn failed(e: anyhow::Error) -> Failure {
    Failure::new(ExitStatus::NothingUsable, e)
}
