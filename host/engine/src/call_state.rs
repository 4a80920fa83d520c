//! A 0.2 receiver call's state in the sandbox: the images of the current
//! call's changes, copied into the plugin only when it asks, and the
//! messages it emits, each checked against the limits as it arrives.
//!
//! A change is named by an id that stays the same from `accepts` to the
//! `format` of the same change (so the guest can keep an image it already
//! read) and is never reused within a session.

use prism_contract::Message;

use super::bindings::WitChange;
use super::bindings::v0_2::{WitChange as V2Change, WitChangeKind as V2Kind};
use super::output_check::{Outbox, OutputError, OutputLimits};

/// What the current 0.2 call may read and where its messages go.
#[derive(Debug, Default)]
pub(crate) struct Call {
    next_id: u64,
    /// The current call's changes, by id.
    changes: Vec<(u64, WitChange)>,
    /// `Some` while `format` or `format-batch` runs.
    outbox: Option<Outbox>,
    /// Why the host stopped the call, if it did.
    refused: Option<OutputError>,
    /// Images copied into the plugin so far in this session.
    pub(crate) reads: ImageReads,
}

/// How many images a session copied into its plugin, and their bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ImageReads {
    /// Images read.
    pub images: u64,
    /// Their JSON text, in bytes.
    pub bytes: u64,
}

impl Call {
    /// Make `change` the one change of the next call and return it as the
    /// plugin sees it. The id is kept when it is the change of the
    /// previous call (`accepts` then `format`).
    pub(crate) fn one(&mut self, change: &WitChange) -> V2Change {
        let id = match self.changes.as_slice() {
            [(id, last)] if same(last, change) => *id,
            _ => {
                let id = self.fresh_id();
                self.changes.clear();
                self.changes.push((id, change.clone()));
                id
            }
        };
        info(id, change)
    }

    /// Make `changes` the changes of the next call (a batch).
    pub(crate) fn many(&mut self, changes: &[WitChange]) -> Vec<V2Change> {
        self.changes.clear();
        changes
            .iter()
            .map(|c| {
                let id = self.fresh_id();
                self.changes.push((id, c.clone()));
                info(id, c)
            })
            .collect()
    }

    /// Open the outbox for a `format` or `format-batch` call.
    pub(crate) fn open(&mut self, limits: OutputLimits) {
        self.outbox = Some(Outbox::new(limits));
        self.refused = None;
    }

    /// Close the outbox: what was emitted, and why the host stopped the
    /// call if it did.
    pub(crate) fn close(&mut self) -> (Vec<Message>, Option<OutputError>) {
        let msgs = self.outbox.take().map(|mut o| o.take()).unwrap_or_default();
        (msgs, self.refused.take())
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub(crate) fn image(&mut self, id: u64, new: bool) -> wasmtime::Result<Option<String>> {
        let Some((_, c)) = self.changes.iter().find(|(i, _)| *i == id) else {
            return Err(wasmtime::format_err!(
                "asked for an image of change {id}, which is not part of this call"
            ));
        };
        let image = if new { &c.new_image } else { &c.old_image };
        if let Some(text) = image {
            self.reads.images += 1;
            self.reads.bytes += text.len() as u64;
        }
        Ok(image.clone())
    }
}

/// Is `b` the change `a` (same key, sequence, kind and images)?
fn same(a: &WitChange, b: &WitChange) -> bool {
    a.key == b.key
        && a.sequence == b.sequence
        && a.kind == b.kind
        && a.new_image == b.new_image
        && a.old_image == b.old_image
}

fn info(id: u64, c: &WitChange) -> V2Change {
    use super::bindings::WitChangeKind as K;
    V2Change {
        id,
        key: c.key.clone(),
        kind: match c.kind {
            K::Insert => V2Kind::Insert,
            K::Modify => V2Kind::Modify,
            K::Remove => V2Kind::Remove,
        },
        changed_paths: c.changed_paths.clone(),
        sequence: c.sequence.clone(),
        time_ms: c.time_ms,
    }
}

impl Call {
    /// Keep one emitted message, or refuse it (and remember why, so the
    /// call's error names the limit rather than the trap). `Ok` outside
    /// `format`: messages emitted from `accepts` are ignored.
    pub(crate) fn emit(&mut self, m: Message) -> Result<(), OutputError> {
        let Some(outbox) = self.outbox.as_mut() else {
            return Ok(());
        };
        outbox
            .push(m)
            .inspect_err(|e| self.refused = Some(e.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::WitChangeKind;

    fn change(key: &str, seq: &str) -> WitChange {
        WitChange {
            key: key.into(),
            kind: WitChangeKind::Modify,
            new_image: Some(r#"{"a":2}"#.into()),
            old_image: Some(r#"{"a":1}"#.into()),
            changed_paths: vec!["/a".into()],
            sequence: seq.into(),
            time_ms: 7,
        }
    }

    #[test]
    fn a_change_keeps_its_id_from_accepts_to_format_and_ids_are_never_reused() {
        let mut call = Call::default();
        let a = call.one(&change("p1", "1")).id;
        assert_eq!(call.one(&change("p1", "1")).id, a);
        let b = call.one(&change("p1", "2")).id;
        assert_ne!(a, b);
        let batch: Vec<u64> = call
            .many(&[change("p1", "2"), change("p2", "1")])
            .iter()
            .map(|c| c.id)
            .collect();
        assert!(!batch.contains(&a) && !batch.contains(&b), "{batch:?}");
        // After a batch, even the same change gets a new id.
        assert_ne!(call.one(&change("p1", "2")).id, b);
    }

    #[test]
    fn only_the_current_calls_images_can_be_read() {
        let mut call = Call::default();
        let old = call.one(&change("p1", "1")).id;
        let id = call.one(&change("p2", "1")).id;
        assert_eq!(call.image(id, true).unwrap().as_deref(), Some(r#"{"a":2}"#));
        assert_eq!(
            call.image(id, false).unwrap().as_deref(),
            Some(r#"{"a":1}"#)
        );
        let e = call.image(old, true).unwrap_err().to_string();
        assert!(e.contains("not part of this call"), "{e}");
    }
}
