//! `prism sample`: write the sample change stream.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use prism_sample::SampleOptions;

/// Write the sample catalogue's change stream.
///
/// Inserts, single-field modifies, removes and a full refresh, as JSON Lines
/// of DynamoDB stream records in Lambda's shape: of the model table, or with
/// --shadow of the five shadow tables. The same seed always gives the same
/// bytes.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output file.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Number of products.
    #[arg(long, default_value_t = 300)]
    pub products: usize,
    /// PRNG seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Write the master data system's shadow-table stream instead (for
    /// `prism run --mapper`): brands, logistics classes, products, prices
    /// and texts.
    #[arg(long)]
    pub shadow: bool,
    /// With --shadow: physical table names are PREFIX + the logical names.
    #[arg(long, value_name = "PREFIX", default_value = "", requires = "shadow")]
    pub shadow_prefix: String,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let opts = SampleOptions {
        products: a.products.max(1),
        seed: a.seed,
    };
    let w = if a.shadow {
        prism_sample::shadow::stream(opts, &a.shadow_prefix).stream
    } else {
        prism_sample::stream(opts)
    };
    std::fs::write(&a.out, w.to_json_lines())
        .with_context(|| format!("writing {}", a.out.display()))?;
    println!(
        "wrote {} stream records for {} products to {}",
        w.records().len(),
        a.products,
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
