//! How the sink cuts messages into `SendMessageBatch` calls, reads SQS's
//! per-entry answer, and waits between entry retries.

use std::collections::HashMap;
use std::time::Duration;

use prism_core::sink::SinkError;

use super::message::Outgoing;
use super::{MAX_BYTES, MAX_ENTRIES};

/// How one change fared in [`SqsSink::deliver_packed`].
#[derive(Default)]
pub(super) struct Packed {
    /// Its envelopes (by position) that got out.
    pub(super) delivered: Vec<usize>,
    /// Why it did not all go out.
    pub(super) failed: Option<SinkError>,
}

/// How one batch of entries went, after the entry retries.
#[derive(Debug, Default)]
pub(super) struct ChunkResult {
    /// Entries SQS took.
    pub(super) delivered: Vec<usize>,
    /// Entries that did not go out (the call failed, or they kept failing
    /// on SQS's side), and why.
    pub(super) unavailable: Vec<usize>,
    pub(super) why: String,
    /// Entries refused as the sender's fault: (entry, SQS code, what).
    pub(super) refused: Vec<(usize, String, String)>,
}

impl ChunkResult {
    /// The error for the refusals, if any.
    pub(super) fn refusal(&self, receiver: &str, queue: &str) -> Option<SinkError> {
        let (_, code, _) = self.refused.first()?;
        let what: Vec<&str> = self.refused.iter().map(|r| r.2.as_str()).collect();
        Some(SinkError::refused(
            receiver,
            code.clone(),
            format!("queue {queue} refused {}", what.join("; ")),
        ))
    }
}

/// Waves of messages, in order: the calls of one wave run at once, the
/// waves one after another. `order[i]` is message `i`'s product key and,
/// on a FIFO queue, its message group. Each product (and each group) has at
/// most one message per wave, and its messages go in later waves in their
/// order: SQS orders a group by arrival, and two calls in flight at once
/// arrive in either order. A group spanning products (a plugin's choice)
/// is thus kept in order as a product is.
pub(super) fn waves(order: &[(&str, Option<&str>)]) -> Vec<Vec<usize>> {
    let mut next_of_key: HashMap<&str, usize> = HashMap::new();
    let mut next_of_group: HashMap<&str, usize> = HashMap::new();
    let mut waves: Vec<Vec<usize>> = Vec::new();
    for (i, &(key, group)) in order.iter().enumerate() {
        let mut wave = next_of_key.get(key).copied().unwrap_or(0);
        if let Some(g) = group {
            wave = wave.max(next_of_group.get(g).copied().unwrap_or(0));
            next_of_group.insert(g, wave + 1);
        }
        next_of_key.insert(key, wave + 1);
        if waves.len() <= wave {
            waves.resize_with(wave + 1, Vec::new);
        }
        waves[wave].push(i);
    }
    waves
}

/// Split `eligible` (message indices, at most one per product) into
/// batches of at most 10 entries and 256 KiB.
pub(super) fn chunks_of(msgs: &[Outgoing], eligible: &[usize]) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    let mut bytes = 0;
    for &i in eligible {
        if !cur.is_empty() && (cur.len() == MAX_ENTRIES || bytes + msgs[i].size > MAX_BYTES) {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        cur.push(i);
        bytes += msgs[i].size;
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// What one `SendMessageBatch` answer says about its entries.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Outcome {
    /// Messages SQS took.
    pub(super) delivered: Vec<usize>,
    /// Messages SQS failed on its side: worth another try.
    pub(super) retry: Vec<usize>,
    /// The first entry refused as the sender's fault: SQS's code, and every
    /// refused entry described.
    pub(super) refused: Option<(String, String)>,
    /// Every refused entry: (entry, SQS code, what).
    pub(super) refused_entries: Vec<(usize, String, String)>,
    /// The last retryable failure, for the error message.
    pub(super) last_error: String,
}

impl Outcome {
    pub(super) fn of(
        out: &aws_sdk_sqs::operation::send_message_batch::SendMessageBatchOutput,
        sent: &[usize],
    ) -> Self {
        let mut o = Outcome::default();
        let ours = |id: &str| id.parse::<usize>().ok().filter(|i| sent.contains(i));
        o.delivered = out
            .successful()
            .iter()
            .filter_map(|s| ours(s.id()))
            .collect();
        let mut refused = Vec::new();
        let mut code = None;
        for f in out.failed() {
            let Some(i) = ours(f.id()) else { continue };
            let what = format!("message {i}: {} {}", f.code(), f.message().unwrap_or(""));
            if f.sender_fault() {
                code.get_or_insert_with(|| f.code().to_owned());
                o.refused_entries
                    .push((i, f.code().to_owned(), what.clone()));
                refused.push(what);
            } else {
                o.retry.push(i);
                o.last_error = what;
            }
        }
        // An entry the answer does not mention at all is not known to be
        // out: it is tried again (FIFO deduplication ids make that safe).
        for &i in sent {
            let known = o.delivered.contains(&i)
                || o.retry.contains(&i)
                || out.failed().iter().any(|f| ours(f.id()) == Some(i));
            if !known {
                o.retry.push(i);
                o.last_error = format!("message {i}: missing from SQS's answer");
            }
        }
        o.retry.sort_unstable();
        o.refused = code.map(|c| (c, refused.join("; ")));
        o
    }
}

/// Full-jitter exponential backoff before entry retry `attempt` (1-based):
/// a random wait up to 50 ms × 2^attempt, so many dispatchers retrying at
/// once do not hit SQS in step.
pub(super) fn backoff(attempt: u32) -> Duration {
    let cap = 50u64 << attempt.min(6);
    Duration::from_millis(fastrand::u64(cap / 4..=cap))
}

/// Split into batches of at most 10 entries and 256 KiB. On a FIFO queue a
/// batch holds at most one message per message group: should SQS fail an
/// entry and take a later one of the same group, the group's order would be
/// broken beyond repair. With one per call, a group's next message is only
/// sent once the one before it is in.
pub(super) fn chunks(msgs: &[Outgoing], fifo: bool) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    let mut bytes = 0;
    for (i, m) in msgs.iter().enumerate() {
        let full = cur.len() == MAX_ENTRIES || bytes + m.size > MAX_BYTES;
        let same_group = fifo && cur.iter().any(|&j| msgs[j].group == m.group);
        if !cur.is_empty() && (full || same_group) {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        cur.push(i);
        bytes += m.size;
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 28, item 8: waves were cut by product only, so two products
    /// of one plugin-chosen group went out in calls in flight at once.
    #[test]
    fn a_group_spanning_products_has_one_message_per_wave_in_order() {
        let order = [
            ("A", Some("g")),
            ("B", Some("g")),
            ("C", Some("h")),
            ("A", Some("g")),
            ("D", Some("h")),
        ];
        assert_eq!(waves(&order), vec![vec![0, 2], vec![1, 4], vec![3]]);
        // A standard queue orders nothing: products alone decide.
        let standard: Vec<(&str, Option<&str>)> = order.iter().map(|&(k, _)| (k, None)).collect();
        assert_eq!(waves(&standard), vec![vec![0, 1, 2, 4], vec![3]]);
    }

    proptest::proptest! {
        #[test]
        fn waves_keep_every_product_and_group_in_order_one_per_wave(
            order in proptest::collection::vec((0u8..6, proptest::option::of(0u8..4)), 0..60)
        ) {
            let keys: Vec<String> = order.iter().map(|(k, _)| format!("P{k}")).collect();
            let groups: Vec<Option<String>> = order.iter().map(|(_, g)| g.map(|g| format!("g{g}"))).collect();
            let input: Vec<(&str, Option<&str>)> = keys
                .iter()
                .zip(&groups)
                .map(|(k, g)| (k.as_str(), g.as_deref()))
                .collect();
            let w = waves(&input);
            let mut wave_of = vec![usize::MAX; input.len()];
            for (n, wave) in w.iter().enumerate() {
                proptest::prop_assert!(!wave.is_empty());
                for &i in wave {
                    proptest::prop_assert_eq!(wave_of[i], usize::MAX, "placed once");
                    wave_of[i] = n;
                }
            }
            for i in 0..input.len() {
                proptest::prop_assert!(wave_of[i] != usize::MAX, "every message placed");
                for j in 0..i {
                    let same = input[i].0 == input[j].0
                        || (input[i].1.is_some() && input[i].1 == input[j].1);
                    if same {
                        proptest::prop_assert!(wave_of[j] < wave_of[i], "{j} before {i}");
                    }
                }
            }
        }
    }

    fn out(size: usize) -> Outgoing {
        Outgoing {
            body: String::new(),
            attributes: HashMap::new(),
            group: String::new(),
            dedup: String::new(),
            size,
        }
    }

    #[test]
    fn batches_respect_count_and_bytes() {
        let msgs: Vec<Outgoing> = (0..23).map(|_| out(10)).collect();
        assert_eq!(
            chunks(&msgs, false)
                .iter()
                .map(Vec::len)
                .collect::<Vec<_>>(),
            [10, 10, 3]
        );
        let msgs: Vec<Outgoing> = (0..5).map(|_| out(100 * 1024)).collect();
        assert_eq!(
            chunks(&msgs, false)
                .iter()
                .map(Vec::len)
                .collect::<Vec<_>>(),
            [2, 2, 1]
        );
    }

    #[test]
    fn fifo_batches_hold_one_message_per_group() {
        let msgs: Vec<Outgoing> = ["a", "b", "a", "c", "b", "d"]
            .iter()
            .map(|g| Outgoing {
                group: (*g).to_owned(),
                ..out(10)
            })
            .collect();
        // b's second message may join the third one's batch: its first went earlier.
        assert_eq!(chunks(&msgs, true), [vec![0, 1], vec![2, 3, 4, 5]]);
        assert_eq!(chunks(&msgs, false), [vec![0, 1, 2, 3, 4, 5]]);
    }

    #[test]
    fn outcomes_are_per_entry() {
        use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchOutput;
        use aws_sdk_sqs::types::{BatchResultErrorEntry, SendMessageBatchResultEntry};
        let ok = |id: &str| {
            SendMessageBatchResultEntry::builder()
                .id(id)
                .message_id("m")
                .md5_of_message_body("x")
                .build()
                .unwrap()
        };
        let fail = |id: &str, code: &str, sender: bool| {
            BatchResultErrorEntry::builder()
                .id(id)
                .code(code)
                .sender_fault(sender)
                .build()
                .unwrap()
        };
        let out = SendMessageBatchOutput::builder()
            .successful(ok("3"))
            .successful(ok("5"))
            .failed(fail("4", "InternalError", false))
            .build()
            .unwrap();
        // 6 was sent but is not in the answer: not known to be out.
        let o = Outcome::of(&out, &[3, 4, 5, 6]);
        assert_eq!(o.delivered, [3, 5]);
        assert_eq!(o.retry, [4, 6]);
        assert_eq!(o.refused, None);

        let out = SendMessageBatchOutput::builder()
            .successful(ok("0"))
            .failed(fail("1", "InvalidParameterValue", true))
            .failed(fail("2", "InternalError", false))
            .successful(ok("99"))
            .build()
            .unwrap();
        let o = Outcome::of(&out, &[0, 1, 2]);
        assert_eq!(o.delivered, [0], "ids the call did not send are ignored");
        assert_eq!(o.retry, [2]);
        let (code, what) = o.refused.unwrap();
        assert_eq!(code, "InvalidParameterValue");
        assert!(what.contains("message 1"), "{what}");
    }

    #[test]
    fn backoff_is_jittered_and_capped() {
        for attempt in 1..10 {
            let cap = 50u64 << attempt.min(6);
            let d = backoff(attempt).as_millis() as u64;
            assert!((cap / 4..=cap).contains(&d), "{attempt}: {d}");
        }
        let waits: std::collections::HashSet<_> = (0..50).map(|_| backoff(6)).collect();
        assert!(waits.len() > 1, "jittered");
    }
}
