//! A progress bar on stderr for long runs (only when stderr is a terminal).

use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::dispatch::Progress;

/// Show a bar while `work` runs, if the run is long enough to need one.
pub fn with_progress<T>(progress: &Progress, expected: u64, work: impl FnOnce() -> T) -> T {
    if expected < 5_000 || !std::io::stderr().is_terminal() {
        return work();
    }
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let started = Instant::now();
            while !done.load(Ordering::Relaxed) {
                draw(progress, started);
                std::thread::sleep(Duration::from_millis(150));
            }
            eprint!("\r\x1b[2K");
        });
        let out = work();
        done.store(true, Ordering::Relaxed);
        out
    })
}

fn draw(p: &Progress, started: Instant) {
    let done = p.done.load(Ordering::Relaxed);
    let total = p.total.load(Ordering::Relaxed).max(1);
    let width = 30;
    let filled = (done * width / total) as usize;
    let secs = started.elapsed().as_secs_f64();
    let rate = done as f64 / secs.max(0.001);
    eprint!(
        "\r[{}{}] {done}/{total} receiver-changes  {:.0}/s  {secs:.1}s",
        "=".repeat(filled),
        " ".repeat(width as usize - filled),
        rate
    );
    let _ = std::io::stderr().flush();
}
