//! The mirror list: the curated `mirrors.toml` embedded in the binary, the
//! user's own file that adds, overrides or disables entries, and `--mirrors`
//! files that replace both. Every error names the file, the line and the
//! field, so a typo in a list copied from a blog post is easy to fix.

use std::fmt;
use std::path::{Path, PathBuf};

use reqwest::Url;
use serde::Deserialize;
use toml::Spanned;

/// The curated default list, embedded at build time.
pub const BUILTIN: &str = include_str!("../mirrors.toml");

/// One registry mirror, after merging and validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// Unique, short name used in tables, JSON and (later) metrics labels.
    pub name: String,
    /// Registry root, `http://` or `https://`, with no path, query, fragment or userinfo.
    pub url: Url,
    /// Who runs it, for people reading the table.
    pub provider: Option<String>,
    /// What we know of it (campus-only, internal network only, ...).
    pub notes: Option<String>,
    /// Disabled mirrors are listed but never probed.
    pub enabled: bool,
    /// Skip TLS certificate verification (self-signed personal proxies).
    pub insecure: bool,
    /// The origin registry itself, the reference for freshness.
    pub upstream: bool,
    /// The registry this mirror serves at its root (`docker.io` by default;
    /// empty for a prefix mirror given no `registry`).
    pub registry: String,
    /// Registries this mirror serves under `/v2/<registry>/<repository>`
    /// (prefix mirrors).
    pub prefix_for: Vec<String>,
    /// When the entry's facts were last checked by hand, `YYYY-MM-DD`.
    pub checked: Option<String>,
}

impl Mirror {
    /// An enabled Docker Hub mirror at `url` with every optional field unset.
    pub fn new(name: impl Into<String>, url: Url) -> Self {
        Self {
            name: name.into(),
            url,
            provider: None,
            notes: None,
            enabled: true,
            insecure: false,
            upstream: false,
            registry: crate::reference::DOCKER_HUB.to_owned(),
            prefix_for: Vec::new(),
            checked: None,
        }
    }

    /// The repository to ask this mirror for, to get `image`'s; `None` when
    /// the mirror does not serve `image`'s registry.
    pub fn repository_for(&self, image: &crate::reference::Reference) -> Option<String> {
        if !self.registry.is_empty() && self.registry == image.registry {
            Some(image.repository.clone())
        } else if self.prefix_for.contains(&image.registry) {
            Some(format!("{}/{}", image.registry, image.repository))
        } else {
            None
        }
    }

    /// Whether it serves `registry` at all.
    pub fn serves(&self, registry: &str) -> bool {
        (!self.registry.is_empty() && self.registry == registry)
            || self.prefix_for.iter().any(|r| r == registry)
    }

    /// Whether it serves only Docker Hub at its root: what dockerd's
    /// `registry-mirrors` can use.
    pub fn is_docker_hub_mirror(&self) -> bool {
        self.registry == crate::reference::DOCKER_HUB
    }
}

/// Where a list entry came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Builtin,
    File(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Builtin => f.write_str("built-in mirrors.toml"),
            Origin::File(p) => write!(f, "{}", p.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read mirror list {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Syntax { origin: Origin, message: String },
    #[error("{origin}:{line}: mirror {name:?}, field `{field}`: {message}")]
    Invalid {
        origin: Origin,
        line: usize,
        name: String,
        field: &'static str,
        message: String,
    },
    #[error("the mirror list is empty; add [[mirror]] entries with a name and url")]
    Empty,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    mirror: Vec<RawMirror>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMirror {
    name: Spanned<String>,
    url: Option<Spanned<String>>,
    provider: Option<String>,
    notes: Option<String>,
    enabled: Option<bool>,
    insecure: Option<bool>,
    upstream: Option<bool>,
    registry: Option<Spanned<String>>,
    prefix_for: Option<Spanned<Vec<String>>>,
    checked: Option<Spanned<String>>,
}

/// Bound on a mirror list file: far above any real list.
const MAX_LIST_BYTES: u64 = 16 << 20;

/// An ordered list of mirrors, unique by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrorList {
    pub mirrors: Vec<Mirror>,
}

impl MirrorList {
    /// The list `probe` uses: the `files` given with `--mirrors` if any,
    /// otherwise the built-in list merged with the user's file (if present).
    pub fn load(files: &[PathBuf], user_file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut list = MirrorList::default();
        if files.is_empty() {
            list.merge_str(BUILTIN, Origin::Builtin)?;
            if let Some(path) = user_file.filter(|p| p.exists()) {
                list.merge_file(path)?;
            }
        } else {
            for path in files {
                list.merge_file(path)?;
            }
        }
        if list.mirrors.is_empty() {
            return Err(ConfigError::Empty);
        }
        Ok(list)
    }

    /// `$XDG_CONFIG_HOME/dmirror/mirrors.toml` (or the platform's equivalent).
    pub fn user_file() -> Option<PathBuf> {
        dirs::config_dir().map(|d| d.join("dmirror").join("mirrors.toml"))
    }

    pub fn enabled(&self) -> impl Iterator<Item = &Mirror> {
        self.mirrors.iter().filter(|m| m.enabled)
    }

    fn merge_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        // A FIFO or device in place of the list is refused, not waited on.
        let read = crate::files::read_regular(path, MAX_LIST_BYTES).and_then(|b| {
            let b = b.ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))?;
            String::from_utf8(b).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "is not UTF-8 text")
            })
        });
        let text = read.map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        self.merge_str(&text, Origin::File(path.to_owned()))
    }

    /// Merge one file's entries: a new name is appended, a known name has the
    /// fields the file gives replaced, `enabled = false` disables it.
    pub fn merge_str(&mut self, text: &str, origin: Origin) -> Result<(), ConfigError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let raw: RawFile = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            origin: origin.clone(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        // Linear in the number of entries: line numbers from one table of
        // line starts, names found through an index.
        let line_starts: Vec<usize> = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let mut index: std::collections::HashMap<String, usize> = self
            .mirrors
            .iter()
            .enumerate()
            .map(|(i, m)| (m.name.clone(), i))
            .collect();
        let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
        for entry in raw.mirror {
            let line = line_of(&line_starts, entry.name.span().start);
            let name = entry.name.get_ref().trim().to_owned();
            let invalid = |field: &'static str, message: String| ConfigError::Invalid {
                origin: origin.clone(),
                line,
                name: name.clone(),
                field,
                message,
            };
            validate_name(&name).map_err(|m| invalid("name", m))?;
            if seen.contains(&name) {
                return Err(invalid(
                    "name",
                    "appears twice in this file; names must be unique".into(),
                ));
            }
            seen.insert(name.clone());
            let url = match &entry.url {
                Some(u) => {
                    Some(
                        parse_mirror_url(u.get_ref()).map_err(|m| ConfigError::Invalid {
                            origin: origin.clone(),
                            line: line_of(&line_starts, u.span().start),
                            name: name.clone(),
                            field: "url",
                            message: m,
                        })?,
                    )
                }
                None => None,
            };
            let registry = match &entry.registry {
                Some(r) => {
                    Some(
                        validate_registry(r.get_ref()).map_err(|m| ConfigError::Invalid {
                            origin: origin.clone(),
                            line: line_of(&line_starts, r.span().start),
                            name: name.clone(),
                            field: "registry",
                            message: m,
                        })?,
                    )
                }
                None => None,
            };
            let prefix_for = match &entry.prefix_for {
                Some(list) => Some(
                    list.get_ref()
                        .iter()
                        .map(|r| validate_registry(r))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|m| ConfigError::Invalid {
                            origin: origin.clone(),
                            line: line_of(&line_starts, list.span().start),
                            name: name.clone(),
                            field: "prefix_for",
                            message: m,
                        })?,
                ),
                None => None,
            };
            let checked = match &entry.checked {
                Some(c) => Some(
                    validate_date(c.get_ref()).map_err(|m| ConfigError::Invalid {
                        origin: origin.clone(),
                        line: line_of(&line_starts, c.span().start),
                        name: name.clone(),
                        field: "checked",
                        message: m,
                    })?,
                ),
                None => None,
            };
            match index.get(&name).and_then(|&i| self.mirrors.get_mut(i)) {
                Some(existing) => {
                    if let Some(r) = registry {
                        existing.registry = r;
                    }
                    if let Some(p) = prefix_for {
                        existing.prefix_for = p;
                    }
                    if let Some(url) = url {
                        existing.url = url;
                    }
                    if entry.provider.is_some() {
                        existing.provider = entry.provider;
                    }
                    if checked.is_some() {
                        existing.checked = checked;
                    }
                    if entry.notes.is_some() {
                        existing.notes = entry.notes;
                    }
                    if let Some(v) = entry.enabled {
                        existing.enabled = v;
                    }
                    if let Some(v) = entry.insecure {
                        existing.insecure = v;
                    }
                    if let Some(v) = entry.upstream {
                        existing.upstream = v;
                    }
                }
                None => {
                    let url = url.ok_or_else(|| {
                        invalid(
                            "url",
                            "missing; a new mirror needs url = \"https://host\"".into(),
                        )
                    })?;
                    index.insert(name.clone(), self.mirrors.len());
                    self.mirrors.push(Mirror {
                        name,
                        url,
                        provider: entry.provider,
                        notes: entry.notes,
                        enabled: entry.enabled.unwrap_or(true),
                        insecure: entry.insecure.unwrap_or(false),
                        upstream: entry.upstream.unwrap_or(false),
                        // A prefix mirror serves nothing at its root unless told.
                        registry: registry.unwrap_or_else(|| match prefix_for {
                            Some(_) => String::new(),
                            None => crate::reference::DOCKER_HUB.to_owned(),
                        }),
                        prefix_for: prefix_for.unwrap_or_default(),
                        checked,
                    });
                }
            }
        }
        Ok(())
    }
}

/// The 1-based line holding byte `offset`, given where each line starts.
fn line_of(line_starts: &[usize], offset: usize) -> usize {
    line_starts.partition_point(|&s| s <= offset).max(1)
}

/// A `checked` date, `YYYY-MM-DD`.
fn validate_date(s: &str) -> Result<String, String> {
    let bad = || format!("{s:?} is not a date; write it as YYYY-MM-DD");
    let parts: Vec<&str> = s.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return Err(bad());
    };
    let num = |p: &str, len: usize| {
        (p.len() == len && p.bytes().all(|b| b.is_ascii_digit()))
            .then(|| p.parse::<u32>().ok())
            .flatten()
    };
    match (num(y, 4), num(m, 2), num(d, 2)) {
        (Some(_), Some(1..=12), Some(1..=31)) => Ok(s.to_owned()),
        _ => Err(bad()),
    }
}

/// A registry as image references name it: `docker.io`, `ghcr.io`,
/// `registry.k8s.io`, `localhost:5000`; lower case, no scheme or path.
pub fn validate_registry(r: &str) -> Result<String, String> {
    let r = r.trim();
    let r = if r == "index.docker.io" || r == "registry-1.docker.io" {
        crate::reference::DOCKER_HUB
    } else {
        r
    };
    let host = r.split(':').next().unwrap_or("");
    let port_ok = r
        .split_once(':')
        .is_none_or(|(_, p)| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    if host.is_empty()
        || host.starts_with('.')
        || !port_ok
        || !host
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
    {
        return Err(format!(
            "{r:?} is not a registry name; write it as image references do, e.g. \"ghcr.io\" (no scheme, no path, lower case)"
        ));
    }
    Ok(r.to_owned())
}

fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty; give the mirror a short name like \"daocloud\"".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "contains {c:?}; use letters, digits, '-', '_' and '.' only"
        ));
    }
    Ok(())
}

/// Check a mirror URL the way dockerd does (`registry.ValidateMirror`): http
/// or https, no query, fragment or userinfo. We also insist on the registry
/// root, since a path would be silently dropped by clients.
pub fn parse_mirror_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s.trim()).map_err(|e| format!("{s:?} is not a URL ({e})"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!(
            "{s:?} has scheme {:?}; use http:// or https://",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{s:?} has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{s:?} carries a username or password; dockerd refuses credentials in mirror URLs"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{s:?} has a query or fragment; dockerd refuses those in mirror URLs"
        ));
    }
    if url.path() != "/" {
        return Err(format!(
            "{s:?} has path {:?}; a registry mirror is served at the host's root",
            url.path()
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<MirrorList, ConfigError> {
        let mut l = MirrorList::default();
        l.merge_str(text, Origin::File("m.toml".into()))?;
        Ok(l)
    }

    /// Issue 15, item 4: one upstream reference row for every registry a
    /// root mirror serves; closed, campus- and cloud-only mirrors disabled.
    #[test]
    fn builtin_list_is_valid_and_has_a_reference_row() {
        let mut l = MirrorList::default();
        l.merge_str(BUILTIN, Origin::Builtin).unwrap();
        assert!(l.mirrors.len() >= 10);
        let upstreams: Vec<&str> = l
            .mirrors
            .iter()
            .filter(|m| m.upstream)
            .map(|m| m.registry.as_str())
            .collect();
        for m in l
            .mirrors
            .iter()
            .filter(|m| !m.upstream && !m.registry.is_empty())
        {
            assert!(
                upstreams.contains(&m.registry.as_str()),
                "{} serves {} but the list has no upstream row for it",
                m.name,
                m.registry
            );
        }
        for m in &l.mirrors {
            assert!(m.notes.is_some(), "{} has no note", m.name);
        }
        // Every registry a mirror serves has a built-in image to probe it with.
        for m in l.mirrors.iter().filter(|m| m.enabled && !m.upstream) {
            for r in std::iter::once(&m.registry)
                .chain(&m.prefix_for)
                .filter(|r| !r.is_empty())
            {
                assert!(
                    crate::probe::default_image(r).is_some(),
                    "{} serves {r}, which has no built-in probe image",
                    m.name
                );
            }
        }
        for closed in ["nju", "ustc", "tencent"] {
            let m = l.mirrors.iter().find(|m| m.name == closed).unwrap();
            assert!(!m.enabled, "{closed} should be disabled by default");
        }
    }

    #[test]
    fn checked_dates_are_validated() {
        let ok = parse(
            "[[mirror]]\nname = \"a\"\nurl = \"https://a.example\"\nchecked = \"2026-11-01\"\n",
        )
        .unwrap();
        assert_eq!(ok.mirrors[0].checked.as_deref(), Some("2026-11-01"));
        let err = parse(
            "[[mirror]]\nname = \"a\"\nurl = \"https://a.example\"\nchecked = \"last week\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("checked") && err.contains("YYYY-MM-DD"),
            "{err}"
        );
    }

    #[test]
    fn user_file_overrides_adds_and_disables() {
        let mut l = parse(
            "[[mirror]]\nname = \"a\"\nurl = \"https://a.example\"\n\
             [[mirror]]\nname = \"b\"\nurl = \"https://b.example\"\n",
        )
        .unwrap();
        l.merge_str(
            "[[mirror]]\nname = \"a\"\nenabled = false\n\
             [[mirror]]\nname = \"b\"\nurl = \"http://b2.example:5000\"\ninsecure = true\n\
             [[mirror]]\nname = \"mine\"\nurl = \"http://10.0.0.2:5000/\"\n",
            Origin::File("user.toml".into()),
        )
        .unwrap();
        let names: Vec<_> = l.enabled().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["b", "mine"]);
        assert_eq!(l.mirrors[1].url.as_str(), "http://b2.example:5000/");
        assert!(l.mirrors[1].insecure);
    }

    #[test]
    fn mirrors_say_which_registries_they_serve() {
        let mut list = MirrorList::default();
        list.merge_str(
            "[[mirror]]\nname = \"hub\"\nurl = \"https://a\"\n\n[[mirror]]\nname = \"gh\"\nurl = \"https://b\"\nregistry = \"ghcr.io\"\n\n[[mirror]]\nname = \"pre\"\nurl = \"https://c\"\nprefix_for = [\"docker.io\", \"ghcr.io\"]\n",
            Origin::Builtin,
        )
        .unwrap();
        let image: crate::reference::Reference = "ghcr.io/owner/app:v1".parse().unwrap();
        let repos: Vec<Option<String>> = list
            .mirrors
            .iter()
            .map(|m| m.repository_for(&image))
            .collect();
        assert_eq!(
            repos,
            [
                None,
                Some("owner/app".into()),
                Some("ghcr.io/owner/app".into())
            ]
        );
        assert!(list.mirrors[0].is_docker_hub_mirror());
        // A prefix mirror is no root mirror for dockerd.
        assert!(!list.mirrors[2].is_docker_hub_mirror());
        assert!(list.mirrors[2].serves("docker.io"));
        let err = MirrorList::default()
            .merge_str(
                "[[mirror]]\nname = \"x\"\nurl = \"https://x\"\nregistry = \"https://ghcr.io\"\n",
                Origin::Builtin,
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("registry") && err.contains("ghcr.io"), "{err}");
    }

    #[test]
    fn errors_name_line_and_field() {
        let err = parse("[[mirror]]\nname = \"a\"\nurl = \"https://a.example\"\n\n[[mirror]]\nname = \"b\"\nurl = \"ftp://b\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("m.toml:7: mirror \"b\", field `url`"),
            "{err}"
        );
        assert!(err.contains("http:// or https://"), "{err}");

        let err = parse("[[mirror]]\nname = \"a\"\nurll = \"https://a\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3") && err.contains("urll"), "{err}");

        let err = parse("[[mirror]]\nname = \"a\"\n").unwrap_err().to_string();
        assert!(err.contains("field `url`: missing"), "{err}");

        let err = parse("[[mirror]]\nname = \"a\"\nurl = \"https://a\"\n[[mirror]]\nname = \"a\"\nurl = \"https://b\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("m.toml:5") && err.contains("twice"), "{err}");
    }

    #[test]
    fn urls_follow_dockerd_rules() {
        assert!(parse_mirror_url("https://m.example").is_ok());
        assert!(parse_mirror_url("http://127.0.0.1:5000/").is_ok());
        for bad in [
            "m.example",
            "https://u:p@m.example",
            "https://m.example/?x=1",
            "https://m.example/#f",
            "https://m.example/v2/",
            "unix:///x",
        ] {
            assert!(parse_mirror_url(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn a_bom_is_tolerated() {
        let l = parse("\u{feff}[[mirror]]\nname = \"a\"\nurl = \"https://a\"\n").unwrap();
        assert_eq!(l.mirrors.len(), 1);
    }
}
