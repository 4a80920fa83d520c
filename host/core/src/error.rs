//! prism-core's one error: what kind of thing failed ([`ErrorKind`]), where
//! (a table, a file, a lane, a segment), and what the store or the run
//! said. A failure of a whole stream batch wraps the store's error that
//! caused it ([`Error::because`]), so both the batch-level kind (what
//! Lambda's `errorType` reports) and the store's own text survive.
//!
//! The one exception is [`crate::sink::SinkError`]: it is a delivery's
//! outcome more than an error (which messages got out before the failure,
//! and whether trying again can help), and the dispatch code acts on it.

use std::fmt;

/// What kind of thing failed. Match on it; never on the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A spool store (batch buffers, retry lanes); the place names the
    /// store and the lane.
    Spool,
    /// The retry ledger; the place names its table (or `memory`).
    Ledger,
    /// A table of output dedup state.
    OutputsTable,
    /// A file of output dedup state (`prism run --state`).
    OutputsFile,
    /// The model table.
    ModelTable,
    /// A receiver source (the registry) could not be read.
    Source,
    /// A redrive: the place is the queue, the model, or the dispatch.
    Redrive,
    /// A backfill's checkpoints could not be read or written.
    Checkpoint,
    /// The receiver cannot take a backfill.
    BackfillReceiver,
    /// A backfill's page kept failing in its segment.
    Segment,
    /// Products kept changing through every correction of a backfill page:
    /// the receiver may hold an older version than the model table's.
    Contended,
    /// A request that is wrong in itself (a backfill's numbers).
    Invalid,
    /// A stream batch: the event is not a DynamoDB stream event.
    MalformedEvent,
    /// A stream batch: the registry has never been read, so no receiver is
    /// known.
    NoReceivers,
    /// A stream batch: the spool could not be read, so which products have
    /// changes waiting is unknown. Nothing was run.
    SpoolUnreadable,
    /// A stream batch: the output dedup state could not be read. Nothing
    /// was run.
    OutputsUnreadable,
    /// A stream batch: the retry ledger could not be read. Nothing was run.
    LedgerUnreadable,
    /// A stream batch: the output dedup state of what it delivered could
    /// not be written; the batch fails whole, so Lambda sends it again.
    OutputsUnwritable,
}

impl ErrorKind {
    /// What an error of this kind says before its place (and, for a batch
    /// that failed, before the error that caused it).
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Spool => "spool ",
            Self::Ledger => "retry ledger ",
            Self::OutputsTable => "output state table ",
            Self::OutputsFile => "output state ",
            Self::ModelTable => "model table ",
            Self::Checkpoint => "backfill checkpoints in ",
            Self::BackfillReceiver => "receiver ",
            Self::Segment => "segment ",
            Self::Source | Self::Redrive | Self::Contended | Self::Invalid => "",
            Self::MalformedEvent => "malformed stream event: ",
            Self::NoReceivers => "no receivers loaded: ",
            Self::SpoolUnreadable => "spool unreadable, nothing delivered: ",
            Self::OutputsUnreadable => "output dedup state unreadable, nothing delivered: ",
            Self::LedgerUnreadable => "retry ledger unreadable, nothing delivered: ",
            Self::OutputsUnwritable => "output dedup state not written, the batch is tried again: ",
        }
    }
}

prism_types::crate_error!(ErrorKind);

impl Error {
    /// A spool store's operation on `lane` failed.
    pub fn spool(
        store: impl fmt::Display,
        lane: impl fmt::Display,
        message: impl Into<String>,
    ) -> Self {
        Self::new(ErrorKind::Spool, format!("{store}, lane {lane}"), message)
    }

    /// A read or write of the retry ledger `table` failed.
    pub fn ledger(table: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Ledger, table, message)
    }

    /// A read or write of the output dedup state `table` failed.
    pub fn outputs_table(table: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::OutputsTable, table, message)
    }

    /// The model `table` could not be read.
    pub fn model(table: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ModelTable, table, message)
    }

    /// A redrive failed at `place` (the queue, the model, or the dispatch).
    pub fn redrive(place: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Redrive, place, message)
    }

    /// A request that is wrong in itself.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, "", message)
    }

    /// A stream event that is not a DynamoDB stream event.
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::MalformedEvent, "", message)
    }

    /// A receiver source failed with `error`.
    pub fn source_failed(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::caused_by(ErrorKind::Source, "", error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn the_text_names_the_kind_the_place_and_the_failure() {
        let e = Error::spool("spool-table", "retry/website/P-1", "throttled");
        assert_eq!(e.kind(), ErrorKind::Spool);
        assert_eq!(e.place(), "spool-table, lane retry/website/P-1");
        assert_eq!(
            e.to_string(),
            "spool spool-table, lane retry/website/P-1: throttled"
        );
        assert_eq!(
            Error::ledger("ledger", "timeout").to_string(),
            "retry ledger ledger: timeout"
        );
        assert_eq!(
            Error::redrive("queue q", "gone").to_string(),
            "queue q: gone"
        );
    }

    #[test]
    fn a_batch_failure_keeps_its_cause() {
        let cause = Error::outputs_table("outputs", "throttled");
        let e = cause.because(ErrorKind::OutputsUnreadable);
        assert_eq!(e.kind(), ErrorKind::OutputsUnreadable);
        assert_eq!(
            e.to_string(),
            "output dedup state unreadable, nothing delivered: output state table outputs: throttled"
        );
        let inner = e.source().unwrap().downcast_ref::<Error>().unwrap();
        assert_eq!(inner.kind(), ErrorKind::OutputsTable);
    }

    #[test]
    fn a_source_error_says_what_the_source_said() {
        let io = std::io::Error::other("registry table gone");
        let e = Error::source_failed(io);
        assert_eq!(
            (e.kind(), e.to_string().as_str()),
            (ErrorKind::Source, "registry table gone")
        );
        assert!(e.source().is_some());
    }
}
