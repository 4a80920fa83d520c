//! `prism mapper`: check a model mapper, and publish it to the plugin bucket
//! where the mapper Lambda picks it up (no deploy).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

#[cfg(feature = "aws")]
use super::aws_args::TargetArgs;
use super::engine_opts::CacheArgs;
#[cfg(feature = "aws")]
use prism_aws::{self as aws, ArtifactStore, AwsTarget};
use prism_mapping::MapperManifest;

/// Check or publish the model mapper.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Load a local mapper manifest and its component, and check that it
    /// fits the prism:receiver/mapper world.
    Check {
        /// The manifest (its plugin.file next to it).
        #[arg(long, value_name = "FILE")]
        manifest: PathBuf,
        #[command(flatten)]
        cache: CacheArgs,
    },
    #[cfg(feature = "aws")]
    /// Check, then upload the component and the manifest
    /// (`mappers/NAME.toml`) to the plugin bucket. The mapper Lambda loads
    /// it within its reload interval.
    Publish {
        /// The manifest (its plugin.file next to it).
        #[arg(long, value_name = "FILE")]
        manifest: PathBuf,
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        cache: CacheArgs,
    },
}

pub fn run(c: Command) -> anyhow::Result<ExitCode> {
    match c {
        Command::Check { manifest, cache } => {
            let (m, _) = check(&manifest, &cache)?;
            println!(
                "{}: mapper {} fits prism:receiver/mapper@0.1.0; {} shadow tables: {}",
                manifest.display(),
                m.mapper,
                m.tables.len(),
                m.tables
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "aws")]
        Command::Publish {
            manifest,
            target,
            cache,
        } => {
            let (m, wasm) = check(&manifest, &cache)?;
            let bucket = target.bucket.clone().context(
                "publishing needs the plugin bucket: pass --bucket or set PRISM_PLUGIN_BUCKET",
            )?;
            let key = super::aws_args::block_on(async {
                let t = AwsTarget {
                    endpoint_url: target.endpoint_url.clone(),
                    region: target.region.clone(),
                };
                let config = aws::sdk_config(&t).await;
                ArtifactStore::new(aws::s3_client(&config, &t), &bucket)
                    .put_mapper(&m, &wasm)
                    .await
            })??;
            println!(
                "published mapper {} ({}) to s3://{bucket}/{key}; set PRISM_MAPPER_MANIFEST={key} on the mapper Lambda",
                m.mapper, m.plugin.digest
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn check(path: &std::path::Path, cache: &CacheArgs) -> anyhow::Result<(MapperManifest, Vec<u8>)> {
    let (m, wasm) = MapperManifest::read_local(path)?;
    cache
        .engine()?
        .load_mapper(&wasm)
        .with_context(|| format!("mapper {} ({})", m.mapper, path.display()))?;
    Ok((m, wasm))
}
