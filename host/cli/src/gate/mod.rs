//! `prism plugin diff`, the release gate: the same recorded changes through
//! the live plugin and a candidate, and what differs between their outputs.
//!
//! Both run through the real dispatcher (same sandbox, limits, config and
//! mode) into a [`Recording`]; [`compare`] pairs the results change by
//! change. A change's outcome is its messages, or the error it was parked
//! with, so a candidate that starts rejecting or trapping is a difference
//! too.

pub mod text;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use prism_core::sink::{DeadLetter, Envelope, Sink, SinkError};

/// One message as delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Media type.
    pub content_type: String,
    /// Ordering group.
    pub group: Option<String>,
    /// Attributes.
    pub attributes: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

/// What one change (or batch window, by its first change) came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Its messages.
    Messages(Vec<Output>),
    /// Parked, with the error kind.
    Failed {
        /// `rejected`, `trap`, `timeout`, …
        kind: String,
        /// The message.
        error: String,
    },
}

/// Outcomes by (position in the input, key, sequence).
pub type Outcomes = BTreeMap<(u64, String, String), Outcome>;

/// A sink that remembers everything instead of sending it.
#[derive(Debug, Default)]
pub struct Recording(Mutex<Outcomes>);

impl Recording {
    /// What was recorded.
    pub fn into_outcomes(self) -> Outcomes {
        self.0.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

impl Sink for Recording {
    fn deliver(&self, envelopes: &[Envelope<'_>]) -> Result<(), SinkError> {
        let Some(first) = envelopes.first() else {
            return Ok(());
        };
        let outputs = envelopes
            .iter()
            .map(|e| Output {
                content_type: e.message.content_type.clone(),
                group: e.message.group.clone(),
                attributes: e.message.attributes.clone(),
                body: e.message.body.clone(),
            })
            .collect();
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(
            (
                first.ordinal,
                first.key.to_owned(),
                first.sequence.to_owned(),
            ),
            Outcome::Messages(outputs),
        );
        Ok(())
    }

    fn park(&self, d: &DeadLetter) -> Result<(), SinkError> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(
            (d.ordinal, d.key.clone(), d.sequence.clone()),
            Outcome::Failed {
                kind: d.error_kind.clone(),
                error: d.error.clone(),
            },
        );
        Ok(())
    }
}

/// How the candidate's outcome for one change differs from the live one's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// Only the candidate produced something.
    Added(Outcome),
    /// Only the live plugin produced something.
    Removed(Outcome),
    /// Both did, differently.
    Changed {
        /// Live.
        live: Outcome,
        /// Candidate.
        candidate: Outcome,
    },
}

/// The comparison of two runs.
#[derive(Debug, Default)]
pub struct Report {
    /// Changes (or windows) where either produced something.
    pub compared: usize,
    /// Those with identical outcomes.
    pub same: usize,
    /// The differences, in input order: ((position, key, sequence), what).
    pub differences: Vec<((u64, String, String), Difference)>,
}

/// Pair the two runs' outcomes change by change.
pub fn compare(live: Outcomes, mut candidate: Outcomes) -> Report {
    let mut r = Report::default();
    for (k, l) in live {
        r.compared += 1;
        match candidate.remove(&k) {
            Some(c) if c == l => r.same += 1,
            Some(c) => r.differences.push((
                k,
                Difference::Changed {
                    live: l,
                    candidate: c,
                },
            )),
            None => r.differences.push((k, Difference::Removed(l))),
        }
    }
    for (k, c) in candidate {
        r.compared += 1;
        r.differences.push((k, Difference::Added(c)));
    }
    r.differences.sort_by(|a, b| a.0.cmp(&b.0));
    r
}

/// A body as diffable text: JSON pretty-printed (so a diff shows fields,
/// not one long line), other UTF-8 as is, anything else summarized.
fn body_text(o: &Output) -> String {
    match std::str::from_utf8(&o.body) {
        Ok(s) => match serde_json::from_str::<serde_json::Value>(s) {
            Ok(v) if o.content_type.contains("json") => {
                serde_json::to_string_pretty(&v).unwrap_or_else(|_| s.to_owned()) + "\n"
            }
            _ if s.ends_with('\n') => s.to_owned(),
            _ => format!("{s}\n"),
        },
        Err(_) => format!("<{} bytes of binary>\n", o.body.len()),
    }
}

fn describe(o: &Outcome) -> String {
    match o {
        Outcome::Messages(m) => format!("{} message(s)", m.len()),
        Outcome::Failed { kind, error } => format!("parked as {kind}: {error}"),
    }
}

/// The unified-diff lines between two outcomes.
fn outcome_diff(live: &Outcome, candidate: &Outcome, context: usize) -> String {
    let (Outcome::Messages(l), Outcome::Messages(c)) = (live, candidate) else {
        return format!(
            "- live:      {}\n+ candidate: {}\n",
            describe(live),
            describe(candidate)
        );
    };
    let mut out = String::new();
    for i in 0..l.len().max(c.len()) {
        match (l.get(i), c.get(i)) {
            (Some(a), Some(b)) if a == b => {}
            (Some(a), Some(b)) => {
                let _ = writeln!(out, "--- live      message {i} ({})", a.content_type);
                let _ = writeln!(out, "+++ candidate message {i} ({})", b.content_type);
                if a.content_type != b.content_type
                    || a.group != b.group
                    || a.attributes != b.attributes
                {
                    let _ = writeln!(
                        out,
                        "  headers: content type {:?} -> {:?}, group {:?} -> {:?}, attributes {:?} -> {:?}",
                        a.content_type,
                        b.content_type,
                        a.group,
                        b.group,
                        a.attributes,
                        b.attributes
                    );
                }
                out.push_str(&text::unified(&body_text(a), &body_text(b), context));
            }
            (Some(a), None) => {
                let _ = writeln!(
                    out,
                    "--- live      message {i} ({}), not made by the candidate",
                    a.content_type
                );
                out.push_str(&text::unified(&body_text(a), "", context));
            }
            (None, Some(b)) => {
                let _ = writeln!(out, "+++ candidate message {i} ({}), new", b.content_type);
                out.push_str(&text::unified("", &body_text(b), context));
            }
            (None, None) => {}
        }
    }
    out
}

/// The report as text: one section per differing change, then a summary.
pub fn render(r: &Report, context: usize) -> String {
    let mut out = String::new();
    for ((_, key, sequence), d) in &r.differences {
        let (what, body) = match d {
            Difference::Added(c) => (
                "added",
                outcome_diff(&Outcome::Messages(Vec::new()), c, context),
            ),
            Difference::Removed(l) => (
                "removed",
                outcome_diff(l, &Outcome::Messages(Vec::new()), context),
            ),
            Difference::Changed { live, candidate } => {
                ("changed", outcome_diff(live, candidate, context))
            }
        };
        let _ = writeln!(out, "== {key} (sequence {sequence}): {what}");
        out.push_str(&body);
    }
    let count = |f: fn(&Difference) -> bool| r.differences.iter().filter(|(_, d)| f(d)).count();
    let _ = writeln!(
        out,
        "{} outputs compared: {} identical, {} changed, {} added, {} removed",
        r.compared,
        r.same,
        count(|d| matches!(d, Difference::Changed { .. })),
        count(|d| matches!(d, Difference::Added(_))),
        count(|d| matches!(d, Difference::Removed(_)))
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(bodies: &[&str]) -> Outcome {
        Outcome::Messages(
            bodies
                .iter()
                .map(|b| Output {
                    content_type: "application/json".into(),
                    group: None,
                    attributes: vec![],
                    body: b.as_bytes().to_vec(),
                })
                .collect(),
        )
    }

    fn key(n: u64) -> (u64, String, String) {
        (n, format!("P-{n}"), n.to_string())
    }

    #[test]
    fn runs_are_paired_change_by_change() {
        let live: Outcomes = [
            (key(1), msgs(&["{\"a\":1}"])),
            (key(2), msgs(&["{\"b\":1}"])),
            (key(3), msgs(&["x"])),
        ]
        .into();
        let cand: Outcomes = [
            (key(1), msgs(&["{\"a\":1}"])),
            (key(2), msgs(&["{\"b\":2}"])),
            (
                key(4),
                Outcome::Failed {
                    kind: "rejected".into(),
                    error: "no".into(),
                },
            ),
        ]
        .into();
        let r = compare(live, cand);
        assert_eq!((r.compared, r.same, r.differences.len()), (4, 1, 3));
        let text = render(&r, 3);
        assert!(text.contains("== P-2 (sequence 2): changed"), "{text}");
        assert!(
            text.contains("-  \"b\": 1\n+  \"b\": 2\n"),
            "JSON is diffed field by field: {text}"
        );
        assert!(text.contains("== P-3 (sequence 3): removed"), "{text}");
        assert!(text.contains("== P-4 (sequence 4): added\n- live:      0 message(s)\n+ candidate: parked as rejected: no"), "{text}");
        assert!(
            text.ends_with("4 outputs compared: 1 identical, 1 changed, 1 added, 1 removed\n"),
            "{text}"
        );
    }
}
