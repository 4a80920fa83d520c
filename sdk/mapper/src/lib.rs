//! # prism-mapper-sdk
//!
//! Write the prism model mapper: implement [`Mapper`] and call
//! [`export_mapper!`]. Build it with `cargo build --target wasm32-wasip2`
//! and you have a component of the `prism:receiver/mapper` world.
//!
//! The mapper turns a change to one *shadow table* (the master data
//! system's own model) into writes of product documents in the *model
//! table*. It may read other shadow items ([`shadow`]) and the current model
//! ([`model`]); nothing else.
//!
//! ```
//! use prism_mapper_sdk::{MapError, Mapper, ModelWrite, ShadowChange, export_mapper, json, shadow};
//!
//! struct Catalog;
//!
//! impl Mapper for Catalog {
//!     fn map(change: &ShadowChange) -> Result<Vec<ModelWrite>, MapError> {
//!         let sku = change.key_str("article_no")?;
//!         let Some(item) = &change.new else { return Ok(vec![ModelWrite::delete(sku)]) };
//!         let brand = match item["brand_id"].as_str() {
//!             Some(id) => shadow::get("brands", &json!({"brand_id": id}))?,
//!             None => None,
//!         };
//!         let name = brand.as_ref().and_then(|b| b["name"].as_str()).unwrap_or("");
//!         Ok(vec![ModelWrite::upsert(sku, json!({"pk": sku, "brand": name}))])
//!     }
//! }
//!
//! export_mapper!(Catalog);
//!
//! // Natively, reads come from an in-memory store, so mapper tests need no Wasm:
//! use prism_mapper_sdk::testing;
//! testing::put_shadow("brands", json!({"brand_id": "B1"}), json!({"brand_id": "B1", "name": "Voltar"}));
//! let c = ShadowChange::insert("products", json!({"article_no": "P1"}), json!({"article_no": "P1", "brand_id": "B1"}));
//! let writes = Catalog::map(&c).unwrap();
//! assert_eq!(writes, vec![ModelWrite::upsert("P1", json!({"pk": "P1", "brand": "Voltar"}))]);
//! ```

#![deny(missing_docs)]

extern crate self as prism_mapper_sdk;

mod host;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

// The Wasm side (bindings and export glue) exists on wasm32 only.
pub mod bindings;
pub mod wasm;
#[cfg(target_arch = "wasm32")]
pub use wasm as __wasm;

pub use host::{Level, ReadError, config, log, model, shadow};
pub use prism_contract::{ChangeKind, MapError, ModelWrite, ShadowChange};
pub use serde_json::{self, Value, json};

/// The model mapper: shadow-table changes in, model writes out.
///
/// Like receivers, every call runs in a fresh sandbox: keep no state
/// between calls, and read what you need through [`shadow`] and [`model`].
pub trait Mapper {
    /// Map one shadow change to the model writes it causes: none (nothing
    /// the model shows changed, or the product is not complete yet), one,
    /// or one per product of a shared entity (a cascade).
    fn map(change: &ShadowChange) -> Result<Vec<ModelWrite>, MapError>;
}

/// Export a [`Mapper`] as the component's `prism:receiver/mapper` world.
///
/// Call it once, at the crate root of a `cdylib`. Natively it only checks
/// that the type implements [`Mapper`].
#[macro_export]
macro_rules! export_mapper {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __PrismMapper;
            impl $crate::__wasm::bindings::Guest for __PrismMapper {
                fn map_change(
                    change: $crate::__wasm::bindings::ShadowChange,
                ) -> ::core::result::Result<
                    ::std::vec::Vec<$crate::__wasm::bindings::ModelWrite>,
                    $crate::__wasm::bindings::MapError,
                > {
                    $crate::__wasm::map::<$ty>(change)
                }
            }
            $crate::__wasm::bindings::__export_mapper_world!(__PrismMapper with_types_in $crate::__wasm::bindings);
        };
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() = || {
            fn is_mapper<M: $crate::Mapper>() {}
            is_mapper::<$ty>();
        };
    };
}
