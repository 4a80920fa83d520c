//! Why an invocation failed, as Lambda reports it: an `errorType` operators
//! can filter and alarm on, and an `errorMessage` that names what and where.

use lambda_runtime::Diagnostic;
use prism_core::stream::StreamError;

/// A failed invocation. Lambda retries the event (a stream batch from its
/// first record; the tick on its next schedule).
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The event is neither a stream batch nor a prism event.
    #[error("malformed event: {0}")]
    Malformed(String),
    /// The stream batch could not be handled as a whole.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// The tick could not read or write the spool.
    #[error("spool: {0}")]
    Spool(String),
    /// The mapper could not handle the batch.
    #[error("mapper: {0}")]
    Mapper(String),
    /// A backfill segment stopped (its checkpoint resumes it).
    #[error("backfill: {0}")]
    Backfill(String),
}

impl InvokeError {
    /// The `errorType` Lambda records.
    pub fn error_type(&self) -> &'static str {
        match self {
            InvokeError::Malformed(_) => "prism.MalformedEvent",
            InvokeError::Stream(StreamError::Malformed(_)) => "prism.MalformedStreamEvent",
            InvokeError::Stream(StreamError::Registry(_)) => "prism.NoReceivers",
            InvokeError::Stream(StreamError::SpoolUnreadable(_)) => "prism.SpoolUnreadable",
            InvokeError::Stream(StreamError::OutputsUnreadable(_)) => "prism.OutputsUnreadable",
            InvokeError::Stream(StreamError::LedgerUnreadable(_)) => "prism.LedgerUnreadable",
            InvokeError::Stream(StreamError::OutputsUnwritable(_)) => "prism.OutputsUnwritable",
            InvokeError::Spool(_) => "prism.Spool",
            InvokeError::Mapper(_) => "prism.Mapper",
            InvokeError::Backfill(_) => "prism.Backfill",
        }
    }
}

impl From<InvokeError> for Diagnostic {
    fn from(e: InvokeError) -> Self {
        Diagnostic {
            error_type: e.error_type().to_owned(),
            error_message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostics_carry_a_type_and_the_message() {
        let d = Diagnostic::from(InvokeError::Malformed("no \"Records\"".into()));
        assert_eq!(d.error_type, "prism.MalformedEvent");
        assert_eq!(d.error_message, "malformed event: no \"Records\"");
        let d = Diagnostic::from(InvokeError::Stream(StreamError::Malformed("x".into())));
        assert_eq!(d.error_type, "prism.MalformedStreamEvent");
        assert_eq!(d.error_message, "malformed stream event: x");
    }
}
