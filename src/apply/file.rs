//! The configuration files apply edits, as files: read (UTF-8, before any
//! probing), checked writable, locked, written atomically with a backup,
//! restored, and diffed for `--dry-run`. What the text means is each
//! target's business.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ApplyError;
use crate::files;

/// How long a second apply waits for the first to finish.
const LOCK_WAIT: Duration = Duration::from_secs(120);

/// A configuration file as it is now.
pub struct Current {
    /// The file's bytes; `None` when it does not exist.
    pub bytes: Option<Vec<u8>>,
    pub meta: Option<std::fs::Metadata>,
    /// The text, empty for a missing file.
    pub text: String,
}

/// Bound on a configuration file apply reads: generous for daemon.json or
/// a hosts.toml, small enough that a runaway file cannot exhaust memory.
const MAX_CONFIG: u64 = 64 << 20;

/// Read a configuration file that must be UTF-8 text, if it exists. A
/// FIFO, device or directory in its place is refused at once.
pub fn read(path: &Path) -> Result<Current, ApplyError> {
    let bytes = match files::read_regular(path, MAX_CONFIG) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(ApplyError::Refused(format!(
                "cannot read {}: permission denied; run with sudo",
                path.display()
            )))
        }
        Err(e) => {
            return Err(ApplyError::Refused(format!(
                "cannot read {}: {e}; nothing was changed",
                path.display()
            )))
        }
    };
    let text = match &bytes {
        Some(b) => std::str::from_utf8(b)
            .map_err(|_| {
                ApplyError::Refused(format!(
                    "{} is not UTF-8 text; fix it by hand, nothing was changed",
                    path.display()
                ))
            })?
            .to_owned(),
        None => String::new(),
    };
    let meta = std::fs::metadata(path).ok();
    Ok(Current { bytes, meta, text })
}

/// The file a configured path names, through links.
pub fn follow(path: &Path) -> Result<PathBuf, ApplyError> {
    files::resolve(path)
        .map_err(|e| ApplyError::Refused(format!("cannot follow {}: {e}", path.display())))
}

/// Fail before probing when `path` cannot be written.
pub fn check_writable(path: &Path) -> Result<(), ApplyError> {
    files::check_writable(path).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
            "; run with sudo"
        } else {
            ""
        };
        ApplyError::Refused(format!("cannot write {}: {e}{hint}", path.display()))
    })
}

/// The directory holding `path`.
pub fn parent(path: &Path) -> PathBuf {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned()
}

/// Lock `dir`, calling `waiting` when another apply makes us wait.
pub fn lock(dir: &Path, waiting: impl FnOnce()) -> Result<files::DirLock, ApplyError> {
    files::lock_dir(dir, LOCK_WAIT, waiting).map_err(|e| ApplyError::Failed(e.to_string()))
}

/// A unified diff of a configuration file, for `--dry-run`.
pub fn diff(path: &Path, old: &str, new: &str) -> String {
    let shown = path.display().to_string();
    // A deadline keeps a pathological file from taking minutes; the edit
    // itself touches a few lines, so the diff is small.
    let diff = similar::TextDiff::configure()
        .deadline(std::time::Instant::now() + Duration::from_secs(2))
        .diff_lines(old, new);
    let unified = diff.unified_diff().header(&shown, &shown).to_string();
    format!("would change {}:\n{}", path.display(), unified.trim_end())
}

/// Keep the current file as `<name>.dmirror-backup`, then replace it with
/// `new_text` atomically, with its mode and owner.
pub fn write_with_backup(path: &Path, current: &Current, new_text: &str) -> Result<(), ApplyError> {
    let write_err = |e: std::io::Error| {
        ApplyError::Failed(format!(
            "cannot write {}: {e}; nothing was changed",
            path.display()
        ))
    };
    files::remove_stale_temps(path);
    if let Some(old) = &current.bytes {
        files::atomic_write(&backup_path(path), old, current.meta.as_ref()).map_err(write_err)?;
    }
    files::atomic_write(path, new_text.as_bytes(), current.meta.as_ref()).map_err(write_err)
}

pub fn backup_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".dmirror-backup");
    path.with_file_name(name)
}

/// Put the previous file back (or remove the new one if there was none).
pub fn restore(path: &Path, previous: &Current) -> Result<(), ApplyError> {
    let result = match &previous.bytes {
        Some(b) => files::atomic_write(path, b, previous.meta.as_ref()),
        None => std::fs::remove_file(path),
    };
    result.map_err(|e| {
        ApplyError::Restore(format!(
            "could not restore {} ({e}); the previous version is in {}",
            path.display(),
            backup_path(path).display()
        ))
    })
}
