//! containerd's registry host configuration: `<dir>/<registry>/hosts.toml`
//! with the upstream as `server` and one `[host."URL"]` table per mirror,
//! tried in order before the server. containerd reads it on every pull; no
//! restart. Format: containerd's docs/hosts.md.
//!
//! dmirror owns the `host` tables (the mirror list, as it owns dockerd's
//! `registry-mirrors`): they are replaced by the ranking, but a host that
//! stays keeps what the user set on it (`ca`, `header`, ...). Everything
//! else — `server` if set, top-level keys, comments — is left alone.

use std::path::{Path, PathBuf};

use toml_edit::{value, Array, DocumentMut, Item, Table};

use super::endpoint::{max_position, parse};
use super::{ApplyError, ConfError, Endpoint, Merged, Target};
use crate::config::{Mirror, MirrorList};

/// containerd, through its hosts directory.
pub struct Containerd {
    /// `--hosts-dir`: dmirror writes `<dir>/<registry>/hosts.toml`.
    pub hosts_dir: PathBuf,
    /// containerd's config.toml, checked for CRI's `config_path`.
    pub config: PathBuf,
    /// The mirror list, for each registry's upstream `server`.
    pub list: MirrorList,
    /// Docker's certs.d: a host with CAs or a client certificate there gets
    /// them as `ca` / `client` in its hosts.toml entry.
    pub trust: crate::net::Trust,
    /// `dial_timeout` for every host written (`apply --via`: the server is
    /// local, upstream the fallback).
    pub dial_timeout: Option<String>,
}

impl Target for Containerd {
    fn name(&self) -> &'static str {
        "containerd"
    }

    fn file(&self, registry: &str) -> PathBuf {
        hosts_path(&self.hosts_dir, registry)
    }

    fn lock_dir(&self, _files: &[PathBuf]) -> PathBuf {
        self.hosts_dir.clone()
    }

    fn preflight(&self, note: &dyn Fn(String)) -> Result<(), ApplyError> {
        if self.config.as_os_str().is_empty() {
            return Ok(());
        }
        if let Ok(config) = std::fs::read_to_string(&self.config) {
            if let Some(warning) = cri_warning(&config, &self.hosts_dir) {
                note(format!("warning: {warning}"));
            }
        }
        Ok(())
    }

    fn configured(&self, text: &str, _registry: &str) -> Result<Vec<String>, ConfError> {
        configured(text)
    }

    fn key(&self, mirror: &Mirror, registry: &str) -> Option<String> {
        Endpoint::new(mirror, registry).map(|e| host_key(&e))
    }

    fn merge(&self, text: &str, registry: &str, chosen: &[&Mirror]) -> Result<Merged, ConfError> {
        let path = |p: &std::path::Path| p.display().to_string();
        let hosts: Vec<Endpoint> = chosen
            .iter()
            .filter_map(|m| {
                let mut e = Endpoint::new(m, registry)?;
                if let Ok(t) = self.trust.for_url(&m.url) {
                    e.ca = t.ca_files.iter().map(|f| path(f)).collect();
                    e.client = t.client.map(|(c, k)| (path(&c), path(&k)));
                }
                e.dial_timeout = self.dial_timeout.clone();
                Some(e)
            })
            .collect();
        // `_default` stands for every registry: containerd's fallback is
        // each one's own host, so it gets no `server`.
        let server = match registry {
            super::DEFAULT_HOSTS => String::new(),
            r => super::upstream_server(r, self.list.enabled()),
        };
        merge(text, registry, &server, &hosts)
    }

    fn written(&self, file: &Path, registries: &[&str], mirrors: usize) -> String {
        format!(
            "containerd uses {mirrors} mirror(s) of {} from {} from its next pull on (no restart needed)",
            registries.join(", "),
            file.display()
        )
    }
}

/// The `hosts.toml` for `registry` under `dir`.
pub fn hosts_path(dir: &Path, registry: &str) -> PathBuf {
    dir.join(registry).join("hosts.toml")
}

/// The `[host."…"]` key for an endpoint. containerd appends `/v2` to a
/// host's path unless `override_path` is set, so a prefix mirror is named
/// by its full API root (`https://m.example/v2/ghcr.io`) with
/// `override_path = true`.
pub fn host_key(e: &Endpoint) -> String {
    match &e.prefix {
        None => e.root.clone(),
        Some(p) => format!("{}/v2/{p}", e.root),
    }
}

/// The default of `--hosts-dir`, where containerd's CRI looks by convention.
pub const DEFAULT_DIR: &str = "/etc/containerd/certs.d";

/// Parse a hosts.toml and check the parts dmirror reads or writes, so that
/// a file it cannot merge is refused before any probing.
fn checked(text: &str) -> Result<DocumentMut, ConfError> {
    let doc = parse(text)?;
    if doc.get("server").is_some_and(|s| !s.is_str()) {
        return Err(ConfError::Shape(
            "`server` must be a string (the upstream registry's URL)".into(),
        ));
    }
    match doc.get("host") {
        None => {}
        Some(Item::Table(t)) => {
            if let Some((k, _)) = t.iter().find(|(_, item)| !item.is_table()) {
                return Err(ConfError::Shape(format!(
                    "`host.{k}` must be a [host.\"URL\"] table"
                )));
            }
        }
        Some(_) => {
            return Err(ConfError::Shape(
                "`host` must hold [host.\"URL\"] tables, not an inline table or value".into(),
            ))
        }
    }
    Ok(doc)
}

/// The hosts a file lists, in order.
pub fn configured(text: &str) -> Result<Vec<String>, ConfError> {
    let doc = checked(text)?;
    Ok(doc
        .get("host")
        .and_then(Item::as_table)
        .map(|t| t.iter().map(|(k, _)| k.to_owned()).collect())
        .unwrap_or_default())
}

/// `text` (empty for a new file) with `hosts` as its host tables, best
/// first, and `server` set to `server` unless the file sets one.
pub fn merge(
    text: &str,
    registry: &str,
    server: &str,
    hosts: &[Endpoint],
) -> Result<Merged, ConfError> {
    let mut doc = checked(text)?;
    if !doc.contains_key("server") && !server.is_empty() {
        doc.insert("server", value(server));
    }
    let mut old: Vec<(String, Table)> = match doc.remove("host") {
        Some(Item::Table(t)) => t
            .into_iter()
            .filter_map(|(k, item)| match item {
                Item::Table(t) => Some((k.to_string(), t)),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let base = max_position(doc.as_table()) + 1;
    let mut host = Table::new();
    host.set_implicit(true);
    host.set_position(base);
    for (i, e) in hosts.iter().enumerate() {
        let key = host_key(e);
        let mut t = match old.iter().position(|(k, _)| *k == key) {
            Some(at) => old.remove(at).1,
            None => Table::new(),
        };
        if !t.contains_key("capabilities") {
            let mut caps = Array::new();
            caps.push("pull");
            caps.push("resolve");
            t.insert("capabilities", value(caps));
        }
        if e.prefix.is_some() {
            t.insert("override_path", value(true));
        }
        if e.skip_verify {
            t.insert("skip_verify", value(true));
        }
        if let (Some(d), false) = (&e.dial_timeout, t.contains_key("dial_timeout")) {
            t.insert("dial_timeout", value(d.as_str()));
        }
        // Docker's certs.d for this host, unless the user set their own.
        if !e.ca.is_empty() && !t.contains_key("ca") {
            let mut ca = Array::new();
            for f in &e.ca {
                ca.push(f.as_str());
            }
            t.insert("ca", value(ca));
        }
        if let (Some((cert, key)), false) = (&e.client, t.contains_key("client")) {
            let mut pair = Array::new();
            pair.push(cert.as_str());
            pair.push(key.as_str());
            let mut client = Array::new();
            client.push(pair);
            t.insert("client", value(client));
        }
        t.set_position(base + 1 + i);
        host.insert(&key, Item::Table(t));
    }
    if !hosts.is_empty() {
        doc.insert("host", Item::Table(host));
    }
    let mut out = doc.to_string();
    if text.trim().is_empty() && registry == super::DEFAULT_HOSTS {
        out = format!(
            "# _default: every registry without its own directory here goes to these\n# hosts first, then to the registry itself. Written by dmirror apply.\n{out}"
        );
    } else if text.trim().is_empty() {
        out = format!(
            "# {registry}: mirrors ranked by dmirror, best first. containerd tries each\n# host in order, then server. dmirror apply rewrites the host tables.\n{out}"
        );
    }
    Ok(Merged {
        text: out,
        dropped: old.into_iter().map(|(k, _)| k).collect(),
    })
}

/// containerd's own configuration file, where CRI learns `config_path`.
pub const CONFIG: &str = "/etc/containerd/config.toml";

/// Why containerd's CRI (kubelet, crictl) would not read the hosts files
/// under `hosts_dir`, given its config.toml; `None` when it would, or when
/// the file cannot tell. `ctr` and nerdctl take `--hosts-dir` themselves.
pub fn cri_warning(config: &str, hosts_dir: &Path) -> Option<String> {
    let doc: toml::Table = toml::from_str(config).ok()?;
    let version = doc
        .get("version")
        .and_then(toml::Value::as_integer)
        .unwrap_or(1);
    // containerd 2 (version 3) reads certs.d by default; 1.x (2) reads nothing.
    let (plugin, default) = match version {
        3.. => (
            "io.containerd.cri.v1.images",
            "/etc/containerd/certs.d:/etc/docker/certs.d",
        ),
        2 => ("io.containerd.grpc.v1.cri", ""),
        _ => ("cri", ""),
    };
    let table = doc
        .get("plugins")
        .and_then(|p| p.get(plugin))
        .and_then(|c| c.get("registry"));
    let configured = table
        .and_then(|r| r.get("config_path"))
        .and_then(toml::Value::as_str)
        .unwrap_or(default);
    let wanted = hosts_dir.to_string_lossy();
    let wanted = wanted.trim_end_matches('/');
    if configured
        .split(':')
        .any(|p| p.trim_end_matches('/') == wanted)
    {
        return None;
    }
    let legacy = table.and_then(|r| r.get("mirrors")).is_some();
    let found = if configured.is_empty() {
        "sets no config_path for it".to_owned()
    } else {
        format!("sets config_path = {configured}")
    };
    let legacy = if legacy {
        ", removing the deprecated registry.mirrors there"
    } else {
        ""
    };
    Some(format!(
        "containerd's CRI (kubelet, crictl) does not read {wanted}: {CONFIG} {found}. Set config_path = \"{wanted}\" under [plugins.\"{plugin}\".registry]{legacy} and restart containerd once; after that it reads the files on every pull"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(root: &str, prefix: Option<&str>) -> Endpoint {
        Endpoint {
            root: root.into(),
            authority: root.split("://").nth(1).unwrap().into(),
            prefix: prefix.map(Into::into),
            http: root.starts_with("http:"),
            skip_verify: false,
            ca: Vec::new(),
            client: None,
            dial_timeout: None,
        }
    }

    #[test]
    fn a_local_server_gets_a_dial_bound_and_default_no_server() {
        let mut e = ep("http://127.0.0.1:5280", None);
        e.dial_timeout = Some("200ms".into());
        let m = merge("", "_default", "", &[e.clone()]).unwrap();
        let doc: toml::Table = toml::from_str(&m.text).unwrap();
        assert!(doc.get("server").is_none(), "{}", m.text);
        let host = &doc["host"]["http://127.0.0.1:5280"];
        assert_eq!(host["dial_timeout"].as_str(), Some("200ms"));
        assert!(m.text.starts_with("# _default: every registry"));
        // A bound the user set stays.
        let mine = "[host.\"http://127.0.0.1:5280\"]\ndial_timeout = \"1s\"\n";
        let m = merge(mine, "docker.io", "https://registry-1.docker.io", &[e]).unwrap();
        let doc: toml::Table = toml::from_str(&m.text).unwrap();
        assert_eq!(
            doc["host"]["http://127.0.0.1:5280"]["dial_timeout"].as_str(),
            Some("1s")
        );
        assert_eq!(doc["server"].as_str(), Some("https://registry-1.docker.io"));
    }

    #[test]
    fn docker_certs_d_becomes_ca_and_client() {
        let mut e = ep("https://m.example:8443", None);
        e.ca = vec!["/etc/docker/certs.d/m.example:8443/ca.crt".into()];
        e.client = Some((
            "/etc/docker/certs.d/m.example:8443/client.cert".into(),
            "/etc/docker/certs.d/m.example:8443/client.key".into(),
        ));
        let m = merge("", "docker.io", "https://registry-1.docker.io", &[e]).unwrap();
        let doc: toml::Table = toml::from_str(&m.text).unwrap();
        let host = &doc["host"]["https://m.example:8443"];
        assert_eq!(
            host["ca"].as_array().unwrap()[0].as_str(),
            Some("/etc/docker/certs.d/m.example:8443/ca.crt")
        );
        assert_eq!(
            host["client"].as_array().unwrap()[0]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn a_new_file_lists_hosts_in_order_before_the_server() {
        let m = merge(
            "",
            "ghcr.io",
            "https://ghcr.io",
            &[
                ep("https://ghcr.m.example", None),
                ep("https://m.example", Some("ghcr.io")),
            ],
        )
        .unwrap();
        let doc: toml::Table = toml::from_str(&m.text).unwrap();
        assert_eq!(doc["server"].as_str(), Some("https://ghcr.io"));
        let hosts = doc["host"].as_table().unwrap();
        let keys: Vec<_> = hosts.keys().collect();
        assert_eq!(
            keys,
            ["https://ghcr.m.example", "https://m.example/v2/ghcr.io"]
        );
        assert_eq!(
            hosts["https://m.example/v2/ghcr.io"]["override_path"].as_bool(),
            Some(true)
        );
        assert!(hosts["https://ghcr.m.example"]
            .get("override_path")
            .is_none());
        assert!(
            m.text.find("[host.\"https://ghcr.m.example\"]")
                < m.text.find("[host.\"https://m.example/v2/ghcr.io\"]")
        );
        assert!(m.text.starts_with("# ghcr.io:"));
        assert!(m.dropped.is_empty());
    }

    #[test]
    fn merging_keeps_comments_server_and_what_the_user_set_on_a_host() {
        let before = r#"# my registry settings
server = "https://internal.example"   # keep this
ca = "/etc/ssl/corp.pem"

[host."https://old.example"]
  capabilities = ["pull"]

# the corporate cache
[host."https://b.example"]
  capabilities = ["pull", "resolve"]
  header = { X-Team = ["infra"] }
"#;
        let m = merge(
            before,
            "docker.io",
            "https://registry-1.docker.io",
            &[ep("https://a.example", None), ep("https://b.example", None)],
        )
        .unwrap();
        assert!(m.text.starts_with("# my registry settings\nserver = \"https://internal.example\"   # keep this\nca = \"/etc/ssl/corp.pem\"\n"));
        assert!(m
            .text
            .contains("# the corporate cache\n[host.\"https://b.example\"]"));
        assert!(m.text.contains("X-Team"));
        assert!(!m.text.contains("old.example"));
        assert_eq!(m.dropped, ["https://old.example"]);
        assert_eq!(
            configured(&m.text).unwrap(),
            ["https://a.example", "https://b.example"]
        );
        // Applying the same list again changes nothing.
        let again = merge(
            &m.text,
            "docker.io",
            "https://registry-1.docker.io",
            &[ep("https://a.example", None), ep("https://b.example", None)],
        )
        .unwrap();
        assert_eq!(again.text, m.text);
    }

    #[test]
    fn reordering_moves_the_tables() {
        let first = merge(
            "",
            "docker.io",
            "https://registry-1.docker.io",
            &[ep("https://a.example", None), ep("https://b.example", None)],
        )
        .unwrap();
        let second = merge(
            &first.text,
            "docker.io",
            "https://registry-1.docker.io",
            &[ep("https://b.example", None), ep("https://a.example", None)],
        )
        .unwrap();
        assert_eq!(
            configured(&second.text).unwrap(),
            ["https://b.example", "https://a.example"]
        );
        assert!(
            second.text.find("https://b.example").unwrap()
                < second.text.find("https://a.example").unwrap()
        );
    }

    #[test]
    fn cri_must_be_told_where_the_hosts_files_are() {
        let dir = Path::new("/etc/containerd/certs.d");
        let v2 = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/etc/containerd/certs.d:/etc/docker/certs.d\"\n";
        assert_eq!(cri_warning(v2, dir), None);
        let unset = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"docker.io\"]\nendpoint = [\"https://x\"]\n";
        let w = cri_warning(unset, dir).unwrap();
        assert!(w.contains("sets no config_path"), "{w}");
        assert!(
            w.contains("[plugins.\"io.containerd.grpc.v1.cri\".registry]"),
            "{w}"
        );
        assert!(w.contains("deprecated registry.mirrors"), "{w}");
        let elsewhere = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/srv/hosts\"\n";
        let w = cri_warning(elsewhere, dir).unwrap();
        assert!(w.contains("sets config_path = /srv/hosts"), "{w}");
        // containerd 2 reads certs.d unless told otherwise.
        assert_eq!(cri_warning("version = 3\n", dir), None);
        assert!(cri_warning("version = 3\n", Path::new("/srv/hosts")).is_some());
        assert_eq!(cri_warning("not toml [", dir), None);
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let e = merge("server = ", "docker.io", "x", &[]).unwrap_err();
        assert!(matches!(e, ConfError::Syntax(_)), "{e}");
        let e = merge("host = 3", "docker.io", "x", &[]).unwrap_err();
        assert!(e.to_string().contains("`host` must hold"), "{e}");
        let e = merge("server = 1", "docker.io", "x", &[]).unwrap_err();
        assert!(e.to_string().contains("`server` must be a string"), "{e}");
        // The check apply makes before probing refuses the same files.
        for bad in ["host = 3", "server = 1", "[host]\nx = 1\n"] {
            assert!(configured(bad).is_err(), "{bad}");
        }
    }
}
