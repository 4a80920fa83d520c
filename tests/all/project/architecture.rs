//! The shape of `host/`, checked: crates depend one way (contract → types →
//! engine → core → aws → lambda → cli), the host depends on the plugin
//! contract and on no plugin SDK, the engine and core build without any AWS
//! crate, the Lambda binaries link nothing of the CLI, and no crate's
//! modules form a cycle, at the top level or at any depth.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use prism_e2e::wasm::ROOT;

/// The host crates, in an order each may depend only on crates before it.
const LAYERS: &[&str] = &[
    "prism-types",
    "prism-sample",
    "prism-engine",
    "prism-core",
    "prism-mapping",
    "prism-read-api",
    "prism-aws",
    "prism-lambda",
    "prism-cli",
];

/// Crates that must not depend on each other although the order above
/// would let the later one: the three products (the dispatcher, the model
/// builder, the read API) stand side by side, and the sample catalogue
/// is data that nothing below the adapters builds on.
const APART: &[(&str, &str)] = &[
    ("prism-read-api", "prism-mapping"),
    ("prism-engine", "prism-sample"),
    ("prism-core", "prism-sample"),
    ("prism-mapping", "prism-sample"),
    ("prism-read-api", "prism-sample"),
    ("prism-aws", "prism-sample"),
    ("prism-lambda", "prism-sample"),
];

/// The plugin SDKs: what plugin authors build into Wasm. The host shares
/// only `prism-contract` with them.
const SDKS: &[&str] = &["prism-sdk", "prism-sdk-core", "prism-mapper-sdk"];

/// Every package `package` pulls in through the given edge kinds.
fn tree(package: &str, edges: &str, features: &[&str]) -> BTreeSet<String> {
    let mut cmd = crate::cargo();
    cmd.current_dir(ROOT).args([
        "tree",
        "--offline",
        "-p",
        package,
        "-e",
        edges,
        "--prefix",
        "none",
        "-f",
        "{p}",
    ]);
    cmd.args(features);
    let out = cmd.output().expect("running cargo tree");
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// AWS's crates (`aws-config`, `aws-sdk-*`, `aws-smithy-*`,
/// `aws_lambda_events`, …), the Lambda runtime's, and an HTTP stack.
fn aws_crates(deps: &BTreeSet<String>) -> Vec<&String> {
    deps.iter()
        .filter(|d| {
            let d = d.replace('_', "-");
            d.starts_with("aws") || d.starts_with("lambda") || d == "hyper"
        })
        .collect()
}

#[test]
fn the_aws_filter_knows_every_spelling() {
    let deps: BTreeSet<String> = [
        "aws-config",
        "aws-sdk-sqs",
        "aws-smithy-runtime",
        "aws_lambda_events",
        "lambda_runtime",
        "hyper",
        "serde",
        "prism-core",
    ]
    .map(String::from)
    .into();
    assert_eq!(aws_crates(&deps).len(), 6, "{:?}", aws_crates(&deps));
}

#[test]
fn the_engine_core_and_products_build_and_test_without_any_aws_crate() {
    for package in [
        "prism-types",
        "prism-sample",
        "prism-engine",
        "prism-core",
        "prism-mapping",
        "prism-read-api",
    ] {
        let deps = tree(package, "normal,build,dev", &[]);
        assert!(deps.contains(package), "{package}: {deps:?}");
        assert_eq!(aws_crates(&deps), Vec::<&String>::new(), "{package}");
    }
}

#[test]
fn the_demo_build_of_the_cli_compiles_no_aws_sdk() {
    let deps = tree("prism-cli", "normal,build", &["--no-default-features"]);
    assert_eq!(aws_crates(&deps), Vec::<&String>::new());
    assert!(!deps.contains("prism-aws") && !deps.contains("prism-lambda"));
}

#[test]
fn the_lambda_binaries_link_nothing_of_the_cli() {
    let deps = tree("prism-lambda", "normal,build", &[]);
    for cli in ["prism-cli", "clap"] {
        assert!(!deps.contains(cli), "prism-lambda depends on {cli}");
    }
}

#[test]
fn host_crates_depend_only_on_lower_layers() {
    for (i, package) in LAYERS.iter().enumerate() {
        let deps = tree(package, "normal,build", &["--all-features"]);
        for higher in &LAYERS[i + 1..] {
            assert!(!deps.contains(*higher), "{package} depends on {higher}");
        }
    }
}

#[test]
fn the_products_and_the_sample_stand_apart() {
    for (package, other) in APART {
        let deps = tree(package, "normal,build", &["--all-features"]);
        assert!(!deps.contains(*other), "{package} depends on {other}");
    }
}

#[test]
fn the_host_shares_only_the_contract_with_the_plugin_sdks() {
    for package in LAYERS {
        let deps = tree(package, "normal,build", &["--all-features"]);
        assert!(deps.contains("prism-contract"), "{package}: {deps:?}");
        for sdk in SDKS {
            assert!(!deps.contains(*sdk), "{package} depends on {sdk}");
        }
    }
    for sdk in SDKS {
        let deps = tree(sdk, "normal,build", &[]);
        assert!(deps.contains("prism-contract"), "{sdk}: {deps:?}");
        for host in LAYERS {
            assert!(!deps.contains(*host), "{sdk} depends on {host}");
        }
    }
}

#[test]
fn the_contract_is_the_ground_floor() {
    let deps = tree("prism-contract", "normal,build", &[]);
    let prism: Vec<&String> = deps
        .iter()
        .filter(|d| d.starts_with("prism-") && *d != "prism-contract")
        .collect();
    assert_eq!(prism, Vec::<&String>::new());
}

/// The `.rs` files of a crate's `src/`, with the top-level module each
/// belongs to (`lib.rs` and `main.rs` are the root, "").
fn modules(src: &Path) -> Vec<(String, PathBuf)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(src, &mut files);
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(src).unwrap();
            let first = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy();
            let top = first.trim_end_matches(".rs").to_owned();
            let top = if ["lib", "main", "bin"].contains(&top.as_str()) {
                String::new()
            } else {
                top
            };
            (top, p)
        })
        .collect()
}

/// `crate::m` references between a crate's top-level modules.
fn module_edges(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let files = modules(src);
    let tops: BTreeSet<String> = files.iter().map(|(t, _)| t.clone()).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (top, path) in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let mut refs = BTreeSet::new();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (i, _) in line.match_indices("crate::") {
                if line[..i].ends_with('$') {
                    continue;
                }
                let name: String = line[i + 7..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if tops.contains(&name) && &name != top {
                    refs.insert(name);
                }
            }
            // `super::m` from a top-level file names a sibling module.
            if path.parent() == Some(src) {
                for (i, _) in line.match_indices("super::") {
                    let name: String = line[i + 7..]
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if tops.contains(&name) && &name != top {
                        refs.insert(name);
                    }
                }
            }
        }
        if !top.is_empty() {
            edges.entry(top.clone()).or_default().extend(refs);
        }
    }
    edges
}

/// A cycle in `edges`, if there is one.
fn cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut c = path[i..].to_vec();
            c.push(n.to_owned());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_owned());
        for m in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|n| visit(n, edges, &mut Vec::new(), &mut done))
}

/// A module's path (`dispatch::flush`) from its file under `src/`
/// (`dispatch/flush.rs` or `dispatch/flush/mod.rs`; the root is "").
fn module_path(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|l| ["mod", "lib", "main"].contains(&l.as_str()))
    {
        parts.pop();
    }
    parts.join("::")
}

/// References between all of a crate's modules, at every depth
/// (`crate::a::b`, `super::b`), leaving out those between a module and
/// its own ancestors (a parent declares and re-exports its children, and
/// children use what it holds).
fn nested_module_edges(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let files: Vec<PathBuf> = modules(src).into_iter().map(|(_, p)| p).collect();
    let known: BTreeSet<String> = files.iter().map(|f| module_path(src, f)).collect();
    let ident = |t: &str| -> Vec<String> {
        t.split("::")
            .map(|seg| {
                seg.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .take_while(|seg| !seg.is_empty())
            .collect()
    };
    // The longest known module that `segments` (from `base`) names.
    let resolve = |base: &str, segments: &[String]| -> Option<String> {
        (1..=segments.len()).rev().find_map(|n| {
            let tail = segments[..n].join("::");
            let full = if base.is_empty() {
                tail
            } else {
                format!("{base}::{tail}")
            };
            known.contains(&full).then_some(full)
        })
    };
    let related = |a: &str, b: &str| {
        a == b
            || a.is_empty()
            || b.is_empty()
            || a.starts_with(&format!("{b}::"))
            || b.starts_with(&format!("{a}::"))
    };
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let m = module_path(src, f);
        let parent = m.rsplit_once("::").map_or("", |(p, _)| p).to_owned();
        let text = std::fs::read_to_string(f).unwrap();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            let mut targets = Vec::new();
            for (i, _) in line.match_indices("crate::") {
                if !line[..i].ends_with('$') {
                    targets.extend(resolve("", &ident(&line[i + 7..])));
                }
            }
            for (i, _) in line.match_indices("super::") {
                if !line[..i].ends_with("super::") {
                    targets.extend(resolve(&parent, &ident(&line[i + 7..])));
                }
            }
            for t in targets {
                if !related(&m, &t) {
                    edges.entry(m.clone()).or_default().insert(t);
                }
            }
        }
    }
    edges
}

/// Every library crate of the product, by directory: the contract, the
/// host and the SDKs.
const CRATE_DIRS: &[&str] = &[
    "contract",
    "host/types",
    "host/engine",
    "host/core",
    "host/sample",
    "host/mapping",
    "host/read-api",
    "host/aws",
    "host/lambda",
    "host/cli",
    "sdk",
    "sdk/core",
    "sdk/mapper",
];

#[test]
fn no_module_at_any_depth_is_in_a_cycle() {
    for dir in CRATE_DIRS {
        let src = Path::new(ROOT).join(dir).join("src");
        if let Some(c) = cycle(&nested_module_edges(&src)) {
            panic!("{dir}: module cycle {}", c.join(" → "));
        }
    }
}

#[test]
fn the_nested_check_sees_a_cycle_between_sibling_submodules() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod d;\n").unwrap();
    std::fs::write(src.join("d/mod.rs"), "mod x;\nmod y;\npub use x::A;\n").unwrap();
    std::fs::write(src.join("d/x.rs"), "use super::y::B;\npub struct A;\n").unwrap();
    std::fs::write(src.join("d/y.rs"), "use crate::d::x::A;\npub struct B;\n").unwrap();
    let c = cycle(&nested_module_edges(src)).expect("the cycle x → y → x");
    assert_eq!(c, ["d::x", "d::y", "d::x"]);
    // Children using their parent, and the parent re-exporting them, is
    // no cycle.
    std::fs::write(src.join("d/y.rs"), "use super::A;\npub struct B;\n").unwrap();
    assert_eq!(cycle(&nested_module_edges(src)), None);
}

#[test]
fn no_crate_has_a_cycle_between_its_modules() {
    for dir in CRATE_DIRS {
        let src = Path::new(ROOT).join(dir).join("src");
        let edges = module_edges(&src);
        assert!(
            !edges.is_empty() || *dir == "host/lambda" || *dir == "sdk/core",
            "{dir}: no modules found"
        );
        if let Some(c) = cycle(&edges) {
            panic!("{dir}: module cycle {}", c.join(" → "));
        }
    }
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let edges = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["c".to_owned()])),
        ("c".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]);
    assert_eq!(cycle(&edges).unwrap(), ["a", "b", "c", "a"]);
    let dag = BTreeMap::from([("a".to_owned(), BTreeSet::from(["b".to_owned()]))]);
    assert_eq!(cycle(&dag), None);
}

/// The README's commands install only inside the project: every pip call
/// in `scripts/` and `.ci/` runs the project venv's own Python, and
/// nothing installs globally (`npm -g`, `pip --user`, `sudo`, `cargo install`).
#[test]
fn scripts_install_nothing_outside_the_project() {
    let root = Path::new(ROOT);
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("scripts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.push(root.join(".ci/run"));
    let mut checked = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split('#').next().unwrap_or("");
            let at = format!("{}:{}", f.display(), n + 1);
            if code.contains("pip install") || code.contains("-m pip") {
                checked += 1;
                assert!(
                    code.contains("\"$venv/bin/python\" -m pip"),
                    "{at}: pip outside the project venv: {line}"
                );
            }
            for global in [
                "npm install -g",
                "npm i -g",
                "--user",
                "sudo ",
                "cargo install",
            ] {
                assert!(!code.contains(global), "{at}: installs globally: {line}");
            }
        }
    }
    assert!(
        checked > 0,
        "no pip call found: is scripts/tools still where tools come from?"
    );
}
