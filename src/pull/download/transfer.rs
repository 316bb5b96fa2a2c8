//! One segment from one source: a `Range` request streamed into the blob's
//! partial file, bounded in time, dropped when it trickles, and abandoned
//! as soon as another mirror took the rest.

use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::pace::too_slow;
use super::{disk_error, lock, Limits, Seg, Shared};
use crate::registry::RegistryError;

/// Stream `seg` from source `s` into the blob's partial file.
pub(super) async fn transfer(shared: &Shared, s: usize, seg: &Seg) -> Result<(), RegistryError> {
    let blob = &shared.blobs[seg.blob];
    let source = &shared.sources[s];
    let file = lock(&blob.file)
        .clone()
        .ok_or_else(|| RegistryError::broken("blob file is gone"))?;
    let start = seg.pos.load(Ordering::Acquire);
    let end = seg.end.load(Ordering::Acquire);
    if start >= end {
        return Ok(());
    }
    let whole = start == 0 && end == blob.size;
    let range = (!whole).then_some((start, end));
    let conn = source
        .conn
        .get()
        .ok_or_else(|| RegistryError::broken("the source never joined"))?;
    let Limits {
        first_byte, stall, ..
    } = shared.limits;
    let timeout = |what: &str, d: Duration| {
        RegistryError::new(
            crate::registry::ErrorKind::Timeout,
            format!("{what} within {}", humantime::format_duration(d)),
        )
    };
    let mut resp =
        match while_wanted(seg, first_byte, conn.0.blob(&conn.1, &blob.digest, range)).await {
            Ok(r) => r?,
            Err(Taken::Yes) => return Ok(()),
            Err(Taken::No) => return Err(timeout("no answer", first_byte)),
        };
    if range.is_some() && resp.status().as_u16() != 206 {
        return Err(RegistryError::broken(format!(
            "answered a Range request with HTTP {} instead of 206",
            resp.status().as_u16()
        )));
    }
    let started = Instant::now();
    let mut received = 0u64;
    let prefix = &shared.progress.blob_prefix[seg.blob];
    loop {
        if let Some(why) = too_slow(shared, s, started, received, seg) {
            source.drop_with(why.clone());
            shared.notify.notify_waiters();
            return Err(RegistryError::new(crate::registry::ErrorKind::Timeout, why));
        }
        let chunk = match while_wanted(seg, stall, resp.chunk()).await {
            Ok(c) => c.map_err(|e| RegistryError::from_transport(&e, &blob.digest))?,
            // The rest was taken by a faster mirror.
            Err(Taken::Yes) => return Ok(()),
            Err(Taken::No) => return Err(timeout("transfer stalled: no bytes", stall)),
        };
        let Some(chunk) = chunk else {
            return Ok(());
        };
        let pos = seg.pos.load(Ordering::Acquire);
        let end = seg.end.load(Ordering::Acquire);
        if pos >= end {
            return Ok(()); // the rest was taken by a faster mirror
        }
        let take = (chunk.len() as u64).min(end - pos) as usize;
        if let Err(e) = file.write_all_at(&chunk[..take], pos) {
            let path = shared.cache.partial_path(&blob.digest);
            lock(&shared.fatal).get_or_insert(disk_error(&path, e));
            shared.notify.notify_waiters();
            return Err(RegistryError::broken("cannot write the cache"));
        }
        seg.pos.store(pos + take as u64, Ordering::Release);
        // This transfer wrote [start, pos + take) in order: when the
        // prefix reached `start`, it now reaches the end of these bytes.
        if prefix.load(Ordering::Acquire) >= start {
            prefix.fetch_max(pos + take as u64, Ordering::AcqRel);
        }
        received += take as u64;
        shared.progress.blob_bytes[seg.blob].fetch_add(take as u64, Ordering::Relaxed);
        shared.progress.source_bytes[s].fetch_add(take as u64, Ordering::Relaxed);
        if take < chunk.len() || pos + take as u64 >= end {
            return Ok(());
        }
    }
}

/// Why a wait on a segment's source ended early.
enum Taken {
    /// Another mirror took the rest of the segment: nothing left to wait for.
    Yes,
    /// The bound passed.
    No,
}

/// `fut`, bounded by `bound`, abandoned as soon as the rest of `seg` was
/// taken by another mirror: a source that hangs holds no blob back once
/// its share was split off.
async fn while_wanted<T>(
    seg: &Seg,
    bound: Duration,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, Taken> {
    let taken = async {
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if seg.pos.load(Ordering::Acquire) >= seg.end.load(Ordering::Acquire) {
                return;
            }
        }
    };
    tokio::select! {
        v = tokio::time::timeout(bound, fut) => v.map_err(|_| Taken::No),
        () = taken => Err(Taken::Yes),
    }
}
