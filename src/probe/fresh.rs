//! The freshness vote: which manifest digest a tag resolves to. Upstream's
//! answer when upstream answered, else a strict majority of the mirrors, so
//! that a stale mirror is named stale and `pull` (and `serve`) fetch by a
//! digest that is really current.

/// What one mirror served for the tag, for the freshness vote.
#[derive(Debug, Clone, Copy)]
pub struct Served<'a> {
    /// Digest of the tag's manifest, if the mirror is healthy.
    pub digest: Option<&'a str>,
    /// Whether this is the origin registry.
    pub upstream: bool,
}

/// The digest a fresh mirror must serve: upstream's when upstream answered,
/// otherwise the strict majority's. `None` when there is no clear answer
/// (a tie), so nobody is called stale on a coin toss. The flag says whether
/// the answer came from upstream.
pub fn fresh_digest<'a>(served: &[Served<'a>]) -> Option<(&'a str, bool)> {
    if let Some(d) = served.iter().filter(|s| s.upstream).find_map(|s| s.digest) {
        return Some((d, true));
    }
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for d in served.iter().filter_map(|s| s.digest) {
        match counts.iter_mut().find(|(x, _)| *x == d) {
            Some((_, n)) => *n += 1,
            None => counts.push((d, 1)),
        }
    }
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    match counts.as_slice() {
        [] => None,
        [(d, _)] => Some((d, false)),
        [(d, n), (_, m), ..] if n > m => Some((d, false)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_prefers_upstream_then_strict_majority() {
        let s = |d: Option<&'static str>, upstream| Served {
            digest: d,
            upstream,
        };
        assert_eq!(
            fresh_digest(&[s(Some("a"), false), s(Some("a"), false), s(Some("b"), true)]),
            Some(("b", true))
        );
        // Upstream unreachable: the majority decides.
        assert_eq!(
            fresh_digest(&[
                s(Some("a"), false),
                s(Some("a"), false),
                s(Some("b"), false),
                s(None, true)
            ]),
            Some(("a", false))
        );
        assert_eq!(
            fresh_digest(&[s(Some("a"), false), s(Some("b"), false)]),
            None
        );
        assert_eq!(fresh_digest(&[s(Some("a"), false)]), Some(("a", false)));
        assert_eq!(fresh_digest(&[s(None, false)]), None);
    }
}
