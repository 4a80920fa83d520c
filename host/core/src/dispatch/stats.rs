//! Per-receiver counters for one dispatch run.

use prism_types::failure::FailureKind;
use std::collections::BTreeMap;
use std::time::Duration;

/// How many first errors to keep per receiver for the report.
const KEEP_ERRORS: usize = 5;

/// What happened for one receiver.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    /// Changes offered to the receiver.
    pub seen: u64,
    /// Changes its `accepts` took.
    pub accepted: u64,
    /// Changes its `accepts` declined.
    pub skipped: u64,
    /// Changes the host did not offer to the plugin at all: a modify
    /// outside the receiver's declared field interest.
    pub filtered: u64,
    /// Messages delivered.
    pub messages: u64,
    /// Body bytes delivered.
    pub bytes: u64,
    /// Messages not sent because they were identical to the last output
    /// delivered for the same product (output dedup).
    pub suppressed: u64,
    /// `format-batch` calls (batch mode).
    pub batches: u64,
    /// Changes the plugin rejected (parked, not retried).
    pub rejected: u64,
    /// Changes that failed: trap, timeout, limit, retries exhausted, delivery (parked).
    pub failed: u64,
    /// Retries the plugin asked for.
    pub retries: u64,
    /// Time spent in the plugin (instantiate + calls).
    pub plugin_time: Duration,
    /// Failures and rejections by kind (`rejected`, `timeout`, `trap`, …).
    pub errors_by_kind: BTreeMap<String, u64>,
    /// The first few error messages, in full.
    pub first_errors: Vec<String>,
    /// Changes an earlier attempt already handled (not run again).
    pub already_handled: u64,
    /// Indices of changes held for a retry (destination unavailable), sorted.
    pub held: Vec<usize>,
    /// Changes put in the receiver's batch buffer (flushed later).
    pub buffered: u64,
    /// Changes put in a retry lane (retried in order by the tick).
    pub laned: u64,
    /// Held changes some of whose messages did get out before the
    /// destination failed: change index → indices of the messages out. A
    /// retry sends only the rest.
    pub partial: BTreeMap<usize, Vec<usize>>,
    /// Changes not run because the receiver is quarantined (its breaker is
    /// open): laned, held or parked as `quarantined`.
    pub quarantined: u64,
    /// Changes not started because the invocation's deadline was near
    /// (held, reported for a retry).
    pub deferred: u64,
}

impl ReceiverStats {
    /// Rejections plus failures.
    pub fn errors(&self) -> u64 {
        self.rejected + self.failed
    }

    /// Count an error of `kind` with its message.
    pub fn error(&mut self, kind: &str, message: String) {
        *self.errors_by_kind.entry(kind.to_owned()).or_default() += 1;
        if self.first_errors.len() < KEEP_ERRORS {
            self.first_errors.push(message);
        }
        if kind == FailureKind::Rejected.as_str() {
            self.rejected += 1;
        } else {
            self.failed += 1;
        }
    }

    /// Add another partial count (from another worker) into this one.
    pub fn merge(&mut self, o: ReceiverStats) {
        self.seen += o.seen;
        self.accepted += o.accepted;
        self.skipped += o.skipped;
        self.filtered += o.filtered;
        self.messages += o.messages;
        self.bytes += o.bytes;
        self.suppressed += o.suppressed;
        self.batches += o.batches;
        self.rejected += o.rejected;
        self.failed += o.failed;
        self.retries += o.retries;
        self.plugin_time += o.plugin_time;
        for (k, v) in o.errors_by_kind {
            *self.errors_by_kind.entry(k).or_default() += v;
        }
        self.already_handled += o.already_handled;
        self.held.extend(o.held);
        self.buffered += o.buffered;
        self.laned += o.laned;
        self.partial.extend(o.partial);
        self.quarantined += o.quarantined;
        self.deferred += o.deferred;
        let room = KEEP_ERRORS.saturating_sub(self.first_errors.len());
        self.first_errors
            .extend(o.first_errors.into_iter().take(room));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_and_keeps_few_errors() {
        let mut a = ReceiverStats {
            seen: 1,
            ..Default::default()
        };
        for i in 0..4 {
            a.error("trap", format!("a{i}"));
        }
        let mut b = ReceiverStats {
            seen: 2,
            ..Default::default()
        };
        b.error("rejected", "b0".into());
        b.error("rejected", "b1".into());
        a.merge(b);
        assert_eq!((a.seen, a.failed, a.rejected, a.errors()), (3, 4, 2, 6));
        assert_eq!(a.first_errors.len(), 5);
        assert_eq!(a.errors_by_kind["rejected"], 2);
    }
}
