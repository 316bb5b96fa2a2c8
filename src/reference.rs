//! Image references read the way Docker reads them: `ubuntu` is
//! `docker.io/library/ubuntu:latest`; a first component with a `.` or `:`
//! (or `localhost`) names a registry; a `@sha256:` digest pins the content.

use std::fmt;
use std::str::FromStr;

/// The Docker Hub registry, as references name it.
pub const DOCKER_HUB: &str = "docker.io";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Registry host as the user names it (`docker.io`, `ghcr.io`, `localhost:5000`).
    pub registry: String,
    /// Repository path inside the registry (`library/ubuntu`).
    pub repository: String,
    /// Tag, if any (`latest` when neither tag nor digest was given).
    pub tag: Option<String>,
    /// Content digest, `sha256:<64 hex>`, if pinned.
    pub digest: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid image reference {input:?}: {reason}")]
pub struct ReferenceError {
    pub input: String,
    pub reason: String,
}

impl Reference {
    /// What to ask a registry's manifest endpoint for: the digest if pinned,
    /// otherwise the tag.
    pub fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| ReferenceError {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        if input.is_empty() {
            return Err(err("it is empty; write e.g. library/ubuntu:24.04"));
        }
        if input.len() > 255 + 128 + 80 {
            return Err(err("it is too long"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => {
                let hex = digest
                    .strip_prefix("sha256:")
                    .ok_or_else(|| err("the digest must start with sha256:"))?;
                if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                    return Err(err(
                        "the digest must be sha256: followed by 64 lowercase hex digits",
                    ));
                }
                (rest, Some(digest.to_owned()))
            }
            None => (input, None),
        };
        // A tag is what follows the last ':' after the last '/'.
        let slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[slash..].rfind(':') {
            Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            let ok = !tag.is_empty()
                && tag.len() <= 128
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
                && !matches!(tag.as_bytes()[0], b'.' | b'-');
            if !ok {
                return Err(err("the tag may hold letters, digits, '_', '.' and '-' (at most 128, not starting with '.' or '-')"));
            }
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), path.to_owned())
            }
            _ => (DOCKER_HUB.to_owned(), name.to_owned()),
        };
        let host_ok = !registry.starts_with(['.', '-', ':'])
            && !registry.contains("..")
            && registry
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
        if !host_ok {
            return Err(err(
                "the registry must be a host name, with an optional :port",
            ));
        }
        if let Some((host, port)) = registry.split_once(':') {
            let port_ok = !host.is_empty()
                && !port.is_empty()
                && port.len() <= 5
                && port.bytes().all(|b| b.is_ascii_digit())
                && port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p));
            if !port_ok {
                return Err(err("the registry's port must be a number from 1 to 65535"));
            }
        }
        // Docker's limit (distribution/reference NameTotalLengthMax): the
        // name, registry included, holds at most 255 characters.
        if name.len() > 255 {
            return Err(err("the name is longer than 255 characters"));
        }
        let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            DOCKER_HUB.to_owned()
        } else {
            registry
        };
        if path.is_empty() {
            return Err(err("the repository name is missing"));
        }
        for component in path.split('/') {
            let valid = !component.is_empty()
                && component
                    .bytes()
                    .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
                && component.as_bytes()[0].is_ascii_alphanumeric()
                && component.as_bytes()[component.len() - 1].is_ascii_alphanumeric();
            if !valid {
                return Err(err("repository names use lowercase letters, digits and single separators ('.', '_', '-') between '/'"));
            }
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, None) => Some("latest".to_owned()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Reference {
        s.parse().unwrap()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(r("ubuntu").to_string(), "docker.io/library/ubuntu:latest");
        assert_eq!(
            r("library/ubuntu:24.04").to_string(),
            "docker.io/library/ubuntu:24.04"
        );
        assert_eq!(r("bitnami/redis").repository, "bitnami/redis");
        assert_eq!(r("ghcr.io/owner/app:v1").registry, "ghcr.io");
        assert_eq!(r("localhost:5000/app").registry, "localhost:5000");
        assert!("..:5/x/y".parse::<Reference>().is_err());
        assert!("a..b.io/x".parse::<Reference>().is_err());
        assert_eq!(r("localhost:5000/app").tag.as_deref(), Some("latest"));
        assert_eq!(r("index.docker.io/library/alpine").registry, "docker.io");
        let d = format!("sha256:{}", "a".repeat(64));
        let pinned = r(&format!("alpine@{d}"));
        assert_eq!(pinned.tag, None);
        assert_eq!(pinned.manifest_ref(), d);
        assert_eq!(r(&format!("alpine:3@{d}")).tag.as_deref(), Some("3"));
    }

    #[test]
    fn rejects_bad_references_with_a_reason() {
        for bad in [
            "",
            "Ubuntu",
            "ubuntu:",
            "ubuntu:-x",
            "ubuntu@sha256:abc",
            "ubuntu@md5:00",
            "a//b",
            "docker.io/",
            "ub untu",
        ] {
            let e = bad.parse::<Reference>().unwrap_err();
            assert!(!e.reason.is_empty(), "{bad}");
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the input, parsing answers (never panics), and what it
        /// accepts reads back to itself and stays within Docker's limits.
        #[test]
        fn parsing_is_total_and_round_trips(input in "[a-zA-Z0-9./:@_-]{0,80}") {
            if let Ok(r) = input.parse::<Reference>() {
                let again: Reference = r.to_string().parse().unwrap();
                prop_assert_eq!(&again, &r);
                prop_assert!(r.registry.len() + r.repository.len() < 256);
                if let Some((_, port)) = r.registry.split_once(':') {
                    let p: u32 = port.parse().unwrap();
                    prop_assert!((1..=65535).contains(&p));
                }
            }
        }

        #[test]
        fn ports_out_of_range_are_refused(port in 65536u32..1_000_000) {
            let input = format!("localhost:{port}/app");
            prop_assert!(input.parse::<Reference>().is_err());
        }
    }
}
