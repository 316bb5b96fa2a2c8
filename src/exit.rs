//! Exit statuses are a contract with scripts and monitoring: they are listed
//! in the README and must not change meaning.

use std::fmt;

/// How a `dmirror` invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitStatus {
    /// The command did what was asked (for `probe`: at least one mirror works).
    Success = 0,
    /// The command ran, but found nothing usable (for `probe`: no mirror is `ok`).
    NothingUsable = 1,
    /// Bad usage or configuration: a flag, a file, an image reference.
    Usage = 2,
    /// `apply` wrote the new list but dockerd did not take it; the previous
    /// file was restored.
    RolledBack = 3,
    /// Interrupted by Ctrl-C.
    Interrupted = 130,
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", *self as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        assert_eq!(ExitStatus::Success as u8, 0);
        assert_eq!(ExitStatus::NothingUsable as u8, 1);
        assert_eq!(ExitStatus::Usage as u8, 2);
        assert_eq!(ExitStatus::RolledBack as u8, 3);
        assert_eq!(ExitStatus::Interrupted as u8, 130);
    }
}
