//! `prism sample`: write the sample change stream.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::sample::{self, SampleOptions};
use anyhow::Context;

/// Write the sample catalogue's change stream.
///
/// Inserts, single-field modifies, removes and a full refresh, as JSON Lines
/// of DynamoDB stream records in Lambda's shape. The same seed always gives
/// the same bytes.
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
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let w = sample::stream(SampleOptions {
        products: a.products.max(1),
        seed: a.seed,
    });
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
