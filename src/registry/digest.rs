//! Content digests. Every digest a server hands us is checked for form
//! before it goes into a URL, and every byte we keep is checked against one.

use sha2::{Digest as _, Sha256};

/// True for `sha256:` followed by 64 lowercase hex digits, the only
/// algorithm registries use in practice.
pub fn is_valid(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// `sha256:<hex>` of `bytes`.
pub fn of(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// Incremental sha256 for streamed blobs.
#[derive(Default)]
pub struct Hasher(Sha256);

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> String {
        format!("sha256:{:x}", self.0.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        let d = of(b"");
        assert_eq!(
            d,
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(is_valid(&d));
        let mut h = Hasher::default();
        h.update(b"");
        assert_eq!(h.finish(), d);
        assert!(!is_valid("sha256:../../etc/passwd"));
        assert!(!is_valid(&d.to_uppercase()));
        assert!(!is_valid("md5:00"));
    }
}
