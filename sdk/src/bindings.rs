//! Bindings generated from `wit/v0.2` (the contract, bound once on this side).
//! Only `wasm.rs` (the export glue) and `host.rs` (the imports) use them.

#![cfg(target_arch = "wasm32")]
#![doc(hidden)]
#![allow(missing_docs)]
#![allow(clippy::too_many_arguments)] // generated lowering code

wit_bindgen::generate!({
    world: "receiver",
    path: "../wit/v0.2",
    pub_export_macro: true,
    export_macro_name: "__export_receiver_world",
    default_bindings_module: "::prism_sdk::__wasm::bindings",
    runtime_path: "::prism_sdk::__wasm::wit_bindgen::rt",
});
