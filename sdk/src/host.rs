//! The two things a plugin may ask of the host: logging and its own config.
//! Both are `prism-sdk-core`'s, shared with the mapper SDK; on `wasm32` this
//! module supplies them from the receiver world's imports. Natively (a
//! plugin author's `cargo test`) log records are kept per thread and config
//! comes from [`crate::testing::set_config`].

pub use prism_sdk_core::{Level, config, log};

/// An image the host holds: change `change`'s new or old image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HostImage {
    pub(crate) change: u64,
    pub(crate) new: bool,
}

/// Copy an image from the host (0.2's `images` import). Natively there is
/// no host: images are always built from text or values there.
pub(crate) fn read_image(from: HostImage) -> String {
    #[cfg(target_arch = "wasm32")]
    {
        use crate::bindings::prism::receiver::images;
        let text = if from.new {
            images::new_image(from.change)
        } else {
            images::old_image(from.change)
        };
        // The host sends none only where the kind says there is no image,
        // and the SDK asks only where there is one.
        text.unwrap_or_else(|| "null".to_owned())
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = from;
        "null".to_owned()
    }
}

#[cfg(target_arch = "wasm32")]
pub(crate) mod imp {
    prism_sdk_core::wit_host!(
        log: crate::bindings::prism::receiver::log,
        config: crate::bindings::prism::receiver::config,
    );
}
