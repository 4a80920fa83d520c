//! pipeline tests
