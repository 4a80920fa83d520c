//! Per-receiver sandbox limits, with the defaults that apply when a registry
//! entry does not set them.

use serde::{Deserialize, Serialize};

/// The limits one receiver's plugin runs under. Every field is optional in a
/// manifest; missing fields take the defaults below.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Wall-clock budget for one change (instantiate + `accepts` + `format`),
    /// in milliseconds. Enforced by epoch interruption.
    pub timeout_ms: u64,
    /// Linear memory cap, in MiB.
    pub memory_mib: u32,
    /// Max total body bytes produced for one change (or one batch).
    pub max_output_bytes: usize,
    /// Max messages produced for one change (or one batch).
    pub max_messages: usize,
    /// How many changes one sandbox serves before it is replaced by a fresh
    /// one (immediate receivers). 1: a fresh sandbox per change. A sandbox
    /// that fails is never reused, and a change that fails in a reused
    /// sandbox is tried once more in a fresh one, so earlier changes cannot
    /// make it fail. Plugins must not keep state between calls.
    pub reuse: u32,
}

/// Default time budget per change.
pub const DEFAULT_TIMEOUT_MS: u64 = 200;
/// Default memory cap.
pub const DEFAULT_MEMORY_MIB: u32 = 64;
/// Default output cap: one SQS message (256 KiB) per change.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 256 * 1024;
/// Default message cap per change.
pub const DEFAULT_MAX_MESSAGES: usize = 100;
/// Default number of changes one sandbox serves.
pub const DEFAULT_REUSE: u32 = 100;
/// The most changes one sandbox may serve.
pub const MAX_REUSE: u32 = 10_000;

/// The largest memory cap a manifest may ask for; the engine's pooling
/// allocator reserves slots of this size.
pub const MAX_MEMORY_MIB: u32 = 1024;
/// The largest time budget a manifest may ask for.
pub const MAX_TIMEOUT_MS: u64 = 60_000;

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout_ms: DEFAULT_TIMEOUT_MS,
            memory_mib: DEFAULT_MEMORY_MIB,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            max_messages: DEFAULT_MAX_MESSAGES,
            reuse: DEFAULT_REUSE,
        }
    }
}

impl Limits {
    /// Check that the limits are within what the host can enforce.
    pub fn validate(&self) -> Result<(), String> {
        if self.timeout_ms == 0 || self.timeout_ms > MAX_TIMEOUT_MS {
            return Err(format!(
                "limits.timeout_ms must be 1..={MAX_TIMEOUT_MS}, got {}",
                self.timeout_ms
            ));
        }
        if self.memory_mib == 0 || self.memory_mib > MAX_MEMORY_MIB {
            return Err(format!(
                "limits.memory_mib must be 1..={MAX_MEMORY_MIB}, got {}",
                self.memory_mib
            ));
        }
        if self.max_output_bytes == 0 {
            return Err("limits.max_output_bytes must be at least 1".into());
        }
        if self.max_messages == 0 {
            return Err("limits.max_messages must be at least 1".into());
        }
        if self.reuse == 0 || self.reuse > MAX_REUSE {
            return Err(format!(
                "limits.reuse must be 1..={MAX_REUSE}, got {}",
                self.reuse
            ));
        }
        Ok(())
    }

    /// The memory cap in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.memory_mib as usize * 1024 * 1024
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bounds_are_checked() {
        assert!(Limits::default().validate().is_ok());
        let l = Limits {
            memory_mib: MAX_MEMORY_MIB + 1,
            ..Limits::default()
        };
        assert!(l.validate().unwrap_err().contains("memory_mib"));
        let l = Limits {
            timeout_ms: 0,
            ..Limits::default()
        };
        assert!(l.validate().unwrap_err().contains("timeout_ms"));
    }
}
