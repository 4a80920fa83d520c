//! The guest side of the WIT contract: generated bindings and the glue that
//! turns them into SDK types. Used only through [`crate::export_receiver!`].

#![allow(missing_docs)]

use crate::{Change, ChangeKind, FormatError, Image, Message, Receiver};

/// Bindings generated from `wit/` (the one contract, bound once on this side).
#[allow(clippy::too_many_arguments)] // generated lowering code
pub mod bindings {
    wit_bindgen::generate!({
        world: "receiver",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_receiver_world",
        default_bindings_module: "::prism_sdk::__wasm::bindings",
        runtime_path: "::prism_sdk::__wasm::wit_bindgen::rt",
    });
}

pub use wit_bindgen;

use bindings::prism::receiver::types as wit;

fn change_from_wit(c: wit::Change) -> Change {
    Change {
        key: c.key,
        kind: match c.kind {
            wit::ChangeKind::Insert => ChangeKind::Insert,
            wit::ChangeKind::Modify => ChangeKind::Modify,
            wit::ChangeKind::Remove => ChangeKind::Remove,
        },
        new: c.new_image.map(Image::from_json_text),
        old: c.old_image.map(Image::from_json_text),
        changed_paths: c.changed_paths,
        sequence: c.sequence,
        time_ms: c.time_ms,
    }
}

fn messages_to_wit(
    r: Result<Vec<Message>, FormatError>,
) -> Result<Vec<wit::Message>, wit::FormatError> {
    match r {
        Ok(msgs) => Ok(msgs
            .into_iter()
            .map(|m| wit::Message {
                body: m.body,
                content_type: m.content_type,
                group: m.group,
                attributes: m.attributes,
            })
            .collect()),
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
    R::accepts(&change_from_wit(change))
}

pub fn format<R: Receiver>(change: wit::Change) -> Result<Vec<wit::Message>, wit::FormatError> {
    install();
    messages_to_wit(R::format(&change_from_wit(change)))
}

pub fn format_batch<R: Receiver>(
    changes: Vec<wit::Change>,
) -> Result<Vec<wit::Message>, wit::FormatError> {
    install();
    let changes: Vec<Change> = changes.into_iter().map(change_from_wit).collect();
    messages_to_wit(R::format_batch(&changes))
}
