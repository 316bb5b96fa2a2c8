//! Which registry, repository and object a request names, checked the way
//! the OCI distribution spec defines names, tags and digests.
//!
//! Three spellings reach the same object:
//! - the root: `/v2/library/ubuntu/manifests/latest` is Docker Hub (what
//!   dockerd's `registry-mirrors` sends);
//! - containerd's `?ns=ghcr.io` on a mirror request;
//! - a path prefix: `/v2/ghcr.io/owner/app/manifests/1` (hosts.toml
//!   `override_path`, podman's registries.conf `location = "host/ghcr.io"`).
//!   A first component with a `.` or `:`, or `localhost`, is a registry, as
//!   in Docker's references (Docker Hub accounts cannot contain either).

use crate::reference::DOCKER_HUB;
use crate::registry::digest;

/// What a request is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `/v2/`: the API check.
    Base,
    /// `/metrics`.
    Metrics,
    Manifest {
        registry: String,
        repo: String,
        reference: Reference,
    },
    Blob {
        registry: String,
        repo: String,
        digest: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(String),
}

impl Reference {
    pub fn as_str(&self) -> &str {
        match self {
            Reference::Tag(t) | Reference::Digest(t) => t,
        }
    }
}

/// Why a request names nothing we serve: the spec's error code, HTTP
/// status and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

/// Longest repository name the spec lets a registry refuse beyond.
const MAX_NAME: usize = 255;

/// Parse a request's path and query.
pub fn parse(path: &str, query: Option<&str>) -> Result<Target, Refusal> {
    if path == "/metrics" {
        return Ok(Target::Metrics);
    }
    if path == "/v2" || path == "/v2/" {
        return Ok(Target::Base);
    }
    let not_found = || {
        Refusal::new(404, "NOT_FOUND", "no such endpoint; this is a read-only registry mirror (/v2/<name>/manifests/<reference>, /v2/<name>/blobs/<digest>)")
    };
    let rest = path.strip_prefix("/v2/").ok_or_else(not_found)?;
    let (name, kind, reference) = if let Some((name, r)) = rest.rsplit_once("/manifests/") {
        (name, "manifests", r)
    } else if let Some((name, r)) = rest.rsplit_once("/blobs/") {
        (name, "blobs", r)
    } else {
        return Err(not_found());
    };
    let ns = query.and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "ns")
            .map(|(_, v)| v)
    });
    let (registry, repo) = split_registry(name, ns)?;
    if kind == "blobs" {
        if !digest::is_valid(reference) {
            return Err(Refusal::new(
                400,
                "DIGEST_INVALID",
                format!(
                    "{:?} is not a sha256 digest (sha256:<64 lowercase hex>)",
                    crate::text::clean(reference, 80)
                ),
            ));
        }
        return Ok(Target::Blob {
            registry,
            repo,
            digest: reference.to_owned(),
        });
    }
    let reference = if reference.contains(':') {
        if !digest::is_valid(reference) {
            return Err(Refusal::new(
                400,
                "DIGEST_INVALID",
                format!(
                    "{:?} is not a sha256 digest",
                    crate::text::clean(reference, 80)
                ),
            ));
        }
        Reference::Digest(reference.to_owned())
    } else if valid_tag(reference) {
        Reference::Tag(reference.to_owned())
    } else {
        return Err(Refusal::new(
            400,
            "TAG_INVALID",
            format!(
                "{:?} is not a tag ([A-Za-z0-9_][A-Za-z0-9._-]{{0,127}})",
                crate::text::clean(reference, 80)
            ),
        ));
    };
    Ok(Target::Manifest {
        registry,
        repo,
        reference,
    })
}

/// The registry and repository of `name`, given containerd's `ns` if any.
fn split_registry(name: &str, ns: Option<&str>) -> Result<(String, String), Refusal> {
    let invalid = |why: &str| {
        Refusal::new(
            400,
            "NAME_INVALID",
            format!(
                "invalid repository name {:?}: {why}",
                crate::text::clean(name, 80)
            ),
        )
    };
    let (registry, repo) = match ns {
        Some(ns) => {
            let ns = crate::config::validate_registry(ns).map_err(|e| {
                Refusal::new(
                    400,
                    "NAME_INVALID",
                    format!("ns={:?}: {e}", crate::text::clean(ns, 80)),
                )
            })?;
            (ns, name)
        }
        None => match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                let r = crate::config::validate_registry(first)
                    .map_err(|e| invalid(&format!("{first:?} is not a registry: {e}")))?;
                (r, rest)
            }
            _ => (DOCKER_HUB.to_owned(), name),
        },
    };
    let registry = match registry.as_str() {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_owned(),
        _ => registry,
    };
    if repo.len() > MAX_NAME {
        return Err(invalid("longer than 255 characters"));
    }
    if !valid_name(repo) {
        return Err(invalid(
            "components are lowercase letters and digits joined by '.', '_', '__' or '-'",
        ));
    }
    // Docker Hub's official images live under library/.
    let repo = if registry == DOCKER_HUB && !repo.contains('/') {
        format!("library/{repo}")
    } else {
        repo.to_owned()
    };
    Ok((registry, repo))
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.split('/').all(valid_component)
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or "-"+.
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

    fn manifest(registry: &str, repo: &str, tag: &str) -> Target {
        Target::Manifest {
            registry: registry.into(),
            repo: repo.into(),
            reference: Reference::Tag(tag.into()),
        }
    }

    #[test]
    fn three_spellings_of_one_object() {
        assert_eq!(
            parse("/v2/library/ubuntu/manifests/latest", None),
            Ok(manifest("docker.io", "library/ubuntu", "latest"))
        );
        assert_eq!(
            parse("/v2/ubuntu/manifests/latest", None),
            Ok(manifest("docker.io", "library/ubuntu", "latest"))
        );
        assert_eq!(
            parse("/v2/owner/app/manifests/v1", Some("ns=ghcr.io")),
            Ok(manifest("ghcr.io", "owner/app", "v1"))
        );
        assert_eq!(
            parse("/v2/ghcr.io/owner/app/manifests/v1", None),
            Ok(manifest("ghcr.io", "owner/app", "v1"))
        );
        assert_eq!(
            parse("/v2/library/ubuntu/manifests/latest", Some("ns=docker.io")),
            Ok(manifest("docker.io", "library/ubuntu", "latest"))
        );
        assert_eq!(
            parse("/v2/localhost:5000/a/blobs/".to_owned().as_str(), None)
                .unwrap_err()
                .code,
            "DIGEST_INVALID"
        );
        assert_eq!(
            parse(&format!("/v2/localhost:5000/a/blobs/{D}"), None),
            Ok(Target::Blob {
                registry: "localhost:5000".into(),
                repo: "a".into(),
                digest: D.into()
            })
        );
        assert_eq!(parse("/v2/", None), Ok(Target::Base));
        assert_eq!(parse("/metrics", None), Ok(Target::Metrics));
    }

    #[test]
    fn names_tags_and_digests_are_checked() {
        for bad in [
            "/v2/../etc/manifests/latest",
            "/v2/Library/ubuntu/manifests/latest",
            "/v2/a//b/manifests/latest",
            "/v2/a/-b/manifests/latest",
            "/v2/a_._b/manifests/latest",
        ] {
            assert_eq!(parse(bad, None).unwrap_err().code, "NAME_INVALID", "{bad}");
        }
        assert_eq!(
            parse("/v2/a/manifests/.hidden", None).unwrap_err().code,
            "TAG_INVALID"
        );
        assert_eq!(
            parse("/v2/a/manifests/sha256:abc", None).unwrap_err().code,
            "DIGEST_INVALID"
        );
        assert_eq!(
            parse("/v2/a/blobs/sha512:abc", None).unwrap_err().code,
            "DIGEST_INVALID"
        );
        assert_eq!(
            parse("/v2/a/manifests/latest", Some("ns=bad host"))
                .unwrap_err()
                .code,
            "NAME_INVALID"
        );
        let long = format!("/v2/{}/manifests/latest", "a".repeat(300));
        assert_eq!(parse(&long, None).unwrap_err().code, "NAME_INVALID");
        assert_eq!(parse("/v2/_catalog", None).unwrap_err().status, 404);
        assert!(valid_name("a__b/c-d--e/f.g"));
        assert!(!valid_name("a___b"));
        assert!(valid_tag("v1.2_3-rc"));
        assert!(!valid_tag(&"a".repeat(129)));
    }
}
