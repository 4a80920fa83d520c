//! prism-lambda's one error: a variable the Lambda cannot start without,
//! or why an invocation failed, as Lambda reports it: an `errorType`
//! operators can filter and alarm on, and an `errorMessage` that names
//! what and where.

use lambda_runtime::Diagnostic;

/// What kind of thing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A required environment variable is unset or empty (the place names
    /// it).
    MissingVariable,
    /// A variable that must be a whole number is not one.
    NotANumber,
    /// The event is neither a stream batch nor a prism event.
    MalformedEvent,
    /// The stream batch (or the tick) could not be handled as a whole; the
    /// cause is the [`prism_core::Error`], whose kind says why.
    Batch,
    /// The tick could not read or write the spool.
    Spool,
    /// The mapper could not handle the batch.
    Mapper,
    /// A backfill segment stopped (its checkpoint resumes it).
    Backfill,
}

impl ErrorKind {
    /// What an error of this kind says first.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::MissingVariable => "environment variable ",
            Self::NotANumber | Self::Batch => "",
            Self::MalformedEvent => "malformed event: ",
            Self::Spool => "spool: ",
            Self::Mapper => "mapper: ",
            Self::Backfill => "backfill: ",
        }
    }
}

prism_types::crate_error!(ErrorKind);

impl Error {
    /// The event is neither a stream batch nor a prism event.
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::MalformedEvent, "", message)
    }

    /// The `errorType` Lambda records.
    pub fn error_type(&self) -> &'static str {
        use prism_core::ErrorKind as Core;
        match self.kind() {
            ErrorKind::MissingVariable | ErrorKind::NotANumber => "prism.Config",
            ErrorKind::MalformedEvent => "prism.MalformedEvent",
            ErrorKind::Spool => "prism.Spool",
            ErrorKind::Mapper => "prism.Mapper",
            ErrorKind::Backfill => "prism.Backfill",
            ErrorKind::Batch => match self.batch_error().map(prism_core::Error::kind) {
                Some(Core::MalformedEvent) => "prism.MalformedStreamEvent",
                Some(Core::NoReceivers) => "prism.NoReceivers",
                Some(Core::SpoolUnreadable) => "prism.SpoolUnreadable",
                Some(Core::OutputsUnreadable) => "prism.OutputsUnreadable",
                Some(Core::LedgerUnreadable) => "prism.LedgerUnreadable",
                Some(Core::OutputsUnwritable) => "prism.OutputsUnwritable",
                _ => "prism.Stream",
            },
        }
    }

    /// Why the batch failed, for [`ErrorKind::Batch`].
    pub fn batch_error(&self) -> Option<&prism_core::Error> {
        std::error::Error::source(self)?.downcast_ref()
    }
}

impl From<prism_core::Error> for Error {
    fn from(e: prism_core::Error) -> Self {
        Self::caused_by(ErrorKind::Batch, "", e)
    }
}

impl From<Error> for Diagnostic {
    fn from(e: Error) -> Self {
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
        let d = Diagnostic::from(Error::malformed("no \"Records\""));
        assert_eq!(d.error_type, "prism.MalformedEvent");
        assert_eq!(d.error_message, "malformed event: no \"Records\"");
        let d = Diagnostic::from(Error::from(prism_core::Error::malformed("x")));
        assert_eq!(d.error_type, "prism.MalformedStreamEvent");
        assert_eq!(d.error_message, "malformed stream event: x");
        let ledger = prism_core::Error::ledger("ledger", "throttled");
        let d = Diagnostic::from(Error::from(
            ledger.because(prism_core::ErrorKind::LedgerUnreadable),
        ));
        assert_eq!(d.error_type, "prism.LedgerUnreadable");
        assert_eq!(
            d.error_message,
            "retry ledger unreadable, nothing delivered: retry ledger ledger: throttled"
        );
    }

    #[test]
    fn a_missing_variable_is_named() {
        let e = Error::new(
            ErrorKind::MissingVariable,
            "PRISM_REGISTRY_TABLE",
            "is not set",
        );
        assert_eq!(
            e.to_string(),
            "environment variable PRISM_REGISTRY_TABLE: is not set"
        );
    }
}
