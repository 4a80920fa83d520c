//! What a handled batch answers, decided from what happened to each record:
//! where Lambda must retry from, what the ledger remembers for that retry,
//! and the errors `prism status` shows. Pure functions, no I/O.

use std::collections::{BTreeSet, HashMap};

use super::ledger::Handled;
use super::records::Record;
use super::{BatchItemFailure, UNREADABLE};
use crate::dispatch::RunReport;
use crate::receivers::ReceiverSet;

/// The first record Lambda must send again: the record of the first held
/// change, or an unreadable record that could not be parked, whichever
/// comes first. `records` pairs each record with whether it was parked.
pub(crate) fn first_failed(
    first_held: Option<usize>,
    of_change: &[usize],
    records: &[(Record, bool)],
) -> Option<usize> {
    let unparked = records
        .iter()
        .position(|(r, parked)| r.change.is_err() && !parked);
    match (first_held.map(|c| of_change[c]), unparked) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// For every record from `first` on: the ledger entry (which receivers
/// have now handled it, so the retry skips them) and the failure to report.
pub(crate) fn retry_entries(
    first: usize,
    of_change: &[usize],
    records: &[(Record, bool)],
    report: &RunReport,
    prior: &Handled,
) -> (Vec<(String, BTreeSet<String>)>, Vec<BatchItemFailure>) {
    let change_of: HashMap<usize, usize> = of_change
        .iter()
        .enumerate()
        .map(|(c, &rec)| (rec, c))
        .collect();
    let mut entries = Vec::new();
    let mut failures = Vec::new();
    for (i, (r, parked)) in records.iter().enumerate().skip(first) {
        let mut handled = prior.get(&r.id).cloned().unwrap_or_default();
        if let Some(&c) = change_of.get(&i) {
            for (receiver, st) in &report.receivers {
                if st.held.binary_search(&c).is_err() {
                    handled.insert(receiver.clone());
                }
            }
        } else if *parked {
            handled.insert(UNREADABLE.to_owned());
        }
        entries.push((r.id.clone(), handled));
        failures.push(super::item_failure(r.sequence.clone()));
    }
    (entries, failures)
}

/// Each receiver's latest error, for `prism status`: a quarantine rather
/// than the error that led to it (that one is in the logs and the dead
/// letters), else the batch's first error.
pub(crate) fn status_errors(report: &RunReport, set: &ReceiverSet) -> Vec<(String, String)> {
    report
        .receivers
        .iter()
        .filter_map(|(r, st)| {
            let text = match set.active.iter().find(|a| a.id() == r) {
                Some(a) if st.quarantined > 0 => format!(
                    "quarantined for another {} s: its plugin kept failing ({} changes not run in this batch)",
                    a.breaker.quarantined().unwrap_or_default().as_secs(),
                    st.quarantined
                ),
                _ => st.first_errors.first()?.clone(),
            };
            Some((r.clone(), text))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::ReceiverStats;
    use prism_types::change::{Change, ChangeKind};

    fn rec(seq: &str, readable: bool) -> Record {
        Record {
            id: format!("s#{seq}"),
            sequence: seq.to_owned(),
            change: if readable {
                Ok(Change::new(
                    "k".into(),
                    ChangeKind::Insert,
                    None,
                    Some(serde_json::json!({})),
                    seq.into(),
                    0,
                ))
            } else {
                Err("bad".into())
            },
            raw: serde_json::Value::Null,
        }
    }

    /// Records 1..=4: 1, 2 and 4 readable (changes 0, 1, 2), 3 unreadable.
    fn batch(parked3: bool) -> (Vec<(Record, bool)>, Vec<usize>) {
        (
            vec![
                (rec("1", true), false),
                (rec("2", true), false),
                (rec("3", false), parked3),
                (rec("4", true), false),
            ],
            vec![0, 1, 3],
        )
    }

    fn report(held: &[(&str, &[usize])]) -> RunReport {
        let mut r = RunReport::default();
        for (receiver, h) in held {
            r.receivers.insert(
                (*receiver).to_owned(),
                ReceiverStats {
                    held: h.to_vec(),
                    ..ReceiverStats::default()
                },
            );
        }
        r
    }

    #[test]
    fn the_retry_starts_at_the_earlier_of_a_held_change_and_an_unparked_record() {
        let (records, of_change) = batch(false);
        assert_eq!(first_failed(None, &of_change, &records), Some(2));
        assert_eq!(first_failed(Some(1), &of_change, &records), Some(1));
        assert_eq!(first_failed(Some(2), &of_change, &records), Some(2));
        let (records, of_change) = batch(true);
        assert_eq!(first_failed(None, &of_change, &records), None);
        assert_eq!(first_failed(Some(2), &of_change, &records), Some(3));
    }

    #[test]
    fn the_ledger_remembers_who_handled_each_retried_record() {
        let (records, of_change) = batch(true);
        // `a` holds change 1 (record 2) and everything after; `b` holds nothing.
        let r = report(&[("a", &[1, 2]), ("b", &[])]);
        let prior = Handled::from([("s#4".to_owned(), BTreeSet::from(["c".to_owned()]))]);
        let (entries, failures) = retry_entries(1, &of_change, &records, &r, &prior);
        let got: Vec<(&str, Vec<&str>)> = entries
            .iter()
            .map(|(id, s)| (id.as_str(), s.iter().map(String::as_str).collect()))
            .collect();
        assert_eq!(
            got,
            [
                ("s#2", vec!["b"]),
                ("s#3", vec![UNREADABLE]),
                ("s#4", vec!["b", "c"]),
            ]
        );
        let seqs: Vec<&str> = failures
            .iter()
            .map(|f| f.item_identifier.as_deref().unwrap_or_default())
            .collect();
        assert_eq!(seqs, ["2", "3", "4"]);
    }

    #[test]
    fn status_shows_the_first_error_of_each_receiver() {
        let mut r = report(&[("a", &[]), ("b", &[])]);
        r.receivers.get_mut("a").unwrap().first_errors = vec!["boom".into(), "later".into()];
        let got = status_errors(&r, &ReceiverSet::default());
        assert_eq!(got, [("a".to_owned(), "boom".to_owned())]);
    }
}
