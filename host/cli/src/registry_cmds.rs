//! `prism plugin list|show|enable|disable|rollback|remove` and `prism status`
//! against the DynamoDB registry.

use std::process::ExitCode;

use anyhow::{Context, bail};

use super::aws_args::{RemoteArgs, block_on, operator};
use prism_aws::Head;
use prism_types::manifest::Mode;

/// A command on one receiver.
#[derive(Debug, clap::Args)]
pub struct OneArgs {
    /// Receiver id.
    pub receiver: String,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// `rollback`.
#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// Receiver id.
    pub receiver: String,
    /// The version to go back to [default: the one before the live one].
    #[arg(long)]
    pub to: Option<u64>,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// `list` and `status`.
#[derive(Debug, clap::Args)]
pub struct AllArgs {
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// A table of the registry's receivers: version, state, plugin, mode, last
/// change, last error (`prism status` adds queues and lanes).
pub fn list(a: AllArgs) -> anyhow::Result<ExitCode> {
    block_on(async {
        let remote = a.remote.connect().await;
        let heads = remote.registry.heads().await?;
        let mut rows = vec![
            [
                "receiver",
                "version",
                "state",
                "plugin",
                "mode",
                "updated",
                "last error",
            ]
            .map(str::to_owned),
        ];
        let mut problems = Vec::new();
        for h in heads {
            match h {
                Ok(h) => rows.push(row(&h)),
                Err(e) => problems.push(e.to_string()),
            }
        }
        print_table(&rows);
        for p in &problems {
            println!("UNREADABLE {p}");
        }
        Ok::<_, anyhow::Error>(if problems.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        })
    })?
}

fn row(h: &Head) -> [String; 7] {
    let m = &h.manifest;
    [
        m.receiver.clone(),
        format!("v{} of {}", h.current, h.latest),
        if m.enabled { "enabled" } else { "disabled" }.to_owned(),
        m.plugin.digest.short(),
        match m.mode {
            Mode::Immediate => "immediate".into(),
            Mode::Batch { max_count, .. } => format!("batch ({max_count})"),
        },
        format!("{} ({})", h.updated_at, stated_by(&h.updated_by)),
        h.last_error.clone().unwrap_or_else(|| "-".into()),
    ]
}

/// `registered_by` / `updated_by` as what they are: the name the writer
/// gave. A team's role can write any name there; CloudTrail's
/// control-plane trail (terraform/audit.tf) has the IAM principal.
pub(crate) fn stated_by(by: &str) -> String {
    format!("stated by {by}")
}

fn print_table(rows: &[[String; 7]]) {
    let mut w = [0usize; 7];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
}

pub fn show(a: OneArgs) -> anyhow::Result<ExitCode> {
    block_on(async {
        let remote = a.remote.connect().await;
        let head = remote.require_head(&a.receiver).await?;
        println!(
            "# receiver {} — live: v{} (revision {}), updated {} ({})",
            a.receiver,
            head.current,
            head.revision,
            head.updated_at,
            stated_by(&head.updated_by)
        );
        println!("# who really wrote an entry: the control-plane trail (docs/security.md)");
        if let Some(e) = &head.last_error {
            println!("# last error: {e}");
        }
        print!("{}", head.manifest.to_toml());
        println!();
        println!("# versions");
        for v in remote.registry.versions(&a.receiver).await? {
            let live = if v.version == head.current {
                "  <- live"
            } else {
                ""
            };
            println!(
                "v{:<4} {}  {} ({}){live}",
                v.version,
                v.manifest.plugin.digest,
                v.registered_at,
                stated_by(&v.registered_by)
            );
        }
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })?
}

pub fn set_enabled(a: OneArgs, enabled: bool) -> anyhow::Result<ExitCode> {
    block_on(async {
        let remote = a.remote.connect().await;
        let head = remote.require_head(&a.receiver).await?;
        if head.manifest.enabled == enabled {
            println!(
                "{} is already {}",
                a.receiver,
                if enabled { "enabled" } else { "disabled" }
            );
            return Ok(ExitCode::SUCCESS);
        }
        let mut next = head.clone();
        next.manifest.enabled = enabled;
        let h = remote
            .registry
            .update_head(&head, next, &operator())
            .await?;
        println!(
            "{} {} (revision {})",
            a.receiver,
            if enabled { "enabled" } else { "disabled" },
            h.revision
        );
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })?
}

pub fn rollback(a: RollbackArgs) -> anyhow::Result<ExitCode> {
    block_on(async {
        let remote = a.remote.connect().await;
        let head = remote.require_head(&a.receiver).await?;
        let versions = remote.registry.versions(&a.receiver).await?;
        let target = match a.to {
            Some(n) => versions
                .iter()
                .find(|v| v.version == n)
                .with_context(|| format!("{} has no version {n}", a.receiver))?,
            None => match versions.iter().rev().find(|v| v.version < head.current) {
                Some(v) => v,
                None => bail!(
                    "{} has no version before v{} to roll back to",
                    a.receiver,
                    head.current
                ),
            },
        };
        if target.version == head.current {
            println!("{} is already at v{}", a.receiver, target.version);
            return Ok(ExitCode::SUCCESS);
        }
        let mut next = head.clone();
        next.manifest = target.manifest.clone();
        next.manifest.enabled = head.manifest.enabled;
        next.current = target.version;
        let h = remote
            .registry
            .update_head(&head, next, &operator())
            .await?;
        println!(
            "{}: v{} -> v{} ({}), revision {}",
            a.receiver,
            head.current,
            target.version,
            target.manifest.plugin.digest.short(),
            h.revision
        );
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })?
}

pub fn remove(a: OneArgs) -> anyhow::Result<ExitCode> {
    block_on(async {
        let remote = a.remote.connect().await;
        remote.require_head(&a.receiver).await?;
        let n = remote.registry.remove(&a.receiver).await?;
        println!(
            "removed {} ({n} registry items; its artifacts stay in the bucket)",
            a.receiver
        );
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })?
}
