//! What the cache holds and how it shrinks, for `dmirror cache`: the
//! images its manifests describe (named by the tags `pull` and `serve`
//! resolved), every blob with the images that use it, the partial
//! downloads, and pruning by age, by size (least recently used first) or
//! all of it. A partial another process holds locked (a download under
//! way in `serve` or `pull`) is never touched.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::store::{Store, TagRecord};
use crate::registry::digest;
use crate::registry::manifest::{Manifest, MAX_MANIFEST_BYTES};

/// One verified blob (a layer, a config or a manifest).
#[derive(Debug, Clone)]
pub struct Blob {
    pub digest: String,
    pub size: u64,
    /// When it was last read (its mtime; reads refresh it at most hourly).
    pub last_used: SystemTime,
    /// A manifest (its media type is kept beside it).
    pub manifest: bool,
    /// The images (references) that use it.
    pub used_by: Vec<String>,
}

/// A download not finished: resumable by the next pull or serve.
#[derive(Debug, Clone)]
pub struct Partial {
    pub digest: String,
    pub size: u64,
    pub modified: SystemTime,
    /// Another process is writing it now.
    pub busy: bool,
    path: PathBuf,
}

/// An image the cache knows: a tag's resolution, or a manifest no tag
/// names (`reference` is then `<none>`).
#[derive(Debug, Clone)]
pub struct Image {
    pub reference: String,
    pub digest: String,
    /// `index`, `image`, or `missing` (the tag's manifest is gone).
    pub kind: &'static str,
    /// Platforms whose image is here (for an index).
    pub platforms: Vec<String>,
    /// Blobs the cached manifests name, and how many of them are here.
    pub blobs: usize,
    pub cached: usize,
    /// Bytes of its blobs that are here (shared blobs counted in each).
    pub size: u64,
    pub last_used: SystemTime,
}

#[derive(Debug, Clone)]
pub struct Inventory {
    pub root: PathBuf,
    pub images: Vec<Image>,
    pub blobs: Vec<Blob>,
    pub partials: Vec<Partial>,
    /// Free space on the cache's file system.
    pub free: Option<u64>,
}

impl Inventory {
    pub fn blob_bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.size).sum()
    }

    pub fn partial_bytes(&self) -> u64 {
        self.partials.iter().map(|p| p.size).sum()
    }

    pub fn total(&self) -> u64 {
        self.blob_bytes() + self.partial_bytes()
    }

    /// Read what `store` holds. A cache that does not exist is empty.
    pub fn read(store: &Store) -> io::Result<Self> {
        let root = store.root().to_owned();
        let mut blobs = read_blobs(&store.cache.blobs_dir())?;
        let media: BTreeSet<String> = names(&root.join("manifests"))?
            .into_iter()
            .filter(|n| is_hex(n))
            .map(|n| format!("sha256:{n}"))
            .collect();
        let by_digest: HashMap<String, usize> = blobs
            .iter()
            .enumerate()
            .map(|(i, b)| (b.digest.clone(), i))
            .collect();
        let mut manifests: HashMap<String, Manifest> = HashMap::new();
        for d in &media {
            let Some(&i) = by_digest.get(d) else { continue };
            blobs[i].manifest = true;
            // Read only: listing neither refreshes a last use nor removes.
            let path = store.cache.blob_path(d);
            let hex = d.trim_start_matches("sha256:");
            let bytes = crate::files::read_regular(&path, MAX_MANIFEST_BYTES as u64);
            let media = fs::read_to_string(root.join("manifests").join(hex));
            if let (Ok(Some(bytes)), Ok(media)) = (bytes, media) {
                if let Ok(m) = Manifest::parse(&bytes, Some(media.trim())) {
                    manifests.insert(d.clone(), m);
                }
            }
        }
        let mut tags = read_tags(&root.join("tags"))?;
        tags.sort_by(|a, b| (&a.registry, &a.repo, &a.tag).cmp(&(&b.registry, &b.repo, &b.tag)));
        let mut roots: Vec<(String, String)> = tags
            .iter()
            .map(|t| {
                (
                    format!("{}/{}:{}", t.registry, t.repo, t.tag),
                    t.digest.clone(),
                )
            })
            .collect();
        // Manifests no tag reaches and no cached index lists: pulled by digest.
        let children: BTreeSet<&String> = manifests
            .values()
            .filter_map(|m| match m {
                Manifest::Index { manifests } => Some(manifests.iter().map(|c| &c.digest)),
                Manifest::Image { .. } => None,
            })
            .flatten()
            .collect();
        let tagged: BTreeSet<String> = roots.iter().map(|(_, d)| d.clone()).collect();
        let mut untagged: Vec<&String> = manifests
            .keys()
            .filter(|d| !children.contains(d) && !tagged.contains(*d))
            .collect();
        untagged.sort();
        roots.extend(
            untagged
                .into_iter()
                .map(|d| ("<none>".to_owned(), d.clone())),
        );

        let mut images = Vec::new();
        for (reference, top) in roots {
            let mut walk = Walk::default();
            let kind = match manifests.get(&top) {
                None => "missing",
                Some(Manifest::Image { .. }) => "image",
                Some(Manifest::Index { .. }) => "index",
            };
            walk.manifest(&top, &manifests, None);
            let (mut size, mut cached, mut last_used) = (0, 0, SystemTime::UNIX_EPOCH);
            for d in &walk.blobs {
                if let Some(&i) = by_digest.get(d) {
                    let b = &mut blobs[i];
                    size += b.size;
                    cached += 1;
                    last_used = last_used.max(b.last_used);
                    if !b.used_by.contains(&reference) {
                        b.used_by.push(reference.clone());
                    }
                }
            }
            images.push(Image {
                reference,
                digest: top,
                kind,
                platforms: walk.platforms,
                blobs: walk.blobs.len(),
                cached,
                size,
                last_used,
            });
        }
        Ok(Self {
            partials: read_partials(&store.cache, &root.join("partial"))?,
            free: super::free_space(&root).ok(),
            root,
            images,
            blobs,
        })
    }
}

/// The blobs one image names, walked from its top manifest.
#[derive(Default)]
struct Walk {
    blobs: BTreeSet<String>,
    platforms: Vec<String>,
}

impl Walk {
    fn manifest(&mut self, d: &str, all: &HashMap<String, Manifest>, platform: Option<String>) {
        // Once per digest: an index may list one manifest twice.
        if !self.blobs.insert(d.to_owned()) {
            return;
        }
        match all.get(d) {
            Some(Manifest::Index { manifests }) => {
                for c in manifests {
                    // Only the platforms pulled: the others were never wanted.
                    if all.contains_key(&c.digest) {
                        let p = c.platform.as_ref().map(|p| p.to_string());
                        self.manifest(&c.digest, all, p);
                    }
                }
            }
            Some(Manifest::Image { config, layers }) => {
                // Attestations are listed as platform unknown/unknown.
                self.platforms
                    .extend(platform.filter(|p| !p.starts_with("unknown/")));
                self.blobs.insert(config.digest.clone());
                self.blobs.extend(layers.iter().map(|l| l.digest.clone()));
            }
            None => {}
        }
    }
}

fn is_hex(n: &str) -> bool {
    n.len() == 64
        && n.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// File names in `dir`; none when it does not exist.
fn names(dir: &Path) -> io::Result<Vec<String>> {
    match fs::read_dir(dir) {
        Ok(it) => Ok(it
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", dir.display()))),
    }
}

/// Regular files only: a link planted in the cache is neither counted
/// nor followed.
fn regular(path: &Path) -> Option<fs::Metadata> {
    fs::symlink_metadata(path).ok().filter(|m| m.is_file())
}

pub(super) fn read_blobs(dir: &Path) -> io::Result<Vec<Blob>> {
    let mut out: Vec<Blob> = names(dir)?
        .into_iter()
        .filter(|n| is_hex(n))
        .filter_map(|n| {
            let m = regular(&dir.join(&n))?;
            Some(Blob {
                digest: format!("sha256:{n}"),
                size: m.len(),
                last_used: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                manifest: false,
                used_by: Vec::new(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.digest.cmp(&b.digest));
    Ok(out)
}

fn read_tags(dir: &Path) -> io::Result<Vec<TagRecord>> {
    Ok(names(dir)?
        .into_iter()
        .filter_map(|n| {
            let b = crate::files::read_regular(&dir.join(n), 4096).ok()??;
            let r: TagRecord = serde_json::from_slice(&b).ok()?;
            digest::is_valid(&r.digest).then_some(r)
        })
        .collect())
}

fn read_partials(cache: &super::cache::Cache, dir: &Path) -> io::Result<Vec<Partial>> {
    let mut out: Vec<Partial> = names(dir)?
        .into_iter()
        .filter_map(|n| {
            let hex = n.strip_suffix(".stream").unwrap_or(&n);
            if !is_hex(hex) {
                return None;
            }
            let path = dir.join(&n);
            let m = regular(&path)?;
            let digest = format!("sha256:{hex}");
            Some(Partial {
                // A stream file is locked itself; a partial through its
                // `.lock` (see `Cache::try_hold_partial`).
                busy: if n.ends_with(".stream") {
                    crate::files::held_elsewhere(&path)
                } else {
                    cache.partial_held(&digest)
                },
                digest,
                size: m.len(),
                modified: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                path,
            })
        })
        .collect();
    out.sort_by(|a, b| a.digest.cmp(&b.digest));
    Ok(out)
}

/// What to prune.
#[derive(Debug, Clone, Default)]
pub struct Rule {
    /// Remove least recently used entries until the cache holds at most this.
    pub keep: Option<u64>,
    /// Remove what has not been used for this long.
    pub unused_for: Option<Duration>,
    /// Remove everything not in use.
    pub all: bool,
}

/// Why an entry goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    All,
    Unused,
    OverLimit,
}

/// The entries `rule` removes, as indexes into `items` (each its last
/// use and size), with the reason. `busy` bytes stay whatever happens but
/// count towards the limit.
pub fn choose(
    items: &[(SystemTime, u64)],
    busy: u64,
    rule: &Rule,
    now: SystemTime,
) -> Vec<(usize, Reason)> {
    if rule.all {
        return (0..items.len()).map(|i| (i, Reason::All)).collect();
    }
    let mut out = Vec::new();
    let mut gone = vec![false; items.len()];
    if let Some(age) = rule.unused_for {
        for (i, (t, _)) in items.iter().enumerate() {
            if now.duration_since(*t).unwrap_or_default() > age {
                out.push((i, Reason::Unused));
                gone[i] = true;
            }
        }
    }
    if let Some(max) = rule.keep {
        let mut total: u64 = busy
            + items
                .iter()
                .zip(&gone)
                .filter(|(_, g)| !**g)
                .map(|((_, n), _)| n)
                .sum::<u64>();
        let mut order: Vec<usize> = (0..items.len()).filter(|&i| !gone[i]).collect();
        order.sort_by_key(|&i| items[i].0);
        for i in order {
            if total <= max {
                break;
            }
            total -= items[i].1;
            out.push((i, Reason::OverLimit));
        }
    }
    out
}

/// One entry pruned (or, in a dry run, to be).
#[derive(Debug, Clone)]
pub struct Removed {
    pub digest: String,
    pub size: u64,
    pub last_used: SystemTime,
    pub partial: bool,
    pub reason: Reason,
    pub used_by: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Pruned {
    pub removed: Vec<Removed>,
    /// Bytes the cache holds afterwards.
    pub left: u64,
    /// Partials skipped because a download is writing them.
    pub busy: usize,
    pub dry_run: bool,
}

impl Pruned {
    pub fn freed(&self) -> u64 {
        self.removed.iter().map(|r| r.size).sum()
    }
}

/// The cache at `dir`, or the user's. Never created just to be read.
pub fn locate(dir: Option<&Path>) -> Result<Store, String> {
    let root = dir
        .map(Path::to_owned)
        .or_else(super::cache::Cache::default_root)
        .ok_or("no cache directory: set XDG_CACHE_HOME or HOME, or give --cache-dir")?;
    if root.exists() && !root.is_dir() {
        return Err(format!(
            "--cache-dir {}: not a directory; give the directory dmirror pull or serve caches in",
            root.display()
        ));
    }
    Ok(Store {
        cache: super::cache::Cache::new(root),
    })
}

/// How long prune waits for a pull writing into the cache.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Prune `store` by `rule`. Blobs and idle partials are candidates alike;
/// a manifest's media type and the tags whose manifest went go with them.
/// A pull holds the cache while it writes: prune waits for it (`on_wait`
/// called) rather than remove a blob it is about to use.
pub fn prune(
    store: &Store,
    rule: &Rule,
    dry_run: bool,
    on_wait: impl FnOnce(),
) -> io::Result<Pruned> {
    let _lock = if store.root().is_dir() && !dry_run {
        Some(crate::files::lock_dir(store.root(), LOCK_WAIT, on_wait).map_err(io::Error::other)?)
    } else {
        None
    };
    if !dry_run {
        // What a server killed mid-download left in a private file.
        store.sweep_private(super::store::PRIVATE_IDLE);
    }
    let inv = Inventory::read(store)?;
    let idle: Vec<&Partial> = inv.partials.iter().filter(|p| !p.busy).collect();
    let busy: Vec<&Partial> = inv.partials.iter().filter(|p| p.busy).collect();
    let items: Vec<(SystemTime, u64)> = inv
        .blobs
        .iter()
        .map(|b| (b.last_used, b.size))
        .chain(idle.iter().map(|p| (p.modified, p.size)))
        .collect();
    let busy_bytes = busy.iter().map(|p| p.size).sum();
    let mut removed = Vec::new();
    for (i, reason) in choose(&items, busy_bytes, rule, SystemTime::now()) {
        let r = match inv.blobs.get(i) {
            Some(b) => {
                if !dry_run {
                    remove(&store.cache.blob_path(&b.digest))?;
                    let hex = b.digest.trim_start_matches("sha256:");
                    remove(&inv.root.join("manifests").join(hex))?;
                }
                Removed {
                    digest: b.digest.clone(),
                    size: b.size,
                    last_used: b.last_used,
                    partial: false,
                    reason,
                    used_by: b.used_by.clone(),
                }
            }
            None => {
                let p = idle[i - inv.blobs.len()];
                let stream = p.path.extension().is_some_and(|e| e == "stream");
                if !dry_run {
                    // Held while it goes: a serve starting on it meanwhile
                    // keeps it.
                    let hold = if stream {
                        None
                    } else {
                        match store.cache.try_hold_partial(&p.digest)? {
                            Some(h) => Some(h),
                            None => continue,
                        }
                    };
                    remove(&p.path)?;
                    let hex = p.digest.trim_start_matches("sha256:");
                    remove(&inv.root.join("partial").join(format!("{hex}.ranges")))?;
                    drop(hold);
                }
                Removed {
                    digest: p.digest.clone(),
                    size: p.size,
                    last_used: p.modified,
                    partial: true,
                    reason,
                    used_by: Vec::new(),
                }
            }
        };
        removed.push(r);
    }
    if !dry_run {
        forget_orphan_tags(store)?;
    }
    let freed: u64 = removed.iter().map(|r| r.size).sum();
    Ok(Pruned {
        left: inv.total() - freed,
        busy: busy.len(),
        removed,
        dry_run,
    })
}

fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io::Error::new(
            e.kind(),
            format!("cannot remove {}: {e}", path.display()),
        )),
        _ => Ok(()),
    }
}

/// Tags whose manifest is no longer cached say nothing: remove them.
fn forget_orphan_tags(store: &Store) -> io::Result<()> {
    let dir = store.root().join("tags");
    for n in names(&dir)? {
        let path = dir.join(&n);
        let Some(b) = crate::files::read_regular(&path, 4096).ok().flatten() else {
            continue;
        };
        let gone = serde_json::from_slice::<TagRecord>(&b)
            .map(|r| regular(&store.cache.blob_path(&r.digest)).is_none())
            .unwrap_or(true);
        if gone {
            remove(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs_ago: u64) -> SystemTime {
        SystemTime::now() - Duration::from_secs(secs_ago)
    }

    #[test]
    fn keep_removes_least_recently_used_until_under_the_limit() {
        let now = SystemTime::now();
        let items = [(at(30), 10), (at(10), 10), (at(20), 10)];
        let got = choose(
            &items,
            0,
            &Rule {
                keep: Some(15),
                ..Rule::default()
            },
            now,
        );
        assert_eq!(got, vec![(0, Reason::OverLimit), (2, Reason::OverLimit)]);
        // Busy bytes count towards the limit though they cannot go.
        let got = choose(
            &items,
            10,
            &Rule {
                keep: Some(25),
                ..Rule::default()
            },
            now,
        );
        assert_eq!(got, vec![(0, Reason::OverLimit), (2, Reason::OverLimit)]);
    }

    #[test]
    fn unused_for_goes_first_then_the_limit() {
        let now = SystemTime::now();
        let items = [(at(100), 10), (at(10), 10), (at(20), 10)];
        let rule = Rule {
            keep: Some(10),
            unused_for: Some(Duration::from_secs(50)),
            all: false,
        };
        assert_eq!(
            choose(&items, 0, &rule, now),
            vec![(0, Reason::Unused), (2, Reason::OverLimit)]
        );
        let all = Rule {
            all: true,
            ..Rule::default()
        };
        assert_eq!(choose(&items, 0, &all, now).len(), 3);
        assert!(choose(&items, 0, &Rule::default(), now).is_empty());
    }

    #[test]
    fn images_are_named_by_tags_and_their_blobs_counted() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::new(dir.path().to_owned()).unwrap();
        let put = |b: &[u8]| {
            let d = digest::of(b);
            std::fs::write(s.cache.blob_path(&d), b).unwrap();
            d
        };
        let config = put(b"{\"config\":1}");
        let layer = put(b"layer bytes");
        let missing = digest::of(b"not here");
        let image = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"digest":"{config}","size":12}},"layers":[{{"digest":"{layer}","size":11}},{{"digest":"{missing}","size":8}}]}}"#
        );
        let image_d = digest::of(image.as_bytes());
        s.put_manifest(
            &image_d,
            image.as_bytes(),
            "application/vnd.oci.image.manifest.v1+json",
        )
        .unwrap();
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"digest":"{image_d}","size":{},"platform":{{"os":"linux","architecture":"amd64"}}}},{{"digest":"{missing}","size":5,"platform":{{"os":"linux","architecture":"arm64"}}}}]}}"#,
            image.len()
        );
        let index_d = digest::of(index.as_bytes());
        s.put_manifest(
            &index_d,
            index.as_bytes(),
            "application/vnd.oci.image.index.v1+json",
        )
        .unwrap();
        s.put_tag(&TagRecord {
            registry: "docker.io".into(),
            repo: "library/app".into(),
            tag: "1".into(),
            digest: index_d.clone(),
        })
        .unwrap();
        let inv = Inventory::read(&s).unwrap();
        assert_eq!(inv.images.len(), 1, "{:?}", inv.images);
        let i = &inv.images[0];
        assert_eq!(i.reference, "docker.io/library/app:1");
        assert_eq!(i.kind, "index");
        assert_eq!(i.platforms, vec!["linux/amd64"]);
        assert_eq!(
            (i.blobs, i.cached),
            (5, 4),
            "the missing layer is counted, not cached"
        );
        assert_eq!(i.size, inv.blob_bytes());
        let l = inv.blobs.iter().find(|b| b.digest == layer).unwrap();
        assert_eq!(l.used_by, vec!["docker.io/library/app:1"]);
        assert!(
            inv.blobs
                .iter()
                .find(|b| b.digest == index_d)
                .unwrap()
                .manifest
        );

        // Pruning the index's manifest leaves the tag nothing: it goes too.
        let p = prune(
            &s,
            &Rule {
                all: true,
                ..Rule::default()
            },
            false,
            || {},
        )
        .unwrap();
        assert_eq!(p.removed.len(), 4);
        assert_eq!(p.left, 0);
        assert!(s.tag("docker.io", "library/app", "1").is_none());
    }
}
