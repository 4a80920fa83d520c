//! The docs, checked: the README stays under 400 lines, every path the
//! README and docs/ name exists, and every guide in docs/ is in the
//! README's "Where to go next" table.

use std::path::Path;

use prism_e2e::wasm::ROOT;

/// The README's length limit: depth goes to docs/.
const README_MAX_LINES: usize = 400;

/// The top-level folders whose paths the docs name.
const ROOTS: &[&str] = &[
    "contract/",
    "host/",
    "sdk/",
    "plugins/",
    "tests/",
    "scripts/",
    "docs/",
    "terraform/",
    "wit/",
    ".ci/",
];

/// The repository paths `text` names: a token starting with one of
/// [`ROOTS`], cut at what cannot be part of a path (`:12` line numbers,
/// `#anchors`, closing punctuation). Tokens with placeholders or globs
/// (`<name>`, `*`, `{a,b}`, `…`) are not paths and are left out.
fn named_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (start, _) in text.match_indices(['`', '(', ' ', '\n']) {
        let rest = &text[start + 1..];
        if !ROOTS.iter().any(|r| rest.starts_with(r)) {
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || "/._-<>*{},…".contains(c)))
            .unwrap_or(rest.len());
        let token = rest[..end].trim_end_matches(['.', ',']);
        if token.contains(['<', '>', '*', '{', '}', '…', ',']) {
            continue;
        }
        out.push(token.to_owned());
    }
    out
}

fn docs() -> Vec<(String, String)> {
    let root = Path::new(ROOT);
    let mut files = vec![root.join("README.md")];
    let mut guides: Vec<_> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    guides.sort();
    files.extend(guides);
    files
        .into_iter()
        .map(|p| {
            let name = p.strip_prefix(root).unwrap().display().to_string();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

#[test]
fn the_readme_stays_under_400_lines() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines < README_MAX_LINES,
        "README.md has {lines} lines (limit {README_MAX_LINES}): move depth to docs/"
    );
}

#[test]
fn every_path_the_docs_name_exists() {
    let root = Path::new(ROOT);
    let mut stale = Vec::new();
    let mut checked = 0;
    for (doc, text) in docs() {
        for path in named_paths(&text) {
            checked += 1;
            if !root.join(&path).exists() {
                stale.push(format!("{doc}: {path}"));
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} paths found: is the scan broken?"
    );
    assert!(
        stale.is_empty(),
        "paths named in the docs that do not exist:\n{}",
        stale.join("\n")
    );
}

#[test]
fn the_path_scan_finds_a_stale_path_and_skips_placeholders() {
    let text = "see `host/aws/src/sqs.rs:12`, (docs/runbook.md#incident) and \
                host/core/src/dispatch/ or `plugins/<name>/` and `tests/all/*.rs`.";
    assert_eq!(
        named_paths(text),
        [
            "host/aws/src/sqs.rs",
            "docs/runbook.md",
            "host/core/src/dispatch/"
        ]
    );
    assert!(!Path::new(ROOT).join("host/aws/src/sqs.rs").exists());
}

#[test]
fn every_guide_is_in_the_readmes_table() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let table = readme
        .split("## Where to go next")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("the README has a \"Where to go next\" section");
    for (doc, _) in docs().into_iter().skip(1) {
        assert!(
            table.contains(&format!("({doc})")),
            "{doc} is not in the README's table"
        );
    }
}
