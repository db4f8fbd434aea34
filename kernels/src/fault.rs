//! Device faults seen at a batch boundary, and whether the device survives them.
//!
//! Backend-neutral: the CUDA backend classifies driver results into a [`DeviceFault`]
//! ([`crate::cuda::classify`]); the CPU backend never reports one. The runtime fails the
//! batch that ran on the lane where the fault was seen.

use std::fmt;

/// Whether a device fault leaves the device usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Only the batch fails; the context keeps working for other batches.
    Transient,
    /// The context is unusable (every later call fails) until it is rebuilt.
    Sticky,
}

/// A fault found at a batch boundary: its kind, the driver's code name and where it was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFault {
    /// Transient (this batch only) or sticky (the context is lost).
    pub kind: FaultKind,
    /// The driver's name for the error, e.g. `CUDA_ERROR_ILLEGAL_ADDRESS`.
    pub code: String,
    /// Which check found it (e.g. "stored context error", "stream state").
    pub seen_at: &'static str,
}

impl DeviceFault {
    /// True when the context must be rebuilt.
    pub fn is_sticky(&self) -> bool {
        self.kind == FaultKind::Sticky
    }
}

impl fmt::Display for DeviceFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            FaultKind::Transient => "transient",
            FaultKind::Sticky => "sticky (device context lost)",
        };
        write!(f, "{kind} device fault {} ({})", self.code, self.seen_at)
    }
}

impl std::error::Error for DeviceFault {}
