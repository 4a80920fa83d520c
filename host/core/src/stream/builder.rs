//! [`StreamProcessor`]'s builder: the three parts every processor needs,
//! then the settings that differ between the Lambda, `prism dev`, a redrive
//! and the simulation.

use std::sync::Arc;

use super::{Clock, OutputsStore, StreamProcessor, system_clock};
use crate::dispatch::Dispatcher;
use crate::receivers::Receivers;
use crate::sink::Delivery;
use crate::spool::Spool;
use crate::stream::{LedgerStore, MemoryLedger};
use prism_engine::PluginEngine;

/// Sets a [`StreamProcessor`]'s settings; what is not set keeps its
/// default: a ledger in memory, [`Dispatcher::default`], no dead-letter
/// queue for unreadable records, no metrics, no dedup state, no spool,
/// every receiver, the system clock.
#[must_use = "a builder does nothing until `build` is called"]
pub struct StreamProcessorBuilder(StreamProcessor);

impl StreamProcessor {
    /// A builder over the Wasm engine, the receivers and where messages and
    /// dead letters go.
    pub fn builder(
        engine: Arc<PluginEngine>,
        receivers: Receivers,
        delivery: Arc<dyn Delivery>,
    ) -> StreamProcessorBuilder {
        StreamProcessorBuilder(Self {
            engine,
            receivers,
            delivery,
            ledger: Arc::new(MemoryLedger::default()),
            dispatcher: Dispatcher::default(),
            unreadable_queue: None,
            emit_metrics: false,
            outputs: None,
            spool: None,
            only: None,
            replay: false,
            clock: system_clock(),
        })
    }

    /// A builder holding this processor, to change a setting of it (a CLI
    /// command turning metrics off, a redrive naming its receiver).
    pub fn into_builder(self) -> StreamProcessorBuilder {
        StreamProcessorBuilder(self)
    }

    /// The Wasm engine (shared with a mapper run in the same process).
    pub fn engine(&self) -> &Arc<PluginEngine> {
        &self.engine
    }

    /// The dispatch settings.
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }

    /// Whether batch buffers and retry lanes are kept in a spool.
    pub fn has_spool(&self) -> bool {
        self.spool.is_some()
    }

    /// Whether output dedup state is kept.
    pub fn has_outputs(&self) -> bool {
        self.outputs.is_some()
    }
}

impl StreamProcessorBuilder {
    /// The retry ledger (default: in this process).
    pub fn ledger(mut self, ledger: Arc<dyn LedgerStore>) -> Self {
        self.0.ledger = ledger;
        self
    }

    /// Dispatch settings (a batch forces hold mode on).
    pub fn dispatcher(mut self, dispatcher: Dispatcher) -> Self {
        self.0.dispatcher = dispatcher;
        self
    }

    /// The queue (name or URL) for records that cannot be read.
    pub fn unreadable_queue(mut self, queue: Option<String>) -> Self {
        self.0.unreadable_queue = queue;
        self
    }

    /// Write EMF metric lines to stdout (default: no).
    pub fn metrics(mut self, emit: bool) -> Self {
        self.0.emit_metrics = emit;
        self
    }

    /// Output dedup state (`None`: every output is sent).
    pub fn outputs(mut self, outputs: Option<OutputsStore>) -> Self {
        self.0.outputs = outputs;
        self
    }

    /// Batch buffers and retry lanes (`None`: batch windows end with the
    /// stream batch, and a held change fails its record).
    pub fn spool(mut self, spool: Option<Arc<dyn Spool>>) -> Self {
        self.0.spool = spool;
        self
    }

    /// Run only `receiver`, replaying its changes on purpose (`prism dlq
    /// redrive`): the spool takes them even where a lane handled their
    /// sequence before.
    pub fn redrive(mut self, receiver: impl Into<String>) -> Self {
        self.0.only = Some(receiver.into());
        self.0.replay = true;
        self
    }

    /// Where the processor reads the time (default: the system's).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.0.clock = clock;
        self
    }

    /// The processor.
    pub fn build(self) -> StreamProcessor {
        self.0
    }
}
