//! Does a component fit its world (`receiver` or `mapper`), and import
//! nothing the host does not grant? Used by `prism plugin check` and at
//! every load.

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::{ComponentItem, Type};

pub use prism_contract::World;
pub use prism_contract::v0_1::{MAPPER, RECEIVER};
pub use prism_contract::v0_2::RECEIVER as RECEIVER_V0_2;

/// Which receiver world a component was built for. Its `accepts` export
/// decides (0.2's change record has an `id`); without one, its imports do;
/// with neither, it is checked against the newest world, whose errors
/// then name what is missing.
pub fn receiver_world(engine: &Engine, component: &Component) -> &'static World {
    let ty = component.component_type();
    for (name, item) in ty.exports(engine) {
        if let ("accepts", ComponentItem::ComponentFunc(f)) = (name, item.ty) {
            let has_id = f.params().next().is_some_and(|(_, t)| match t {
                Type::Record(r) => r.fields().any(|f| f.name == "id"),
                _ => false,
            });
            return if has_id { &RECEIVER_V0_2 } else { &RECEIVER };
        }
    }
    for (name, _) in ty.imports(engine) {
        if name.starts_with("prism:receiver/") && name.contains("@0.1.") {
            return &RECEIVER;
        }
    }
    &RECEIVER_V0_2
}

/// Does `world` grant the interface `import` names, but at another version
/// (`prism:receiver/log@0.1.0` against 0.2's `prism:receiver/log@0.2.`)?
fn grants_in_another_version(world: &World, import: &str) -> bool {
    let Some((interface, _)) = import.split_once('@') else {
        return false;
    };
    if !interface.starts_with("prism:receiver/") {
        return false;
    }
    world.granted.iter().any(|g| {
        g.split_once('@')
            .is_some_and(|(name, _)| name == interface && !import.starts_with(g))
    })
}

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
    pub fn explain(&self, world: &World, exports: &[String]) -> String {
        let mut out = Vec::new();
        for i in &self.forbidden_imports {
            let why = if i.starts_with("wasi:sockets/") {
                "network access is not granted to plugins (Rust: do not use std::net; \
                 componentize-py: build with `componentize --stub-wasi`)"
            } else if i.starts_with("prism:receiver/")
                && !i.contains("@0.1.")
                && !i.contains("@0.2.")
            {
                "built against a version of the prism:receiver contract this host does not serve (it serves 0.1 and 0.2)"
            } else if world.contract.is_some() && grants_in_another_version(world, i) {
                "mixes versions of the prism:receiver contract: its exports are one version and this import another"
            } else {
                ""
            };
            if why.is_empty() {
                out.push(format!(
                    "imports `{i}`: the {} world grants only {}",
                    world.name, world.grants
                ));
            } else {
                out.push(format!("imports `{i}`: {why}"));
            }
        }
        for e in &self.missing_exports {
            let sig = world
                .exports
                .iter()
                .find(|(n, _)| n == e)
                .map_or("", |(_, s)| s);
            out.push(format!(
                "does not export `{e}: {sig}` (the {} world requires it)",
                world.name
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

/// Inspect a compiled component's imports and exports against `world`.
pub fn shape(
    engine: &Engine,
    component: &Component,
    world: &World,
) -> (ShapeProblems, Vec<String>) {
    let ty = component.component_type();
    let mut problems = ShapeProblems::default();
    for (name, _) in ty.imports(engine) {
        if !world.grants_import(name) {
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
    for (name, _) in world.exports {
        if !exports.iter().any(|e| e == &format!("func {name}")) {
            problems.missing_exports.push((*name).to_owned());
        }
    }
    (problems, exports)
}

#[cfg(test)]
mod version_tests {
    use super::*;

    #[test]
    fn only_a_granted_interface_at_another_version_mixes_versions() {
        assert!(grants_in_another_version(
            &RECEIVER_V0_2,
            "prism:receiver/log@0.1.0"
        ));
        assert!(!grants_in_another_version(
            &RECEIVER_V0_2,
            "prism:receiver/log@0.2.0"
        ));
        // A mapper's own interface is not a receiver interface at all.
        assert!(!grants_in_another_version(
            &RECEIVER,
            "prism:receiver/shadow@0.1.0"
        ));
        assert!(!grants_in_another_version(
            &RECEIVER,
            "prism:receiver/images@0.2.0"
        ));
    }
}
