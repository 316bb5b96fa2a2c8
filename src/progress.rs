//! Draws probe progress on stderr from the engine's events. Hidden when
//! stderr is not a terminal (indicatif's own check), so logs and pipes stay
//! clean.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::output::format_throughput;
use crate::probe::Event;

/// Consume events until the engine drops its sender.
pub async fn draw(mut events: UnboundedReceiver<Event>) {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    let style =
        ProgressStyle::with_template("{spinner} {prefix:.bold} [{bar:25}] {pos}/{len} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    bar.set_style(style);
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    while let Some(event) = events.recv().await {
        match event {
            Event::HealthStarted { total } => {
                bar.set_prefix("checking");
                bar.set_length(total as u64);
                bar.set_position(0);
            }
            Event::HealthDone { name, status } => {
                bar.inc(1);
                bar.set_message(format!("{name}: {status}"));
            }
            Event::MeasureStarted { total, window } => {
                bar.set_prefix("measuring");
                bar.set_length(total as u64);
                bar.set_position(0);
                bar.set_message(format!("{} per mirror", humantime::format_duration(window)));
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
