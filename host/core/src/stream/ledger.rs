//! The retry ledger: which receivers already handled which stream records of
//! a batch that is going to be retried.
//!
//! When a batch ends with some receiver holding a change (its queue was
//! down), the stream processor reports that record and every later one as
//! failed, and Lambda sends them again. Other receivers handled many of
//! those records already; the ledger remembers, per record, which ones, so
//! the retry runs each (receiver, record) pair at most once more.
//!
//! - An entry is written only for a batch that reports failures, one per
//!   record from the first failed one to the end of the batch (an empty
//!   receiver list included), so every retry's first record has an entry.
//! - A batch looks at the ledger with one read of its first record's entry;
//!   only when that exists (a retry) does it read the rest.
//! - Entries expire after two days (DynamoDB TTL), past the stream's 24 hour
//!   retention: a record cannot be retried after that.
//!
//! Record ids are `<event source ARN>#<sequence number>`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

/// Which receivers handled each record.
pub type Handled = HashMap<String, BTreeSet<String>>;

/// The ledger table's partition key (S).
pub const KEY: &str = "record";
/// The attribute listing the receivers that handled the record (L of S).
pub const RECEIVERS: &str = "receivers";
/// The TTL attribute (N, epoch seconds).
pub const EXPIRES_AT: &str = "expires_at";
/// How long an entry is kept.
pub const KEEP: Duration = Duration::from_secs(2 * 24 * 3600);

/// Where the ledger lives: [`MemoryLedger`] in this process, or a table
/// (`prism_aws::ledger::DynamoLedger`).
#[async_trait::async_trait]
pub trait LedgerStore: Send + Sync {
    /// What earlier attempts recorded for `records` (in batch order). Only
    /// a batch whose first record has an entry (a retry) reads the rest.
    async fn lookup(&self, records: &[String]) -> Result<Handled, crate::Error>;

    /// Record which receivers handled each of `entries`' records.
    async fn remember(&self, entries: &[(String, BTreeSet<String>)]) -> Result<(), crate::Error>;
}

/// The part of a lookup a retry may trust: the entries of the records
/// before the first one (in batch order) that has none. Entries are written
/// in chunks that can fail on their own; trusting a later record's entry
/// past a missing one would skip the product's newer change while its
/// older one runs again, and the older one would be delivered last.
/// Without the rest, both run again, in order (issue 28, item 4).
pub fn trusted_prefix(records: &[String], mut found: Handled) -> Handled {
    if let Some(gap) = records.iter().position(|r| !found.contains_key(r)) {
        for r in &records[gap..] {
            found.remove(r);
        }
    }
    found
}

/// The ledger in this process (for `prism dev` without a table, and tests).
#[derive(Debug, Default)]
pub struct MemoryLedger(Mutex<Handled>);

#[async_trait::async_trait]
impl LedgerStore for MemoryLedger {
    async fn lookup(&self, records: &[String]) -> Result<Handled, crate::Error> {
        let Some(first) = records.first() else {
            return Ok(Handled::new());
        };
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !m.contains_key(first) {
            return Ok(Handled::new());
        }
        Ok(records
            .iter()
            .filter_map(|r| m.get(r).map(|s| (r.clone(), s.clone())))
            .collect())
    }

    async fn remember(&self, entries: &[(String, BTreeSet<String>)]) -> Result<(), crate::Error> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for (record, receivers) in entries {
            m.insert(record.clone(), receivers.clone());
        }
        Ok(())
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Entries past a missing one are not trusted: a failed chunk between
    /// them would otherwise run an older change again after a newer one.
    #[test]
    fn only_the_entries_before_the_first_gap_are_trusted() {
        let ids: Vec<String> = ["s#1", "s#2", "s#3", "s#4"].map(String::from).to_vec();
        let found: Handled = [("s#1", &["a"][..]), ("s#3", &["a"]), ("s#4", &[])]
            .into_iter()
            .map(|(r, rs)| (r.to_owned(), set(rs)))
            .collect();
        let kept = trusted_prefix(&ids, found.clone());
        assert_eq!(kept.keys().collect::<Vec<_>>(), ["s#1"]);
        let all: Handled = ids.iter().map(|r| (r.clone(), set(&["a"]))).collect();
        assert_eq!(trusted_prefix(&ids, all.clone()), all);
        assert!(trusted_prefix(&ids, Handled::new()).is_empty());
    }

    #[tokio::test]
    async fn memory_ledger_reads_only_for_a_retry() {
        let l = MemoryLedger::default();
        l.remember(&[("s#2".into(), set(&["a"])), ("s#3".into(), set(&[]))])
            .await
            .unwrap();
        // A batch that does not start at a remembered record is not a retry.
        assert!(
            l.lookup(&["s#1".into(), "s#2".into()])
                .await
                .unwrap()
                .is_empty()
        );
        let got = l
            .lookup(&["s#2".into(), "s#3".into(), "s#4".into()])
            .await
            .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got["s#2"], set(&["a"]));
        assert!(got["s#3"].is_empty());
    }
}
