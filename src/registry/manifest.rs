//! Manifests and indexes, in both their OCI and Docker v2 forms, and the
//! choice of one platform's manifest from an index.
//!
//! Only the fields dmirror reads are modelled; unknown fields are ignored so
//! that any spec-conforming registry's output parses.

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;

use super::digest;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// The `Accept` header for manifest requests: every schema-2 form.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Registries cap manifests at 4 MiB (the distribution spec's recommended
/// limit); anything larger is not a manifest.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: Option<String>,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub annotations: Option<HashMap<String, String>>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl Platform {
    /// This machine's platform in OCI terms.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", None),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Platform {
            architecture: architecture.to_owned(),
            os: "linux".to_owned(),
            variant: variant.map(str::to_owned),
        }
    }
}

impl std::str::FromStr for Platform {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric());
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, variant] if ok(os) && ok(arch) && ok(variant) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(variant.to_string()),
            }),
            _ => Err(format!(
                "invalid platform {s:?}; write os/arch or os/arch/variant, e.g. linux/amd64 or linux/arm/v7"
            )),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    /// An OCI index or Docker manifest list.
    Index { manifests: Vec<Descriptor> },
    /// One image: a config and its layers.
    Image {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<u32>,
    media_type: Option<String>,
    manifests: Option<Vec<Descriptor>>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
}

impl Manifest {
    /// Parse a manifest body. `content_type` is the response's header; the
    /// body's own `mediaType` wins when present.
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, String> {
        let raw: RawManifest = serde_json::from_slice(bytes).map_err(|e| {
            if super::error::looks_like_html(&String::from_utf8_lossy(bytes)) {
                "got an HTML page instead of a manifest".to_owned()
            } else {
                format!("not a valid manifest: {e}")
            }
        })?;
        if raw.schema_version == Some(1) {
            return Err(
                "schema 1 manifest (deprecated); the mirror serves a format Docker no longer pulls"
                    .into(),
            );
        }
        let media_type = raw
            .media_type
            .as_deref()
            .or(content_type.map(|c| c.split(';').next().unwrap_or(c).trim()));
        let check = |d: &Descriptor| -> Result<(), String> {
            if digest::is_valid(&d.digest) {
                Ok(())
            } else {
                Err(format!("manifest names an invalid digest {:?}", d.digest))
            }
        };
        let is_index = matches!(media_type, Some(OCI_INDEX | DOCKER_LIST))
            || (raw.manifests.is_some() && raw.layers.is_none());
        if is_index {
            let manifests = raw.manifests.ok_or("index without \"manifests\"")?;
            manifests.iter().try_for_each(check)?;
            return Ok(Manifest::Index { manifests });
        }
        match (raw.config, raw.layers) {
            (Some(config), Some(layers)) => {
                check(&config)?;
                layers.iter().try_for_each(check)?;
                Ok(Manifest::Image { config, layers })
            }
            _ => Err("manifest has neither \"manifests\" nor \"config\" and \"layers\"".into()),
        }
    }

    /// The entry of an index for `want`, skipping attestations. When `want`
    /// has no variant, any variant matches (linux/arm64 finds arm64/v8).
    pub fn select<'a>(manifests: &'a [Descriptor], want: &Platform) -> Option<&'a Descriptor> {
        manifests
            .iter()
            .filter(|d| {
                !d.annotations.as_ref().is_some_and(|a| {
                    a.get("vnd.docker.reference.type").map(String::as_str)
                        == Some("attestation-manifest")
                })
            })
            .find(|d| {
                d.platform.as_ref().is_some_and(|p| {
                    p.os == want.os
                        && p.architecture == want.architecture
                        && (want.variant.is_none() || p.variant == want.variant)
                })
            })
    }

    /// The largest layer of an image manifest.
    pub fn largest_layer(layers: &[Descriptor]) -> Option<&Descriptor> {
        layers.iter().max_by_key(|d| d.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    #[test]
    fn parses_docker_and_oci_forms() {
        let image = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"x","digest":"{}","size":7}},"layers":[{{"digest":"{}","size":10}},{{"digest":"{}","size":30}}]}}"#,
            d(1),
            d(2),
            d(3)
        );
        let m = Manifest::parse(image.as_bytes(), None).unwrap();
        let Manifest::Image { layers, .. } = m else {
            panic!("not an image")
        };
        assert_eq!(Manifest::largest_layer(&layers).unwrap().digest, d(3));

        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[
            {{"digest":"{}","size":1,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}},
            {{"digest":"{}","size":1,"platform":{{"os":"unknown","architecture":"unknown"}},"annotations":{{"vnd.docker.reference.type":"attestation-manifest"}}}},
            {{"digest":"{}","size":1,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
            d(4),
            d(5),
            d(6)
        );
        let m = Manifest::parse(index.as_bytes(), Some(OCI_INDEX)).unwrap();
        let Manifest::Index { manifests } = m else {
            panic!("not an index")
        };
        let pick =
            |p: &str| Manifest::select(&manifests, &p.parse().unwrap()).map(|d| d.digest.clone());
        assert_eq!(pick("linux/amd64"), Some(d(6)));
        assert_eq!(pick("linux/arm64"), Some(d(4)));
        assert_eq!(pick("linux/arm64/v8"), Some(d(4)));
        assert_eq!(pick("linux/arm64/v9"), None);
        assert_eq!(pick("unknown/unknown"), None);
    }

    #[test]
    fn rejects_what_is_not_a_manifest() {
        assert!(Manifest::parse(b"<html><body>hi</body></html>", None)
            .unwrap_err()
            .contains("HTML"));
        assert!(
            Manifest::parse(br#"{"schemaVersion":1,"fsLayers":[]}"#, None)
                .unwrap_err()
                .contains("schema 1")
        );
        let bad = r#"{"schemaVersion":2,"config":{"digest":"sha256:../x","size":1},"layers":[]}"#;
        assert!(Manifest::parse(bad.as_bytes(), None)
            .unwrap_err()
            .contains("invalid digest"));
        assert!(Manifest::parse(b"{}", None).is_err());
    }

    #[test]
    fn platforms_parse() {
        assert_eq!(
            "linux/arm/v7".parse::<Platform>().unwrap().to_string(),
            "linux/arm/v7"
        );
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux/amd64/v2/x".parse::<Platform>().is_err());
    }
}
