//! The pace of a transfer: a mirror that trickles is a failure, not
//! progress. Dropped once far slower than the best other mirror with much
//! of its share left, or, on its own, below a floor.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Seg, Shared};

/// How long a transfer runs before its rate is judged.
const JUDGE_AFTER: Duration = Duration::from_secs(5);
/// A mirror this many times slower than the best one is dropped once its
/// share would take longer than [`FAR_LATER`].
const SLOWER: f64 = 20.0;
const FAR_LATER: f64 = 30.0;
/// The floor for a mirror on its own: below this rate, sustained over
/// [`FLOOR_WINDOW`], the pull fails instead of trickling for hours.
const FLOOR_BPS: f64 = 1000.0;
const FLOOR_WINDOW: Duration = Duration::from_secs(30);
/// Why source `s`, `received` bytes into a transfer begun at `started`, is
/// too slow to keep: far slower than the best other mirror with much left,
/// or (on its own) below the floor. A trickle is a failure, not progress.
pub(super) fn too_slow(
    shared: &Shared,
    s: usize,
    started: Instant,
    received: u64,
    seg: &Seg,
) -> Option<String> {
    let elapsed = started.elapsed();
    if elapsed < JUDGE_AFTER {
        return None;
    }
    let rate = received as f64 / elapsed.as_secs_f64();
    let shown = |bps: f64| format!("{:.1} kB/s", bps / 1000.0);
    if elapsed >= FLOOR_WINDOW && rate < FLOOR_BPS {
        return Some(format!(
            "sent {} over {} s, below the floor of {}; dropped",
            shown(rate),
            elapsed.as_secs(),
            shown(FLOOR_BPS)
        ));
    }
    let best = shared
        .sources
        .iter()
        .enumerate()
        .filter(|(i, o)| *i != s && !o.is_dropped())
        .filter_map(|(_, o)| o.rate())
        .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))))?;
    let left = seg
        .end
        .load(Ordering::Acquire)
        .saturating_sub(seg.pos.load(Ordering::Acquire)) as f64;
    (rate * SLOWER < best && left / rate.max(1.0) > FAR_LATER).then(|| {
        format!(
            "sent {} while another mirror sends {}; its share would finish far later; dropped",
            shown(rate),
            shown(best)
        )
    })
}
