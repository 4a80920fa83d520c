//! The blocking part of a stream batch: the dispatcher over its readable
//! changes, then parking for receivers that cannot run and for unreadable
//! records.

use std::sync::Arc;

use super::UNREADABLE;
use super::ledger;
use super::records::Record;
use super::routing::{Broken, park_all, park_unreadable};
use crate::dispatch::{Dispatcher, Lanes, Progress, RunOptions, RunReport};
use crate::outputs::OutputMemory;
use crate::receivers::ReceiverSet;
use crate::sink::Sink;
use crate::spool::Spool;
use prism_types::change::Change;

/// The blocking part of a batch: the dispatcher over the readable
/// changes, then parking for receivers that cannot run and for unreadable
/// records. Runs on a blocking thread (plugins and sinks block).
pub(super) struct Run {
    pub(super) dispatcher: Dispatcher,
    pub(super) set: Arc<ReceiverSet>,
    pub(super) sink: Arc<dyn Sink>,
    pub(super) spool: Option<Arc<dyn Spool>>,
    pub(super) outputs: Option<Arc<OutputMemory>>,
    pub(super) park_unreadable: bool,
    pub(super) broken: Vec<Broken>,
    pub(super) replay: bool,
    pub(super) now_ms: u64,
}

/// What [`Run::run`] hands back: the report, and its inputs for the answer.
pub(super) type Ran = (
    RunReport,
    Vec<Change>,
    ledger::Handled,
    Vec<usize>,
    Vec<(Record, bool)>,
);

impl Run {
    pub(super) fn run(
        self,
        changes: Vec<Change>,
        prior: ledger::Handled,
        of_change: Vec<usize>,
        records: Vec<Record>,
        ids: Vec<String>,
    ) -> Result<Ran, crate::Error> {
        let already = |receiver: &str, c: usize| {
            prior
                .get(&ids[of_change[c]])
                .is_some_and(|s| s.contains(receiver))
        };
        // A stream batch is retried whole if the run dies: windows are cut
        // in the run while a buffer is empty. A spool that cannot be read
        // stops the batch before anything is sent: a product may have
        // older changes waiting in a lane or a buffer, and delivering its
        // newer ones now would overtake them (the simulation found it: a
        // buffered change flushed after the product's newer one).
        let lanes = match self.spool.as_deref().map(|s| Lanes::open(s, self.now_ms)) {
            None => None,
            Some(Ok(l)) => Some(Lanes {
                cut_windows: true,
                replay: self.replay,
                ..l
            }),
            Some(Err(e)) => {
                tracing::error!(error = %e, "spool unreadable; the batch is retried whole");
                return Err(e);
            }
        };
        let opts = RunOptions {
            already: &already,
            outputs: self.outputs.as_deref(),
            lanes: lanes.as_ref(),
            ..RunOptions::default()
        };
        let sink = &*self.sink;
        let mut report =
            self.dispatcher
                .run_with(&self.set, &changes, sink, &Progress::default(), opts);
        for b in &self.broken {
            let st = park_all(sink, b, &changes, &already);
            report.receivers.insert(b.receiver.clone(), st);
        }
        let records: Vec<(Record, bool)> = records
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let parked = match &r.change {
                    Ok(_) => false,
                    Err(e) => {
                        tracing::error!(sequence = %r.sequence, error = %e, "stream record unreadable");
                        prior.get(&r.id).is_some_and(|s| s.contains(UNREADABLE))
                            || (self.park_unreadable && park_unreadable(sink, i, &r, e))
                    }
                };
                (r, parked)
            })
            .collect();
        Ok((report, changes, prior, of_change, records))
    }
}
