//! The host side of `prism:receiver@0.2.0`'s imports: `images` and
//! `output` read from and write to the sandbox's [`Call`], and `log` and
//! `config` are 0.1's, with 0.2's types.

use prism_contract::Message;

use super::bindings::v0_2::{WitMessage as V2Message, config, prism::receiver::types};
use super::bindings::v0_2::{images, log, output};
use super::sandbox::HostState;

impl images::Host for HostState {
    fn new_image(&mut self, change: u64) -> wasmtime::Result<Option<String>> {
        self.call().image(change, true)
    }

    fn old_image(&mut self, change: u64) -> wasmtime::Result<Option<String>> {
        self.call().image(change, false)
    }
}

impl output::Host for HostState {
    fn emit(&mut self, m: V2Message) -> wasmtime::Result<()> {
        let m = Message {
            body: m.body,
            content_type: m.content_type,
            group: m.group,
            attributes: m.attributes,
        };
        self.call().emit(m).map_err(wasmtime::Error::new)
    }
}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String, fields: Vec<(String, String)>) {
        use super::bindings::log::Level as L;
        let level = match level {
            log::Level::Trace => L::Trace,
            log::Level::Debug => L::Debug,
            log::Level::Info => L::Info,
            log::Level::Warn => L::Warn,
            log::Level::Error => L::Error,
        };
        super::bindings::log::Host::log(self, level, message, fields);
    }
}

impl config::Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        super::bindings::config::Host::get(self, key)
    }

    fn entries(&mut self) -> Vec<(String, String)> {
        super::bindings::config::Host::entries(self)
    }
}

impl types::Host for HostState {}
