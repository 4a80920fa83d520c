//! The host side of the WIT contract: `bindgen!` lives here and nowhere else.
//!
//! Only curated types leave this module (see the crate root, `host/engine/src/lib.rs`).

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

/// The `receiver` world of `prism:receiver@0.2.0`: images read on demand
/// and messages emitted one at a time (see `imports_v0_2.rs`).
pub mod v0_2 {
    wasmtime::component::bindgen!({
        world: "receiver",
        path: "../../wit/v0.2",
        imports: {
            "prism:receiver/images": trappable,
            "prism:receiver/output": trappable,
        },
    });

    pub use prism::receiver::types::{
        Change as WitChange, ChangeKind as WitChangeKind, FormatError as WitFormatError,
        Message as WitMessage,
    };
    pub use prism::receiver::{config, images, log, output};
}
