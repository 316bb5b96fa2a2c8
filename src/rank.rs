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

/// A mirror's record over its recent runs, this one included.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Track {
    /// Share of the runs that were `ok`.
    pub ok_ratio: f64,
    /// Smoothed over the `ok` runs.
    pub throughput_bps: Option<f64>,
    pub latency: Option<Duration>,
}

/// Seconds a pull loses when the first mirror fails: dockerd waits out its
/// timeout before it falls back (the apply benchmark measures about 15 s).
const STALL_SECS: f64 = 15.0;

/// The seconds a mirror is ranked by: the expected pull time, from the
/// smoothed figures when there is history, plus the stall its failure rate
/// costs on average. `None` when throughput was never measured.
pub fn effective_seconds(r: &MirrorResult, track: Option<&Track>) -> Option<f64> {
    match track {
        None => estimated_seconds(r.latency, r.throughput_bps),
        Some(t) => {
            let est = estimated_seconds(
                t.latency.or(r.latency),
                t.throughput_bps.or(r.throughput_bps),
            )?;
            Some(est + (1.0 - t.ok_ratio.clamp(0.0, 1.0)) * STALL_SECS)
        }
    }
}

/// A mirror that failed most of its recent runs ranks below every one that
/// did not, however fast its good runs: one good night does not make it
/// the mirror every pull tries first.
fn unreliable(track: Option<&Track>) -> bool {
    track.is_some_and(|t| t.ok_ratio < 0.5)
}

/// Put results in rank order: `ok` mirrors by estimated pull time (then
/// latency), then the others, nearest-to-working status first, each group by
/// name.
pub fn rank(results: &mut [MirrorResult]) {
    rank_with(results, |_| None);
}

/// [`rank`], with each mirror's history (by name) weighing in. A mirror
/// that is not `ok` now ranks below every `ok` one whatever its past.
pub fn rank_with(results: &mut [MirrorResult], track: impl Fn(&str) -> Option<Track>) {
    results.sort_by_cached_key(|r| {
        let ok = r.status == Status::Ok;
        let t = track(&r.mirror.name).filter(|_| ok);
        Key {
            order: r.status.order(),
            unreliable: unreliable(t.as_ref()),
            secs: ok.then(|| effective_seconds(r, t.as_ref())).flatten(),
            latency: r.latency.filter(|_| r.status == Status::Ok),
            name: r.mirror.name.clone(),
        }
    });
}

struct Key {
    order: usize,
    unreliable: bool,
    secs: Option<f64>,
    latency: Option<Duration>,
    name: String,
}

/// `Some` before `None`, then ascending.
fn some_first<T>(a: Option<T>, b: Option<T>, cmp: impl Fn(T, T) -> Ordering) -> Ordering {
    match (a, b) {
        (Some(x), Some(y)) => cmp(x, y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

impl Ord for Key {
    fn cmp(&self, o: &Self) -> Ordering {
        self.order
            .cmp(&o.order)
            .then_with(|| self.unreliable.cmp(&o.unreliable))
            .then_with(|| some_first(self.secs, o.secs, |x, y| x.total_cmp(&y)))
            .then_with(|| some_first(self.latency, o.latency, |x, y| x.cmp(&y)))
            .then_with(|| self.name.cmp(&o.name))
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl PartialEq for Key {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}

impl Eq for Key {}

/// What a mirror list costs: the estimated seconds of its mirrors, the
/// first weighing most (dockerd tries it first; the others only when it
/// fails), normalised so lists of one length compare.
fn list_cost(secs: &[f64]) -> f64 {
    let (mut sum, mut weights, mut w) = (0.0, 0.0, 1.0);
    for s in secs {
        sum += w * s;
        weights += w;
        w /= 2.0;
    }
    if weights == 0.0 {
        0.0
    } else {
        sum / weights
    }
}

/// Hysteresis for apply: keep the configured list when every mirror in it
/// still works (`Some` estimate), it is as long as the best list, and it
/// costs at most `margin` (0.2 = 20 %) more than the best list. Swapping
/// near-equal mirrors every night would only reload dockerd for noise.
pub fn within_margin(configured: &[Option<f64>], best: &[f64], margin: f64) -> bool {
    if configured.is_empty() || configured.len() != best.len() {
        return false;
    }
    let Some(configured) = configured.iter().copied().collect::<Option<Vec<f64>>>() else {
        return false;
    };
    list_cost(&configured) <= list_cost(best) * (1.0 + margin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Mirror;

    fn result(name: &str, status: Status, latency_ms: u64, bps: Option<f64>) -> MirrorResult {
        MirrorResult {
            mirror: Mirror::new(name, "https://m.example".parse().unwrap()),
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

    fn track(ok_ratio: f64, bps: f64) -> Option<Track> {
        Some(Track {
            ok_ratio,
            throughput_bps: Some(bps),
            latency: Some(Duration::from_millis(50)),
        })
    }

    #[test]
    fn a_mirror_that_failed_most_runs_cannot_win_on_one_good_run() {
        let mut r = vec![
            result("flaky", Status::Ok, 10, Some(20e6)),
            result("steady", Status::Ok, 50, Some(5e6)),
        ];
        rank_with(&mut r, |name| match name {
            // Ok 2 nights of 10; this run is its best ever.
            "flaky" => track(0.2, 12e6),
            _ => track(1.0, 5e6),
        });
        assert_eq!(names(&r), ["steady", "flaky"]);
        // Without history the fast run wins.
        rank(&mut r);
        assert_eq!(names(&r), ["flaky", "steady"]);
    }

    #[test]
    fn an_occasional_failure_costs_a_stall_not_the_rank() {
        let mut r = vec![
            result("slow-perfect", Status::Ok, 20, Some(1e6)),
            result("fast-mostly", Status::Ok, 20, Some(50e6)),
            result("fast-perfect", Status::Ok, 20, Some(40e6)),
        ];
        rank_with(&mut r, |name| match name {
            "slow-perfect" => track(1.0, 1e6),
            // Failed 2 of 14: +2.1 s, still far ahead of the slow one.
            "fast-mostly" => track(12.0 / 14.0, 50e6),
            _ => track(1.0, 40e6),
        });
        assert_eq!(names(&r), ["fast-perfect", "fast-mostly", "slow-perfect"]);
    }

    #[test]
    fn a_mirror_that_just_died_drops_at_once() {
        let mut r = vec![
            result("veteran", Status::Timeout, 0, None),
            result("newcomer", Status::Ok, 50, Some(1e6)),
        ];
        rank_with(&mut r, |name| match name {
            "veteran" => track(13.0 / 14.0, 50e6),
            _ => track(1.0, 1e6),
        });
        assert_eq!(names(&r), ["newcomer", "veteran"]);
    }

    #[test]
    fn smoothed_figures_outweigh_one_noisy_sample() {
        // b measured faster tonight, but a is faster over the last runs.
        let mut r = vec![
            result("a", Status::Ok, 20, Some(9e6)),
            result("b", Status::Ok, 20, Some(10e6)),
        ];
        rank_with(&mut r, |name| match name {
            "a" => track(1.0, 10e6),
            _ => track(1.0, 8e6),
        });
        assert_eq!(names(&r), ["a", "b"]);
    }

    #[test]
    fn hysteresis_keeps_a_list_within_the_margin_only() {
        // Near-equal: keep.
        assert!(within_margin(&[Some(1.1)], &[1.0], 0.2));
        assert!(within_margin(&[Some(1.0), Some(2.0)], &[1.0, 1.6], 0.2));
        // Clearly worse: change.
        assert!(!within_margin(&[Some(1.5)], &[1.0], 0.2));
        // A configured mirror no longer works: change.
        assert!(!within_margin(&[Some(1.0), None], &[1.0, 1.1], 0.2));
        // A shorter list than --top allows, with more mirrors working: change.
        assert!(!within_margin(&[Some(1.0)], &[1.0, 2.0], 0.2));
        // Nothing configured: change.
        assert!(!within_margin(&[], &[1.0], 0.2));
        // The first mirror weighs most: a worse fallback within the margin
        // of the whole list is kept, a worse first one is not.
        assert!(within_margin(&[Some(1.0), Some(1.4)], &[1.0, 1.0], 0.2));
        assert!(!within_margin(&[Some(1.4), Some(1.0)], &[1.0, 1.0], 0.2));
    }
}
