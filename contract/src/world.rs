//! What a world is (what it grants and requires) and which contract
//! versions there are. The version modules ([`crate::v0_1`],
//! [`crate::v0_2`]) define the worlds; this module names none of them.

/// Which version of the `prism:receiver` contract a plugin was built for.
/// The host serves every version it lists; see docs/contract.md for the
/// deprecation policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Contract {
    /// `prism:receiver@0.1.0`: images passed whole to every call, messages
    /// returned as one list. Deprecated; still served.
    V0_1,
    /// `prism:receiver@0.2.0`: images read on demand, messages emitted.
    V0_2,
}

impl Contract {
    /// The version as it appears in WIT, e.g. `0.2.0`.
    pub fn version(self) -> &'static str {
        match self {
            Self::V0_1 => "0.1.0",
            Self::V0_2 => "0.2.0",
        }
    }

    /// The newest version, the one `prism-sdk` builds for.
    pub const NEWEST: Self = Self::V0_2;

    /// What `prism plugin check` and `register` say about a deprecated
    /// version (`None` for a current one).
    pub fn deprecation(self) -> Option<String> {
        (self < Self::NEWEST).then(|| {
            format!(
                "{self} is deprecated: it is still served, with unchanged output, but rebuild against {} \
                 (prism-sdk) when you next release; see the README's contract versions",
                Self::NEWEST
            )
        })
    }
}

impl std::fmt::Display for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "prism:receiver@{}", self.version())
    }
}

/// What a world grants and requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct World {
    /// The world's name, e.g. `prism:receiver/receiver@0.1.0`.
    pub name: &'static str,
    /// The contract's interfaces a plugin of this world may import (name
    /// prefixes); every world also grants deny-all WASI ([`World::grants_import`]).
    pub granted: &'static [&'static str],
    /// The exports the world requires, with their WIT signatures (for messages).
    pub exports: &'static [(&'static str, &'static str)],
    /// What the host grants, in words (for messages).
    pub grants: &'static str,
    /// The receiver contract version (`None` for the mapper).
    pub contract: Option<Contract>,
}

impl World {
    /// May a plugin of this world import `name`: one of its contract
    /// interfaces, or WASI 0.2 (deny-all; sockets not at all)?
    pub fn grants_import(&self, name: &str) -> bool {
        self.granted
            .iter()
            .chain(WASI.iter())
            .any(|prefix| name.starts_with(prefix))
    }
}

/// WASI 0.2, backed by a deny-all context. Sockets are not granted at all.
const WASI: [&str; 5] = [
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:io/",
    "wasi:random/",
];

#[cfg(test)]
mod tests {
    use super::Contract;

    #[test]
    fn only_versions_older_than_the_newest_are_deprecated() {
        let old = Contract::V0_1.deprecation().unwrap();
        assert!(old.contains("prism:receiver@0.1.0 is deprecated"), "{old}");
        assert!(old.contains("prism:receiver@0.2.0"), "{old}");
        assert_eq!(Contract::NEWEST.deprecation(), None);
        assert!(Contract::V0_1 < Contract::V0_2);
    }
}
