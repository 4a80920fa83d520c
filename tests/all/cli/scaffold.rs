//! `prism new` makes a crate that tests natively, builds to a component,
//! passes `prism plugin check` and previews with `prism plugin run`.

use std::path::Path;

use crate::{prism, text};

#[test]
fn a_new_plugin_builds_tests_checks_and_runs_as_generated() {
    let dir = tempfile::tempdir().unwrap();
    let sdk = format!("--sdk-path={}", prism_e2e::wasm::ROOT);
    let o = prism(&[
        "new",
        "acme-feed",
        "--dir",
        dir.path().to_str().unwrap(),
        &sdk,
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    let root = dir.path().join("acme-feed");
    for f in ["Cargo.toml", "src/lib.rs", "README.md", "changes.jsonl"] {
        assert!(root.join(f).exists(), "{f}");
    }
    // A shared target dir keeps the nested builds incremental across runs.
    let target = Path::new(prism_e2e::wasm::ROOT).join("target/scaffold-test");
    let cargo = |args: &[&str]| cargo_in(&root, &target, args);
    let tests = cargo(&["test"]);
    assert!(tests.contains("test result: ok. 3 passed"), "{tests}");
    cargo(&["build", "--release", "--target", "wasm32-wasip2"]);
    let wasm = target.join("wasm32-wasip2/release/acme_feed.wasm");
    let o = prism(&["plugin", "check", wasm.to_str().unwrap()]);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = prism(&[
        "plugin",
        "run",
        wasm.to_str().unwrap(),
        "--changes",
        root.join("changes.jsonl").to_str().unwrap(),
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains(r#""price":77.5"#), "{out}");
    assert!(out.contains("skipped (accepts = false)"), "{out}");
    assert!(out.contains(r#"{"deleted":true,"sku":"P-00000"}"#), "{out}");

    let o = prism(&[
        "new",
        "acme-feed",
        "--dir",
        dir.path().to_str().unwrap(),
        &sdk,
    ]);
    assert!(text(&o).1.contains("already exists"));
    let o = prism(&[
        "new",
        "Bad Name",
        "--dir",
        dir.path().to_str().unwrap(),
        &sdk,
    ]);
    assert!(text(&o).1.contains("must start with a lowercase letter"));
}

/// Run `cargo` in `root` with a shared target dir (nested builds stay
/// incremental across runs); panics with the output when it fails.
fn cargo_in(root: &Path, target: &Path, args: &[&str]) -> String {
    let o = crate::cargo()
        .args(args)
        .current_dir(root)
        .env("CARGO_TARGET_DIR", target)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "cargo {args:?} failed:\n{out}\n{err}");
    out
}

#[test]
fn a_new_mapper_tests_builds_and_passes_mapper_check() {
    let dir = tempfile::tempdir().unwrap();
    let sdk = format!("--sdk-path={}", prism_e2e::wasm::ROOT);
    let o = prism(&[
        "new",
        "--mapper",
        "acme-model",
        "--dir",
        dir.path().to_str().unwrap(),
        &sdk,
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    let root = dir.path().join("acme-model");
    let cargo_toml = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(
        cargo_toml.contains("prism-mapper-sdk = { path = "),
        "{cargo_toml}"
    );
    let target = Path::new(prism_e2e::wasm::ROOT).join("target/scaffold-test");
    let tests = cargo_in(&root, &target, &["test"]);
    assert!(tests.contains("test result: ok. 2 passed"), "{tests}");
    cargo_in(
        &root,
        &target,
        &["build", "--release", "--target", "wasm32-wasip2"],
    );
    // The component goes next to the manifest, and its digest into it, as
    // the generated README says.
    let wasm = std::fs::read(target.join("wasm32-wasip2/release/acme_model.wasm")).unwrap();
    let digest = prism_types::digest::Digest::of(&wasm).to_string();
    std::fs::create_dir_all(root.join("target/wasm32-wasip2/release")).unwrap();
    std::fs::write(
        root.join("target/wasm32-wasip2/release/acme_model.wasm"),
        &wasm,
    )
    .unwrap();
    let manifest = std::fs::read_to_string(root.join("mapper.toml")).unwrap();
    let manifest: String = manifest
        .lines()
        .map(|l| {
            if l.starts_with("digest = ") {
                format!("digest = \"{digest}\"")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(root.join("mapper.toml"), manifest).unwrap();
    let m = root.join("mapper.toml");
    let o = prism(&["mapper", "check", "--manifest", m.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(
        out.contains("mapper acme-model fits prism:receiver/mapper@0.1.0; 2 shadow tables"),
        "{out}"
    );
}

#[test]
fn the_sdk_comes_from_git_or_a_path_named_by_a_flag() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let o = prism(&[
        "new",
        "by-git",
        "--dir",
        d,
        "--sdk-git",
        "https://example.org/prism.git",
        "--sdk-rev",
        "v0.1.0",
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    let toml = std::fs::read_to_string(dir.path().join("by-git/Cargo.toml")).unwrap();
    assert!(
        toml.contains(r#"prism-sdk = { git = "https://example.org/prism.git", rev = "v0.1.0" }"#),
        "{toml}"
    );
    let o = prism(&[
        "new",
        "--mapper",
        "map-by-git",
        "--dir",
        d,
        "--sdk-git",
        "https://example.org/prism.git",
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    let toml = std::fs::read_to_string(dir.path().join("map-by-git/Cargo.toml")).unwrap();
    assert!(
        toml.contains(r#"prism-mapper-sdk = { git = "https://example.org/prism.git" }"#),
        "{toml}"
    );
    // Neither flag: a clear error, not the build machine's path.
    let o = prism(&["new", "nowhere", "--dir", d]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("--sdk-git URL"), "{:?}", text(&o));
    assert!(!dir.path().join("nowhere").exists());
    let o = prism(&["new", "wrong", "--dir", d, "--sdk-path", d]);
    assert!(text(&o).1.contains("is not prism's sdk/"), "{:?}", text(&o));
}
