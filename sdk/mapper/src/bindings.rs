//! Bindings generated from `wit/` (the mapper world only).
//! Only `wasm.rs` (the export glue) and `host.rs` (the imports) use them.

#![cfg(target_arch = "wasm32")]
#![doc(hidden)]
#![allow(missing_docs)]
#![allow(clippy::too_many_arguments)] // generated lowering code

wit_bindgen::generate!({
    world: "mapper",
    path: "../../wit",
    pub_export_macro: true,
    export_macro_name: "__export_mapper_world",
    default_bindings_module: "::prism_mapper_sdk::__wasm::bindings",
    runtime_path: "::prism_mapper_sdk::__wasm::wit_bindgen::rt",
});
