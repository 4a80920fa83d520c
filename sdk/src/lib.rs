//! # prism-sdk
//!
//! Write a prism receiver plugin: implement [`Receiver`] and call
//! [`export_receiver!`]. Build it with `cargo build --target wasm32-wasip2` and
//! you have a component that `prism plugin check` accepts.
//!
//! ```
//! use prism_sdk::{Change, FormatError, Message, Receiver, export_receiver};
//! use serde_json::json;
//!
//! struct PriceFeed;
//!
//! impl Receiver for PriceFeed {
//!     fn accepts(change: &Change) -> bool {
//!         change.changed("/prices")
//!     }
//!
//!     fn format(change: &Change) -> Result<Vec<Message>, FormatError> {
//!         let Some(doc) = change.new.as_ref() else { return Ok(vec![]) };
//!         let eur = doc.number_text("/prices/EUR").ok_or_else(|| FormatError::reject("no EUR price"))?;
//!         Ok(vec![Message::json(&json!({"sku": change.key, "eur": eur}))])
//!     }
//! }
//!
//! export_receiver!(PriceFeed);
//!
//! // The same code runs natively, so plugin tests need no Wasm:
//! let c = Change::modify("p1", json!({"prices": {"EUR": 1}}), json!({"prices": {"EUR": 2}}));
//! assert!(PriceFeed::accepts(&c));
//! let msgs = PriceFeed::format(&c).unwrap();
//! assert_eq!(msgs[0].body_str(), Some(r#"{"eur":"2","sku":"p1"}"#));
//! ```
//!
//! ## What a plugin can reach
//! Only what the host grants: [`log`], its own [`config`], and a deny-all WASI
//! (no files, no network, no environment; virtual clocks that move only when
//! the plugin sleeps, and sleeps that never wait; seeded randomness).
//! See the README's "Sandbox" section.

#![deny(missing_docs)]

extern crate self as prism_sdk;

mod change;
pub mod csv;
mod host;
pub mod xml;

#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

// The Wasm side (bindings and export glue) exists on wasm32 only.
pub mod bindings;
pub mod wasm;
#[cfg(target_arch = "wasm32")]
pub use wasm as __wasm;

pub use change::{Change, ChangeKind, Image};

/// The README's Rust examples compile and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
pub use host::{Level, config, log};
pub use prism_contract::{FormatError, Message, pointer};
pub use serde_json::{self, Value, json};

/// A receiver: turns product changes into messages in the receiver's format.
///
/// All functions are associated functions: the host runs each call in a fresh
/// sandbox, so a plugin keeps no state between changes and its output depends
/// on its input alone.
pub trait Receiver {
    /// A cheap filter: `false` skips the change. Defaults to accepting everything.
    fn accepts(change: &Change) -> bool {
        let _ = change;
        true
    }

    /// Turn one change into zero or more messages.
    fn format(change: &Change) -> Result<Vec<Message>, FormatError>;

    /// Turn a window of changes into messages (batch mode). Defaults to
    /// formatting each change on its own and concatenating the results.
    fn format_batch(changes: &[Change]) -> Result<Vec<Message>, FormatError> {
        let mut out = Vec::new();
        for c in changes {
            out.extend(Self::format(c)?);
        }
        Ok(out)
    }
}

/// Export a [`Receiver`] as the component's `prism:receiver/receiver@0.2.0` world.
///
/// Call it once, at the crate root of a `cdylib`. Natively it only checks
/// that the type implements [`Receiver`], so `cargo test` runs anywhere.
#[macro_export]
macro_rules! export_receiver {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __PrismGuest;
            impl $crate::__wasm::bindings::Guest for __PrismGuest {
                fn accepts(change: $crate::__wasm::bindings::Change) -> bool {
                    $crate::__wasm::accepts::<$ty>(change)
                }
                fn format(
                    change: $crate::__wasm::bindings::Change,
                ) -> ::core::result::Result<(), $crate::__wasm::bindings::FormatError> {
                    $crate::__wasm::format::<$ty>(change)
                }
                fn format_batch(
                    changes: ::std::vec::Vec<$crate::__wasm::bindings::Change>,
                ) -> ::core::result::Result<(), $crate::__wasm::bindings::FormatError> {
                    $crate::__wasm::format_batch::<$ty>(changes)
                }
            }
            $crate::__wasm::bindings::__export_receiver_world!(__PrismGuest with_types_in $crate::__wasm::bindings);
        };
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() = || {
            fn is_receiver<R: $crate::Receiver>() {}
            is_receiver::<$ty>();
        };
    };
}
