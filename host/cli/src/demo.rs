//! `prism demo`: the whole local pipeline on sample data.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use prism_sample::SampleOptions;
use prism_types::digest::Digest;
use prism_types::limits::Limits;
use prism_types::manifest::{Mode, PluginRef, ReceiverManifest, SCHEMA_VERSION};
use prism_types::registry::LocalRegistry;

use super::engine_opts::CacheArgs;

/// Run the whole local chain on sample data (no AWS needed).
///
/// Writes the catalog mapper's manifest, a registry of the example
/// receivers and the sample shadow-table stream, then runs the chain:
/// shadow changes → the mapper → the product model → the receivers.
///
/// Receivers: website-en and website-de (one plugin, two configs), leaflet,
/// pricelist (batched CSV) and logistics.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory holding catalog.wasm (the mapper), website.wasm,
    /// leaflet.wasm, pricelist.wasm and logistics.wasm.
    #[arg(long, value_name = "DIR", default_value = "target/wasm32-wasip2/wasm")]
    pub plugins: PathBuf,
    /// Where the registry, the stream and the outbox go.
    #[arg(long, value_name = "DIR", default_value = "target/demo")]
    pub out: PathBuf,
    /// Number of products in the sample catalogue.
    #[arg(long, default_value_t = 300)]
    pub products: usize,
    #[command(flatten)]
    pub cache: CacheArgs,
}

/// Write the catalog mapper's manifest and component into `dir`.
fn write_mapper(plugins: &std::path::Path, dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    let path = plugins.join("catalog.wasm");
    let wasm = std::fs::read(&path).with_context(|| {
        format!(
            "reading {} (build the plugins first: see the README's first command)",
            path.display()
        )
    })?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let digest = Digest::of(&wasm);
    let file = format!("{}.wasm", digest.hex());
    std::fs::write(dir.join(&file), &wasm)?;
    let manifest = prism_sample::shadow::manifest(PluginRef {
        digest,
        file: Some(file),
    });
    let out = dir.join("catalog.toml");
    std::fs::write(&out, manifest.to_toml())
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(out)
}

/// (receiver id, plugin file stem, mode, config)
type ReceiverSpec = (
    &'static str,
    &'static str,
    Mode,
    &'static [(&'static str, &'static str)],
    // Field interest (empty: every change is offered).
    &'static [&'static str],
);

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let registry = LocalRegistry::new(a.out.join("registry"));
    if registry.dir().exists() {
        std::fs::remove_dir_all(registry.dir())
            .with_context(|| format!("clearing {}", registry.dir().display()))?;
    }
    let receivers: [ReceiverSpec; 5] = [
        (
            "website-en",
            "website",
            Mode::Immediate,
            &[("language", "en"), ("market", "DE")],
            &[],
        ),
        (
            "website-de",
            "website",
            Mode::Immediate,
            &[("language", "de"), ("market", "AT")],
            &[],
        ),
        (
            "leaflet",
            "leaflet",
            Mode::Immediate,
            &[],
            &["/texts/**", "/brand", "/images/**", "/category"],
        ),
        (
            "pricelist",
            "pricelist",
            Mode::Batch {
                max_count: 100,
                max_bytes: 1 << 20,
                max_age_secs: 300,
            },
            &[("market", "CH")],
            &[],
        ),
        (
            "logistics",
            "logistics",
            Mode::Immediate,
            &[],
            &[
                "/logistics/weight_g",
                "/logistics/dimensions_mm/**",
                "/logistics/packaging/**",
            ],
        ),
    ];
    for (id, plugin, mode, config, interest) in receivers {
        let path = a.plugins.join(format!("{plugin}.wasm"));
        let wasm = std::fs::read(&path).with_context(|| {
            format!(
                "reading {} (build the plugins first: see the README's first command)",
                path.display()
            )
        })?;
        let manifest = ReceiverManifest {
            schema: SCHEMA_VERSION,
            receiver: id.to_owned(),
            enabled: true,
            plugin: PluginRef {
                digest: Digest::of(&wasm),
                file: None,
            },
            mode,
            destination: None,
            interest: interest.iter().map(|p| (*p).to_owned()).collect(),
            dedup: true,
            limits: Limits::default(),
            config: config
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            nondeterministic: None,
        };
        registry
            .put(manifest, &wasm)
            .with_context(|| format!("writing the {id} manifest"))?;
    }
    let mapper = write_mapper(&a.plugins, &a.out.join("mapper"))?;
    let events = a.out.join("sample-shadow-stream.jsonl");
    let sample = prism_sample::shadow::stream(
        SampleOptions {
            products: a.products.max(1),
            seed: 42,
        },
        "",
    );
    std::fs::write(&events, sample.stream.to_json_lines())
        .with_context(|| format!("writing {}", events.display()))?;
    println!(
        "prism demo: {} products, {} shadow-table records (brands, logistics classes, products, prices, texts: \
         inserts, single-field edits, a brand rename touching {} products, a logistics class change touching {}, \
         removes, a full refresh)",
        a.products,
        sample.stream.records().len(),
        sample.renamed,
        sample.reclassed,
    );
    println!(
        "mapper: {}  registry: {}  shadow stream: {}",
        mapper.display(),
        registry.dir().display(),
        events.display()
    );
    println!();
    super::run::execute(&super::run::Args {
        registry: registry.dir().to_owned(),
        events,
        mapper: Some(mapper),
        shadow_prefix: String::new(),
        outbox: a.out.join("outbox"),
        clean: true,
        state: None,
        threads: None,
        fail_on_error: false,
        cache: a.cache,
    })?;
    Ok(ExitCode::SUCCESS)
}
