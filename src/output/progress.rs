//! Progress on stderr, drawn from the engines' events (probe) or shared
//! counters (pull); the engines never draw. Hidden when stderr is not a
//! terminal (indicatif's own check), so logs and pipes stay clean.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;

use crate::output::format_throughput;
use crate::probe::Event;
use crate::pull::download::Progress;
use crate::registry::manifest::Descriptor;

/// Bars on screen, so that an interrupted run can clear them.
static LIVE: std::sync::Mutex<Vec<ProgressBar>> = std::sync::Mutex::new(Vec::new());

pub fn track(bar: &ProgressBar) {
    if let Ok(mut live) = LIVE.lock() {
        live.retain(|b| !b.is_finished());
        live.push(bar.clone());
    }
}

/// Clear every bar still drawn (Ctrl-C): no spinner line is left behind.
pub fn clear_all() {
    if let Ok(mut live) = LIVE.lock() {
        for b in live.drain(..) {
            b.finish_and_clear();
        }
    }
}

/// `1.7 s`, not `1s 666ms 666us 666ns`.
fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// A probe's event sender, and the task drawing its events; the task ends
/// once the sender (and every clone) is dropped.
pub fn probe_bar() -> (UnboundedSender<Event>, JoinHandle<()>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    (tx, tokio::spawn(draw(rx)))
}

/// Consume events until the engine drops its sender.
pub async fn draw(mut events: UnboundedReceiver<Event>) {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    let style =
        ProgressStyle::with_template("{spinner} {prefix:.bold} [{bar:25}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    bar.set_style(style);
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    track(&bar);
    // The mirrors still being checked: what the user is waiting for.
    let mut pending: Vec<String> = Vec::new();
    let waiting = |pending: &[String]| {
        let shown: Vec<&str> = pending.iter().take(3).map(String::as_str).collect();
        let more = pending.len().saturating_sub(3);
        let more = if more > 0 {
            format!(" +{more}")
        } else {
            String::new()
        };
        format!("waiting for {}{more}", shown.join(", "))
    };
    while let Some(event) = events.recv().await {
        match event {
            Event::HealthStarted { names } => {
                bar.set_prefix("checking");
                bar.set_length(names.len() as u64);
                bar.set_position(0);
                pending = names;
                bar.set_message(waiting(&pending));
            }
            Event::HealthDone { name, .. } => {
                bar.inc(1);
                pending.retain(|p| *p != name);
                bar.set_message(waiting(&pending));
            }
            Event::MeasureStarted { total, window } => {
                bar.set_prefix("measuring");
                bar.set_length(total as u64);
                bar.set_position(0);
                bar.set_message(format!("{} per mirror", seconds(window)));
            }
            Event::MeasureDone {
                name,
                throughput_bps,
            } => {
                bar.inc(1);
                bar.set_message(format!("{name}: {}", format_throughput(throughput_bps)));
            }
        }
    }
    bar.finish_and_clear();
}

/// One bar per layer and a total with the mirrors serving, until `stop`.
pub async fn draw_pull(
    multi: MultiProgress,
    layers: Vec<Descriptor>,
    sources: Vec<String>,
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
) {
    let total: u64 = layers.iter().map(|l| l.size).sum();
    let style = |t: &str| {
        ProgressStyle::with_template(t)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ")
    };
    let bars: Vec<ProgressBar> = layers
        .iter()
        .map(|l| {
            let b = multi.add(ProgressBar::new(l.size));
            b.set_style(style(
                "  {prefix} [{bar:30}] {decimal_bytes}/{decimal_total_bytes}",
            ));
            b.set_prefix(l.digest.chars().skip(7).take(12).collect::<String>());
            track(&b);
            b
        })
        .collect();
    let all = multi.add(ProgressBar::new(total));
    // Sizes and speeds in decimal units, as the tables print them; the
    // mirrors serving on a line of their own, so a narrow terminal never
    // cuts them off.
    all.set_style(style(
        "{prefix:.bold} [{bar:20}] {decimal_bytes}/{decimal_total_bytes} {decimal_bytes_per_sec} eta {eta}\n  {wide_msg}",
    ));
    all.set_prefix("total");
    track(&all);
    loop {
        let done = stop.load(Ordering::Acquire);
        let mut sum = 0;
        for (i, l) in layers.iter().enumerate() {
            // Blob 0 is the config; layers follow in order (duplicates share).
            let n = progress
                .blob_bytes
                .get(i + 1)
                .map(|b| b.load(Ordering::Relaxed))
                .unwrap_or(l.size)
                .min(l.size);
            bars[i].set_position(n);
            sum += n;
        }
        all.set_position(sum);
        let serving: Vec<String> = sources
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                progress
                    .source_active
                    .get(*i)
                    .is_some_and(|a| a.load(Ordering::Relaxed) > 0)
            })
            .map(|(_, s)| s.clone())
            .collect();
        all.set_message(format!("from {}", serving.join(", ")));
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for b in bars {
        b.finish_and_clear();
    }
    all.finish_and_clear();
}
