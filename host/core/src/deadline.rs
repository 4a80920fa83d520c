//! When an invocation's plugin calls must have ended: early enough that it
//! always ends before Lambda's own timeout does. Each receiver's calls are
//! checked against it on their own (with their receiver's call budget), so
//! a receiver with long limits defers only itself.

use std::time::{Duration, Instant, SystemTime};

/// Time kept at the end of an invocation for what follows the last plugin
/// call: writing the ledger, the dedup state, the registry's last errors and
/// the metrics (each one AWS call or a few).
pub const FINISH_RESERVE: Duration = Duration::from_secs(2);

/// The instant by which every plugin call of an invocation that ends at
/// `deadline` must have ended, so the batch can still be finished within
/// [`FINISH_RESERVE`]. A call starts only if its receiver's whole budget
/// fits before it.
pub fn finish_by(deadline: SystemTime) -> Instant {
    finish_by_at(deadline, SystemTime::now(), Instant::now())
}

/// [`finish_by`] as seen at `now` (wall clock) = `now_mono` (monotonic).
fn finish_by_at(deadline: SystemTime, now: SystemTime, now_mono: Instant) -> Instant {
    let left = deadline.duration_since(now).unwrap_or(Duration::ZERO);
    now_mono + left.saturating_sub(FINISH_RESERVE)
}

/// Whether a receiver whose calls may take `budget` can ever run in an
/// invocation of `timeout` (the function's configured timeout): its budget
/// must fit in what is left after [`FINISH_RESERVE`]. A receiver that cannot
/// is refused at load, with this reason, rather than deferred forever.
pub fn fits_invocation(budget: Duration, timeout: Duration) -> Result<(), String> {
    let usable = timeout.saturating_sub(FINISH_RESERVE);
    if budget <= usable {
        return Ok(());
    }
    Err(format!(
        "its plugin calls may take {} ms (limits.timeout_ms, times mode.max_count for a batch window), more than the {} ms an invocation of the dispatcher's {} s timeout leaves after its {} s reserve; lower the limits or raise PRISM_LAMBDA_TIMEOUT",
        budget.as_millis(),
        usable.as_millis(),
        timeout.as_secs(),
        FINISH_RESERVE.as_secs()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_fits_only_within_the_timeout_less_the_reserve() {
        let t = Duration::from_secs(60);
        assert!(fits_invocation(Duration::from_secs(58), t).is_ok());
        let e = fits_invocation(Duration::from_millis(58_001), t).unwrap_err();
        assert!(e.contains("58001 ms") && e.contains("58000 ms"), "{e}");
    }

    #[test]
    fn calls_end_the_reserve_before_the_deadline() {
        let (now, mono) = (SystemTime::now(), Instant::now());
        let secs = Duration::from_secs;
        assert_eq!(finish_by_at(now + secs(10), now, mono), mono + secs(8));
        // A deadline within the reserve, or past: nothing may start.
        assert_eq!(finish_by_at(now + secs(1), now, mono), mono);
        assert_eq!(finish_by_at(now - secs(1), now, mono), mono);
    }
}
