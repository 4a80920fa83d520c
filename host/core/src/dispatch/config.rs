//! [`Dispatcher`]'s settings and the builder that sets them.

use std::time::Instant;

use super::tick_order;

/// Dispatch settings. Built with [`Dispatcher::builder`] (or
/// [`Dispatcher::default`]): every setting has a default, and the builder
/// keeps the ones a caller does not name.
///
/// ```
/// use prism_core::dispatch::Dispatcher;
/// let d = Dispatcher::builder().threads(2).hold_unavailable(true).build();
/// assert_eq!(d.threads(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct Dispatcher {
    /// Worker threads (default: all cores).
    pub(crate) threads: usize,
    /// How often a change the plugin asks to retry is tried again before it
    /// is parked.
    pub(crate) max_retries: u32,
    /// When a destination is unavailable, hold the change (and the rest of
    /// its unit) for a retry instead of parking it.
    pub(crate) hold_unavailable: bool,
    /// When a receiver is quarantined, and for how long.
    pub(crate) breaker: crate::breaker::BreakerConfig,
    /// Every plugin call must have ended by this instant (an invocation's
    /// deadline, less what finishing takes). A receiver's call starts only
    /// if its own budget fits before it, and a receiver that has used its
    /// share of the run's plugin time (the time to this instant, times the
    /// threads, over the receivers) starts no more: in both cases its
    /// changes not yet run are held, so the caller reports them for a retry.
    /// One receiver's limits or slowness defer only that receiver.
    pub(crate) finish_by: Option<Instant>,
    /// Where the last tick stopped (shared by clones), so the next starts
    /// after it.
    pub(crate) tick_cursor: tick_order::TickCursor,
    /// Immediate receivers: how many formatted changes are handed to the
    /// sink together, so it can pack their messages into shared calls (SQS:
    /// 10 per `SendMessageBatch`) and send them concurrently (at least 1).
    pub(crate) pack: usize,
    /// The most message bytes a worker holds for packing before it hands
    /// them to the sink, whatever `pack` says (default [`PACK_BYTES`]).
    pub(crate) pack_bytes: usize,
    /// Send a unit's last packed delivery on a thread of its own while the
    /// worker formats its next units (default; see [`IN_FLIGHT_UNITS`]).
    /// `false` waits for it first: backend calls then come in one order
    /// the run alone decides, which the simulation (`tests/all/sim`) needs
    /// to replay a seed exactly.
    pub(crate) overlap_io: bool,
}

/// Changes handed to the sink together by default (see [`DispatcherBuilder::pack`]).
pub const PACK: usize = 256;

/// Units' last deliveries one worker keeps in flight while it formats the
/// next units (with at most [`DispatcherBuilder::pack_bytes`] of messages among
/// them). At 10 ms a call, 16 hide the wait of a batch's small units.
pub const IN_FLIGHT_UNITS: usize = 16;

/// The most message bytes a worker holds for packing before it hands them
/// to the sink, whatever [`DispatcherBuilder::pack`] says, and the most its units'
/// deliveries in flight hold together: 8 MiB, what 32 full
/// `SendMessageBatch` calls carry. Without it, 256 changes of a plugin that
/// writes the largest output it may (~0.8 MiB) would hold ~200 MiB per
/// worker, outside the engine's memory budget.
pub const PACK_BYTES: usize = 8 << 20;

impl Default for Dispatcher {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_retries: 2,
            hold_unavailable: false,
            breaker: crate::breaker::BreakerConfig::default(),
            finish_by: None,
            tick_cursor: tick_order::TickCursor::default(),
            pack: PACK,
            pack_bytes: PACK_BYTES,
            overlap_io: true,
        }
    }
}

/// Sets a [`Dispatcher`]'s settings; what is not set keeps its default
/// (or, from [`Dispatcher::to_builder`], the dispatcher's own value).
#[derive(Debug, Clone, Default)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct DispatcherBuilder(Dispatcher);

impl DispatcherBuilder {
    /// Worker threads (default: all cores; at least 1).
    pub fn threads(mut self, threads: usize) -> Self {
        self.0.threads = threads.max(1);
        self
    }

    /// How often a change the plugin asks to retry is tried again before
    /// it is parked (default 2).
    pub fn max_retries(mut self, max_retries: u32) -> Self {
        self.0.max_retries = max_retries;
        self
    }

    /// Hold a change whose destination is unavailable (and the rest of its
    /// unit) for a retry, instead of parking it (default: park; the Lambda
    /// holds).
    pub fn hold_unavailable(mut self, hold: bool) -> Self {
        self.0.hold_unavailable = hold;
        self
    }

    /// When a receiver is quarantined, and for how long.
    pub fn breaker(mut self, breaker: crate::breaker::BreakerConfig) -> Self {
        self.0.breaker = breaker;
        self
    }

    /// Every plugin call must have ended by this instant (`None`: no
    /// deadline). See the field's rules in the crate docs of
    /// [`crate::dispatch`]: a receiver's call starts only if its budget
    /// fits, and a receiver past its share of the run's time starts no
    /// more; its changes are held.
    pub fn finish_by(mut self, finish_by: Option<Instant>) -> Self {
        self.0.finish_by = finish_by;
        self
    }

    /// Immediate receivers: formatted changes handed to the sink together
    /// (default [`PACK`]; at least 1).
    pub fn pack(mut self, pack: usize) -> Self {
        self.0.pack = pack.max(1);
        self
    }

    /// The most message bytes a worker holds for packing (default
    /// [`PACK_BYTES`]; at least 1).
    pub fn pack_bytes(mut self, pack_bytes: usize) -> Self {
        self.0.pack_bytes = pack_bytes.max(1);
        self
    }

    /// Send a unit's last delivery while the worker formats the next units
    /// (default `true`). `false` gives one backend-call order per run, which
    /// the simulation needs to replay a seed exactly.
    pub fn overlap_io(mut self, overlap: bool) -> Self {
        self.0.overlap_io = overlap;
        self
    }

    /// The dispatcher.
    pub fn build(self) -> Dispatcher {
        self.0
    }
}

impl Dispatcher {
    /// A builder starting from the defaults.
    pub fn builder() -> DispatcherBuilder {
        DispatcherBuilder::default()
    }

    /// A builder starting from this dispatcher's settings (its tick cursor
    /// stays shared).
    pub fn to_builder(&self) -> DispatcherBuilder {
        DispatcherBuilder(self.clone())
    }

    /// Worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// When a receiver is quarantined, and for how long.
    pub fn breaker(&self) -> crate::breaker::BreakerConfig {
        self.breaker
    }

    /// Where the next tick starts.
    pub fn tick_cursor(&self) -> &tick_order::TickCursor {
        &self.tick_cursor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_keeps_what_it_is_not_told() {
        let d = Dispatcher::builder()
            .threads(3)
            .hold_unavailable(true)
            .build();
        assert_eq!((d.threads, d.hold_unavailable), (3, true));
        let base = Dispatcher::default();
        assert_eq!(
            (d.max_retries, d.pack, d.pack_bytes, d.overlap_io),
            (
                base.max_retries,
                base.pack,
                base.pack_bytes,
                base.overlap_io
            )
        );
        let one = d.to_builder().threads(1).build();
        assert_eq!((one.threads, one.hold_unavailable), (1, true));
    }

    #[test]
    fn zero_threads_or_packs_mean_one() {
        let d = Dispatcher::builder()
            .threads(0)
            .pack(0)
            .pack_bytes(0)
            .build();
        assert_eq!((d.threads, d.pack, d.pack_bytes), (1, 1, 1));
    }

    #[test]
    fn a_derived_dispatcher_shares_the_tick_cursor() {
        let d = Dispatcher::default();
        let e = d.to_builder().threads(1).build();
        e.tick_cursor.set(Some("retry/website/P-1".into()));
        assert_eq!(d.tick_cursor().get().as_deref(), Some("retry/website/P-1"));
    }
}
