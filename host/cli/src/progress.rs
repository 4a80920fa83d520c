//! A progress bar on stderr for long runs (only when stderr is a terminal).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prism_core::dispatch::Progress;

/// How often the bar is redrawn.
const REDRAW: Duration = Duration::from_millis(150);

/// Show a bar while `work` runs, if the run is long enough to need one.
pub fn with_progress<T>(progress: &Progress, expected: u64, work: impl FnOnce() -> T) -> T {
    if expected < 5_000 || !std::io::stderr().is_terminal() {
        return work();
    }
    let count = || {
        (
            progress.done.load(Ordering::Relaxed),
            progress.total.load(Ordering::Relaxed),
        )
    };
    with_bar(count, "receiver-changes", REDRAW, to_stderr, work)
}

/// Show a bar of `done` out of about `total` (which may lag behind: the
/// bar then shows what is done) while `work` runs, on a terminal.
pub fn with_count<T>(done: &AtomicU64, total: u64, unit: &str, work: impl FnOnce() -> T) -> T {
    if !std::io::stderr().is_terminal() {
        return work();
    }
    let count = || {
        let d = done.load(Ordering::Relaxed);
        (d, total.max(d))
    };
    with_bar(count, unit, REDRAW, to_stderr, work)
}

fn to_stderr(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "{line}");
    let _ = err.flush();
}

/// Run `work` while another thread calls `draw` with the bar's text every
/// `every`, and `"\r\x1b[2K"` (clear the line) when it ends. The drawing
/// thread stops however `work` ends, panics included: a guard sets the
/// flag on drop, so a panic unwinds instead of waiting forever on the scope.
fn with_bar<T>(
    count: impl Fn() -> (u64, u64) + Send + Sync,
    unit: &str,
    every: Duration,
    draw: impl Fn(&str) + Send + Sync,
    work: impl FnOnce() -> T,
) -> T {
    struct Done<'a>(&'a AtomicBool);
    impl Drop for Done<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let started = Instant::now();
            while !done.load(Ordering::Relaxed) {
                let (done, total) = count();
                draw(&bar(done, total, unit, started.elapsed()));
                std::thread::sleep(every);
            }
            draw("\r\x1b[2K");
        });
        let _done = Done(&done);
        work()
    })
}

/// The bar's text: done/total, rate and the time left at that rate.
fn bar(done: u64, total: u64, unit: &str, elapsed: Duration) -> String {
    let total = total.max(1);
    let width = 30;
    let filled = (done.min(total) * width / total) as usize;
    let secs = elapsed.as_secs_f64();
    let rate = done as f64 / secs.max(0.001);
    let eta = if done == 0 {
        "?".to_owned()
    } else {
        format!("{:.0}s", total.saturating_sub(done) as f64 / rate)
    };
    format!(
        "\r[{}{}] {done}/{total} {unit}  {rate:.0}/s  {secs:.1}s  ETA {eta}",
        "=".repeat(filled),
        " ".repeat(width as usize - filled),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn a_panicking_run_ends_the_bar_instead_of_hanging() {
        let lines = Mutex::new(Vec::<String>::new());
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            with_bar(
                || (0, 1),
                "items",
                Duration::from_millis(1),
                |l| lines.lock().unwrap().push(l.to_owned()),
                || -> () { panic!("the work failed") },
            )
        }));
        assert!(out.is_err(), "the panic reaches the caller");
        let lines = lines.into_inner().unwrap();
        assert_eq!(
            lines.last().map(String::as_str),
            Some("\r\x1b[2K"),
            "the bar was cleared"
        );
    }

    #[test]
    fn the_bar_shows_rate_and_time_left() {
        let text = bar(250, 1000, "items", Duration::from_secs(5));
        assert!(text.contains("250/1000 items"), "{text}");
        assert!(text.contains(" 50/s"), "{text}");
        assert!(text.ends_with("ETA 15s"), "{text}");
        assert!(bar(0, 0, "items", Duration::ZERO).ends_with("ETA ?"));
    }
}
