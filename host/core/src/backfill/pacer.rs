//! `--max-per-second`: one reservation clock shared by every segment of a
//! run. Each page reserves its items' share of time and waits for its
//! slot, so the run's average never exceeds the rate however many
//! segments share it.
//!
//! Hand-written rather than `governor`: the whole need is one `Mutex<Instant>`
//! and a tokio sleep, and a crate (with its own clock and quota types)
//! would cost more build time than these lines.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Paces items to at most a rate.
#[derive(Debug)]
pub struct Pacer {
    per_item: Duration,
    next: Mutex<Option<Instant>>,
}

impl Pacer {
    /// At most `rate` items per second; `None` for a rate that is not a
    /// positive number.
    pub fn per_second(rate: f64) -> Option<Self> {
        (rate.is_finite() && rate > 0.0).then(|| Self {
            per_item: Duration::from_secs_f64(1.0 / rate),
            next: Mutex::new(None),
        })
    }

    /// How long `items` must wait from `now`, reserving their time.
    pub fn reserve(&self, items: usize, now: Instant) -> Duration {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let start = next.map_or(now, |n| n.max(now));
        *next = Some(start + self.per_item * items as u32);
        start - now
    }

    /// Wait until `items` may go.
    pub async fn take(&self, items: usize) {
        let wait = self.reserve(items, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_wait_for_their_share_of_the_rate() {
        let p = Pacer::per_second(100.0).unwrap();
        let t0 = Instant::now();
        assert_eq!(
            p.reserve(50, t0),
            Duration::ZERO,
            "the first page goes at once"
        );
        let second = p.reserve(50, t0);
        assert!(
            (second.as_secs_f64() - 0.5).abs() < 1e-6,
            "50 items at 100/s take 0.5 s: {second:?}"
        );
        // A page arriving after its slot has passed does not wait, and
        // unused time is not banked.
        let late = t0 + Duration::from_secs(5);
        assert_eq!(p.reserve(10, late), Duration::ZERO);
        assert!((p.reserve(10, late).as_secs_f64() - 0.1).abs() < 1e-6);
    }

    #[test]
    fn a_rate_must_be_positive() {
        assert!(Pacer::per_second(0.0).is_none());
        assert!(Pacer::per_second(-3.0).is_none());
        assert!(Pacer::per_second(f64::NAN).is_none());
        assert!(Pacer::per_second(0.5).is_some());
    }
}
