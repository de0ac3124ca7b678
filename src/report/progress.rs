//! Progress of long loops: a bar on a terminal, periodic log lines otherwise.

use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over the `len` steps of epoch `epoch` of `epochs`, drawn on stderr when it is a
/// terminal.
pub fn epoch_bar(len: u64, epoch: usize, epochs: usize) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix} [{bar:30}] {pos}/{len} steps {msg} ({elapsed}, eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(format!("epoch {epoch}/{epochs}"));
    bar
}

/// When the bar is hidden (stderr is not a terminal: a log file, `nohup`, CI), logs the
/// position about every tenth of the epoch, so a long run can still be followed. Epochs shorter
/// than half a minute (small datasets, the trials of a multi-trial search) log nothing.
pub fn log_if_hidden(bar: &ProgressBar, epoch: usize, loss: f64, started: Instant) {
    if !bar.is_hidden() {
        return;
    }
    let done = bar.position();
    let total = bar.length().unwrap_or(done).max(1);
    let every = total.div_ceil(10).max(1);
    let seconds = started.elapsed().as_secs_f64();
    if seconds >= 30.0 && (done.is_multiple_of(every) || done == total) {
        tracing::info!(
            epoch,
            step = format!("{done}/{total}"),
            loss = format!("{loss:.4}"),
            elapsed_s = format!("{seconds:.0}"),
            "in progress"
        );
    }
}
