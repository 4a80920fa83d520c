//! `prism-workspace-hack` keeps the demo's `prism` (no AWS backends) on the
//! same features of shared dependencies as the whole workspace, so CI's
//! second clippy and `scripts/demo` reuse what was already checked. When a
//! dependency update changes what the workspace enables, this test names
//! the crate and the features to add to `host/workspace-hack/Cargo.toml`.

use std::collections::{BTreeMap, BTreeSet};

/// Each package `cargo tree` resolves for `args`, with its features.
fn features(args: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let o = crate::cargo()
        .args([
            "tree",
            "--offline",
            "-e",
            "normal,build,dev",
            "--prefix",
            "none",
        ])
        .args(["-f", "{p}|{f}"])
        .args(args)
        .current_dir(prism_e2e::wasm::ROOT)
        .output()
        .expect("running cargo tree");
    let (out, err) = crate::text(&o);
    assert!(o.status.success(), "cargo tree {args:?}: {err}");
    let mut all: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in out.lines() {
        let Some((package, f)) = line.trim_end_matches(" (*)").split_once('|') else {
            continue;
        };
        let set = all.entry(package.to_owned()).or_default();
        set.extend(f.split(',').filter(|f| !f.is_empty()).map(str::to_owned));
    }
    all
}

#[test]
fn the_demo_build_has_the_workspace_features_of_every_shared_dependency() {
    let demo = features(&["-p", "prism-cli", "--no-default-features"]);
    let workspace = features(&["--workspace", "--features", "prism-e2e/baselines"]);
    let mut drift = Vec::new();
    for (package, have) in &demo {
        // The workspace's own crates differ on purpose (`aws`, `testkit`).
        if package.starts_with("prism-") {
            continue;
        }
        let Some(want) = workspace.get(package) else {
            continue;
        };
        let missing: Vec<&String> = want.difference(have).collect();
        if !missing.is_empty() {
            drift.push(format!("{package}: add {missing:?}"));
        }
    }
    assert!(
        drift.is_empty(),
        "host/workspace-hack/Cargo.toml is behind the workspace:\n  {}",
        drift.join("\n  ")
    );
}
