//! How a plugin behaves on a sample, change by change, as the dispatcher
//! runs it: what `prism plugin check` and `register` count and refuse on.
//!
//! [`run`] calls `accepts` and `format` for every change in a fresh sandbox
//! and counts what each gave ([`Seen`]), keeping the first error of each
//! kind. It stops at the first timeout: a plugin that runs out of time on
//! a change is refused anyway, and a plugin that loops on every change must
//! not hold the check for the budget times the sample. [`Tally::problems`]
//! says why a tally fails the check.

use std::collections::BTreeMap;
use std::sync::Arc;

use prism_contract::FormatError;
use prism_types::failure::FailureKind;
use prism_types::limits::Limits;

use crate::{CallError, Plugin, WitChange};

/// What one change (or a batch's window) gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Seen {
    /// `accepts` said no.
    Skipped,
    /// Formatted into messages the host takes.
    Formatted,
    /// The plugin rejected it (`FormatError::Reject`).
    Rejected,
    /// The plugin asked for a retry (`FormatError::Retry`).
    Retried,
    /// The call failed: a trap, a timeout, a limit, output the host
    /// refuses, or no instance.
    Failed(FailureKind),
}

impl Seen {
    /// How a report names it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Skipped => "skipped",
            Self::Formatted => "formatted",
            Self::Rejected => "rejected",
            Self::Retried => "asked to retry",
            Self::Failed(FailureKind::Trap) => "trapped",
            Self::Failed(FailureKind::Timeout) => "timed out",
            Self::Failed(FailureKind::MemoryLimit) => "hit the memory cap",
            Self::Failed(FailureKind::StackOverflow) => "overflowed the stack",
            Self::Failed(FailureKind::Output) => "returned output the host refuses",
            Self::Failed(FailureKind::Instantiate) => "could not be instantiated",
            Self::Failed(_) => "failed",
        }
    }
}

/// What a plugin did over a sample.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Changes in the sample.
    pub sample: usize,
    /// Changes run (fewer than the sample when it stopped early).
    pub run: usize,
    /// Per outcome, how many.
    pub counts: BTreeMap<Seen, usize>,
    /// Messages formatted.
    pub messages: usize,
    /// Per outcome other than skipped and formatted, the first change that
    /// gave it (its key) and what was said.
    pub first: BTreeMap<Seen, (String, String)>,
    /// Why the run stopped before the end of the sample.
    pub stopped: Option<String>,
    /// With `batch`: what `format-batch` gave for a window of every accepted
    /// change, and what it said when it did not format it.
    pub window: Option<(Seen, String)>,
}

impl Tally {
    /// How many changes gave `seen`.
    pub fn count(&self, seen: Seen) -> usize {
        self.counts.get(&seen).copied().unwrap_or(0)
    }

    /// Changes `accepts` took (all that were run, less the skipped).
    pub fn accepted(&self) -> usize {
        self.run - self.count(Seen::Skipped)
    }

    /// Why this tally fails the check (empty: it passes). Any failed call
    /// fails it; rejections and retries fail it when they are more than
    /// `max_rejected_percent` of the changes accepted.
    pub fn problems(&self, max_rejected_percent: u32) -> Vec<String> {
        let mut out = Vec::new();
        for (&seen, &n) in &self.counts {
            let threshold = match seen {
                Seen::Skipped | Seen::Formatted => continue,
                Seen::Failed(_) => None,
                Seen::Rejected | Seen::Retried => Some(max_rejected_percent),
            };
            let accepted = self.accepted().max(1);
            if let Some(pct) = threshold
                && n * 100 <= accepted * pct as usize
            {
                continue;
            }
            let of = match threshold {
                Some(pct) => {
                    format!("{n} of the {accepted} changes it accepted (more than {pct} %)")
                }
                None => format!("{n} of {} changes", self.run),
            };
            let first = self
                .first
                .get(&seen)
                .map(|(key, error)| format!("; first {key}: {error}"))
                .unwrap_or_default();
            out.push(format!("{} on {of}{first}", seen.label()));
        }
        if let Some((seen, error)) = &self.window
            && *seen != Seen::Formatted
        {
            out.push(format!(
                "format-batch {} on a window of the {} accepted changes: {error}",
                seen.label(),
                self.accepted()
            ));
        }
        out
    }

    fn add(&mut self, seen: Seen, key: &str, error: impl FnOnce() -> String) {
        *self.counts.entry(seen).or_default() += 1;
        if !matches!(seen, Seen::Skipped | Seen::Formatted) {
            self.first
                .entry(seen)
                .or_insert_with(|| (key.to_owned(), error()));
        }
    }
}

/// Run `changes` through `plugin` as the dispatcher would (a fresh sandbox
/// for each), then, with `batch`, `format-batch` once over the accepted
/// ones. `progress` is told after every change. Stops at the first timeout.
pub fn run(
    plugin: &Plugin,
    config: Arc<BTreeMap<String, String>>,
    limits: Limits,
    changes: &[WitChange],
    batch: bool,
    progress: &mut dyn FnMut(&Tally),
) -> Tally {
    let mut t = Tally {
        sample: changes.len(),
        ..Tally::default()
    };
    let mut accepted = Vec::new();
    for c in changes {
        t.run += 1;
        let seen = match plugin.session(config.clone(), limits) {
            Err(e) => failed(&mut t, &c.key, &e),
            Ok(mut s) => match s.accepts(c) {
                Ok(false) => {
                    t.add(Seen::Skipped, &c.key, String::new);
                    Seen::Skipped
                }
                Ok(true) => {
                    accepted.push(c.clone());
                    formatted(&mut t, &c.key, s.format(c))
                }
                Err(e) => failed(&mut t, &c.key, &e),
            },
        };
        progress(&t);
        if seen == Seen::Failed(FailureKind::Timeout) {
            t.stopped = Some(format!(
                "stopped at the first timeout ({} of {} changes run)",
                t.run, t.sample
            ));
            return t;
        }
    }
    if batch && !accepted.is_empty() {
        t.window = Some(match plugin.session(config, limits) {
            Ok(mut s) => match s.format_batch(&accepted) {
                Ok(Ok(_)) => (Seen::Formatted, String::new()),
                Ok(Err(FormatError::Reject(why))) => (Seen::Rejected, why),
                Ok(Err(FormatError::Retry(why))) => (Seen::Retried, why),
                Err(e) => (Seen::Failed(e.kind()), e.to_string()),
            },
            Err(e) => (Seen::Failed(e.kind()), e.to_string()),
        });
    }
    t
}

fn formatted(
    t: &mut Tally,
    key: &str,
    r: Result<Result<Vec<prism_contract::Message>, FormatError>, CallError>,
) -> Seen {
    let seen = match r {
        Ok(Ok(m)) => {
            t.messages += m.len();
            t.add(Seen::Formatted, key, String::new);
            return Seen::Formatted;
        }
        Ok(Err(FormatError::Reject(why))) => (Seen::Rejected, why),
        Ok(Err(FormatError::Retry(why))) => (Seen::Retried, why),
        Err(e) => return failed(t, key, &e),
    };
    t.add(seen.0, key, || seen.1);
    seen.0
}

fn failed(t: &mut Tally, key: &str, e: &CallError) -> Seen {
    let seen = Seen::Failed(e.kind());
    t.add(seen, key, || e.to_string());
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(counts: &[(Seen, usize)]) -> Tally {
        let run = counts.iter().map(|(_, n)| n).sum();
        Tally {
            sample: run,
            run,
            counts: counts.iter().copied().collect(),
            ..Tally::default()
        }
    }

    #[test]
    fn any_failed_call_fails_the_check() {
        let t = tally(&[(Seen::Formatted, 99), (Seen::Failed(FailureKind::Trap), 1)]);
        let p = t.problems(100);
        assert_eq!(p, ["trapped on 1 of 100 changes"]);
    }

    #[test]
    fn rejections_fail_only_past_the_threshold() {
        let t = tally(&[
            (Seen::Skipped, 59),
            (Seen::Formatted, 21),
            (Seen::Rejected, 20),
        ]);
        assert_eq!(t.accepted(), 41);
        assert!(t.problems(50).is_empty());
        assert_eq!(
            t.problems(25),
            ["rejected on 20 of the 41 changes it accepted (more than 25 %)"]
        );
        let all = tally(&[(Seen::Skipped, 59), (Seen::Rejected, 41)]);
        assert_eq!(all.problems(50).len(), 1);
    }

    #[test]
    fn a_clean_sample_passes() {
        assert!(
            tally(&[(Seen::Skipped, 10), (Seen::Formatted, 5)])
                .problems(0)
                .is_empty()
        );
    }
}
