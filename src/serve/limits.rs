//! What a download through serve may cost: the pace a source must keep,
//! and the room the cache's disk must have (made from the least recently
//! used blobs when it has not).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::blob::Failed;
use super::Ctx;

/// A source sending less than [`FLOOR_BPS`] over a [`FLOOR_WINDOW`] is
/// failing, not slow: a trickle that never stalls long enough for
/// `--first-byte` would hold every reader for hours. The request goes on
/// from the next source, with `Range` from where this one stopped.
const FLOOR_BPS: u64 = 1000;
const FLOOR_WINDOW: Duration = Duration::from_secs(10);

/// The bytes of one transfer in its current window.
pub struct Pace {
    since: Instant,
    bytes: u64,
}

impl Default for Pace {
    fn default() -> Self {
        Self {
            since: Instant::now(),
            bytes: 0,
        }
    }
}

impl Pace {
    /// Count `n` bytes; why the transfer is a trickle, once a window
    /// ends below the floor.
    pub fn too_slow(&mut self, n: u64) -> Option<String> {
        self.bytes += n;
        let secs = self.since.elapsed().as_secs();
        if secs < FLOOR_WINDOW.as_secs() {
            return None;
        }
        if self.bytes < FLOOR_BPS * secs {
            return Some(format!(
                "sent {} bytes in {secs} s, below the floor of {} kB/s",
                self.bytes,
                FLOOR_BPS / 1000
            ));
        }
        *self = Self::default();
        None
    }
}

/// Is there room for `need` more bytes of `digest` on the cache's disk?
/// When there is not, and `need` is a size a manifest declared (a
/// source's own claim could empty the cache), least recently used blobs
/// make it (logged).
pub async fn room_for(ctx: &Arc<Ctx>, digest: &str, need: u64, declared: bool) -> bool {
    let free = || crate::pull::free_space(ctx.store.root()).unwrap_or(u64::MAX);
    if need <= free() {
        return true;
    }
    if !declared {
        return false;
    }
    let c = ctx.clone();
    let removed = tokio::task::spawn_blocking(move || c.store.make_room(need))
        .await
        .unwrap_or(0);
    if removed > 0 {
        (ctx.log)(format!(
            "the cache's disk is short of space: removed {removed} bytes of least recently used blobs for {digest}"
        ));
    }
    need <= free()
}

/// The answer when the cache's disk has no room for `need` more bytes.
pub fn no_room(ctx: &Ctx, digest: &str, need: u64) -> Failed {
    let free = crate::pull::free_space(ctx.store.root()).unwrap_or(0);
    Failed {
        status: 507,
        code: "UNKNOWN",
        message: format!(
            "not enough space in {}: {digest} needs {need} more bytes, {free} are free; free some space or lower --max-cache",
            ctx.store.root().display()
        ),
    }
}
