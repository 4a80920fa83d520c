//! The project's own shape: crate layering and module cycles, and the docs.

mod architecture;
mod docs;
mod examples;
mod workspace_hack;
