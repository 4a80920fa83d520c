//! A circuit breaker per receiver, after Envoy's outlier detection.
//!
//! A plugin that keeps timing out, trapping or hitting its limits costs the
//! shared dispatcher its whole budget on every change. After
//! [`BreakerConfig::threshold`] such failures among its recent calls the receiver is
//! **quarantined**: its changes wait (in its retry lanes, or as
//! `quarantined` dead letters where there is no spool) without the plugin
//! being run. After a cool-down one change is let through as a probe
//! (half-open): if it succeeds the receiver is healthy again, if it fails
//! the receiver is quarantined again for twice as long (up to
//! [`BreakerConfig::max_cool_down`]).
//!
//! The state lives with the loaded receiver, in one process: a new plugin
//! version starts closed, and so does a new Lambda container (which then
//! pays at most `threshold` failures before it quarantines the receiver too).
//!
//! What counts as a failure: `timeout`, `trap`, `memory-limit`,
//! `stack-overflow` and `output` (a limit hit or malformed output),
//! `retry-exhausted` (a change the plugin kept asking to retry: each try
//! cost a call), and any call that took nine tenths of its budget, whatever
//! it answered (a plugin that spins to just under its budget and then
//! answers costs the shared dispatcher as much as one that times out). A
//! quick answer (messages, `reject`) is healthy, however often it rejects.
//!
//! The count is over the last [`WINDOW_FACTOR`] × `threshold` calls, not
//! only failures in a row: a plugin that fails four keys of five is
//! quarantined too, while one that fails now and then is not.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use prism_types::failure::FailureKind;

/// When a receiver is quarantined and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Failures in a row that quarantine a receiver.
    pub threshold: u32,
    /// The first quarantine's length; each failed probe doubles it.
    pub cool_down: Duration,
    /// The longest quarantine.
    pub max_cool_down: Duration,
}

/// A call that used this share of its budget (numerator, denominator:
/// nine tenths) counts as a failure whatever it answered: a plugin that
/// spins to just under its budget costs as much as one that times out. Not
/// lower: a busy machine stretches honest calls too, and the receiver's
/// share of an invocation bounds what a plugin below it can take.
pub const SLOW: (u32, u32) = (9, 10);

/// The failures counted are those among the last `WINDOW_FACTOR ×
/// threshold` calls (at most 64).
pub const WINDOW_FACTOR: u32 = 4;

/// Default failures (among the recent calls) before a quarantine.
pub const DEFAULT_THRESHOLD: u32 = 5;
/// Default first cool-down.
pub const DEFAULT_COOL_DOWN: Duration = Duration::from_secs(30);
/// Default longest cool-down.
pub const DEFAULT_MAX_COOL_DOWN: Duration = Duration::from_secs(15 * 60);

impl BreakerConfig {
    /// A breaker that never quarantines (a threshold above the 64 calls
    /// counted): for tests of what happens without one.
    pub fn off() -> Self {
        Self {
            threshold: u32::MAX,
            ..Self::default()
        }
    }

    /// How many recent calls the failures are counted over.
    pub fn window(&self) -> u32 {
        self.threshold
            .clamp(1, 64)
            .saturating_mul(WINDOW_FACTOR)
            .min(64)
    }
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            threshold: DEFAULT_THRESHOLD,
            cool_down: DEFAULT_COOL_DOWN,
            max_cool_down: DEFAULT_MAX_COOL_DOWN,
        }
    }
}

/// Whether a call may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Healthy: run it.
    Closed,
    /// The one call let through after a cool-down: run it, and report how
    /// it went with [`Breaker::record`].
    Probe,
    /// Quarantined: do not run the plugin.
    Open {
        /// Time left in quarantine.
        remaining: Duration,
    },
}

/// How a call went, for the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The plugin answered.
    Healthy,
    /// It timed out, trapped or hit a limit.
    Failed,
}

impl Outcome {
    /// The outcome for an error kind (see the module docs).
    pub fn of_kind(kind: FailureKind) -> Self {
        if kind.is_plugin_failure() {
            Self::Failed
        } else {
            Self::Healthy
        }
    }

    /// The outcome of a call that ended with `failure` (its error kind, if
    /// any) after `took` of a `budget`: failed for a failing kind, and for
    /// a call that used at least [`SLOW`] of its budget, whatever it
    /// answered.
    pub fn of_call(failure: Option<FailureKind>, took: Duration, budget: Duration) -> Self {
        let slow =
            !budget.is_zero() && took.saturating_mul(SLOW.1) >= budget.saturating_mul(SLOW.0);
        match failure {
            _ if slow => Self::Failed,
            Some(kind) => Self::of_kind(kind),
            None => Self::Healthy,
        }
    }
}

/// What changed when an outcome was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing worth a log line.
    None,
    /// The receiver was quarantined for this long.
    Opened(Duration),
    /// A probe succeeded: the receiver is healthy again.
    Closed,
}

/// One receiver's breaker.
#[derive(Debug, Default)]
pub struct Breaker {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The last calls' outcomes, newest in bit 0 (1: failed).
    recent: u64,
    open_until: Option<Instant>,
    /// Quarantines in a row (a failed probe adds one).
    ejections: u32,
    probing: bool,
    /// Opened or closed since [`Breaker::take_change`] last asked.
    changed: bool,
}

impl Breaker {
    /// A breaker that starts quarantined for `remaining` (zero: its next
    /// call is a probe), after `ejections` quarantines in a row: the state
    /// another process recorded ([`Breaker::take_change`]).
    pub fn resumed(remaining: Duration, ejections: u32) -> Self {
        Self::resumed_at(remaining, ejections, Instant::now())
    }

    fn resumed_at(remaining: Duration, ejections: u32, now: Instant) -> Self {
        let b = Self::default();
        {
            let mut s = b.lock();
            s.open_until = Some(now + remaining);
            s.ejections = ejections.max(1);
        }
        b
    }

    /// The quarantine to record if it opened or closed since last asked:
    /// `Some(Some((remaining, ejections)))` opened, `Some(None)` closed,
    /// `None` nothing new.
    pub fn take_change(&self) -> Option<Option<(Duration, u32)>> {
        let mut s = self.lock();
        if !std::mem::take(&mut s.changed) {
            return None;
        }
        let now = Instant::now();
        Some(
            s.open_until
                .map(|until| (until.saturating_duration_since(now), s.ejections)),
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// May a call run now?
    pub fn admit(&self) -> Gate {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Gate {
        let mut s = self.lock();
        match s.open_until {
            None => Gate::Closed,
            Some(until) if now < until => Gate::Open {
                remaining: until - now,
            },
            Some(_) if s.probing => Gate::Open {
                remaining: Duration::ZERO,
            },
            Some(_) => {
                s.probing = true;
                Gate::Probe
            }
        }
    }

    /// Record how a call that was admitted went.
    pub fn record(&self, cfg: &BreakerConfig, outcome: Outcome) -> Transition {
        self.record_at(cfg, outcome, Instant::now())
    }

    fn record_at(&self, cfg: &BreakerConfig, outcome: Outcome, now: Instant) -> Transition {
        let mut s = self.lock();
        match outcome {
            Outcome::Healthy => {
                s.recent <<= 1;
                if s.open_until.take().is_some() {
                    s.recent = 0;
                    s.ejections = 0;
                    s.probing = false;
                    s.changed = true;
                    return Transition::Closed;
                }
                Transition::None
            }
            Outcome::Failed => {
                s.recent = (s.recent << 1) | 1;
                if cfg.threshold > 64 {
                    return Transition::None;
                }
                let threshold = cfg.threshold.max(1);
                let window = cfg.window();
                let mask = if window == 64 {
                    u64::MAX
                } else {
                    (1u64 << window) - 1
                };
                let failures = (s.recent & mask).count_ones();
                let probe_failed = s.open_until.is_some() && s.probing;
                if !probe_failed && (s.open_until.is_some() || failures < threshold) {
                    return Transition::None;
                }
                s.ejections = s.ejections.saturating_add(1);
                let factor = 1u32 << (s.ejections - 1).min(16);
                let cool_down = cfg.cool_down.saturating_mul(factor).min(cfg.max_cool_down);
                s.open_until = Some(now + cool_down);
                s.probing = false;
                s.changed = true;
                Transition::Opened(cool_down)
            }
        }
    }

    /// Time left in quarantine, if the receiver is quarantined.
    pub fn quarantined(&self) -> Option<Duration> {
        let now = Instant::now();
        self.lock()
            .open_until
            .map(|until| until.saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: BreakerConfig = BreakerConfig {
        threshold: 3,
        cool_down: Duration::from_secs(10),
        max_cool_down: Duration::from_secs(25),
    };

    /// Issue 27, item 6: the breaker's state died with the process, so each
    /// cold start paid the threshold's failing calls again. A recorded
    /// quarantine resumes: open for the rest of its time, then one probe,
    /// and a failed probe doubles from the recorded ejections.
    #[test]
    fn a_recorded_quarantine_resumes_in_a_new_process() {
        let t0 = Instant::now();
        let b = Breaker::default();
        for _ in 0..3 {
            b.record_at(&CFG, Outcome::Failed, t0);
        }
        let (remaining, ejections) = b.take_change().unwrap().expect("opened");
        assert_eq!(ejections, 1);
        assert_eq!(b.take_change(), None, "reported once");

        let fresh = Breaker::resumed_at(remaining, ejections, t0);
        assert!(matches!(fresh.admit_at(t0), Gate::Open { .. }));
        let t1 = t0 + remaining;
        assert_eq!(fresh.admit_at(t1), Gate::Probe);
        assert_eq!(
            fresh.record_at(&CFG, Outcome::Failed, t1),
            Transition::Opened(Duration::from_secs(20)),
            "the second quarantine in a row, as in the first process"
        );
        let (_, ejections) = fresh.take_change().unwrap().expect("opened again");
        assert_eq!(ejections, 2);
        let t2 = t1 + Duration::from_secs(20);
        assert_eq!(fresh.admit_at(t2), Gate::Probe);
        assert_eq!(
            fresh.record_at(&CFG, Outcome::Healthy, t2),
            Transition::Closed
        );
        assert_eq!(
            fresh.take_change(),
            Some(None),
            "closed: the record is cleared"
        );
    }

    #[test]
    fn k_failures_in_a_row_quarantine_then_a_probe_decides() {
        let b = Breaker::default();
        let t0 = Instant::now();
        for _ in 0..2 {
            assert_eq!(b.admit_at(t0), Gate::Closed);
            assert_eq!(b.record_at(&CFG, Outcome::Failed, t0), Transition::None);
        }
        // A healthy answer does not wipe the recent failures.
        assert_eq!(b.record_at(&CFG, Outcome::Healthy, t0), Transition::None);
        assert_eq!(
            b.record_at(&CFG, Outcome::Failed, t0),
            Transition::Opened(Duration::from_secs(10))
        );
        assert_eq!(
            b.admit_at(t0 + Duration::from_secs(4)),
            Gate::Open {
                remaining: Duration::from_secs(6)
            }
        );
        // After the cool-down: one probe, and only one.
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(b.admit_at(t1), Gate::Probe);
        assert!(matches!(b.admit_at(t1), Gate::Open { .. }));
        // The probe fails: twice as long.
        assert_eq!(
            b.record_at(&CFG, Outcome::Failed, t1),
            Transition::Opened(Duration::from_secs(20))
        );
        let t2 = t1 + Duration::from_secs(20);
        assert_eq!(b.admit_at(t2), Gate::Probe);
        // Capped at max_cool_down.
        assert_eq!(
            b.record_at(&CFG, Outcome::Failed, t2),
            Transition::Opened(Duration::from_secs(25))
        );
        let t3 = t2 + Duration::from_secs(25);
        assert_eq!(b.admit_at(t3), Gate::Probe);
        assert_eq!(b.record_at(&CFG, Outcome::Healthy, t3), Transition::Closed);
        assert_eq!(b.admit_at(t3), Gate::Closed);
        assert_eq!(b.quarantined(), None);
    }

    #[test]
    fn a_breaker_that_is_off_never_opens() {
        let b = Breaker::default();
        let t0 = Instant::now();
        for _ in 0..1_000 {
            assert_eq!(
                b.record_at(&BreakerConfig::off(), Outcome::Failed, t0),
                Transition::None
            );
        }
        assert_eq!(b.admit_at(t0), Gate::Closed);
    }

    #[test]
    fn answers_are_healthy_and_sandbox_failures_are_not() {
        use FailureKind::*;
        for kind in [
            Timeout,
            Trap,
            MemoryLimit,
            StackOverflow,
            Output,
            RetryExhausted,
        ] {
            assert_eq!(Outcome::of_kind(kind), Outcome::Failed, "{kind}");
        }
        for kind in [Rejected, Instantiate, Delivery, Quarantined] {
            assert_eq!(Outcome::of_kind(kind), Outcome::Healthy, "{kind}");
        }
    }

    #[test]
    fn a_call_that_used_most_of_its_budget_is_a_failure_whatever_it_answered() {
        let budget = Duration::from_millis(200);
        let ms = Duration::from_millis;
        assert_eq!(Outcome::of_call(None, ms(179), budget), Outcome::Healthy);
        assert_eq!(Outcome::of_call(None, ms(180), budget), Outcome::Failed);
        assert_eq!(
            Outcome::of_call(Some(FailureKind::Rejected), ms(190), budget),
            Outcome::Failed
        );
        assert_eq!(
            Outcome::of_call(Some(FailureKind::Rejected), ms(1), budget),
            Outcome::Healthy
        );
        assert_eq!(
            Outcome::of_call(Some(FailureKind::Trap), ms(1), budget),
            Outcome::Failed
        );
    }

    /// Failing four keys of five used to evade the breaker: every healthy
    /// answer reset the count. Now the recent window counts.
    #[test]
    fn failing_most_keys_quarantines_and_failing_now_and_then_does_not() {
        let t0 = Instant::now();
        let b = Breaker::default();
        let mut opened = None;
        for call in 0..10 {
            let outcome = if call % 5 == 4 {
                Outcome::Healthy
            } else {
                Outcome::Failed
            };
            if let Transition::Opened(_) = b.record_at(&CFG, outcome, t0) {
                opened = Some(call);
                break;
            }
        }
        assert_eq!(opened, Some(2), "three failures among the recent calls");

        let b = Breaker::default();
        for call in 0..1_000 {
            let outcome = if call % 10 == 0 {
                Outcome::Failed
            } else {
                Outcome::Healthy
            };
            assert_eq!(
                b.record_at(&CFG, outcome, t0),
                Transition::None,
                "call {call}"
            );
        }
    }
}
