//! The end of a blob: all its bytes are written, so verify them; on a
//! mismatch, find the mirror that lied (each contributor fetches the blob
//! whole on its own), drop it, and start the blob over with the others.

use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{lock, DownloadError, Shared, WHOLE_FETCH_TIMEOUT};
use crate::registry::RegistryError;

/// All bytes of a blob are written: verify, and on a mismatch find the
/// mirror that lied.
pub(super) async fn complete_blob(shared: &Arc<Shared>, b: usize) {
    let blob = &shared.blobs[b];
    let cache = shared.cache.clone();
    let digest = blob.digest.clone();
    let verdict = tokio::task::spawn_blocking(move || cache.commit(&digest)).await;
    match verdict {
        Ok(Ok(Ok(()))) => return finish(shared, b),
        Ok(Ok(Err(_actual))) => {}
        Ok(Err(e)) => {
            let partial = shared.cache.partial_path(&blob.digest);
            lock(&shared.fatal).get_or_insert(super::disk_error(&partial, e));
            shared.notify.notify_waiters();
            return;
        }
        Err(e) => {
            lock(&shared.fatal).get_or_insert(DownloadError::Io(std::io::Error::other(e)));
            return;
        }
    }
    // The bytes written so far are not the blob: whoever streamed them
    // must not finish.
    shared.progress.blob_prefix[b].store(0, Ordering::Release);
    shared.progress.blob_restarts[b].fetch_add(1, Ordering::AcqRel);
    let written_by = lock(&blob.written_by).clone();
    let mut contributors: Vec<usize> = written_by.iter().map(|w| w.2).collect();
    contributors.sort_unstable();
    contributors.dedup();
    let already_caught = contributors.iter().any(|c| shared.sources[*c].is_dropped());
    if !already_caught {
        for c in contributors {
            if shared.sources[c].is_dropped() {
                continue;
            }
            match fetch_whole(shared, c, b).await {
                Ok(true) => {
                    // A verified copy: whoever wrote ranges that differ
                    // from it lied (a mirror may lie on ranges only).
                    let cache = shared.cache.clone();
                    let digest = blob.digest.clone();
                    let liars = tokio::task::spawn_blocking(move || {
                        let liars = differing(&cache, &digest, &written_by);
                        cache.discard_partial(&digest);
                        liars
                    })
                    .await
                    .unwrap_or_default();
                    for l in liars {
                        shared.sources[l].drop_with(lied(&blob.digest));
                    }
                    return finish(shared, b);
                }
                Ok(false) => shared.sources[c].drop_with(lied(&blob.digest)),
                Err(_) => {}
            }
        }
    }
    // Start the blob over with the mirrors still trusted.
    shared.cache.discard_partial(&blob.digest);
    lock(&blob.done_ranges).clear();
    lock(&blob.written_by).clear();
    shared.progress.blob_bytes[b].store(0, Ordering::Relaxed);
    shared.progress.blob_prefix[b].store(0, Ordering::Release);
    match shared.cache.open_partial(&blob.digest, blob.size) {
        Ok(f) => {
            *lock(&blob.file) = Some(Arc::new(f));
        }
        Err(e) => {
            let partial = shared.cache.partial_path(&blob.digest);
            lock(&shared.fatal).get_or_insert(super::disk_error(&partial, e));
            return;
        }
    }
    if blob.size == 0 {
        // Nothing to fetch again: the declared size cannot be right.
        lock(&shared.fatal).get_or_insert(DownloadError::Manifest(format!(
            "the manifest declares {} with size 0, but that is not the empty blob's digest",
            blob.digest
        )));
        shared.notify.notify_waiters();
        return;
    }
    lock(&shared.queue).push_back((b, 0, blob.size));
    blob.outstanding.store(1, Ordering::Release);
    shared.notify.notify_waiters();
}

fn finish(shared: &Shared, b: usize) {
    shared.blobs[b].done.store(true, Ordering::Release);
    *lock(&shared.blobs[b].file) = None;
    shared.progress.blob_bytes[b].store(shared.blobs[b].size, Ordering::Relaxed);
    shared.progress.blob_prefix[b].store(shared.blobs[b].size, Ordering::Release);
    shared.progress.blobs_done.fetch_add(1, Ordering::Relaxed);
    shared.remaining.fetch_sub(1, Ordering::AcqRel);
    shared.notify.notify_waiters();
}

/// Fetch blob `b` whole from source `s` alone and commit it if it verifies.
/// `Ok(false)`: the source's bytes do not match the digest.
async fn fetch_whole(shared: &Shared, s: usize, b: usize) -> Result<bool, RegistryError> {
    let blob = &shared.blobs[b];
    let source = &shared.sources[s];
    let tmp = shared
        .cache
        .partial_path(&blob.digest)
        .with_extension(format!("whole-{s}"));
    let run = async {
        let (client, repo) = source
            .conn
            .get()
            .ok_or_else(|| RegistryError::broken("the source never joined"))?;
        let mut resp = client.blob(repo, &blob.digest, None).await?;
        let _ = std::fs::remove_file(&tmp);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| RegistryError::broken(e.to_string()))?;
        let mut at = 0u64;
        while let Some(chunk) = tokio::time::timeout(shared.limits.stall, resp.chunk())
            .await
            .map_err(|_| RegistryError::new(crate::registry::ErrorKind::Timeout, "stalled"))?
            .map_err(|e| RegistryError::from_transport(&e, &blob.digest))?
        {
            if at + chunk.len() as u64 > blob.size {
                return Ok(false);
            }
            file.write_all_at(&chunk, at)
                .map_err(|e| RegistryError::broken(e.to_string()))?;
            at += chunk.len() as u64;
            shared.progress.source_bytes[s].fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        Ok(true)
    };
    let whole = tokio::time::timeout(WHOLE_FETCH_TIMEOUT, run)
        .await
        .map_err(|_| {
            RegistryError::new(crate::registry::ErrorKind::Timeout, "whole fetch timed out")
        })?;
    match whole {
        Ok(true) => {}
        Ok(false) => {
            let _ = std::fs::remove_file(&tmp);
            return Ok(false);
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    }
    let cache = shared.cache.clone();
    let digest = blob.digest.clone();
    let tmp2 = tmp.clone();
    match tokio::task::spawn_blocking(move || cache.commit_file(&tmp2, &digest)).await {
        Ok(Ok(Ok(()))) => Ok(true),
        Ok(Ok(Err(_))) => Ok(false),
        _ => {
            let _ = std::fs::remove_file(&tmp);
            Err(RegistryError::broken("cannot verify a whole copy"))
        }
    }
}

fn lied(digest: &str) -> String {
    format!("served bytes for {digest} that do not match its digest; dropped")
}

/// The sources whose ranges of the partial differ from the verified blob.
fn differing(cache: &super::Cache, digest: &str, written_by: &[(u64, u64, usize)]) -> Vec<usize> {
    let (Ok(partial), Ok(good)) = (
        std::fs::File::open(cache.partial_path(digest)),
        std::fs::File::open(cache.blob_path(digest)),
    ) else {
        return Vec::new();
    };
    let mut liars = Vec::new();
    let mut a = vec![0u8; 256 * 1024];
    let mut g = vec![0u8; 256 * 1024];
    for &(start, end, s) in written_by {
        if liars.contains(&s) {
            continue;
        }
        let mut at = start;
        while at < end {
            let n = (end - at).min(a.len() as u64) as usize;
            let same = partial.read_exact_at(&mut a[..n], at).is_ok()
                && good.read_exact_at(&mut g[..n], at).is_ok()
                && a[..n] == g[..n];
            if !same {
                liars.push(s);
                break;
            }
            at += n as u64;
        }
    }
    liars
}
