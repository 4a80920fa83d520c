//! The host side of the WIT contract: `bindgen!` lives here and nowhere else.
//!
//! Only curated types leave this module (see `engine/mod.rs`).

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    world: "receiver",
    path: "../../wit",
});

pub use prism::receiver::types::{
    Change as WitChange, ChangeKind as WitChangeKind, FormatError as WitFormatError,
    Message as WitMessage,
};
pub use prism::receiver::{config, log};

/// The `mapper` world. It shares `log`, `config` and `types` with the
/// receiver world, so one host implementation serves both.
pub mod mapper {
    wasmtime::component::bindgen!({
        world: "mapper",
        path: "../../wit",
        with: {
            "prism:receiver/log": super::prism::receiver::log,
            "prism:receiver/config": super::prism::receiver::config,
            "prism:receiver/types": super::prism::receiver::types,
        },
    });

    pub use prism::receiver::mapping::{
        MapError as WitMapError, ModelWrite as WitModelWrite, ShadowChange as WitShadowChange,
    };
    pub use prism::receiver::{model, shadow};
}
