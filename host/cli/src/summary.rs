//! The per-receiver summary table printed after a run.

use std::path::Path;
use std::time::Duration;

use std::fmt::Display;

use prism_core::dispatch::{RunReport, TickReport};
use prism_core::receivers::ReceiverSet;
use prism_engine::LoadSource;
use prism_types::input::Input;
use prism_types::manifest::Mode;

pub fn print(
    set: &ReceiverSet,
    report: &RunReport,
    input: &Input,
    load_time: Duration,
    outbox: &Path,
) {
    let cached = set
        .loads
        .iter()
        .filter(|(_, s, _)| *s == LoadSource::Cached)
        .count();
    println!(
        "{} changes read ({} unreadable), {} receivers active ({} loaded from the compile cache, {} compiled) in {}",
        input.changes.len(),
        input.errors.len(),
        set.active.len(),
        cached,
        set.loads.len() - cached,
        ms(load_time),
    );
    println!();
    let header = [
        "receiver",
        "mode",
        "seen",
        "filtered",
        "accepted",
        "skipped",
        "messages",
        "unchanged",
        "bytes",
        "errors",
        "plugin time",
    ];
    let mut rows: Vec<[String; 11]> = Vec::new();
    for r in &set.active {
        let st = report.receivers.get(r.id()).cloned().unwrap_or_default();
        let mode = match r.manifest.mode {
            Mode::Immediate => "immediate".to_owned(),
            Mode::Batch { .. } if st.buffered > 0 => {
                format!("batch ({}, {} buffered)", st.batches, st.buffered)
            }
            Mode::Batch { .. } => format!("batch ({})", st.batches),
        };
        rows.push([
            r.id().to_owned(),
            mode,
            st.seen.to_string(),
            st.filtered.to_string(),
            st.accepted.to_string(),
            st.skipped.to_string(),
            st.messages.to_string(),
            st.suppressed.to_string(),
            bytes(st.bytes),
            st.errors().to_string(),
            ms(st.plugin_time),
        ]);
    }
    print!("{}", table(&header, &rows, 2));
    let total = report.receivers.values().map(|s| s.seen).sum::<u64>();
    let rate = total as f64 / report.elapsed.as_secs_f64().max(1e-9);
    let filtered = report.receivers.values().map(|s| s.filtered).sum::<u64>();
    println!();
    let laned = report.receivers.values().map(|s| s.laned).sum::<u64>();
    if laned > 0 {
        println!(
            "{laned} changes wait in retry lanes (destination unavailable, or the plugin kept asking to retry); `prism flush` retries them in order"
        );
    }
    let suppressed = report.receivers.values().map(|s| s.suppressed).sum::<u64>();
    if suppressed > 0 {
        println!(
            "{suppressed} messages not sent: identical to the last output delivered for the product"
        );
    }
    if filtered > 0 {
        println!(
            "{filtered} plugin calls skipped by field interest ({:.0}% of receiver-changes)",
            100.0 * filtered as f64 / total.max(1) as f64
        );
    }
    println!(
        "{total} receiver-changes in {} ({rate:.0}/s); messages in {}",
        ms(report.elapsed),
        outbox.display()
    );

    for d in &set.disabled {
        println!("disabled: {d}");
    }
    for u in &set.unavailable {
        println!(
            "UNAVAILABLE {}: {}",
            u.receiver.as_deref().unwrap_or("(unreadable entry)"),
            u.reason
        );
    }
    for e in &input.errors {
        println!("UNREADABLE INPUT {e}");
    }
    for (id, st) in &report.receivers {
        if st.errors() == 0 {
            continue;
        }
        let kinds: Vec<String> = st
            .errors_by_kind
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        println!(
            "ERRORS {id}: {} (parked in {}/{id}/dead-letters)",
            kinds.join(", "),
            outbox.display()
        );
        for e in &st.first_errors {
            println!("  - {e}");
        }
    }
}

/// A table with a header, its columns as wide as their widest cell: the
/// first `left` columns left-aligned, the rest (numbers) right-aligned;
/// each line indented by two spaces.
fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]], left: usize) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let parts: Vec<String> = cells
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i < left {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        format!("  {}\n", parts.join("  "))
    };
    let mut out = line(&header.map(str::to_owned));
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// Say what a tick did, one line per receiver that did something.
pub fn print_tick(report: &TickReport, store: &dyn Display) {
    for (receiver, st) in &report.receivers {
        println!(
            "{receiver}: {} windows flushed, {} messages, {} errors{}",
            st.batches,
            st.messages,
            st.errors(),
            st.first_errors
                .first()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        );
    }
    for e in &report.errors {
        println!("spool error: {e}");
    }
    if report.busy > 0 {
        println!(
            "{} lanes skipped: another flush is working on them",
            report.busy
        );
    }
    if report.orphaned > 0 {
        println!(
            "{} changes wait for receivers that are not active (kept until they are)",
            report.orphaned
        );
    }
    println!(
        "spool {store}: {} changes waiting{}",
        report.waiting,
        if report.waiting > 0 {
            " (buffers below their limits, or lanes still blocked; `prism flush --all` flushes every buffer)"
        } else {
            ""
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_their_widest_cell_and_numbers_align_right() {
        let rows = [
            ["website".to_owned(), "12".to_owned()],
            ["x".to_owned(), "1234".to_owned()],
        ];
        assert_eq!(
            table(&["receiver", "seen"], &rows, 1),
            "  receiver  seen\n  website     12\n  x         1234\n"
        );
    }
}
