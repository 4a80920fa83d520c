//! When an invocation stops starting work: early enough that it always
//! ends before Lambda's own timeout does.

use std::time::{Duration, Instant, SystemTime};

use crate::receivers::ReceiverSet;
use prism_types::manifest::Mode;

/// Time kept at the end of an invocation for what follows the last plugin
/// call: writing the ledger, the dedup state, the registry's last errors and
/// the metrics (each one AWS call or a few).
pub const FINISH_RESERVE: Duration = Duration::from_secs(2);

/// When to start no more plugin calls in an invocation that ends at
/// `deadline`: early enough that a call started just before can use its
/// whole time budget (the longest among `set`'s receivers, as a batch
/// window may: `limits::MAX_TIMEOUT_MS` at most) and the batch can still be
/// finished within [`FINISH_RESERVE`].
pub fn stop_at(deadline: SystemTime, set: &ReceiverSet) -> Instant {
    let longest = set
        .active
        .iter()
        .map(|r| match r.manifest.mode {
            Mode::Batch { max_count, .. } => r
                .manifest
                .limits
                .timeout_ms
                .saturating_mul(max_count as u64)
                .min(prism_types::limits::MAX_TIMEOUT_MS),
            Mode::Immediate => r.manifest.limits.timeout_ms,
        })
        .max()
        .unwrap_or(0);
    let left = deadline
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    let keep = FINISH_RESERVE + Duration::from_millis(longest);
    Instant::now() + left.saturating_sub(keep)
}
