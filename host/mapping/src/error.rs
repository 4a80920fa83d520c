//! prism-mapping's one error: why a shadow change could not be mapped
//! ([`ErrorKind`]), and the model store's failures. Match on
//! [`Error::kind`]; [`Error::reason`] is the short text dead letters and
//! metrics carry.

use prism_engine::CallError;

/// Why a change could not be mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The plugin rejected it (bad master data): parked, not retried.
    Rejected,
    /// The plugin asked for a retry (e.g. a read failed).
    Retry,
    /// The plugin failed: trapped, ran out of time or memory, or returned
    /// more than its limits or malformed writes. The cause is the
    /// [`CallError`].
    Plugin,
    /// A model or shadow store failed (the message names the table or
    /// file and the call).
    Store,
}

impl ErrorKind {
    /// What an error of this kind says first.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Rejected => "mapper rejected the change: ",
            Self::Retry => "mapper asked to retry: ",
            Self::Plugin => "mapper ",
            Self::Store => "model store: ",
        }
    }
}

prism_types::crate_error!(ErrorKind);

impl Error {
    /// A store failed; `message` names the table or file and the call.
    pub fn store(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Store, "", message)
    }

    /// The plugin's call failed.
    pub fn plugin(e: CallError) -> Self {
        Self::caused_by(ErrorKind::Plugin, "", e)
    }

    /// The plugin call's failure, for [`ErrorKind::Plugin`].
    pub fn call_error(&self) -> Option<&CallError> {
        std::error::Error::source(self)?.downcast_ref()
    }

    /// A short machine-readable reason, for dead letters and metrics:
    /// `rejected`, `retry`, `model-store`, or the plugin call's failure
    /// kind (`trap`, `timeout`, …).
    pub fn reason(&self) -> &'static str {
        match (self.kind(), self.call_error()) {
            (ErrorKind::Rejected, _) => "rejected",
            (ErrorKind::Retry, _) => "retry",
            (ErrorKind::Plugin, Some(e)) => e.kind().as_str(),
            (ErrorKind::Plugin, None) => "plugin",
            (ErrorKind::Store, _) => "model-store",
        }
    }

    /// Worth retrying later (the stream retries the record)? Otherwise the
    /// change is parked with the reason.
    pub fn is_transient(&self) -> bool {
        match self.kind() {
            ErrorKind::Retry | ErrorKind::Store => true,
            ErrorKind::Rejected => false,
            ErrorKind::Plugin => matches!(
                self.call_error(),
                Some(CallError::Timeout { .. } | CallError::Instantiate(_))
            ),
        }
    }
}

impl From<CallError> for Error {
    fn from(e: CallError) -> Self {
        Self::plugin(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_and_retries_follow_the_kind() {
        let rejected = Error::new(ErrorKind::Rejected, "", "no price");
        assert_eq!(rejected.to_string(), "mapper rejected the change: no price");
        assert_eq!(
            (rejected.reason(), rejected.is_transient()),
            ("rejected", false)
        );
        let store = Error::store("model table m: PutItem P-1: throttled");
        assert_eq!(
            (store.reason(), store.is_transient()),
            ("model-store", true)
        );
        let timeout = Error::plugin(CallError::Timeout { budget_ms: 300 });
        assert!(timeout.is_transient());
        assert_eq!(timeout.reason(), "timeout");
        assert!(matches!(
            timeout.call_error(),
            Some(CallError::Timeout { budget_ms: 300 })
        ));
    }
}
