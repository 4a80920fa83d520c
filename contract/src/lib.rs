//! # prism-contract
//!
//! The prism plugin contract (`wit/`) as Rust types: the ground floor both
//! sides build on. The host (`host/`) and the plugin SDKs (`sdk/`) depend
//! on this crate and on nothing of each other, so a change made for plugin
//! authors cannot break the dispatcher, and the two sides cannot disagree
//! on what a message, a change kind or a field pointer is.
//!
//! Modules follow the WIT: [`types`] (change kinds, messages, format
//! errors), [`log`], [`mapping`] (model writes), plus [`pointer`](mod@pointer) (the one
//! JSON pointer implementation, used for `changed-paths` and `interest`)
//! and one module per contract version ([`v0_1`], [`v0_2`]) with its
//! worlds: what each grants and requires.

#![deny(missing_docs)]

pub mod log;
pub mod mapping;
pub mod pointer;
pub mod types;
pub mod v0_1;
pub mod v0_2;
mod world;

pub use log::Level;
pub use mapping::{MapError, ModelWrite, ShadowChange};
pub use types::{ChangeKind, FormatError, Message};
pub use world::{Contract, World};

impl Contract {
    /// This version's receiver world.
    pub fn receiver(self) -> &'static World {
        match self {
            Self::V0_1 => &v0_1::RECEIVER,
            Self::V0_2 => &v0_2::RECEIVER,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Contract;

    #[test]
    fn every_world_grants_its_interfaces_and_wasi_but_no_sockets() {
        for w in [
            &super::v0_1::RECEIVER,
            &super::v0_2::RECEIVER,
            &super::v0_1::MAPPER,
        ] {
            assert!(
                w.grants_import("wasi:clocks/monotonic-clock@0.2.3"),
                "{}",
                w.name
            );
            assert!(!w.grants_import("wasi:sockets/tcp@0.2.3"), "{}", w.name);
            assert!(
                !w.grants_import("wasi:http/outgoing-handler@0.2.3"),
                "{}",
                w.name
            );
        }
        assert!(super::v0_2::RECEIVER.grants_import("prism:receiver/images@0.2.0"));
        assert!(!super::v0_1::RECEIVER.grants_import("prism:receiver/images@0.2.0"));
        assert!(!super::v0_2::RECEIVER.grants_import("prism:receiver/shadow@0.1.0"));
        assert!(super::v0_1::MAPPER.grants_import("prism:receiver/shadow@0.1.0"));
    }

    #[test]
    fn each_version_names_its_own_world() {
        for c in [Contract::V0_1, Contract::V0_2] {
            let w = c.receiver();
            assert_eq!(w.contract, Some(c));
            assert!(w.name.ends_with(c.version()), "{}", w.name);
            let v = &c.version()[..4];
            assert!(w.granted.iter().all(|g| g.ends_with(v)), "{:?}", w.granted);
        }
    }
}
