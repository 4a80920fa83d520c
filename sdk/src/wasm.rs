//! The guest side of the WIT contract (`prism:receiver@0.2.0`): generated
//! bindings and the glue that turns them into SDK types. Used only through
//! [`crate::export_receiver!`].
//!
//! A change arrives without its images; each [`Image`] reads itself from
//! the host the first time it is used. The images a filter read are kept
//! for the `format` of the same change (the host gives it the same id), so
//! an image crosses the boundary at most once per change.

#![cfg(target_arch = "wasm32")]
#![doc(hidden)]
#![allow(missing_docs)]

use std::cell::RefCell;

use crate::host::HostImage;
use crate::{Change, ChangeKind, FormatError, Image, Message, Receiver};

pub use crate::bindings;
pub use wit_bindgen;

use bindings::prism::receiver::{output, types as wit};

/// The last change `accepts` saw, with its images (read or not), for the
/// `format` that follows it.
type Kept = (u64, Option<Image>, Option<Image>);

thread_local! {
    static KEPT: RefCell<Option<Kept>> = const { RefCell::new(None) };
}

fn change_from_wit(c: wit::Change) -> Change {
    let kept = KEPT.with(|k| k.borrow_mut().take_if(|(id, _, _)| *id == c.id));
    let (kind, has_new, has_old) = match c.kind {
        wit::ChangeKind::Insert => (ChangeKind::Insert, true, false),
        wit::ChangeKind::Modify => (ChangeKind::Modify, true, true),
        wit::ChangeKind::Remove => (ChangeKind::Remove, false, true),
    };
    let (new, old) = match kept {
        Some((_, new, old)) => (new, old),
        None => {
            let image = |new: bool| Image::on_host(HostImage { change: c.id, new });
            (has_new.then(|| image(true)), has_old.then(|| image(false)))
        }
    };
    Change {
        key: c.key,
        kind,
        new,
        old,
        changed_paths: c.changed_paths,
        sequence: c.sequence,
        time_ms: c.time_ms,
    }
}

fn emit(r: Result<Vec<Message>, FormatError>) -> Result<(), wit::FormatError> {
    match r {
        Ok(msgs) => {
            for m in msgs {
                output::emit(&wit::Message {
                    body: m.body,
                    content_type: m.content_type,
                    group: m.group,
                    attributes: m.attributes,
                });
            }
            Ok(())
        }
        Err(FormatError::Reject(r)) => Err(wit::FormatError::Reject(r)),
        Err(FormatError::Retry(r)) => Err(wit::FormatError::Retry(r)),
    }
}

/// Give `prism-sdk-core` this world's log and config imports (once).
fn install() {
    prism_sdk_core::install_host(&crate::host::imp::WitHost);
}

pub fn accepts<R: Receiver>(change: wit::Change) -> bool {
    install();
    let id = change.id;
    let change = change_from_wit(change);
    let yes = R::accepts(&change);
    if yes {
        KEPT.with(|k| *k.borrow_mut() = Some((id, change.new, change.old)));
    }
    yes
}

pub fn format<R: Receiver>(change: wit::Change) -> Result<(), wit::FormatError> {
    install();
    emit(R::format(&change_from_wit(change)))
}

pub fn format_batch<R: Receiver>(changes: Vec<wit::Change>) -> Result<(), wit::FormatError> {
    install();
    let changes: Vec<Change> = changes.into_iter().map(change_from_wit).collect();
    emit(R::format_batch(&changes))
}
