//! Writing configuration files so that a crash at any instant leaves the old
//! file or the new one, never a partial one: a temporary file in the same
//! directory, fsync, the original's mode and owner, rename, fsync of the
//! directory. A lock on the directory serialises concurrent writers (the
//! nightly job and a person).

use std::ffi::CString;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const TMP_MARK: &str = ".dmirror-tmp-";

/// The file a path names, through any symlinks, so that a symlinked
/// daemon.json is written through to its target, not replaced.
pub fn resolve(path: &Path) -> io::Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        match fs::symlink_metadata(&current) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = fs::read_link(&current)?;
                current = match current.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            Ok(_) => return Ok(current),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(current),
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "{}: too many levels of symbolic links",
        path.display()
    )))
}

/// Can this process create and rename files in `path`'s directory (and
/// the directory itself, when it must be created)?
pub fn check_writable(path: &Path) -> io::Result<()> {
    let mut dir = path.parent().unwrap_or(Path::new("."));
    if dir.as_os_str().is_empty() {
        dir = Path::new(".");
    }
    let mut probe = dir;
    while !probe.exists() {
        probe = probe.parent().unwrap_or(Path::new("/"));
    }
    let c = CString::new(probe.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Replace `path` with `bytes` atomically, with `like`'s mode and owner (or
/// 0644 for a new file). Creates the directory if needed.
pub fn atomic_write(path: &Path, bytes: &[u8], like: Option<&Metadata>) -> io::Result<()> {
    write_replacing(path, bytes, like, 0o644)
}

/// `atomic_write` of a file only its owner may read (a secret): it is
/// never readable by others, not even for a moment.
pub fn atomic_write_secret(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_replacing(path, bytes, None, 0o600)
}

fn write_replacing(
    path: &Path,
    bytes: &[u8],
    like: Option<&Metadata>,
    mode: u32,
) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}{TMP_MARK}{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        let mode = like.map_or(mode, |m| m.permissions().mode() & 0o7777);
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        if let Some(m) = like {
            std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()))?;
        }
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Open `path` to read and write at offsets, creating it, never through a
/// link planted there (`O_NOFOLLOW`: refused with `ELOOP`).
pub fn open_no_follow(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Does another process hold `path` locked (`flock`: a download writing
/// it)? A file that cannot be opened is held by no one.
pub fn held_elsewhere(path: &Path) -> bool {
    File::open(path).is_ok_and(|f| matches!(f.try_lock_shared(), Err(fs::TryLockError::WouldBlock)))
}

/// Read a file dmirror owns or is told to read (configuration, state): a
/// regular file of at most `max` bytes, or `None` when there is none.
/// Symlinks are followed (a symlinked daemon.json is common), but a FIFO,
/// device or directory is refused at once, not waited on, and so is a file
/// larger than `max`.
pub fn read_regular(path: &Path, max: u64) -> io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is not a regular file (a FIFO, device or directory?); dmirror reads only regular files there",
        ));
    }
    if meta.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "is {} bytes, more than the {max} a file of this kind may hold",
                meta.len()
            ),
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("grew past the {max} bytes a file of this kind may hold"),
        ));
    }
    Ok(Some(bytes))
}

/// Remove temporary files a killed writer left beside `path`. Call only
/// while holding the directory lock: then no live writer owns one.
pub fn remove_stale_temps(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!(".{}{TMP_MARK}", name.to_string_lossy());
    if let Ok(entries) = fs::read_dir(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

/// An exclusive lock on a directory, held until dropped.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot lock {0}: {1}")]
    Io(PathBuf, io::Error),
    #[error("another dmirror is still writing in {0} after {1:?}; try again later")]
    Busy(PathBuf, Duration),
}

/// Lock `dir` (created if absent), waiting up to `wait`; `on_wait` is
/// called once if another holder makes us wait.
pub fn lock_dir(dir: &Path, wait: Duration, on_wait: impl FnOnce()) -> Result<DirLock, LockError> {
    fs::create_dir_all(dir).map_err(|e| LockError::Io(dir.to_owned(), e))?;
    let file = File::open(dir).map_err(|e| LockError::Io(dir.to_owned(), e))?;
    let start = Instant::now();
    let mut on_wait = Some(on_wait);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(DirLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => {
                if let Some(f) = on_wait.take() {
                    f();
                }
                if start.elapsed() >= wait {
                    return Err(LockError::Busy(dir.to_owned(), wait));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(fs::TryLockError::Error(e)) => return Err(LockError::Io(dir.to_owned(), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_through_symlinks_keeping_mode() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        fs::write(&real, "{}").unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.path().join("daemon.json");
        std::os::unix::fs::symlink("real.json", &link).unwrap();
        let target = resolve(&link).unwrap();
        assert_eq!(target, real);
        let meta = fs::metadata(&target).unwrap();
        atomic_write(&target, b"{\"a\":1}", Some(&meta)).unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read_to_string(&link).unwrap(), "{\"a\":1}");
        assert_eq!(
            fs::metadata(&real).unwrap().permissions().mode() & 0o777,
            0o640
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers.len(), 2, "{leftovers:?}");
    }

    #[test]
    fn new_files_get_0644_and_their_directory() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("etc/docker/daemon.json");
        atomic_write(&p, b"{}", None).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
    }

    #[test]
    fn stale_temps_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("daemon.json");
        fs::write(dir.path().join(".daemon.json.dmirror-tmp-123"), "{").unwrap();
        fs::write(dir.path().join("other"), "x").unwrap();
        remove_stale_temps(&p);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["other"]);
    }

    #[test]
    fn lock_excludes_a_second_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_dir(dir.path(), Duration::ZERO, || {}).unwrap();
        let mut waited = false;
        let second = lock_dir(dir.path(), Duration::from_millis(100), || waited = true);
        assert!(matches!(second, Err(LockError::Busy(..))));
        assert!(waited);
        drop(first);
        assert!(lock_dir(dir.path(), Duration::ZERO, || {}).is_ok());
    }
}
