//! containers-registries.conf(5), version 2, read by podman, skopeo,
//! buildah and CRI-O: one `[[registry]]` per registry with its
//! `[[registry.mirror]]` entries, tried in order before the registry
//! itself. A mirror `location` is `host[:port]` or, for a prefix mirror,
//! `host[:port]/<registry>`; plain-http mirrors need `insecure = true`.
//!
//! dmirror owns the `mirror` lists of the registries it configures; other
//! registries, other keys of its registries (`blocked`, `prefix`, ...),
//! keys set on a mirror that stays, and comments are kept.

use toml_edit::{value, ArrayOfTables, DocumentMut, Item, Table};

use std::path::{Path, PathBuf};

use super::endpoint::{max_position, parse};
use super::{ConfError, Endpoint, Merged, Target};
use crate::config::Mirror;

/// podman, skopeo, buildah and CRI-O, through one registries.conf.
pub struct Podman {
    /// The file dmirror writes (`--registries-conf`).
    pub file: PathBuf,
}

impl Target for Podman {
    fn name(&self) -> &'static str {
        "podman"
    }

    fn file(&self, _registry: &str) -> PathBuf {
        self.file.clone()
    }

    fn configured(&self, text: &str, registry: &str) -> Result<Vec<String>, ConfError> {
        configured(text, registry)
    }

    fn key(&self, mirror: &Mirror, registry: &str) -> Option<String> {
        Endpoint::new(mirror, registry).map(|e| location(&e))
    }

    fn merge(&self, text: &str, registry: &str, chosen: &[&Mirror]) -> Result<Merged, ConfError> {
        let endpoints: Vec<Endpoint> = chosen
            .iter()
            .filter_map(|m| Endpoint::new(m, registry))
            .collect();
        merge(text, registry, &endpoints)
    }

    fn written(&self, file: &Path, _registries: &[&str], _mirrors: usize) -> String {
        format!(
            "podman, skopeo and buildah use the new mirrors from {} on their next pull",
            file.display()
        )
    }
}

/// The default file for root: a drop-in of dmirror's own, so the
/// distribution's registries.conf is never touched. Drop-ins are read after
/// the main file and replace its `[[registry]]` entries of the same prefix
/// (containers-registries.conf.d(5)).
pub const DEFAULT_DROP_IN: &str = "/etc/containers/registries.conf.d/50-dmirror.conf";

/// The default file: [`DEFAULT_DROP_IN`] for root; for anyone else the same
/// drop-in in their own configuration (`~/.config/containers/registries.conf.d`),
/// which rootless podman reads after the system's.
pub fn default_path() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    match dirs::config_dir() {
        Some(dir) if !root => dir.join("containers/registries.conf.d/50-dmirror.conf"),
        _ => DEFAULT_DROP_IN.into(),
    }
}

/// A mirror's `location`.
pub fn location(e: &Endpoint) -> String {
    match &e.prefix {
        None => e.authority.clone(),
        Some(p) => format!("{}/{p}", e.authority),
    }
}

fn is_for(t: &Table, registry: &str) -> bool {
    match t.get("prefix").and_then(Item::as_str) {
        Some(p) => p == registry,
        None => t.get("location").and_then(Item::as_str) == Some(registry),
    }
}

/// Parse a registries.conf and check the parts dmirror reads or writes, so
/// that a file it cannot merge is refused before any probing.
fn checked(text: &str) -> Result<DocumentMut, ConfError> {
    let doc = parse(text)?;
    if doc.contains_key("registries") {
        return Err(ConfError::Shape(
            "is in the version 1 format ([registries.search]); dmirror writes version 2 ([[registry]]). Convert it, or let dmirror write a drop-in of its own (the default)".into(),
        ));
    }
    match doc.get("registry") {
        None => {}
        Some(Item::ArrayOfTables(regs)) => {
            for r in regs.iter() {
                if r.get("mirror").is_some_and(|m| !m.is_array_of_tables()) {
                    let name = r.get("location").and_then(Item::as_str).unwrap_or("?");
                    return Err(ConfError::Shape(format!(
                        "the `mirror` of registry {name} must be [[registry.mirror]] tables"
                    )));
                }
            }
        }
        Some(_) => {
            return Err(ConfError::Shape(
                "`registry` must be an array of [[registry]] tables".into(),
            ))
        }
    }
    Ok(doc)
}

fn location_of(t: &Table) -> Option<&str> {
    t.get("location").and_then(Item::as_str)
}

/// The mirror locations the file lists for `registry`, in order.
pub fn configured(text: &str, registry: &str) -> Result<Vec<String>, ConfError> {
    let doc = checked(text)?;
    let list = doc
        .get("registry")
        .and_then(Item::as_array_of_tables)
        .and_then(|regs| regs.iter().find(|t| is_for(t, registry)))
        .and_then(|t| t.get("mirror"))
        .and_then(Item::as_array_of_tables)
        .map(|a| {
            a.iter()
                .filter_map(location_of)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(list)
}

/// `text` (empty for a new file) with `endpoints` as the mirror list of
/// `registry`, best first.
pub fn merge(text: &str, registry: &str, endpoints: &[Endpoint]) -> Result<Merged, ConfError> {
    let mut doc = checked(text)?;
    let mut base = max_position(doc.as_table()) + 1;
    if !doc.contains_key("registry") {
        doc.insert("registry", Item::ArrayOfTables(ArrayOfTables::new()));
    }
    let Some(Item::ArrayOfTables(regs)) = doc.get_mut("registry") else {
        unreachable!("checked: an array of tables, or inserted above");
    };
    let found = regs.iter().position(|t| is_for(t, registry));
    let at = found.unwrap_or_else(|| {
        let mut t = Table::new();
        t.insert("location", value(registry));
        t.set_position(base);
        base += 1;
        regs.push(t);
        regs.len() - 1
    });
    let reg = regs.get_mut(at).expect("index found above");
    let mut old: Vec<Table> = match reg.remove("mirror") {
        Some(Item::ArrayOfTables(a)) => a.into_iter().collect(),
        _ => Vec::new(),
    };
    let mut list = ArrayOfTables::new();
    for e in endpoints {
        let loc = location(e);
        let mut t = match old.iter().position(|t| location_of(t) == Some(&loc)) {
            Some(i) => old.remove(i),
            None => {
                let mut t = Table::new();
                t.insert("location", value(loc));
                t
            }
        };
        if e.http || e.skip_verify {
            t.insert("insecure", value(true));
        }
        t.set_position(base);
        base += 1;
        list.push(t);
    }
    if !list.is_empty() {
        reg.insert("mirror", Item::ArrayOfTables(list));
    }
    let mut out = doc.to_string();
    if text.trim().is_empty() {
        out = format!(
            "# Registry mirrors ranked by dmirror, best first; podman, skopeo and buildah\n# try each in order, then the registry. dmirror apply rewrites the mirror lists.\n{out}"
        );
    }
    Ok(Merged {
        text: out,
        dropped: old
            .iter()
            .filter_map(location_of)
            .map(str::to_owned)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(authority: &str, prefix: Option<&str>, http: bool) -> Endpoint {
        Endpoint {
            root: format!("{}://{authority}", if http { "http" } else { "https" }),
            authority: authority.into(),
            prefix: prefix.map(Into::into),
            http,
            skip_verify: false,
            ca: Vec::new(),
            client: None,
            dial_timeout: None,
        }
    }

    #[test]
    fn a_new_file_has_one_registry_per_name_with_its_mirrors() {
        let hub = merge(
            "",
            "docker.io",
            &[
                ep("a.example", None, false),
                ep("127.0.0.1:5000", None, true),
            ],
        )
        .unwrap();
        let m = merge(
            &hub.text,
            "ghcr.io",
            &[ep("m.example", Some("ghcr.io"), false)],
        )
        .unwrap();
        let doc: toml::Table = toml::from_str(&m.text).unwrap();
        let regs = doc["registry"].as_array().unwrap();
        assert_eq!(regs.len(), 2);
        assert_eq!(regs[0]["location"].as_str(), Some("docker.io"));
        let mirrors = regs[0]["mirror"].as_array().unwrap();
        assert_eq!(mirrors[0]["location"].as_str(), Some("a.example"));
        assert!(mirrors[0].get("insecure").is_none());
        assert_eq!(mirrors[1]["location"].as_str(), Some("127.0.0.1:5000"));
        assert_eq!(mirrors[1]["insecure"].as_bool(), Some(true));
        assert_eq!(
            regs[1]["mirror"][0]["location"].as_str(),
            Some("m.example/ghcr.io")
        );
        assert_eq!(
            configured(&m.text, "ghcr.io").unwrap(),
            ["m.example/ghcr.io"]
        );
    }

    #[test]
    fn merging_keeps_other_registries_keys_and_comments() {
        let before = r#"unqualified-search-registries = ["docker.io"]

# blocked on purpose
[[registry]]
location = "evil.example"
blocked = true

[[registry]]
prefix = "docker.io"
location = "docker.io"

[[registry.mirror]]
location = "old.example"

[[registry.mirror]]
location = "keep.example"
pull-from-mirror = "digest-only"
"#;
        let m = merge(
            before,
            "docker.io",
            &[
                ep("keep.example", None, false),
                ep("new.example", None, false),
            ],
        )
        .unwrap();
        assert!(m.text.contains(
            "# blocked on purpose\n[[registry]]\nlocation = \"evil.example\"\nblocked = true"
        ));
        assert!(m
            .text
            .starts_with("unqualified-search-registries = [\"docker.io\"]"));
        assert_eq!(m.dropped, ["old.example"]);
        assert_eq!(
            configured(&m.text, "docker.io").unwrap(),
            ["keep.example", "new.example"]
        );
        assert!(m.text.contains("pull-from-mirror = \"digest-only\""));
        let doc: toml::Table = toml::from_str(&m.text).unwrap();
        assert_eq!(doc["registry"].as_array().unwrap().len(), 2);
        let again = merge(
            &m.text,
            "docker.io",
            &[
                ep("keep.example", None, false),
                ep("new.example", None, false),
            ],
        )
        .unwrap();
        assert_eq!(again.text, m.text);
    }

    #[test]
    fn version_1_files_are_refused() {
        let v1 = "[registries.search]\nregistries = []\n";
        let e = merge(v1, "docker.io", &[]).unwrap_err();
        assert!(e.to_string().contains("version 1"), "{e}");
        assert!(configured(v1, "docker.io").is_err());
        // A mirror list dmirror could not rewrite is refused by the check
        // apply makes before probing, not only when it writes.
        let e = configured(
            "[[registry]]\nlocation = \"docker.io\"\nmirror = \"x\"\n",
            "docker.io",
        )
        .unwrap_err();
        assert!(e.to_string().contains("[[registry.mirror]]"), "{e}");
    }
}
