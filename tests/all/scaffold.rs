//! scaffold tests
