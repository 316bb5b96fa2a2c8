//! The engine's proxy with its login. The Engine API's `/info` shows a
//! proxy URL's user and password as `xxxxx:xxxxx` (moby's
//! `MaskCredentials`), so a route built from `/info` alone is refused by a
//! proxy that wants a login, and every mirror looks unreachable or
//! login-only. The real URL is where dockerd read it: daemon.json's
//! `proxies` (which wins), else dockerd's environment
//! (`/proc/<pid>/environ`, readable by root, or by the user a rootless
//! engine runs as).

use std::path::{Path, PathBuf};

/// What `/info` shows in place of a proxy URL's user and password.
const MASK: &str = "xxxxx:xxxxx@";

/// Which of the engine's proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Http,
    Https,
}

impl Which {
    fn config_key(self) -> &'static str {
        match self {
            Which::Http => "http-proxy",
            Which::Https => "https-proxy",
        }
    }

    fn env_names(self) -> [&'static str; 2] {
        match self {
            Which::Http => ["HTTP_PROXY", "http_proxy"],
            Which::Https => ["HTTPS_PROXY", "https_proxy"],
        }
    }
}

/// Does `/info` hide a login in `shown`?
pub fn masked(shown: &str) -> bool {
    shown.contains(MASK)
}

/// `url` without its user and password, for comparing with what `/info`
/// shows.
fn without_login(url: &str) -> String {
    let (scheme, _, rest) = crate::net::split_login(url);
    format!("{scheme}://{}", rest.trim_end_matches('/'))
}

/// The URL behind `shown` (a proxy URL as `/info` shows it, its login
/// masked): the first of `candidates` with a login that is `shown` but for
/// the login.
fn pick<'a>(shown: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let want = without_login(&shown.replacen(MASK, "", 1));
    candidates
        .into_iter()
        .map(str::trim)
        .find(|c| c.contains('@') && without_login(c) == want)
        .map(str::to_owned)
}

/// The proxy URL `shown` stands for, read from daemon.json (`config`) and
/// the environment of dockerd (`pid`). `None` when neither holds one that
/// masks to `shown`.
pub fn unmask(
    shown: &str,
    which: Which,
    config: Option<&Path>,
    pid: Option<i32>,
) -> Option<String> {
    let from_config = config
        .and_then(|p| crate::files::read_regular(p, 1 << 20).ok().flatten())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["proxies"][which.config_key()].as_str().map(str::to_owned));
    if let Some(url) = pick(shown, from_config.as_deref()) {
        return Some(url);
    }
    let environ = pid.and_then(|p| std::fs::read(format!("/proc/{p}/environ")).ok())?;
    let vars: Vec<(&str, &str)> = environ
        .split(|b| *b == 0)
        .filter_map(|v| std::str::from_utf8(v).ok()?.split_once('='))
        .collect();
    let values = which.env_names().into_iter().flat_map(|name| {
        vars.iter()
            .filter(move |(k, _)| *k == name)
            .map(|(_, v)| *v)
    });
    pick(shown, values)
}

/// The engine's proxy as a route (direct when it has none or does not
/// answer), its login read where dockerd read it when `/info` masks it;
/// an error naming the fix when it cannot be read.
pub async fn engine_route(
    located: &super::locate::Located,
    engine: &super::engine::Engine,
) -> Result<crate::net::Route, String> {
    use crate::net::Route;
    let Ok(info) = engine.info().await else {
        return Ok(Route::Direct);
    };
    let (http, https) = (info.http_proxy.trim(), info.https_proxy.trim());
    if !masked(http) && !masked(https) {
        return Ok(Route::of_engine(http, https, &info.no_proxy));
    }
    let pid = engine.peer_pid().await;
    let rootless = located
        .rootless
        .then(super::locate::rootless_daemon_json)
        .flatten();
    let config = config_file(pid, rootless);
    let real = |shown: &str, which| -> Result<String, String> {
        if !masked(shown) {
            return Ok(shown.to_owned());
        }
        unmask(shown, which, config.as_deref(), pid).ok_or_else(|| format!(
            "the Docker engine's proxy ({shown}) needs a login its /info hides, and dmirror cannot read it where dockerd does (daemon.json's proxies, dockerd's environment): run as root (or as the user a rootless engine runs as), or pass --proxy http://USER:PASSWORD@HOST:PORT"
        ))
    };
    Ok(Route::of_engine(
        &real(http, Which::Http)?,
        &real(https, Which::Https)?,
        &info.no_proxy,
    ))
}

/// The daemon.json the dockerd `pid` reads: its `--config-file`, else the
/// default (`rootless_default` for a rootless engine).
pub fn config_file(pid: Option<i32>, rootless_default: Option<PathBuf>) -> Option<PathBuf> {
    let cmdline = pid.and_then(|p| std::fs::read(format!("/proc/{p}/cmdline")).ok());
    let args: Vec<String> = cmdline
        .map(|c| {
            c.split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default();
    for (i, a) in args.iter().enumerate() {
        if let Some(v) = a.strip_prefix("--config-file=") {
            return Some(PathBuf::from(v));
        }
        if a == "--config-file" {
            return args.get(i + 1).map(PathBuf::from);
        }
    }
    rootless_default.or_else(|| Some(PathBuf::from("/etc/docker/daemon.json")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_masked_url_is_matched_to_the_real_one() {
        let shown = "http://xxxxx:xxxxx@proxy.corp:3128";
        assert!(masked(shown));
        assert!(!masked("http://proxy.corp:3128"));
        let real = "http://alice:p%40ss@proxy.corp:3128/";
        assert_eq!(
            pick(shown, ["http://other:x@elsewhere:3128", real]),
            Some(real.to_owned())
        );
        assert_eq!(pick(shown, ["http://proxy.corp:3128"]), None, "no login");
        assert_eq!(pick(shown, ["http://bob:x@proxy.corp:8080"]), None);
    }

    #[test]
    fn daemon_json_proxies_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("daemon.json");
        std::fs::write(
            &f,
            r#"{"proxies": {"https-proxy": "http://u:pw@p:1", "http-proxy": "http://p:1"}}"#,
        )
        .unwrap();
        assert_eq!(
            unmask("http://xxxxx:xxxxx@p:1", Which::Https, Some(&f), None),
            Some("http://u:pw@p:1".to_owned())
        );
        assert_eq!(
            unmask("http://xxxxx:xxxxx@p:1", Which::Http, Some(&f), None),
            None
        );
    }
}
