//! `prism new NAME`: scaffold a receiver plugin crate (or, with `--mapper`,
//! a model mapper crate). The SDK comes from a path or a git repository,
//! named with a flag: an installed `prism` knows nothing of where it was
//! built.

use std::path::PathBuf;

mod mapper;
use std::process::ExitCode;

use anyhow::{Context, bail};

/// Scaffold a new receiver plugin crate (or, with --mapper, a mapper).
///
/// Writes Cargo.toml, src/lib.rs with a working plugin and its tests, a
/// README, and a sample changes file (a receiver) or a manifest (a mapper).
/// It builds and passes its tests as generated. Name where the SDK comes
/// from: --sdk-git URL (with --sdk-rev) or --sdk-path DIR (a prism checkout).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Crate name (lowercase letters, digits, '-' or '_').
    pub name: String,
    /// Parent directory for the new crate.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Scaffold a model mapper (the `mapper` world) instead of a receiver.
    #[arg(long)]
    pub mapper: bool,
    /// The prism repository to take the SDK from, by git [default: $PRISM_SDK_GIT at build time, if set].
    #[arg(long, value_name = "URL", conflicts_with = "sdk_path")]
    pub sdk_git: Option<String>,
    /// With --sdk-git: the tag, branch or commit.
    #[arg(long, value_name = "REV", requires = "sdk_git")]
    pub sdk_rev: Option<String>,
    /// A prism checkout to take the SDK from, by path (its root or its sdk/).
    #[arg(long, value_name = "DIR")]
    pub sdk_path: Option<PathBuf>,
}

/// Where the generated crate gets its SDK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdkSource {
    /// A git repository (holding `prism-sdk` and `prism-mapper-sdk`), at a rev.
    Git {
        /// The repository.
        url: String,
        /// A tag, branch or commit.
        rev: Option<String>,
    },
    /// The `sdk/` directory of a prism checkout.
    Path(PathBuf),
}

impl SdkSource {
    /// The dependency line for `package` (`prism-sdk` or `prism-mapper-sdk`).
    fn dependency(&self, package: &str) -> String {
        match self {
            SdkSource::Git { url, rev } => {
                let rev = rev
                    .as_ref()
                    .map(|r| format!(", rev = {r:?}"))
                    .unwrap_or_default();
                format!("{package} = {{ git = {url:?}{rev} }}")
            }
            SdkSource::Path(sdk) => {
                let dir = if package == "prism-mapper-sdk" {
                    sdk.join("mapper")
                } else {
                    sdk.clone()
                };
                format!("{package} = {{ path = {:?} }}", dir.display().to_string())
            }
        }
    }
}

/// The SDK source the flags name, a path checked to hold the SDK.
fn sdk_source(a: &Args) -> anyhow::Result<SdkSource> {
    if let Some(url) = a.sdk_git.clone().or_else(|| {
        option_env!("PRISM_SDK_GIT")
            .filter(|_| a.sdk_path.is_none())
            .map(str::to_owned)
    }) {
        return Ok(SdkSource::Git {
            url,
            rev: a.sdk_rev.clone(),
        });
    }
    let Some(dir) = &a.sdk_path else {
        bail!(
            "name where the generated crate gets prism's SDK: --sdk-git URL [--sdk-rev TAG] \
             (the prism repository) or --sdk-path DIR (a prism checkout)"
        );
    };
    // The checkout's root or its sdk/ itself.
    let sdk = if dir.join("sdk/Cargo.toml").exists() {
        dir.join("sdk")
    } else {
        dir.clone()
    };
    let sdk = sdk
        .canonicalize()
        .with_context(|| format!("prism-sdk not found at {}", sdk.display()))?;
    let manifest = std::fs::read_to_string(sdk.join("Cargo.toml")).unwrap_or_default();
    if !manifest.contains("name = \"prism-sdk\"") {
        bail!(
            "{} is not prism's sdk/ (no prism-sdk Cargo.toml there)",
            sdk.display()
        );
    }
    Ok(SdkSource::Path(sdk))
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let ok = a
        .name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase())
        && a.name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        bail!(
            "crate name {:?} must start with a lowercase letter and use only a-z, 0-9, '-' and '_'",
            a.name
        );
    }
    let sdk = sdk_source(&a)?;
    let root = a.dir.join(&a.name);
    if root.exists() {
        bail!("{} already exists", root.display());
    }
    let files = if a.mapper {
        mapper::scaffold(&a.name, &sdk)
    } else {
        scaffold(&a.name, &sdk)
    };
    for (rel, body) in &files {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().expect("has parent"))?;
        std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))?;
    }
    let lib = a.name.replace('-', "_");
    println!("created {} ({} files)", root.display(), files.len());
    println!();
    println!("  cd {}", root.display());
    if a.mapper {
        println!("  cargo test                                   # native tests, no Wasm needed");
        println!("  cargo build --release --target wasm32-wasip2 # the component");
        println!("  # then set plugin.digest in mapper.toml (see README.md) and:");
        println!("  prism mapper check --manifest mapper.toml");
        return Ok(ExitCode::SUCCESS);
    }
    println!("  cargo test                                   # native tests, no Wasm needed");
    println!("  cargo build --release --target wasm32-wasip2 # the component");
    println!("  prism plugin check target/wasm32-wasip2/release/{lib}.wasm");
    println!("  prism plugin run target/wasm32-wasip2/release/{lib}.wasm --changes changes.jsonl");
    Ok(ExitCode::SUCCESS)
}

/// `acme-feed` → `AcmeFeed`: the plugin's type name.
fn type_name(crate_name: &str) -> String {
    crate_name
        .split(['-', '_'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// A standalone guest crate's Cargo.toml with one SDK `dependency` line.
fn cargo_toml(name: &str, dependency: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
{dependency}

# Small, fast components: LTO'd guests run at about native speed.
[profile.release]
lto = true
codegen-units = 1
strip = true

# A standalone crate, not part of any surrounding workspace.
[workspace]
"#
    )
}

/// The files of a new plugin crate, as (relative path, contents).
pub fn scaffold(name: &str, sdk: &SdkSource) -> Vec<(&'static str, String)> {
    let ty = type_name(name);
    let lib = name.replace('-', "_");
    let cargo = cargo_toml(name, &sdk.dependency("prism-sdk"));
    let src = TEMPLATE.replace("Example", &ty).replace("{name}", name);
    let readme = format!(
        "# {name}\n\nA prism receiver plugin.\n\n```sh\ncargo test\ncargo build --release --target wasm32-wasip2\n\
         prism plugin check target/wasm32-wasip2/release/{lib}.wasm\n\
         prism plugin run target/wasm32-wasip2/release/{lib}.wasm --changes changes.jsonl --config currency=EUR\n```\n"
    );
    let mut w = prism_sample::StreamWriter::new();
    let p0 = prism_sample::product(0, 42);
    let mut p0b = p0.clone();
    p0b["prices"]["DE"]["amount"] = serde_json::json!(77.5);
    let mut p0c = p0b.clone();
    p0c["texts"]["de"]["description"] = serde_json::json!("Nur der Text ist neu.");
    w.push("P-00000", None, Some(&p0));
    w.push("P-00000", Some(&p0), Some(&p0b));
    w.push("P-00000", Some(&p0b), Some(&p0c));
    w.push("P-00000", Some(&p0c), None);
    vec![
        ("Cargo.toml", cargo),
        ("src/lib.rs", src),
        ("README.md", readme),
        ("changes.jsonl", w.to_json_lines()),
        (".gitignore", "target/\n".to_owned()),
    ]
}

const TEMPLATE: &str = r##"//! {name}: a prism receiver plugin.
//!
//! It sends a small JSON document whenever a product's German price or its
//! English name changes, and a delete when the product goes away.

use prism_sdk::{Change, FormatError, Message, Receiver, config, export_receiver, json};

/// The receiver.
pub struct Example;

impl Receiver for Example {
    fn accepts(change: &Change) -> bool {
        change.changed_any(&["/prices/DE", "/texts/en/name"])
    }

    fn format(change: &Change) -> Result<Vec<Message>, FormatError> {
        let Some(doc) = change.new.as_ref() else {
            return Ok(vec![Message::json(&json!({"sku": change.key, "deleted": true}))]);
        };
        let name = doc
            .str("/texts/en/name")
            .ok_or_else(|| FormatError::reject(format!("{}: no English name", change.key)))?;
        let body = json!({
            "sku": change.key,
            "name": name,
            "price": doc.get("/prices/DE/amount"),
            "currency": config::get_or("currency", "EUR"),
        });
        Ok(vec![Message::json(&body).attribute("source", "{name}")])
    }
}

export_receiver!(Example);

#[cfg(test)]
mod tests {
    use super::*;
    use prism_sdk::testing::set_config;

    fn product(price: f64) -> prism_sdk::Value {
        json!({"texts": {"en": {"name": "Drill"}, "de": {"description": "Bohrer"}}, "prices": {"DE": {"amount": price}}})
    }

    #[test]
    fn formats_a_price_change() {
        set_config([("currency", "EUR")]);
        let c = Change::modify("P-1", product(10.0), product(12.5));
        assert!(Example::accepts(&c));
        let msgs = Example::format(&c).unwrap();
        assert_eq!(msgs[0].body_str().unwrap(), r#"{"currency":"EUR","name":"Drill","price":12.5,"sku":"P-1"}"#);
    }

    #[test]
    fn ignores_other_fields() {
        let mut new = product(10.0);
        new["texts"]["de"]["description"] = "Neu".into();
        assert!(!Example::accepts(&Change::modify("P-1", product(10.0), new)));
    }

    #[test]
    fn rejects_a_product_without_a_name() {
        let c = Change::insert("P-1", json!({"prices": {}}));
        assert!(matches!(Example::format(&c), Err(FormatError::Reject(_))));
    }
}
"##;
