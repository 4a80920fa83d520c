//! The determinism gate of `prism plugin check` and `register`: a plugin
//! whose output for a change depends on earlier calls is refused, unless
//! the operator overrides it with a reason (which is recorded).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use prism_core::dispatch::to_wit;
use prism_engine::determinism::{self, Nondeterministic, Passed};
use prism_engine::{Plugin, WitChange};
use prism_sample::{SampleOptions, stream};
use prism_types::limits::Limits;

/// Products in the built-in sample: inserts, modifies, removes and a full
/// refresh of 40 products (about 110 changes).
const SAMPLE_PRODUCTS: usize = 40;

/// Flags of the determinism gate.
#[derive(Debug, Clone, clap::Args)]
pub struct DeterminismArgs {
    /// Changes to run the determinism check over (a Lambda DynamoDB event or
    /// JSON Lines of records), instead of the built-in sample.
    #[arg(long, value_name = "FILE")]
    pub determinism_changes: Option<PathBuf>,
    /// Accept a plugin whose output depends on earlier calls, giving the
    /// reason. `register` records it and runs the receiver with a fresh
    /// sandbox per change (limits.reuse = 1).
    #[arg(long, value_name = "REASON")]
    pub allow_nondeterministic: Option<String>,
}

impl DeterminismArgs {
    /// The changes to check with.
    pub fn changes(&self) -> anyhow::Result<Vec<WitChange>> {
        let (text, origin) = match &self.determinism_changes {
            Some(p) => (
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
                p.display().to_string(),
            ),
            None => (
                stream(SampleOptions {
                    products: SAMPLE_PRODUCTS,
                    seed: 7,
                })
                .to_json_lines(),
                "the built-in sample".to_owned(),
            ),
        };
        let input = prism_types::input::parse(&text, &origin);
        anyhow::ensure!(
            !input.changes.is_empty(),
            "no readable changes in {origin} for the determinism check"
        );
        Ok(input.changes.iter().map(to_wit).collect())
    }

    /// Run the check; print what it found. `Ok(false)`: refuse.
    pub fn gate(
        &self,
        plugin: &Plugin,
        config: &BTreeMap<String, String>,
        limits: Limits,
        batch: bool,
    ) -> anyhow::Result<bool> {
        let changes = self.changes()?;
        // The check is about output, not time: a slow CI machine must not
        // turn it into timeouts that differ from run to run.
        let limits = Limits {
            timeout_ms: limits.timeout_ms.max(2_000),
            ..limits
        };
        let r = determinism::check(plugin, Arc::new(config.clone()), limits, &changes, batch);
        Ok(self.report(r))
    }

    fn report(&self, r: Result<Passed, Nondeterministic>) -> bool {
        match (r, &self.allow_nondeterministic) {
            (Ok(p), _) => {
                println!(
                    "  determinism  same output fresh, reused and in reverse order ({} changes, {} accepted)",
                    p.changes, p.accepted
                );
                true
            }
            (Err(e), Some(reason)) => {
                println!("  determinism  WARNING: {e}");
                println!("  determinism  allowed: {reason}");
                true
            }
            (Err(e), None) => {
                eprintln!("  determinism  REJECTED: {e}");
                eprintln!(
                    "  (fix the plugin, or pass --allow-nondeterministic REASON to accept it with a fresh sandbox per change)"
                );
                false
            }
        }
    }
}
