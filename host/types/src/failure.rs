//! Why a change was not delivered: the one vocabulary the dispatcher parks
//! with, the breaker counts, the reports tally, dead letters carry (as
//! [`FailureKind::as_str`]) and the simulation checks against.

use std::fmt;

/// Why a receiver's change was parked (or, for [`Self::Unavailable`] and
/// [`Self::Delivery`], held or parked for want of its destination).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureKind {
    /// The plugin rejected the change (`FormatError::reject`).
    Rejected,
    /// The plugin used up its time budget.
    Timeout,
    /// The plugin trapped: a panic, `unreachable`, an out-of-bounds access.
    Trap,
    /// The plugin hit its memory cap.
    MemoryLimit,
    /// The plugin overflowed its stack.
    StackOverflow,
    /// The plugin's output was over a limit or not well-formed.
    Output,
    /// The plugin could not be instantiated.
    Instantiate,
    /// The plugin kept asking for a retry until the retries ran out.
    RetryExhausted,
    /// The plugin was not run: its breaker is open.
    Quarantined,
    /// The destination could not be reached.
    Delivery,
    /// The message is over the destination's size limit.
    TooLarge,
    /// The destination refused the message as the sender's fault.
    Refused,
    /// The receiver cannot run (its plugin or manifest is unusable).
    Unavailable,
    /// The record, or a lane entry, could not be read.
    Unreadable,
}

impl FailureKind {
    /// Every kind, in order.
    pub const ALL: [Self; 14] = [
        Self::Rejected,
        Self::Timeout,
        Self::Trap,
        Self::MemoryLimit,
        Self::StackOverflow,
        Self::Output,
        Self::Instantiate,
        Self::RetryExhausted,
        Self::Quarantined,
        Self::Delivery,
        Self::TooLarge,
        Self::Refused,
        Self::Unavailable,
        Self::Unreadable,
    ];

    /// The kind as dead letters, metrics and reports spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rejected => "rejected",
            Self::Timeout => "timeout",
            Self::Trap => "trap",
            Self::MemoryLimit => "memory-limit",
            Self::StackOverflow => "stack-overflow",
            Self::Output => "output",
            Self::Instantiate => "instantiate",
            Self::RetryExhausted => "retry-exhausted",
            Self::Quarantined => "quarantined",
            Self::Delivery => "delivery",
            Self::TooLarge => "too-large",
            Self::Refused => "refused",
            Self::Unavailable => "unavailable",
            Self::Unreadable => "unreadable",
        }
    }

    /// The kind a dead letter names (`None`: not one of these, e.g. a
    /// letter written by a newer version).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the plugin failed (rather than chose not to deliver, or its
    /// destination failed): what the breaker counts against it.
    pub fn is_plugin_failure(self) -> bool {
        match self {
            Self::Timeout
            | Self::Trap
            | Self::MemoryLimit
            | Self::StackOverflow
            | Self::Output
            | Self::RetryExhausted => true,
            Self::Rejected
            | Self::Instantiate
            | Self::Quarantined
            | Self::Delivery
            | Self::TooLarge
            | Self::Refused
            | Self::Unavailable
            | Self::Unreadable => false,
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back_from_its_name() {
        for k in FailureKind::ALL {
            assert_eq!(FailureKind::parse(k.as_str()), Some(k));
        }
        let names: std::collections::BTreeSet<_> =
            FailureKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), FailureKind::ALL.len(), "names are distinct");
        assert_eq!(FailureKind::parse("from-the-future"), None);
    }
}
