//! When and how a tick runs: its own module, so that the flush (which the
//! tick and a stream batch both run) and the tick's lanes need not know
//! each other.

/// When and how a tick runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct TickOptions {
    /// The time (ms since the Unix epoch): buffer ages are measured to it.
    pub now_ms: u64,
    /// Flush every buffer, whatever its limits.
    pub force: bool,
    /// Take over lanes whose lease another flush holds (one that died).
    pub break_leases: bool,
}

impl TickOptions {
    /// A plain tick at `now_ms`.
    pub fn at(now_ms: u64) -> Self {
        Self {
            now_ms,
            ..Self::default()
        }
    }
}
