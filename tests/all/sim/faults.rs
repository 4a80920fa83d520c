//! The simulation's fault injector: every call a backend model gets asks
//! it first whether to fail, and how. All decisions come from one seeded
//! generator, so a seed replays exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// What happens to one backend call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// It goes through.
    None,
    /// It fails before it happens (nothing is written).
    Before,
    /// It happens, but the answer is lost: the caller sees an error.
    After,
    /// The process dies before it happens: this call and every later one
    /// until the invocation ends fail, as if nothing ran after.
    CrashBefore,
    /// It happens, then the process dies.
    CrashAfter,
}

/// The injector's settings for one schedule.
#[derive(Debug, Clone, Default)]
pub(crate) struct FaultPlan {
    /// Faults per thousand calls while faults are on.
    pub(crate) per_mille: u32,
    /// Injected faults (by their number in the run) to leave out: how a
    /// failing schedule is shrunk.
    pub(crate) suppressed: BTreeSet<u64>,
    /// Faults at given calls, for a pinned schedule: (call kind, its target
    /// (a receiver id, a lane prefix ending in `/`, or "" for any), the
    /// n-th such call from 1, the fault).
    pub(crate) script: Vec<(&'static str, &'static str, u64, Fault)>,
}

struct State {
    rng: fastrand::Rng,
    plan: FaultPlan,
    on: bool,
    dead: bool,
    /// Faults decided so far (the numbering `suppressed` refers to).
    decided: u64,
    /// Injected, by call kind and fault.
    injected: BTreeMap<(String, &'static str), u64>,
    /// Calls seen, by kind.
    calls: BTreeMap<String, u64>,
    /// Calls seen, by script entry.
    scripted: BTreeMap<usize, u64>,
    trace: Vec<String>,
    /// Whether lines are kept (off for bulk runs: a failing seed is run
    /// again with its trace).
    tracing: bool,
}

/// The injector, shared by every backend of one schedule.
pub(crate) struct Faults(Mutex<State>);

impl Faults {
    pub(crate) fn new(seed: u64, plan: FaultPlan) -> Self {
        Self(Mutex::new(State {
            rng: fastrand::Rng::with_seed(seed ^ 0x5eed_fa17),
            plan,
            on: false,
            dead: false,
            decided: 0,
            injected: BTreeMap::new(),
            calls: BTreeMap::new(),
            scripted: BTreeMap::new(),
            trace: Vec::new(),
            tracing: true,
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Faults on or off (the drain phase runs without).
    pub(crate) fn set_on(&self, on: bool) {
        self.lock().on = on;
    }

    /// Are faults on (not in the drain)?
    pub(crate) fn on(&self) -> bool {
        self.lock().on
    }

    /// Did the process die during the current invocation?
    pub(crate) fn dead(&self) -> bool {
        self.lock().dead
    }

    /// A new process: the dead one is gone.
    pub(crate) fn revive(&self) {
        self.lock().dead = false;
    }

    /// Decide the fate of one call of `kind` (`sqs.send`, `spool.append`,
    /// …) on `target` (the receiver, or the lane).
    pub(crate) fn decide(&self, kind: &str, target: &str) -> Fault {
        let mut s = self.lock();
        *s.calls.entry(kind.to_owned()).or_default() += 1;
        if s.dead {
            return Fault::Before;
        }
        if !s.on {
            return Fault::None;
        }
        let mut scripted = None;
        let s = &mut *s;
        for (i, &(k, part, nth, fault)) in s.plan.script.iter().enumerate() {
            // A receiver by its id, a lane by a prefix ending in `/`,
            // anything by "".
            let hits = part.is_empty()
                || target == part
                || (part.ends_with('/') && target.starts_with(part));
            if k == kind && hits {
                let n = s.scripted.entry(i).or_default();
                *n += 1;
                if *n == nth {
                    scripted = Some(fault);
                }
            }
        }
        let mut label = "scripted".to_owned();
        let fault = match scripted {
            Some(f) => f,
            None if s.plan.per_mille == 0 => return Fault::None,
            None => {
                // Draw the same numbers whether or not a fault is
                // suppressed, so that leaving one out changes nothing else.
                let hit = s.rng.u32(0..1000) < s.plan.per_mille;
                let pick = s.rng.u32(0..100);
                if !hit {
                    return Fault::None;
                }
                let n = s.decided;
                s.decided += 1;
                if s.plan.suppressed.contains(&n) {
                    return Fault::None;
                }
                label = format!("#{n}");
                match pick {
                    0..40 => Fault::Before,
                    40..70 => Fault::After,
                    70..85 => Fault::CrashBefore,
                    _ => Fault::CrashAfter,
                }
            }
        };
        if fault == Fault::None {
            return fault;
        }
        if matches!(fault, Fault::CrashBefore | Fault::CrashAfter) {
            s.dead = true;
        }
        let name = match fault {
            Fault::Before => "fail-before",
            Fault::After => "fail-after",
            Fault::CrashBefore => "crash-before",
            _ => "crash-after",
        };
        *s.injected.entry((kind.to_owned(), name)).or_default() += 1;
        if s.tracing {
            s.trace
                .push(format!("fault {label}: {name} on {kind} {target}"));
        }
        fault
    }

    /// A line in the schedule's trace (made only when it is kept).
    pub(crate) fn note(&self, line: impl FnOnce() -> String) {
        let mut s = self.lock();
        if s.tracing {
            s.trace.push(line());
        }
    }

    /// Keep the trace, or not.
    pub(crate) fn set_tracing(&self, on: bool) {
        self.lock().tracing = on;
    }

    /// The trace so far.
    pub(crate) fn trace(&self) -> Vec<String> {
        self.lock().trace.clone()
    }

    /// How many faults were decided (for shrinking).
    pub(crate) fn decided(&self) -> u64 {
        self.lock().decided
    }

    /// Faults injected, by (call kind, fault).
    pub(crate) fn injected(&self) -> BTreeMap<(String, &'static str), u64> {
        self.lock().injected.clone()
    }

    /// Calls seen, by kind.
    pub(crate) fn calls(&self) -> BTreeMap<String, u64> {
        self.lock().calls.clone()
    }
}

/// Whether a call that was decided `f` takes effect.
pub(crate) fn applies(f: Fault) -> bool {
    matches!(f, Fault::None | Fault::After | Fault::CrashAfter)
}

/// Whether a call that was decided `f` answers with an error.
pub(crate) fn errs(f: Fault) -> bool {
    !matches!(f, Fault::None)
}
