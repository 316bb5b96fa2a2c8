//! Throughput samples: each healthy mirror downloads its largest layer for a
//! fixed window, again and again if it finishes early, and every complete
//! copy is digest-verified.

use std::time::{Duration, Instant};

use crate::registry::digest;
use crate::registry::manifest::Descriptor;
use crate::registry::{ErrorKind, RegistryClient, RegistryError};

/// A sample shorter than this says more about latency than bandwidth.
const MIN_WINDOW: Duration = Duration::from_millis(500);
/// A longer sample adds little accuracy and delays the answer.
const MAX_WINDOW: Duration = Duration::from_secs(3);

/// How the budget is shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Time each mirror gets.
    pub window: Duration,
    /// Samples running side by side.
    pub concurrency: usize,
}

impl Plan {
    /// One at a time while the budget allows each mirror at least
    /// `MIN_WINDOW`; beyond that, as few side by side as keep within budget.
    pub fn new(mirrors: usize, budget: Duration) -> Plan {
        if mirrors == 0 {
            return Plan {
                window: Duration::ZERO,
                concurrency: 1,
            };
        }
        let fair = budget / mirrors as u32;
        if fair >= MIN_WINDOW {
            return Plan {
                window: fair.min(MAX_WINDOW),
                concurrency: 1,
            };
        }
        let window = MIN_WINDOW.min(budget);
        let waves = (budget.as_secs_f64() / window.as_secs_f64())
            .floor()
            .max(1.0) as usize;
        Plan {
            window,
            concurrency: mirrors.div_ceil(waves),
        }
    }
}

/// Download `layer` for `window`; bytes per second from the first byte on.
pub async fn sample(
    client: &RegistryClient,
    repo: &str,
    layer: &Descriptor,
    window: Duration,
    max_bytes: u64,
) -> Result<f64, RegistryError> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + window;
    let mut total: u64 = 0;
    let mut first_byte: Option<Instant> = None;
    'copies: while total < max_bytes {
        let resp =
            match tokio::time::timeout_at(deadline, client.blob(repo, &layer.digest, None)).await {
                Ok(r) => r.map_err(|e| e.context("throughput sample"))?,
                Err(_) => break,
            };
        let mut resp = resp;
        let mut hasher = digest::Hasher::default();
        let mut copy: u64 = 0;
        loop {
            let chunk = match tokio::time::timeout_at(deadline, resp.chunk()).await {
                Err(_) => break 'copies,
                Ok(Err(e)) => {
                    return Err(RegistryError::new(
                        ErrorKind::Broken,
                        format!(
                            "layer transfer cut after {copy} bytes: {}",
                            RegistryError::from_transport(&e, &layer.digest).message
                        ),
                    ))
                }
                Ok(Ok(None)) => break,
                Ok(Ok(Some(c))) => c,
            };
            first_byte.get_or_insert_with(Instant::now);
            copy += chunk.len() as u64;
            total += chunk.len() as u64;
            hasher.update(&chunk);
            if copy > layer.size {
                return Err(RegistryError::broken(format!(
                    "layer {} sends more than its {} bytes",
                    layer.digest, layer.size
                )));
            }
            if total >= max_bytes {
                break 'copies;
            }
        }
        if copy != layer.size {
            return Err(RegistryError::broken(format!(
                "layer {} ended after {copy} of {} bytes",
                layer.digest, layer.size
            )));
        }
        let actual = hasher.finish();
        if actual != layer.digest {
            return Err(RegistryError::broken(format!(
                "layer bytes hash to {actual}, not {}: the mirror serves tampered or wrong data",
                layer.digest
            )));
        }
    }
    if total == 0 {
        return Err(RegistryError::new(
            ErrorKind::Timeout,
            format!(
                "no layer bytes within the {} sample window",
                humantime::format_duration(window)
            ),
        ));
    }
    // From the first byte when that spans long enough to mean something;
    // otherwise from the request, latency included.
    let since_first = first_byte.map(|t| t.elapsed()).unwrap_or_default();
    let span = if since_first >= Duration::from_millis(100) {
        since_first
    } else {
        started.elapsed()
    };
    Ok(total as f64 / span.as_secs_f64().max(1e-3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_share_the_budget() {
        let b = Duration::from_secs(4);
        assert_eq!(
            Plan::new(1, b),
            Plan {
                window: MAX_WINDOW,
                concurrency: 1
            }
        );
        assert_eq!(
            Plan::new(4, b),
            Plan {
                window: Duration::from_secs(1),
                concurrency: 1
            }
        );
        assert_eq!(
            Plan::new(8, b),
            Plan {
                window: MIN_WINDOW,
                concurrency: 1
            }
        );
        // 16 mirrors, 8 waves of 500 ms: two at a time.
        assert_eq!(
            Plan::new(16, b),
            Plan {
                window: MIN_WINDOW,
                concurrency: 2
            }
        );
        assert_eq!(Plan::new(17, b).concurrency, 3);
        for n in 1..100 {
            let p = Plan::new(n, b);
            let waves = n.div_ceil(p.concurrency) as u32;
            assert!(p.window * waves <= b, "{n}: {p:?}");
        }
        assert_eq!(
            Plan::new(3, Duration::from_millis(100)).window,
            Duration::from_millis(100)
        );
    }
}
