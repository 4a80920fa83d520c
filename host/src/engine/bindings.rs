//! The host side of the WIT contract: `bindgen!` lives here and nowhere else.
//!
//! Only curated types leave this module (see `engine/mod.rs`).

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    world: "receiver",
    path: "../wit",
});

pub use prism::receiver::types::{
    Change as WitChange, ChangeKind as WitChangeKind, FormatError as WitFormatError,
    Message as WitMessage,
};
pub use prism::receiver::{config, log};
