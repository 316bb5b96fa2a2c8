//! Where a request's bytes come from: per registry, the mirrors in the
//! order the last probe ranked them, demoted at once when live traffic
//! finds one failing, and the registry's upstream last.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::config::Mirror;
use crate::probe::{MirrorResult, Status};
use crate::reference::DOCKER_HUB;
use crate::registry::client::{for_registry, http_client, ClientOptions};
use crate::registry::RegistryClient;

/// How long a mirror that failed a request waits at the back of the line.
pub const DEMOTION: Duration = Duration::from_secs(60);
/// How long a mirror that served bytes not matching their digest does.
pub const DROP: Duration = Duration::from_secs(30 * 60);

/// One place to fetch from.
pub struct Source {
    pub mirror: Mirror,
    pub client: Arc<RegistryClient>,
}

impl Source {
    /// The name to log and count bytes under.
    pub fn name(&self) -> &str {
        &self.mirror.name
    }

    /// The repository to ask this source for, to get `repo` of `registry`.
    pub fn repo(&self, registry: &str, repo: &str) -> String {
        if self.mirror.prefix_for.iter().any(|r| r == registry) && self.mirror.registry != registry
        {
            format!("{registry}/{repo}")
        } else {
            repo.to_owned()
        }
    }
}

/// A registry's mirrors, best first, with the probe's verdict.
type Ranking = Vec<(Arc<Source>, Status)>;

/// Every registry's sources, as the probe ranked them and traffic since
/// corrected.
pub struct Pool {
    opts: ClientOptions,
    /// All enabled mirrors, in list order.
    list: Vec<Mirror>,
    /// Per registry, best first: the last probe's verdicts.
    ranked: RwLock<HashMap<String, Ranking>>,
    /// Clients of mirrors not ranked yet, and of upstreams, by name.
    clients: Mutex<HashMap<String, Arc<Source>>>,
    /// Until when a mirror (by name) goes last.
    demoted: Mutex<HashMap<String, Instant>>,
}

impl Pool {
    pub fn new(list: Vec<Mirror>, opts: ClientOptions) -> Self {
        Self {
            opts,
            list,
            ranked: RwLock::new(HashMap::new()),
            clients: Mutex::new(HashMap::new()),
            demoted: Mutex::new(HashMap::new()),
        }
    }

    /// The registries some mirror of the list serves.
    pub fn registries(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .list
            .iter()
            .filter(|m| !m.upstream)
            .flat_map(|m| {
                std::iter::once(m.registry.clone())
                    .filter(|r| !r.is_empty())
                    .chain(m.prefix_for.iter().cloned())
            })
            .collect();
        all.sort_by_key(|r| (r != DOCKER_HUB, r.clone()));
        all.dedup();
        all
    }

    fn source(&self, m: &Mirror) -> Option<Arc<Source>> {
        let mut clients = super::lock(&self.clients);
        if let Some(s) = clients.get(&m.name).filter(|s| s.mirror.url == m.url) {
            return Some(s.clone());
        }
        let opts = ClientOptions {
            insecure: m.insecure,
            ..self.opts.clone()
        };
        let http = http_client(&opts, &m.url).ok()?;
        let s = Arc::new(Source {
            mirror: m.clone(),
            client: Arc::new(for_registry(http, &m.url, &opts)),
        });
        clients.insert(m.name.clone(), s.clone());
        Some(s)
    }

    /// Take a probe of `registry`'s mirrors (ranked, best first).
    pub fn update(&self, registry: &str, results: &[MirrorResult]) {
        let sources = results
            .iter()
            .filter(|r| !r.mirror.upstream)
            .filter_map(|r| Some((self.source(&r.mirror)?, r.status)))
            .collect();
        super::write(&self.ranked).insert(registry.to_owned(), sources);
    }

    /// The upstream of `registry`: an `upstream = true` entry serving it,
    /// or the registry itself.
    pub fn upstream(&self, registry: &str) -> Option<Arc<Source>> {
        let m = match self.list.iter().find(|m| m.upstream && m.serves(registry)) {
            Some(m) => m.clone(),
            None => {
                let url = if registry == DOCKER_HUB {
                    crate::pull::DOCKER_HUB_REGISTRY.to_owned()
                } else {
                    format!("https://{registry}")
                };
                Mirror {
                    upstream: true,
                    registry: registry.to_owned(),
                    ..Mirror::new(format!("upstream:{registry}"), url.parse().ok()?)
                }
            }
        };
        self.source(&m)
    }

    /// The mirrors to try for `registry`, best first: the probe's `ok` ones
    /// in rank order, then stale and rate-limited ones (they may still hold
    /// a digest), demoted ones last. Before the first probe: the list's
    /// mirrors in list order. Upstream is not included.
    pub fn mirrors(&self, registry: &str) -> Vec<Arc<Source>> {
        let mut out: Vec<Arc<Source>> = match super::read(&self.ranked).get(registry) {
            Some(ranked) => ranked
                .iter()
                .filter(|(_, s)| matches!(s, Status::Ok | Status::Stale | Status::RateLimited))
                .map(|(src, _)| src.clone())
                .collect(),
            None => self
                .list
                .iter()
                .filter(|m| !m.upstream && m.serves(registry))
                .filter_map(|m| self.source(m))
                .collect(),
        };
        let now = Instant::now();
        let mut demoted = super::lock(&self.demoted);
        demoted.retain(|_, until| *until > now);
        out.sort_by_key(|s| demoted.get(s.name()).copied());
        out
    }

    /// The mirrors whose probe said `ok` for `registry` (the voters on a
    /// tag; every candidate before the first probe).
    pub fn voters(&self, registry: &str) -> Vec<(Arc<Source>, bool)> {
        match super::read(&self.ranked).get(registry) {
            Some(ranked) => ranked
                .iter()
                .filter(|(_, s)| matches!(s, Status::Ok | Status::Stale))
                .map(|(src, s)| (src.clone(), *s == Status::Ok))
                .collect(),
            None => self
                .mirrors(registry)
                .into_iter()
                .map(|s| (s, true))
                .collect(),
        }
    }

    /// The mirrors of `registry` the last probe found healthy (`ok`, or
    /// stale: a digest is a digest) and not demoted since, best first.
    /// None before the first probe: a mirror that hangs is not known yet.
    pub fn healthy(&self, registry: &str) -> Vec<Arc<Source>> {
        let now = Instant::now();
        let demoted = super::lock(&self.demoted);
        super::read(&self.ranked)
            .get(registry)
            .map(|ranked| {
                ranked
                    .iter()
                    .filter(|(_, s)| matches!(s, Status::Ok | Status::Stale))
                    .filter(|(src, _)| demoted.get(src.name()).is_none_or(|u| *u <= now))
                    .map(|(src, _)| src.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Put `name` at the back of the line for `how_long`.
    pub fn demote(&self, name: &str, how_long: Duration) {
        let until = Instant::now() + how_long;
        let mut d = super::lock(&self.demoted);
        let e = d.entry(name.to_owned()).or_insert(until);
        *e = (*e).max(until);
    }
}
