//! python tests
