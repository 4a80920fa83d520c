//! The logistics receiver's formatter written again in jq (run by jaq) and in
//! JavaScript (run by QuickJS), for the per-change table: what the same job
//! costs in the engines a plugin host might otherwise embed. Each gets the
//! change as JSON text (key, changed paths, new image) and returns the
//! message body as JSON text, so parsing and serializing count, as they do
//! for the Wasm plugin. Their outputs are checked against the native one.

use std::time::{Duration, Instant};

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data, unwrap_valr};
use jaq_json::Val;
use prism_types::change::Change;

const JQ: &str = r#"
def touches($fs): . as $p | any($fs[]; . as $f |
  $p == "" or $p == $f or ($f | startswith($p + "/")) or ($p | startswith($f + "/")));
if any(.changed_paths[]; touches(["/logistics/weight_g", "/logistics/dimensions_mm", "/logistics/packaging"])) | not
then empty
elif .new == null then {sku: .key, deleted: true}
else {sku: .key, weight_g: .new.logistics.weight_g, dimensions_mm: .new.logistics.dimensions_mm,
      packaging: .new.logistics.packaging,
      changed: [.changed_paths[] | select(startswith("/logistics/"))]}
end
"#;

const JS: &str = r#"
const FIELDS = ["/logistics/weight_g", "/logistics/dimensions_mm", "/logistics/packaging"];
const touches = (p) => FIELDS.some((f) =>
  p === "" || p === f || f.startsWith(p + "/") || p.startsWith(f + "/"));
function format(text) {
  const c = JSON.parse(text);
  if (!c.changed_paths.some(touches)) return null;
  if (c.new === null) return JSON.stringify({sku: c.key, deleted: true});
  const l = c.new.logistics;
  return JSON.stringify({sku: c.key, weight_g: l.weight_g, dimensions_mm: l.dimensions_mm,
    packaging: l.packaging, changed: c.changed_paths.filter((p) => p.startsWith("/logistics/"))});
}
"#;

/// The change as both baselines take it.
fn input(c: &Change) -> String {
    format!(
        r#"{{"key":{},"changed_paths":{},"new":{}}}"#,
        serde_json::to_string(&c.key).expect("a string"),
        serde_json::to_string(&c.changed_paths).expect("strings"),
        c.new_json.as_deref().unwrap_or("null")
    )
}

/// Run the jq program over every change: (time, bodies).
pub fn jaq(changes: &[Change]) -> (Duration, Vec<String>) {
    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs());
    let funs = jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs());
    let loader = Loader::new(defs);
    let arena = Arena::default();
    let modules = loader
        .load(&arena, File { code: JQ, path: () })
        .expect("the jq program parses");
    let filter = Compiler::default()
        .with_funs(funs)
        .compile(modules)
        .expect("the jq program compiles");
    let started = Instant::now();
    let mut bodies = Vec::new();
    for c in changes {
        let text = input(c);
        let v = jaq_json::read::parse_single(text.as_bytes()).expect("valid JSON");
        let ctx = Ctx::<data::JustLut<Val>>::new(&filter.lut, Vars::new([]));
        for out in filter.id.run((ctx, v)).map(unwrap_valr) {
            bodies.push(out.expect("the program does not fail").to_string());
        }
    }
    (started.elapsed(), bodies)
}

/// Run the JavaScript function over every change: (time, bodies).
pub fn quickjs(changes: &[Change]) -> (Duration, Vec<String>) {
    let rt = rquickjs::Runtime::new().expect("a QuickJS runtime");
    let cx = rquickjs::Context::full(&rt).expect("a QuickJS context");
    cx.with(|ctx| {
        ctx.eval::<(), _>(JS).expect("the script loads");
        let format: rquickjs::Function = ctx.globals().get("format").expect("format is defined");
        let started = Instant::now();
        let mut bodies = Vec::new();
        for c in changes {
            let out: Option<String> = format.call((input(c),)).expect("format runs");
            bodies.extend(out);
        }
        (started.elapsed(), bodies)
    })
}
