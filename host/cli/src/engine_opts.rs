//! Engine options shared by the commands that run plugins.

use std::path::PathBuf;

use anyhow::Context;
use prism_engine::{EngineOptions, PluginEngine};

/// Where compiled plugins are cached.
#[derive(Debug, clap::Args)]
pub struct CacheArgs {
    /// Directory for precompiled plugins [default: $PRISM_CACHE_DIR, else ~/.cache/prism].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Compile every plugin afresh and write no cache.
    #[arg(long)]
    pub no_cache: bool,
}

impl CacheArgs {
    /// Build the engine these options describe.
    pub fn engine(&self) -> anyhow::Result<PluginEngine> {
        let cache_dir = if self.no_cache {
            None
        } else {
            Some(self.dir())
        };
        PluginEngine::new(&EngineOptions {
            cache_dir,
            ..EngineOptions::default()
        })
        .map_err(|e| anyhow::anyhow!("{e:#}"))
        .context("starting the Wasm engine")
    }

    fn dir(&self) -> PathBuf {
        if let Some(d) = &self.cache_dir {
            return d.clone();
        }
        if let Some(d) = std::env::var_os("PRISM_CACHE_DIR") {
            return d.into();
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        base.join("prism")
    }
}
