//! What serve keeps on disk, inside the cache `dmirror pull` uses:
//! verified blobs and manifests in `blobs/sha256/` (content-addressed, so
//! shared), a manifest's media type in `manifests/<hex>`, the digest each
//! tag last resolved to in `tags/`, and a blob being streamed in
//! `partial/<hex>.stream` (its bytes so far, in order, so a restart
//! resumes it). Least recently used blobs go first when the cache grows
//! past its limit.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::files::atomic_write;
use crate::pull::cache::Cache;
use crate::registry::digest;

/// A tag's last resolution, kept for when every source fails.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TagRecord {
    pub registry: String,
    pub repo: String,
    pub tag: String,
    pub digest: String,
}

/// How a private stream file's name starts.
pub const PRIVATE: &str = ".private-";
/// A private stream file not written for this long was left by a server
/// killed mid-download (see `Store::sweep_private`).
pub const PRIVATE_IDLE: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub struct Store {
    pub cache: Cache,
}

fn hex(d: &str) -> &str {
    d.strip_prefix("sha256:").unwrap_or(d)
}

impl Store {
    pub fn new(root: PathBuf) -> io::Result<Self> {
        let s = Self {
            cache: Cache::new(root),
        };
        s.ensure()?;
        Ok(s)
    }

    /// Make the directories (again: someone may have emptied the cache
    /// while the server runs).
    pub fn ensure(&self) -> io::Result<()> {
        self.cache.prepare()?;
        fs::create_dir_all(self.root().join("manifests"))?;
        fs::create_dir_all(self.root().join("tags"))
    }

    pub fn root(&self) -> &Path {
        self.cache.root()
    }

    /// A verified manifest and its media type, if cached. Bytes that no
    /// longer hash to `digest` are removed, not served.
    pub fn manifest(&self, d: &str) -> Option<(Vec<u8>, String)> {
        let path = self.cache.blob_path(d);
        let bytes =
            crate::files::read_regular(&path, crate::registry::manifest::MAX_MANIFEST_BYTES as u64)
                .ok()
                .flatten()?;
        if digest::of(&bytes) != d {
            let _ = fs::remove_file(&path);
            return None;
        }
        let media = fs::read_to_string(self.root().join("manifests").join(hex(d))).ok()?;
        touch(&path);
        Some((bytes, media.trim().to_owned()))
    }

    /// Keep a manifest already checked against `d`.
    pub fn put_manifest(&self, d: &str, bytes: &[u8], media_type: &str) -> io::Result<()> {
        self.ensure()?;
        atomic_write(
            &self.root().join("manifests").join(hex(d)),
            media_type.as_bytes(),
            None,
        )?;
        atomic_write(&self.cache.blob_path(d), bytes, None)
    }

    fn tag_path(&self, registry: &str, repo: &str, tag: &str) -> PathBuf {
        let key = digest::of(format!("{registry}/{repo}:{tag}").as_bytes());
        self.root().join("tags").join(hex(&key))
    }

    pub fn tag(&self, registry: &str, repo: &str, tag: &str) -> Option<TagRecord> {
        let b = crate::files::read_regular(&self.tag_path(registry, repo, tag), 4096)
            .ok()
            .flatten()?;
        let r: TagRecord = serde_json::from_slice(&b).ok()?;
        (r.registry == registry && r.repo == repo && r.tag == tag && digest::is_valid(&r.digest))
            .then_some(r)
    }

    pub fn put_tag(&self, r: &TagRecord) -> io::Result<()> {
        self.ensure()?;
        let b = serde_json::to_vec(r).map_err(io::Error::other)?;
        atomic_write(&self.tag_path(&r.registry, &r.repo, &r.tag), &b, None)
    }

    /// Remove the private stream files (`partial/.private-*`, see serve's
    /// blob download) not written for `idle`: a server killed mid-download
    /// left them, and no one resumes them. A live download writes far more
    /// often (its sources are bounded in time). Returns how many went.
    pub fn sweep_private(&self, idle: Duration) -> usize {
        let dir = self.root().join("partial");
        let Ok(entries) = fs::read_dir(&dir) else {
            return 0;
        };
        entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(PRIVATE))
            .filter(|e| {
                e.metadata().is_ok_and(|m| {
                    m.is_file()
                        && m.modified()
                            .is_ok_and(|t| t.elapsed().unwrap_or_default() > idle)
                })
            })
            .filter(|e| fs::remove_file(e.path()).is_ok())
            .count()
    }

    /// Where a blob being streamed collects its bytes.
    pub fn stream_path(&self, d: &str) -> PathBuf {
        self.root()
            .join("partial")
            .join(format!("{}.stream", hex(d)))
    }

    /// Remove least recently used blobs until the cache holds at most
    /// `max` bytes. Returns the bytes removed.
    /// Not while a `pull` holds the cache: it may be about to read them.
    pub fn evict(&self, max: u64) -> u64 {
        use super::inventory::{choose, read_blobs, Rule};
        let Ok(_held) = crate::files::lock_dir(self.root(), Duration::ZERO, || {}) else {
            return 0;
        };
        let Ok(blobs) = read_blobs(&self.cache.blobs_dir()) else {
            return 0;
        };
        let items: Vec<(SystemTime, u64)> = blobs.iter().map(|b| (b.last_used, b.size)).collect();
        let rule = Rule {
            keep: Some(max),
            ..Rule::default()
        };
        let mut removed = 0;
        for (i, _) in choose(&items, 0, &rule, SystemTime::now()) {
            let b = &blobs[i];
            if fs::remove_file(self.cache.blob_path(&b.digest)).is_ok() {
                let _ = fs::remove_file(self.root().join("manifests").join(hex(&b.digest)));
                removed += b.size;
            }
        }
        removed
    }

    /// Make `need` bytes free on the cache's disk, when it has fewer, by
    /// removing least recently used blobs (something else filled the
    /// disk, or the cache grew without `--max-cache`). Returns the bytes
    /// removed (none when even an empty cache would not fit `need`); the
    /// caller checks the space again.
    pub fn make_room(&self, need: u64) -> u64 {
        let free = super::free_space(self.root()).unwrap_or(u64::MAX);
        if free >= need {
            return 0;
        }
        let held: u64 = super::inventory::read_blobs(&self.cache.blobs_dir())
            .map(|b| b.iter().map(|b| b.size).sum())
            .unwrap_or(0);
        if held.saturating_add(free) < need {
            // Even an empty cache would not hold it: keep what is here.
            return 0;
        }
        self.evict(held - (need - free))
    }
}

/// Mark `path` as used now (its mtime orders eviction), at most once an
/// hour so reads stay reads.
pub fn touch(path: &Path) {
    let stale = fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(3600));
    if stale {
        if let Ok(f) = fs::File::options().append(true).open(path) {
            let _ = f.set_modified(SystemTime::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_private_stream_files_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::new(dir.path().to_owned()).unwrap();
        let partial = dir.path().join("partial");
        let old = partial.join(format!("{PRIVATE}abc"));
        let live = partial.join(format!("{PRIVATE}def"));
        let other = partial.join("f".repeat(64));
        for p in [&old, &live, &other] {
            fs::write(p, b"x").unwrap();
        }
        let f = fs::File::options().append(true).open(&old).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
        let f = fs::File::options().append(true).open(&other).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
        assert_eq!(s.sweep_private(Duration::from_secs(600)), 1);
        assert!(!old.exists() && live.exists() && other.exists());
    }

    #[test]
    fn least_recently_used_go_first() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::new(dir.path().to_owned()).unwrap();
        let old = SystemTime::now() - Duration::from_secs(7200);
        let mut paths = Vec::new();
        for (i, body) in [b"aaaa", b"bbbb", b"cccc"].iter().enumerate() {
            let d = digest::of(*body);
            s.put_manifest(&d, *body, "application/x").unwrap();
            let p = s.cache.blob_path(&d);
            let f = fs::File::options().append(true).open(&p).unwrap();
            f.set_modified(old + Duration::from_secs(i as u64 * 10))
                .unwrap();
            paths.push((d, p));
        }
        // The oldest is used again: it moves to the back.
        assert!(s.manifest(&paths[0].0).is_some());
        assert_eq!(s.evict(8), 4);
        assert!(paths[0].1.exists(), "the one just used stays");
        assert!(!paths[1].1.exists(), "the least recently used goes");
        assert!(paths[2].1.exists());
        assert_eq!(s.evict(8), 0);
    }

    #[test]
    fn tags_and_manifests_round_trip_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::new(dir.path().to_owned()).unwrap();
        let d = digest::of(b"{}");
        s.put_manifest(&d, b"{}", "application/vnd.oci.image.manifest.v1+json")
            .unwrap();
        assert_eq!(
            s.manifest(&d).unwrap().1,
            "application/vnd.oci.image.manifest.v1+json"
        );
        fs::write(s.cache.blob_path(&d), b"{ }").unwrap();
        assert!(s.manifest(&d).is_none(), "tampered bytes are not served");
        let r = TagRecord {
            registry: "docker.io".into(),
            repo: "library/a".into(),
            tag: "1".into(),
            digest: d.clone(),
        };
        s.put_tag(&r).unwrap();
        assert_eq!(s.tag("docker.io", "library/a", "1").unwrap().digest, d);
        assert!(s.tag("docker.io", "library/a", "2").is_none());
    }
}
