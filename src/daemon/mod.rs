//! dockerd: its `daemon.json` (merged, never clobbered), how to make it
//! reload, and the Engine API that tells what it really runs.

pub mod config_file;
pub mod control;
pub mod engine;
pub mod locate;
pub mod proxy;

/// Mirror URLs compared the way dockerd stores them: dockerd appends a
/// trailing `/` (`registry.ValidateMirror`), users usually omit it.
pub fn same_mirrors(a: &[String], b: &[String]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.trim_end_matches('/') == y.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    #[test]
    fn trailing_slashes_do_not_matter() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(super::same_mirrors(
            &s(&["https://a/", "http://b:5000"]),
            &s(&["https://a", "http://b:5000/"])
        ));
        assert!(!super::same_mirrors(
            &s(&["https://a", "https://b"]),
            &s(&["https://b", "https://a"])
        ));
        assert!(!super::same_mirrors(&s(&["https://a"]), &s(&[])));
    }
}
