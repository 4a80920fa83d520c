//! The sample gate of `prism plugin check` and `register`: the plugin runs
//! over a sample of changes as the dispatcher would run it, and is refused
//! when it traps, times out or returns output the host refuses on any
//! change, or rejects more of them than the team allows
//! (`--max-rejected-percent`). Then a plugin whose output for a change
//! depends on earlier calls is refused, unless the operator overrides it
//! with a reason (which is recorded).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use prism_core::dispatch::to_wit;
use prism_engine::behaviour::{self, Seen, Tally};
use prism_engine::determinism::{self, Nondeterministic, Passed};
use prism_engine::{Plugin, WitChange};
use prism_sample::{SampleOptions, stream};
use prism_types::limits::Limits;

/// Products in the built-in sample: inserts, modifies, removes and a full
/// refresh of 40 products (100 changes).
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
    /// Refuse a plugin that rejects (or asks to retry) more than this share
    /// of the sample's changes it accepts. A failed call (a trap, a
    /// timeout, output the host refuses) is refused whatever this says.
    #[arg(long, value_name = "PERCENT", default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub max_rejected_percent: u32,
    /// Pass a plugin that fails on the sample anyway, giving the reason
    /// (printed with what failed): a receiver whose sample is not what it
    /// will see, or a plugin that misbehaves on purpose to test the
    /// dispatcher's failure paths.
    #[arg(long, value_name = "REASON")]
    pub allow_failures: Option<String>,
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
        let config = Arc::new(config.clone());
        let done = AtomicU64::new(0);
        let total = changes.len() as u64;
        let tally = crate::progress::with_count(&done, total, "sample changes", || {
            behaviour::run(plugin, config.clone(), limits, &changes, batch, &mut |t| {
                done.store(t.run as u64, Ordering::Relaxed);
            })
        });
        if !self.report_behaviour(&tally) {
            return Ok(false);
        }
        let r = determinism::check(plugin, config, limits, &changes, batch);
        Ok(self.report(r))
    }

    /// Print what the sample did; `false` when it fails the check.
    fn report_behaviour(&self, t: &Tally) -> bool {
        let failed: usize = t
            .counts
            .iter()
            .filter(|(s, _)| matches!(s, Seen::Failed(_)))
            .map(|(_, n)| n)
            .sum();
        println!(
            "  sample       {} of {} changes: {} accepted ({} formatted, {} rejected, {} asked to retry), {} skipped, {failed} failed; {} messages",
            t.run,
            t.sample,
            t.accepted(),
            t.count(Seen::Formatted),
            t.count(Seen::Rejected),
            t.count(Seen::Retried),
            t.count(Seen::Skipped),
            t.messages,
        );
        if let Some(why) = &t.stopped {
            println!("  sample       {why}");
        }
        let problems = t.problems(self.max_rejected_percent);
        if problems.is_empty() {
            if t.accepted() == 0 {
                println!(
                    "  sample       note: it accepted none of the changes; is `accepts` right, or does the sample hold none it is for (--determinism-changes FILE)?"
                );
            }
            return true;
        }
        if let Some(reason) = &self.allow_failures {
            for p in &problems {
                println!("  sample       WARNING: {p}");
            }
            println!("  sample       allowed: {reason}");
            return true;
        }
        for p in &problems {
            eprintln!("  sample       REJECTED: {p}");
        }
        eprintln!(
            "  (fix the plugin, raise --max-rejected-percent for rejections the receiver means, or pass --allow-failures REASON)"
        );
        false
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
