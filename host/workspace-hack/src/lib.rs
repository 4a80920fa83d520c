//! Feature unification only (see `Cargo.toml`): no code.
