//! prism-aws's one error: what kind of AWS-backed thing failed
//! ([`ErrorKind`]), where (an S3 object, a table, a stream), and what AWS
//! or the check said. Match on [`Error::kind`], never on the text.
//!
//! The adapters that implement prism-core's store traits (spool, ledger,
//! dedup state, model) answer with [`prism_core::Error`], as the traits
//! ask; this error is for what prism-aws offers on its own: artifacts,
//! claims, the registry table and the stream reader.

/// What kind of thing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// S3 said no; the place is `s3://bucket/key`.
    S3,
    /// An artifact's bytes do not hash to the digest it is stored under.
    Corrupt,
    /// An artifact is larger than prism ever fetches; not downloaded.
    TooLarge,
    /// The artifact failed recently: not fetched again until its backoff
    /// ends.
    BackingOff,
    /// The local artifact cache could not be written.
    CacheIo,
    /// A claim check (a change or letter too large for DynamoDB or SQS,
    /// kept in the plugin bucket) could not be stored or read.
    Claim,
    /// A claim is gone or not what was stored (expired by the bucket's
    /// lifecycle, deleted, overwritten): asking again will not help.
    ClaimGone,
    /// The registry table said no.
    RegistryTable,
    /// Someone else changed the receiver since it was read: read it again
    /// and retry.
    Conflict,
    /// A registry item that does not hold a valid entry (its cause is the
    /// [`prism_types::Error`]).
    InvalidEntry,
    /// A DynamoDB Streams call failed; the place is the stream ARN.
    StreamRead,
}

impl ErrorKind {
    /// What an error of this kind says before its place.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Claim | Self::ClaimGone => "claim ",
            Self::RegistryTable => "registry table ",
            Self::Conflict => "receiver ",
            Self::StreamRead => "stream ",
            Self::S3
            | Self::Corrupt
            | Self::TooLarge
            | Self::BackingOff
            | Self::CacheIo
            | Self::InvalidEntry => "",
        }
    }
}

prism_types::crate_error!(ErrorKind);

impl Error {
    /// A registry item that does not hold a valid entry.
    pub fn invalid_entry(e: prism_types::Error) -> Self {
        Self::caused_by(ErrorKind::InvalidEntry, "", e)
    }

    /// Whether the thing is gone for good (a claim): asking again will not
    /// help.
    pub fn is_gone(&self) -> bool {
        self.kind() == ErrorKind::ClaimGone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_reads_as_before() {
        let s3 = Error::new(ErrorKind::S3, "s3://b/k", "AccessDenied");
        assert_eq!(s3.to_string(), "s3://b/k: AccessDenied");
        let claim = Error::new(
            ErrorKind::ClaimGone,
            "k in bucket b",
            "GetObject: NoSuchKey",
        );
        assert_eq!(
            claim.to_string(),
            "claim k in bucket b: GetObject: NoSuchKey"
        );
        assert!(claim.is_gone());
        let conflict = Error::new(ErrorKind::Conflict, "website", "changed by someone else");
        assert_eq!(
            conflict.to_string(),
            "receiver website: changed by someone else"
        );
    }
}
