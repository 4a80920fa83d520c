//! `prism status` as a table: one row per receiver, numbers right-aligned,
//! `?` where a number could not be read.

use super::{Backfill, Row};

pub(super) fn num(n: Option<u64>) -> String {
    n.map_or_else(|| "?".into(), |n| n.to_string())
}

pub(super) fn age(secs: Option<u64>) -> String {
    match secs {
        None => "-".into(),
        Some(s) if s < 120 => format!("{s}s"),
        Some(s) if s < 7200 => format!("{}m", s / 60),
        Some(s) => format!("{}h", s / 3600),
    }
}

/// The rows as an aligned text table.
pub(super) fn table(rows: &[Row]) -> String {
    let mut cells = vec![
        [
            "receiver",
            "state",
            "version",
            "plugin",
            "mode",
            "queue",
            "oldest",
            "dlq",
            "lanes",
            "waiting",
            "backfill",
            "updated",
            "last error",
        ]
        .map(str::to_owned),
    ];
    for r in rows {
        let q = r.queue.as_ref();
        let state = match &r.quarantined_until {
            Some(t) => format!("quarantined until {t}"),
            None => r.state.clone(),
        };
        cells.push([
            r.receiver.clone(),
            state,
            format!("v{} of {}", r.version, r.latest),
            r.plugin.clone(),
            r.mode.clone(),
            q.map_or("-".into(), |q| num(q.depth)),
            q.map_or("-".into(), |q| age(q.oldest_age_seconds)),
            r.dead_letter_queue
                .as_ref()
                .map_or("-".into(), |q| num(q.depth)),
            r.lanes_waiting.map_or("-".into(), |n| n.to_string()),
            match (r.changes_waiting, r.oldest_waiting_seconds) {
                (None, _) => "-".into(),
                (Some(n), None) => n.to_string(),
                (Some(n), Some(s)) => format!("{n} ({})", age(Some(s))),
            },
            r.backfill.as_ref().map_or("-".into(), Backfill::cell),
            format!(
                "{} ({})",
                r.updated_at,
                crate::registry_cmds::stated_by(&r.updated_by)
            ),
            r.last_error.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    let mut w = [0usize; 13];
    for r in &cells {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &cells {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}
