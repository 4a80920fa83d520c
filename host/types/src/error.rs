//! The shape every prism crate's one error has: a kind to match on, a
//! place (the table, file, lane, queue or receiver), the failure's text,
//! and the error that caused it. Each crate declares its own `ErrorKind`
//! (with a `label`, what its errors say before the place) and gets its
//! `Error` from [`crate_error!`](crate::crate_error), the pattern of the
//! AWS SDK's errors: callers match on `kind()`, never on the text.
//!
//! prism-types' own [`Error`] (manifests and the local registry) is
//! declared here the same way.

/// Declares `Error` in the calling crate over its `ErrorKind`, which must
/// have `fn label(self) -> &'static str`. The error says `label`, then
/// `place: message` (or only the message where the place is empty).
#[macro_export]
macro_rules! crate_error {
    ($kind:ty) => {
        /// A failure in this crate: its [`kind`](Self::kind), where it
        /// happened ([`place`](Self::place)), and what failed
        /// ([`message`](Self::message)).
        #[derive(Debug)]
        pub struct Error {
            kind: $kind,
            place: String,
            message: String,
            source: Option<Box<dyn std::error::Error + Send + Sync>>,
        }

        impl Error {
            /// An error of `kind` at `place` (empty where the kind names none).
            pub fn new(kind: $kind, place: impl Into<String>, message: impl Into<String>) -> Self {
                Self {
                    kind,
                    place: place.into(),
                    message: message.into(),
                    source: None,
                }
            }

            /// An error of `kind` at `place` caused by `source` (its text is
            /// the message).
            pub fn caused_by(
                kind: $kind,
                place: impl Into<String>,
                source: impl std::error::Error + Send + Sync + 'static,
            ) -> Self {
                Self {
                    kind,
                    place: place.into(),
                    message: source.to_string(),
                    source: Some(Box::new(source)),
                }
            }

            /// The same failure, as the cause of a failure of `kind` (a
            /// batch that could not run because a store failed).
            pub fn because(self, kind: $kind) -> Self {
                Self::caused_by(kind, "", self)
            }

            /// What kind of thing failed.
            pub fn kind(&self) -> $kind {
                self.kind
            }

            /// Where (empty where the kind names no place).
            pub fn place(&self) -> &str {
                &self.place
            }

            /// What failed, without the kind and the place.
            pub fn message(&self) -> &str {
                &self.message
            }
        }

        impl std::fmt::Display for Error {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.kind.label())?;
                if self.place.is_empty() {
                    f.write_str(&self.message)
                } else {
                    write!(f, "{}: {}", self.place, self.message)
                }
            }
        }

        impl std::error::Error for Error {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.source
                    .as_deref()
                    .map(|e| e as &(dyn std::error::Error + 'static))
            }
        }
    };
}

/// What kind of thing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A manifest is not valid TOML (or JSON), or has an unknown, missing
    /// or mistyped field; the message names the field and position.
    ManifestParse,
    /// A manifest parsed, but a value is out of range.
    ManifestInvalid,
    /// A mapper manifest cannot be used.
    MapperManifest,
    /// A registry file could not be read.
    Io,
    /// A `.wasm` does not have the digest its manifest promises.
    DigestMismatch,
    /// A local registry's manifest names no `.wasm` file.
    NoFile,
    /// A remote registry entry or its artifact could not be read.
    Unavailable,
    /// An entry names a receiver other than the one its registry key (or
    /// file) belongs to: refused, nothing of it is loaded.
    ForeignIdentity,
    /// Two manifests claim the same receiver id.
    Duplicate,
}

impl ErrorKind {
    /// What an error of this kind says before its place.
    pub fn label(self) -> &'static str {
        match self {
            Self::MapperManifest => "mapper manifest ",
            _ => "",
        }
    }
}

crate::crate_error!(ErrorKind);

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum ErrorKind {
        Table,
        Batch,
    }

    impl ErrorKind {
        pub fn label(self) -> &'static str {
            match self {
                Self::Table => "table ",
                Self::Batch => "batch failed: ",
            }
        }
    }

    crate::crate_error!(ErrorKind);

    #[test]
    fn the_text_is_the_label_the_place_and_the_message() {
        let e = Error::new(ErrorKind::Table, "t", "throttled");
        assert_eq!(e.to_string(), "table t: throttled");
        assert_eq!(
            (e.kind(), e.place(), e.message()),
            (ErrorKind::Table, "t", "throttled")
        );
    }

    #[test]
    fn a_wrapped_error_keeps_its_cause() {
        let e = Error::new(ErrorKind::Table, "t", "throttled").because(ErrorKind::Batch);
        assert_eq!(e.to_string(), "batch failed: table t: throttled");
        let cause = e.source().unwrap().downcast_ref::<Error>().unwrap();
        assert_eq!(cause.kind(), ErrorKind::Table);
    }

    #[test]
    fn an_error_without_a_place_says_only_its_message() {
        let e = Error::caused_by(ErrorKind::Table, "", std::io::Error::other("gone"));
        assert_eq!(e.to_string(), "table gone");
        assert!(e.source().is_some());
    }
}
