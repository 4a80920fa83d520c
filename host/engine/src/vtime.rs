//! Virtual time: a plugin's clocks, sleeps and polls never wait on the host.
//!
//! wasmtime-wasi implements `monotonic-clock.subscribe-duration` and
//! `wasi:io/poll` by waiting in host code, where epoch interruption does not
//! reach: one plugin calling `sleep` would hold a worker thread for as long
//! as it asked. prism replaces both interfaces in its linker:
//!
//! - Each sandbox has its own **virtual clock** (wall and monotonic alike),
//!   starting at the Unix epoch. It moves only when the plugin waits.
//! - A sleep or a timed poll **advances that clock at once** to the
//!   deadline it waits for, instead of waiting. The outcome depends on the
//!   plugin's input alone and replays identically.
//! - Virtual time spent **counts against the call's time budget**, together
//!   with wall time: a call ends with `timeout` as soon as wall time plus
//!   virtual time passes the budget. A plugin that sleeps for an hour times
//!   out at once, without holding a thread.
//! - A poll on something that is not a clock (there is nothing else a
//!   sandbox can wait on today, but WASI grows) waits at most for the rest of
//!   the budget, in real time, then times out.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::Trap;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::p2::{DynPollable, Pollable};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

/// A sandbox's clock: nanoseconds since the Unix epoch, moved only by waits.
#[derive(Clone, Default)]
pub struct VirtualClock(Arc<AtomicU64>);

impl VirtualClock {
    /// Nanoseconds since the epoch.
    pub fn now(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, ns: u64) {
        self.0.store(ns, Ordering::Relaxed);
    }
}

impl HostWallClock for VirtualClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }
    fn now(&self) -> Duration {
        Duration::from_nanos(VirtualClock::now(self))
    }
}

impl HostMonotonicClock for VirtualClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        VirtualClock::now(self)
    }
}

/// The time budget of the current call, and the virtual waits of a sandbox.
pub struct VirtualTime {
    pub(crate) clock: VirtualClock,
    /// Virtual pollables alive in the resource table: rep → deadline (ns).
    pub(crate) sleeps: HashMap<u32, u64>,
    started: Instant,
    limit: Duration,
    virtual_at_start: u64,
}

impl VirtualTime {
    /// A clock at the epoch and an unlimited budget (until [`Self::start`]).
    pub fn new(clock: VirtualClock) -> Self {
        Self {
            clock,
            sleeps: HashMap::new(),
            started: Instant::now(),
            limit: Duration::MAX,
            virtual_at_start: 0,
        }
    }

    /// Start a call's budget now.
    pub fn start(&mut self, limit: Duration) {
        self.started = Instant::now();
        self.limit = limit;
        self.virtual_at_start = self.clock.now();
    }

    /// Time charged to the current call: wall time since it started plus
    /// the virtual time it waited.
    pub fn spent(&self) -> Duration {
        let waited = self.clock.now().saturating_sub(self.virtual_at_start);
        self.started
            .elapsed()
            .saturating_add(Duration::from_nanos(waited))
    }

    /// What is left of the budget; `None` once it is used up.
    pub fn remaining(&self) -> Option<Duration> {
        self.limit
            .checked_sub(self.spent())
            .filter(|d| !d.is_zero())
    }

    /// Move the clock to `deadline` (never backwards), charging the wait to
    /// the budget. Past the budget, the call traps as a timeout and the clock
    /// stays where it was.
    pub(crate) fn wait_until(&mut self, deadline: u64) -> wasmtime::Result<()> {
        let now = self.clock.now();
        if deadline <= now {
            return Ok(());
        }
        let wait = Duration::from_nanos(deadline - now);
        match self.remaining() {
            Some(left) if wait < left => {
                self.clock.set(deadline);
                Ok(())
            }
            _ => Err(timeout()),
        }
    }

    pub(crate) fn subscribe(
        &mut self,
        table: &mut ResourceTable,
        deadline: u64,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        let own = table.push(VirtualDeadline)?;
        let pollable = wasmtime_wasi::p2::subscribe(table, own)?;
        self.sleeps.insert(pollable.rep(), deadline);
        Ok(pollable)
    }
}

/// The error a call ends with when its budget runs out inside a host call.
pub(crate) fn timeout() -> wasmtime::Error {
    wasmtime::Error::new(Trap::Interrupt)
}

/// The resource behind a virtual pollable. Readiness is decided from
/// [`VirtualTime`]'s table of deadlines, never by waiting, so its future is
/// ready at once (it is polled only through wasmtime-wasi's own paths).
struct VirtualDeadline;

#[wasmtime_wasi::async_trait]
impl Pollable for VirtualDeadline {
    async fn ready(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_move_the_clock_and_count_against_the_budget() {
        let clock = VirtualClock::default();
        let mut t = VirtualTime::new(clock.clone());
        t.start(Duration::from_secs(1));
        t.wait_until(300_000_000).unwrap();
        assert_eq!(clock.now(), 300_000_000);
        assert!(t.spent() >= Duration::from_millis(300));
        // Waiting backwards is free and does not move the clock.
        t.wait_until(5).unwrap();
        assert_eq!(clock.now(), 300_000_000);
        // Past the budget: a timeout, and the clock stays.
        let e = t.wait_until(3_600_000_000_000).unwrap_err();
        assert_eq!(e.downcast_ref::<Trap>(), Some(&Trap::Interrupt));
        assert_eq!(clock.now(), 300_000_000);
        // A new call gets its budget back; the clock keeps its time.
        t.start(Duration::from_secs(1));
        t.wait_until(1_200_000_000).unwrap();
        assert_eq!(clock.now(), 1_200_000_000);
    }

    #[test]
    fn an_exhausted_budget_has_nothing_remaining() {
        let mut t = VirtualTime::new(VirtualClock::default());
        t.start(Duration::ZERO);
        assert_eq!(t.remaining(), None);
        t.start(Duration::from_secs(60));
        assert!(t.remaining().unwrap() > Duration::from_secs(59));
    }
}
