//! A model version's share of the runtime's device-memory budget.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Returns device bytes to the runtime's budget when the last handle of a model goes.
pub struct MemoryLease {
    bytes: u64,
    used: Arc<AtomicU64>,
}

impl MemoryLease {
    /// Accounts `bytes` against `used` until dropped.
    pub fn new(bytes: u64, used: Arc<AtomicU64>) -> Self {
        let now = used.fetch_add(bytes, Ordering::SeqCst) + bytes;
        crate::metrics::memory_used(now);
        MemoryLease { bytes, used }
    }
}

impl Drop for MemoryLease {
    fn drop(&mut self) {
        let now = self.used.fetch_sub(self.bytes, Ordering::SeqCst) - self.bytes;
        crate::metrics::memory_used(now);
    }
}
