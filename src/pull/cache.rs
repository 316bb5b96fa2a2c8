//! The content-addressed blob cache under the XDG cache dir.
//!
//! `blobs/sha256/<hex>` holds verified blobs, reused by later pulls (and
//! re-verified on reuse: the cache is a disk, not a proof). `partial/<hex>`
//! holds a blob being assembled from ranges, with `partial/<hex>.ranges`
//! listing the byte ranges already written, so a pull cut short resumes
//! where it stopped, even across runs. `partial/<hex>.lock` is held
//! (`flock`) by the one process writing that partial: `pull` and every
//! `serve` on the cache take it, so two never write one file.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::files::{atomic_write, open_no_follow};
use crate::registry::digest;

#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// `$XDG_CACHE_HOME/dmirror` (or the platform's equivalent).
    pub fn default_root() -> Option<PathBuf> {
        dirs::cache_dir().map(|d| d.join("dmirror"))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn hex(digest: &str) -> &str {
        digest.strip_prefix("sha256:").unwrap_or(digest)
    }

    /// Where verified blobs live, named by hex digest.
    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(Self::hex(digest))
    }

    pub fn partial_path(&self, digest: &str) -> PathBuf {
        self.root.join("partial").join(Self::hex(digest))
    }

    fn lock_path(&self, digest: &str) -> PathBuf {
        self.root
            .join("partial")
            .join(format!("{}.lock", Self::hex(digest)))
    }

    /// Take `digest`'s partial for this process alone, or `None` when
    /// another holds it. The hold ends when the value drops.
    pub fn try_hold_partial(&self, digest: &str) -> io::Result<Option<PartialHold>> {
        use std::os::unix::fs::MetadataExt;
        let path = self.lock_path(digest);
        loop {
            let f = open_no_follow(&path).map_err(|e| named(&path, e))?;
            match f.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => return Ok(None),
                Err(fs::TryLockError::Error(e)) => return Err(named(&path, e)),
            }
            // The holder before us removes the file as it lets go: a lock
            // on a file no longer at `path` holds nothing; take the new one.
            let here = fs::symlink_metadata(&path).ok().map(|m| (m.dev(), m.ino()));
            let mine = f.metadata()?;
            if here == Some((mine.dev(), mine.ino())) {
                return Ok(Some(PartialHold { file: f, path }));
            }
        }
    }

    /// Is `digest`'s partial held by a download under way?
    pub fn partial_held(&self, digest: &str) -> bool {
        crate::files::held_elsewhere(&self.lock_path(digest))
    }

    fn ranges_path(&self, digest: &str) -> PathBuf {
        self.root
            .join("partial")
            .join(format!("{}.ranges", Self::hex(digest)))
    }

    pub fn prepare(&self) -> io::Result<()> {
        fs::create_dir_all(self.root.join("blobs/sha256"))?;
        fs::create_dir_all(self.root.join("partial"))
    }

    /// Is a verified copy of `digest` here? A copy that no longer hashes
    /// right is removed.
    pub fn has_verified(&self, digest: &str, size: u64) -> bool {
        let path = self.blob_path(digest);
        match fs::metadata(&path) {
            Ok(m) if m.len() == size => {}
            Ok(_) => {
                let _ = fs::remove_file(&path);
                return false;
            }
            Err(_) => return false,
        }
        if hash_file(&path).is_ok_and(|d| d == digest) {
            true
        } else {
            let _ = fs::remove_file(&path);
            false
        }
    }

    /// Byte ranges of `digest` already written to its partial file.
    pub fn done_ranges(&self, digest: &str, size: u64) -> Vec<(u64, u64)> {
        let ok = fs::metadata(self.partial_path(digest)).is_ok_and(|m| m.len() <= size);
        if !ok {
            return Vec::new();
        }
        fs::read(self.ranges_path(digest))
            .ok()
            .and_then(|b| serde_json::from_slice::<Vec<(u64, u64)>>(&b).ok())
            .map(|r| normalise(r.into_iter().filter(|(s, e)| s < e && *e <= size).collect()))
            .unwrap_or_default()
    }

    pub fn record_ranges(&self, digest: &str, ranges: &[(u64, u64)]) -> io::Result<()> {
        let bytes = serde_json::to_vec(ranges).map_err(io::Error::other)?;
        atomic_write(&self.ranges_path(digest), &bytes, None)
    }

    /// Open (creating) the partial file for writing at offsets. It grows
    /// only as bytes arrive: a declared size is a claim, not an allocation.
    /// A link at its place is refused (`O_NOFOLLOW`), not followed.
    pub fn open_partial(&self, digest: &str, size: u64) -> io::Result<File> {
        let f = open_no_follow(&self.partial_path(digest))?;
        if f.metadata()?.len() > size {
            f.set_len(0)?;
            let _ = fs::remove_file(self.ranges_path(digest));
        }
        Ok(f)
    }

    /// Bytes still to download for `wanted` (digest, size): what is neither
    /// verified here nor in a partial.
    pub fn still_needed(&self, wanted: &[(String, u64)]) -> u64 {
        wanted
            .iter()
            .filter(|(d, size)| fs::metadata(self.blob_path(d)).map_or(true, |m| m.len() != *size))
            .map(|(d, size)| {
                let have: u64 = self.done_ranges(d, *size).iter().map(|(s, e)| e - s).sum();
                size.saturating_sub(have)
            })
            .fold(0u64, u64::saturating_add)
    }

    /// Start a partial over (its bytes failed verification).
    pub fn discard_partial(&self, digest: &str) {
        let _ = fs::remove_file(self.partial_path(digest));
        let _ = fs::remove_file(self.ranges_path(digest));
    }

    /// Verify the partial and move it into place. Returns the digest the
    /// bytes really have when it is not `digest`.
    pub fn commit(&self, digest: &str) -> io::Result<Result<(), String>> {
        let partial = self.partial_path(digest);
        let actual = hash_file(&partial)?;
        if actual != digest {
            return Ok(Err(actual));
        }
        fs::rename(&partial, self.blob_path(digest))?;
        let _ = fs::remove_file(self.ranges_path(digest));
        Ok(Ok(()))
    }

    /// Verify a file downloaded whole and move it into place.
    pub fn commit_file(&self, file: &Path, digest: &str) -> io::Result<Result<(), String>> {
        let actual = hash_file(file)?;
        if actual != digest {
            let _ = fs::remove_file(file);
            return Ok(Err(actual));
        }
        fs::rename(file, self.blob_path(digest))?;
        Ok(Ok(()))
    }
}

/// `e` naming `path`, and saying what a planted link means.
fn named(path: &Path, e: io::Error) -> io::Error {
    let why = if e.raw_os_error() == Some(libc::ELOOP) {
        "a link stands there, and dmirror never writes through one: remove it, and ask who put it there".to_owned()
    } else {
        e.to_string()
    };
    io::Error::new(e.kind(), format!("{}: {why}", path.display()))
}

/// One process's hold on a partial download (see [`Cache::try_hold_partial`]).
#[derive(Debug)]
pub struct PartialHold {
    file: File,
    path: PathBuf,
}

impl Drop for PartialHold {
    fn drop(&mut self) {
        // Removed while still locked: a process that opened it meanwhile
        // sees it gone once it has the lock, and opens the path again.
        let _ = fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

/// sha256 of a file, streamed.
pub fn hash_file(path: &Path) -> io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = digest::Hasher::default();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finish());
        }
        h.update(&buf[..n]);
    }
}

/// Sort and merge overlapping or touching ranges.
pub fn normalise(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (s, e) in ranges {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// The parts of `[0, size)` not covered by `done` (normalised).
pub fn missing(done: &[(u64, u64)], size: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut at = 0;
    for &(s, e) in done {
        if s > at {
            out.push((at, s));
        }
        at = at.max(e);
    }
    if at < size {
        out.push((at, size));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_gaps_are_found() {
        let done = normalise(vec![(10, 20), (0, 5), (5, 8), (18, 30)]);
        assert_eq!(done, [(0, 8), (10, 30)]);
        assert_eq!(missing(&done, 40), [(8, 10), (30, 40)]);
        assert_eq!(missing(&[], 7), [(0, 7)]);
        assert_eq!(missing(&[(0, 7)], 7), Vec::<(u64, u64)>::new());
    }

    #[test]
    fn partials_resume_and_commit_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_owned());
        cache.prepare().unwrap();
        let data = b"hello, layer";
        let d = digest::of(data);
        let f = cache.open_partial(&d, data.len() as u64).unwrap();
        std::os::unix::fs::FileExt::write_at(&f, &data[..5], 0).unwrap();
        cache.record_ranges(&d, &[(0, 5)]).unwrap();
        assert_eq!(cache.done_ranges(&d, data.len() as u64), [(0, 5)]);
        assert!(
            cache.commit(&d).unwrap().is_err(),
            "incomplete bytes must not verify"
        );
        std::os::unix::fs::FileExt::write_at(&f, &data[5..], 5).unwrap();
        assert_eq!(cache.commit(&d).unwrap(), Ok(()));
        assert!(cache.has_verified(&d, data.len() as u64));
        assert!(cache.done_ranges(&d, data.len() as u64).is_empty());
        fs::write(cache.blob_path(&d), b"hello, LAYER").unwrap();
        assert!(
            !cache.has_verified(&d, data.len() as u64),
            "a corrupted cache entry is not trusted"
        );
        assert!(!cache.blob_path(&d).exists());
    }

    #[test]
    fn a_partial_has_one_holder_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_owned());
        cache.prepare().unwrap();
        let d = digest::of(b"layer");
        let first = cache.try_hold_partial(&d).unwrap().expect("free");
        assert!(cache.partial_held(&d));
        assert!(cache.try_hold_partial(&d).unwrap().is_none(), "held");
        // A waiter that opened the lock file before the holder let go
        // finds it removed and takes a fresh one.
        let stale = File::open(cache.lock_path(&d)).unwrap();
        drop(first);
        assert!(!cache.lock_path(&d).exists(), "removed on release");
        assert!(!cache.partial_held(&d));
        stale.try_lock().expect("the stale file is free");
        let second = cache.try_hold_partial(&d).unwrap().expect("a new file");
        assert!(cache.try_hold_partial(&d).unwrap().is_none());
        drop(second);
    }
}
