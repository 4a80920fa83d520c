//! The whole process's memory, not only each sandbox's.
//!
//! Worst-case resident memory of a dispatcher, in MiB:
//!
//! ```text
//! resident ≤ reserve                                   host, engine, compiled code, AWS clients
//!          + threads × (memory cap + host-copy cap)    every worker at its largest receiver's caps
//!          + memory slots × keep-resident               pooled linear memories kept warm
//! ```
//!
//! - At most one sandbox is alive per worker thread (a failed sandbox is
//!   dropped before its replacement is made), and one worker may run any
//!   receiver, so the largest `limits.memory_mib` counts once per thread.
//! - The host-copy cap ([`super::host_copy_cap`]) bounds what one call
//!   copies out of its sandbox (its result, or one import's arguments).
//! - The pooling allocator keeps up to [`super::KEEP_RESIDENT`] of each
//!   linear memory slot it has used resident, so that reuse needs no
//!   syscall; it has `4 × max_instances` slots.
//!
//! A receiver whose limits cannot fit is refused: by `prism plugin register
//! --lambda-memory-mb`, and by a dispatcher at load (it is then unavailable,
//! with the arithmetic in its reason).

use prism_types::limits::Limits;

/// MiB the host keeps for itself: the engine, compiled plugins, the
/// runtime, AWS clients, a batch's changes. Measured at about 120 MiB with
/// 20 receivers loaded (README, "Sandbox"); twice that for headroom.
pub const HOST_RESERVE_MIB: u64 = 256;

/// What the process may use, and how many sandboxes run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBudget {
    /// The process's memory (the Lambda's `memory_size`), in MiB.
    pub total_mib: u64,
    /// Worker threads, each running at most one sandbox at a time.
    pub threads: usize,
    /// The engine's instance pool size (`EngineOptions::max_instances`).
    pub max_instances: u32,
}

impl MemoryBudget {
    /// The worst case for a process whose largest receiver limits are `limits`.
    pub fn worst_case_mib(&self, limits: &Limits, window: usize) -> u64 {
        let mib = |bytes: usize| (bytes as u64).div_ceil(1 << 20);
        let per_thread =
            u64::from(limits.memory_mib) + mib(super::host_copy_cap(limits, window.max(1)));
        let slots = 4 * u64::from(self.max_instances);
        HOST_RESERVE_MIB + self.threads as u64 * per_thread + slots * mib(super::KEEP_RESIDENT)
    }

    /// `Ok` when a receiver with `limits` fits, else the arithmetic.
    pub fn check(&self, limits: &Limits, window: usize) -> Result<(), String> {
        let need = self.worst_case_mib(limits, window);
        if need <= self.total_mib {
            return Ok(());
        }
        Err(format!(
            "limits do not fit the dispatcher's memory: {} threads × ({} MiB memory cap + {} MiB host-copy cap) + {} MiB of pooled memory kept resident + {HOST_RESERVE_MIB} MiB for the host = {need} MiB, over its {} MiB; lower limits.memory_mib or limits.max_output_bytes, or give the Lambda more memory",
            self.threads,
            limits.memory_mib,
            (super::host_copy_cap(limits, window.max(1)) as u64).div_ceil(1 << 20),
            4 * u64::from(self.max_instances) * (super::KEEP_RESIDENT as u64).div_ceil(1 << 20),
            self.total_mib
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_formula_adds_threads_slots_and_the_reserve() {
        let b = MemoryBudget {
            total_mib: 1769,
            threads: 2,
            max_instances: 6,
        };
        let l = Limits::default();
        // 64 MiB + a host-copy cap of 829,980 bytes (1 MiB rounded up) per
        // thread, 24 slots × 2 MiB, and the reserve.
        assert_eq!(b.worst_case_mib(&l, 1), 256 + 2 * (64 + 1) + 24 * 2);
        assert!(b.check(&l, 1).is_ok());
        let big = Limits {
            memory_mib: 1024,
            ..l
        };
        let e = b.check(&big, 1).unwrap_err();
        assert!(e.contains("2 threads × (1024 MiB memory cap"), "{e}");
        assert!(e.contains("over its 1769 MiB"), "{e}");
    }

    /// A batch window's format may hand the host `max_count` changes'
    /// worth of output: the formula counted one change's.
    #[test]
    fn a_batch_window_counts_its_whole_copy_cap() {
        let b = MemoryBudget {
            total_mib: 512,
            threads: 2,
            max_instances: 6,
        };
        let l = Limits::default();
        let window = super::super::host_copy_cap(&l, 100) as u64;
        assert_eq!(
            b.worst_case_mib(&l, 100),
            256 + 2 * (64 + window.div_ceil(1 << 20)) + 24 * 2
        );
        assert!(b.check(&l, 1).is_ok(), "an immediate receiver fits 512 MiB");
        let e = b.check(&l, 100).unwrap_err();
        let cap = format!("{} MiB host-copy cap", window.div_ceil(1 << 20));
        assert!(e.contains(&cap), "{e}");
    }
}
