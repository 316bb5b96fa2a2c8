//! A blob response's bytes: from a running download (what it has written
//! in order, the last byte held until the blob is verified) or from the
//! cache (hashed as it is sent unless this process verified it).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use tokio::sync::watch;

use super::blob::{gone, mark_good, End, Inflight, State, Verified, CHUNK};
use crate::registry::digest::Hasher;

/// A response body's source of bytes: `[start, end)` of the blob.
pub enum Reader {
    /// A download still running: read what it has written (in this
    /// generation), or the verified blob once it is done.
    Live {
        inflight: Arc<Inflight>,
        rx: watch::Receiver<State>,
        generation: u32,
        done: Option<File>,
    },
    /// A cached blob, hashed as it is sent when `verify` names its digest
    /// (a whole-blob response).
    Cached {
        file: File,
        size: u64,
        verify: Option<(String, Hasher, Verified)>,
        path: std::path::PathBuf,
    },
}

impl Reader {
    /// A reader of a running download, from its current generation.
    pub fn live(inflight: Arc<Inflight>) -> Self {
        let rx = inflight.state.clone();
        let generation = rx.borrow().generation;
        Reader::Live {
            inflight,
            rx,
            generation,
            done: None,
        }
    }

    /// The next chunk from `at` up to `end`; `None` at a clean end.
    pub async fn next(
        &mut self,
        at: u64,
        end: Option<u64>,
    ) -> Option<std::io::Result<bytes::Bytes>> {
        match self {
            Reader::Live {
                inflight,
                rx,
                generation,
                done,
            } => loop {
                let (written, size, state_end, now) = {
                    let s = rx.borrow_and_update();
                    (s.written, s.size, s.end.clone(), s.generation)
                };
                if let End::Failed(f) = &state_end {
                    return Some(Err(std::io::Error::other(f.message.clone())));
                }
                if now != *generation && (*generation == 0 || at > 0) {
                    return Some(Err(std::io::Error::other(
                        "the bytes sent failed verification; try again",
                    )));
                }
                let finished = matches!(state_end, End::Done);
                let limit = end.or(size).unwrap_or(u64::MAX);
                if *generation > 0 || now != *generation {
                    // This download started over: only the verified blob.
                    if !finished {
                        if rx.changed().await.is_err() {
                            return Some(Err(std::io::Error::other(gone().message)));
                        }
                        continue;
                    }
                    if done.is_none() {
                        match File::open(&inflight.cached) {
                            Ok(f) => *done = Some(f),
                            Err(e) => return Some(Err(e)),
                        }
                    }
                    let f = done.as_ref()?;
                    let limit = match f.metadata() {
                        Ok(m) => limit.min(m.len()),
                        Err(e) => return Some(Err(e)),
                    };
                    if at >= limit {
                        return None;
                    }
                    return Some(chunk(f, at, limit).map(Into::into));
                }
                let limit = if finished { limit.min(written) } else { limit };
                if at >= limit && finished {
                    return None;
                }
                // Hold back the last byte until the blob is verified.
                let sendable = if finished {
                    written.min(limit)
                } else {
                    written.min(limit.saturating_sub(1))
                };
                if sendable > at {
                    return Some(chunk(&inflight.file, at, sendable).map(Into::into));
                }
                if rx.changed().await.is_err() {
                    return Some(Err(std::io::Error::other(gone().message)));
                }
            },
            Reader::Cached {
                file,
                size,
                verify,
                path,
            } => {
                let limit = end.unwrap_or(*size).min(*size);
                if at >= limit {
                    return None;
                }
                let buf = match chunk(file, at, limit) {
                    Ok(b) => b,
                    Err(e) => return Some(Err(e)),
                };
                let n = buf.len();
                if let Some((digest, h, verified)) = verify {
                    h.update(&buf);
                    if at + n as u64 == limit {
                        let actual = std::mem::take(h).finish();
                        if actual != *digest {
                            let _ = std::fs::remove_file(path);
                            return Some(Err(std::io::Error::other(format!(
                                "cached {digest} hashes to {actual}; removed"
                            ))));
                        }
                        mark_good(verified, digest, file);
                    }
                }
                Some(Ok(buf.into()))
            }
        }
    }
}

/// Bytes `[at, limit)` of `file`, at most [`CHUNK`] of them.
fn chunk(file: &File, at: u64, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; (limit - at).min(CHUNK) as usize];
    file.read_exact_at(&mut buf, at)?;
    Ok(buf)
}
