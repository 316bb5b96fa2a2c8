//! Ranking: pure functions over probe results.
//!
//! The score is the estimated time to pull a typical layer from a mirror:
//! a few round trips plus the bytes at the measured sustained rate. That
//! keeps a near-but-thin mirror (reflector's "2 KiB/s first" complaint)
//! below a farther, fat one, while latency still breaks near-ties.

use std::cmp::Ordering;
use std::time::Duration;

use crate::probe::{MirrorResult, Status};

/// The layer size the score is computed for.
const TYPICAL_LAYER_BYTES: f64 = 16.0 * 1024.0 * 1024.0;
/// Round trips a layer pull costs (token, manifest, blob, redirect).
const ROUND_TRIPS: f64 = 3.0;

/// Estimated seconds to pull a typical layer; lower is better. `None` when
/// throughput was not measured.
pub fn estimated_seconds(latency: Option<Duration>, throughput_bps: Option<f64>) -> Option<f64> {
    let bps = throughput_bps.filter(|b| *b > 0.0 && b.is_finite())?;
    let rtt = latency.unwrap_or_default().as_secs_f64();
    Some(ROUND_TRIPS * rtt + TYPICAL_LAYER_BYTES / bps)
}

/// Put results in rank order: `ok` mirrors by estimated pull time (then
/// latency), then the others, nearest-to-working status first, each group by
/// name.
pub fn rank(results: &mut [MirrorResult]) {
    results.sort_by(compare);
}

fn compare(a: &MirrorResult, b: &MirrorResult) -> Ordering {
    let by_status = a.status.order().cmp(&b.status.order());
    if by_status != Ordering::Equal {
        return by_status;
    }
    if a.status == Status::Ok {
        let ea = estimated_seconds(a.latency, a.throughput_bps);
        let eb = estimated_seconds(b.latency, b.throughput_bps);
        let by_estimate = match (ea, eb) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        if by_estimate != Ordering::Equal {
            return by_estimate;
        }
        let by_latency = match (a.latency, b.latency) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        if by_latency != Ordering::Equal {
            return by_latency;
        }
    }
    a.mirror.name.cmp(&b.mirror.name)
}

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
    use crate::config::Mirror;

    fn result(name: &str, status: Status, latency_ms: u64, bps: Option<f64>) -> MirrorResult {
        MirrorResult {
            mirror: Mirror {
                name: name.into(),
                url: "https://m.example".parse().unwrap(),
                provider: None,
                notes: None,
                enabled: true,
                insecure: false,
                upstream: false,
            },
            status,
            latency: Some(Duration::from_millis(latency_ms)),
            throughput_bps: bps,
            digest: None,
            error: None,
        }
    }

    fn names(r: &[MirrorResult]) -> Vec<&str> {
        r.iter().map(|r| r.mirror.name.as_str()).collect()
    }

    #[test]
    fn throughput_beats_a_small_latency_edge() {
        let mut r = vec![
            result("near-thin", Status::Ok, 5, Some(2.0 * 1024.0)),
            result("far-fat", Status::Ok, 300, Some(20e6)),
            result("mid", Status::Ok, 50, Some(5e6)),
        ];
        rank(&mut r);
        assert_eq!(names(&r), ["far-fat", "mid", "near-thin"]);
    }

    #[test]
    fn latency_breaks_near_ties_and_unmeasured_go_last() {
        let mut r = vec![
            result("unmeasured", Status::Ok, 1, None),
            result("slow-rtt", Status::Ok, 400, Some(10e6)),
            result("fast-rtt", Status::Ok, 10, Some(10e6)),
        ];
        rank(&mut r);
        assert_eq!(names(&r), ["fast-rtt", "slow-rtt", "unmeasured"]);
    }

    #[test]
    fn ok_first_then_by_status_then_name() {
        let mut r = vec![
            result("z-dead", Status::Unreachable, 0, None),
            result("a-dead", Status::Unreachable, 0, None),
            result("stale", Status::Stale, 1, None),
            result("hang", Status::Timeout, 0, None),
            result("fine", Status::Ok, 100, Some(1e6)),
            result("campus", Status::Forbidden, 3, None),
        ];
        rank(&mut r);
        assert_eq!(
            names(&r),
            ["fine", "stale", "campus", "hang", "a-dead", "z-dead"]
        );
    }

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
