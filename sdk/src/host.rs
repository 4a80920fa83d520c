//! The two things a plugin may ask of the host: logging and its own config.
//! Both are `prism-sdk-core`'s, shared with the mapper SDK; on `wasm32` this
//! module supplies them from the receiver world's imports. Natively (a
//! plugin author's `cargo test`) log records are kept per thread and config
//! comes from [`crate::testing::set_config`].

pub use prism_sdk_core::{Level, config, log};

/// Copy an image from the host (0.2's `images` import). Natively there is
/// no host: images are always built from text or values there.
pub(crate) fn read_image(from: crate::change::HostImage) -> String {
    #[cfg(target_arch = "wasm32")]
    {
        use crate::wasm::bindings::prism::receiver::images;
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
    use crate::wasm::bindings::prism::receiver::{config, log as wit_log};
    use prism_sdk_core::{Host, Level};

    /// The receiver world's imports, as the SDKs' shared [`Host`].
    pub(crate) struct WitHost;

    impl Host for WitHost {
        fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]) {
            let level = match level {
                Level::Trace => wit_log::Level::Trace,
                Level::Debug => wit_log::Level::Debug,
                Level::Info => wit_log::Level::Info,
                Level::Warn => wit_log::Level::Warn,
                Level::Error => wit_log::Level::Error,
            };
            let fields: Vec<(String, String)> = fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            wit_log::log(level, message, &fields);
        }

        fn config_get(&self, key: &str) -> Option<String> {
            config::get(key)
        }

        fn config_entries(&self) -> Vec<(String, String)> {
            config::entries()
        }
    }
}
