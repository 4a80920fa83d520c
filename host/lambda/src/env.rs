//! One typed reader for the three Lambdas' environment variables, so each
//! one reports a missing or malformed variable the same way, by name.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, ErrorKind};

/// Reads variables through a lookup (the process environment, or a map in
/// tests). Empty values count as unset.
pub struct Env<F>(F);

impl Env<fn(&str) -> Option<String>> {
    /// The process environment.
    pub fn process() -> Self {
        Env(|k| std::env::var(k).ok())
    }
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    /// Variables from `lookup`.
    pub fn from(lookup: F) -> Self {
        Env(lookup)
    }

    /// The variable's value, if set and not empty.
    pub fn optional(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.is_empty())
    }

    /// The variable's value; an error naming it when unset.
    pub fn required(&self, name: &str) -> Result<String, Error> {
        self.optional(name)
            .ok_or_else(|| Error::new(ErrorKind::MissingVariable, name, "is not set"))
    }

    /// A whole number, if set.
    pub fn number(&self, name: &str) -> Result<Option<u64>, Error> {
        self.optional(name)
            .map(|v| {
                v.trim().parse::<u64>().map_err(|_| {
                    Error::new(
                        ErrorKind::NotANumber,
                        format!("{name}={v:?}"),
                        "is not a whole number",
                    )
                })
            })
            .transpose()
    }

    /// A number of seconds, `default` when unset.
    pub fn seconds(&self, name: &str, default: u64) -> Result<Duration, Error> {
        Ok(Duration::from_secs(self.number(name)?.unwrap_or(default)))
    }

    /// A path, `default` when unset.
    pub fn path(&self, name: &str, default: &str) -> PathBuf {
        PathBuf::from(self.optional(name).unwrap_or_else(|| default.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> Env<impl Fn(&str) -> Option<String>> {
        Env::from(move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn errors_name_the_variable() {
        let e = env(&[("A", ""), ("N", "ten")]);
        assert_eq!(
            e.required("A").unwrap_err().to_string(),
            "environment variable A: is not set"
        );
        assert_eq!(
            e.number("N").unwrap_err().to_string(),
            r#"N="ten": is not a whole number"#
        );
        assert_eq!(e.number("unset").unwrap(), None);
    }

    #[test]
    fn defaults_apply_when_unset_or_empty() {
        let e = env(&[("S", "7"), ("P", "")]);
        assert_eq!(e.seconds("S", 30).unwrap(), Duration::from_secs(7));
        assert_eq!(e.seconds("T", 30).unwrap(), Duration::from_secs(30));
        assert_eq!(e.path("P", "/tmp/prism"), PathBuf::from("/tmp/prism"));
    }
}
