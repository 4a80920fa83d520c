//! Does a component fit the `receiver` world, and import nothing the host
//! does not grant? Used by `prism plugin check` and at every load.

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

/// The interfaces a plugin may import: the contract's own and WASI 0.2
/// (backed by a deny-all context). Sockets are not granted at all.
const GRANTED_PREFIXES: &[&str] = &[
    "prism:receiver/log@0.1.",
    "prism:receiver/config@0.1.",
    "prism:receiver/types@0.1.",
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:io/",
    "wasi:random/",
];

/// The exports the world requires, with their WIT signatures (for messages).
pub const REQUIRED_EXPORTS: &[(&str, &str)] = &[
    ("accepts", "func(change: change) -> bool"),
    (
        "format",
        "func(change: change) -> result<list<message>, format-error>",
    ),
    (
        "format-batch",
        "func(changes: list<change>) -> result<list<message>, format-error>",
    ),
];

/// What is wrong with a component's shape.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ShapeProblems {
    /// Imports the host does not grant.
    pub forbidden_imports: Vec<String>,
    /// Required exports that are absent.
    pub missing_exports: Vec<String>,
}

impl ShapeProblems {
    /// No problems?
    pub fn is_empty(&self) -> bool {
        self.forbidden_imports.is_empty() && self.missing_exports.is_empty()
    }

    /// A multi-line explanation.
    pub fn explain(&self, exports: &[String]) -> String {
        let mut out = Vec::new();
        for i in &self.forbidden_imports {
            let why = if i.starts_with("wasi:sockets/") {
                "network access is not granted to plugins (Rust: do not use std::net; \
                 componentize-py: build with `componentize --stub-wasi`)"
            } else if i.starts_with("prism:receiver/") {
                "built against a different version of the prism:receiver contract (this host speaks 0.1)"
            } else {
                "the host grants only prism:receiver/{log,config} and deny-all WASI 0.2"
            };
            out.push(format!("imports `{i}`: {why}"));
        }
        for e in &self.missing_exports {
            let sig = REQUIRED_EXPORTS
                .iter()
                .find(|(n, _)| n == e)
                .map_or("", |(_, s)| s);
            out.push(format!(
                "does not export `{e}: {sig}` (the prism:receiver/receiver world requires it)"
            ));
        }
        if !self.missing_exports.is_empty() {
            let list = if exports.is_empty() {
                "nothing".to_owned()
            } else {
                exports.join(", ")
            };
            out.push(format!("it exports: {list}"));
        }
        out.join("\n")
    }
}

/// Inspect a compiled component's imports and exports.
pub fn shape(engine: &Engine, component: &Component) -> (ShapeProblems, Vec<String>) {
    let ty = component.component_type();
    let mut problems = ShapeProblems::default();
    for (name, _) in ty.imports(engine) {
        if !GRANTED_PREFIXES.iter().any(|p| name.starts_with(p)) {
            problems.forbidden_imports.push(name.to_owned());
        }
    }
    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(name, item)| match item.ty {
            ComponentItem::ComponentFunc(_) => format!("func {name}"),
            ComponentItem::ComponentInstance(_) => format!("instance {name}"),
            _ => name.to_owned(),
        })
        .collect();
    for (name, _) in REQUIRED_EXPORTS {
        if !exports.iter().any(|e| e == &format!("func {name}")) {
            problems.missing_exports.push((*name).to_owned());
        }
    }
    (problems, exports)
}
