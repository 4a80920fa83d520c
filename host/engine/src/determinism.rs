//! Does a plugin's output for a change depend on what it saw before?
//!
//! The dispatcher reuses a sandbox for up to `limits.reuse` changes, and a
//! batch's sandbox serves one window after another in `prism plugin run`.
//! A plugin that keeps state between calls (a counter, a cache keyed on the
//! wrong thing, "the previous product") then gives output that depends on
//! which changes happened to share its instance: the release gate compares
//! noise, and a replay does not give what the first run gave.
//!
//! [`check`] runs the plugin over a sample three ways and compares, change
//! by change: every change in a fresh sandbox; all changes in one reused
//! sandbox in stream order; and all in one reused sandbox in reverse order.
//! A batched receiver's `format-batch` is also called twice in one sandbox.

use std::collections::BTreeMap;
use std::sync::Arc;

use prism_contract::{FormatError, Message};
use prism_types::limits::Limits;

use crate::{CallError, Plugin, Session, WitChange};
use prism_types::failure::FailureKind;

/// What one change gave.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Skipped,
    Messages(Vec<Message>),
    Failed(FormatError),
    Trapped(FailureKind),
}

impl Outcome {
    fn of(s: &mut Session, c: &WitChange) -> Self {
        match s.accepts(c) {
            Ok(false) => Self::Skipped,
            Ok(true) => Self::formatted(s.format(c)),
            Err(e) => Self::Trapped(e.kind()),
        }
    }

    fn formatted(r: Result<Result<Vec<Message>, FormatError>, CallError>) -> Self {
        match r {
            Ok(Ok(m)) => Self::Messages(m),
            Ok(Err(e)) => Self::Failed(e),
            Err(e) => Self::Trapped(e.kind()),
        }
    }

    /// A short description for a report.
    fn describe(&self) -> String {
        match self {
            Self::Skipped => "skipped (accepts = false)".into(),
            Self::Failed(e) => format!("{e:?}"),
            Self::Trapped(kind) => format!("failed: {kind}"),
            Self::Messages(m) => {
                let first = m.first().map_or(String::new(), |m| {
                    let body = String::from_utf8_lossy(&m.body);
                    let cut = body.floor_char_boundary(160.min(body.len()));
                    format!(", first: {}", &body[..cut])
                });
                format!("{} message(s){first}", m.len())
            }
        }
    }
}

/// The plugin passed: what was compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Passed {
    /// Changes in the sample.
    pub changes: usize,
    /// How many of them the plugin accepted.
    pub accepted: usize,
}

/// The plugin's output for a change depended on earlier calls.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "output depends on earlier calls: change {key} (sequence {sequence}) gave, in a fresh sandbox, {fresh}; {run}, {other}.\n\
     A plugin must not keep state between calls: the dispatcher reuses sandboxes (limits.reuse), \
     so such output changes with whatever happened to run before it, and the release gate and replays stop meaning anything."
)]
pub struct Nondeterministic {
    /// The change's product key.
    pub key: String,
    /// Its sequence number.
    pub sequence: String,
    /// Which run differed, in words.
    pub run: String,
    /// What it gave fresh.
    pub fresh: String,
    /// What it gave in the other run.
    pub other: String,
}

/// Run `plugin` over `changes` fresh, reused in order, and reused in
/// reverse, and compare every change's outcome. `batch`: also compare two
/// `format-batch` calls over the accepted changes in one sandbox.
pub fn check(
    plugin: &Plugin,
    config: Arc<BTreeMap<String, String>>,
    limits: Limits,
    changes: &[WitChange],
    batch: bool,
) -> Result<Passed, Nondeterministic> {
    let open = || plugin.session(config.clone(), limits);
    let fresh: Vec<Outcome> = changes
        .iter()
        .map(|c| match open() {
            Ok(mut s) => Outcome::of(&mut s, c),
            Err(e) => Outcome::Trapped(e.kind()),
        })
        .collect();
    let order: Vec<usize> = (0..changes.len()).collect();
    let reversed: Vec<usize> = order.iter().rev().copied().collect();
    for (run, order) in [
        ("in one reused sandbox, in stream order", &order),
        ("in one reused sandbox, in reverse order", &reversed),
    ] {
        let mut session = open().ok();
        for (n, &i) in order.iter().enumerate() {
            let got = match session.as_mut() {
                Some(s) => {
                    s.renew();
                    Outcome::of(s, &changes[i])
                }
                None => Outcome::Trapped(FailureKind::Instantiate),
            };
            if matches!(got, Outcome::Trapped(_)) {
                // A sandbox that failed is not reused (as in the dispatcher).
                session = open().ok();
            }
            if got != fresh[i] {
                return Err(differs(&changes[i], &fresh[i], &got, run, n));
            }
        }
    }
    let accepted: Vec<WitChange> = changes
        .iter()
        .zip(&fresh)
        .filter(|(_, o)| !matches!(o, Outcome::Skipped | Outcome::Trapped(_)))
        .map(|(c, _)| c.clone())
        .collect();
    if batch && !accepted.is_empty() {
        let once = open().map(|mut s| Outcome::formatted(s.format_batch(&accepted)));
        let twice = open().map(|mut s| {
            let _ = s.format_batch(&accepted);
            s.renew();
            Outcome::formatted(s.format_batch(&accepted))
        });
        if let (Ok(a), Ok(b)) = (once, twice)
            && a != b
        {
            return Err(Nondeterministic {
                key: format!("(a window of {} changes)", accepted.len()),
                sequence: accepted[0].sequence.clone(),
                run: "as the second window of one sandbox it gave".into(),
                fresh: a.describe(),
                other: b.describe(),
            });
        }
    }
    Ok(Passed {
        changes: changes.len(),
        accepted: accepted.len(),
    })
}

fn differs(c: &WitChange, fresh: &Outcome, got: &Outcome, run: &str, n: usize) -> Nondeterministic {
    Nondeterministic {
        key: c.key.clone(),
        sequence: c.sequence.clone(),
        run: format!("{run}, after {n} earlier change(s), it gave"),
        fresh: fresh.describe(),
        other: got.describe(),
    }
}
