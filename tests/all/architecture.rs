//! The shape of `host/`, checked: crates depend one way (types → engine →
//! core → aws → lambda → cli), the engine and core build without any AWS
//! crate, the Lambda binaries link nothing of the CLI, and no crate's
//! top-level modules form a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use prism_e2e::wasm::ROOT;

/// The host crates, lowest first: each may depend only on those before it.
const LAYERS: &[&str] = &[
    "prism-types",
    "prism-engine",
    "prism-core",
    "prism-aws",
    "prism-lambda",
    "prism-cli",
];

/// Every package `package` pulls in through the given edge kinds.
fn tree(package: &str, edges: &str, features: &[&str]) -> BTreeSet<String> {
    let mut cmd = Command::new(env!("CARGO"));
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

fn aws_crates(deps: &BTreeSet<String>) -> Vec<&String> {
    deps.iter()
        .filter(|d| d.starts_with("aws-") || d.starts_with("lambda") || d.as_str() == "hyper")
        .collect()
}

#[test]
fn the_engine_and_core_build_and_test_without_any_aws_crate() {
    for package in ["prism-types", "prism-engine", "prism-core"] {
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

#[test]
fn no_crate_has_a_cycle_between_its_modules() {
    for dir in ["types", "engine", "core", "aws", "lambda", "cli"] {
        let src = Path::new(ROOT).join("host").join(dir).join("src");
        let edges = module_edges(&src);
        assert!(
            !edges.is_empty() || dir == "lambda",
            "{dir}: no modules found"
        );
        if let Some(c) = cycle(&edges) {
            panic!("host/{dir}: module cycle {}", c.join(" → "));
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
