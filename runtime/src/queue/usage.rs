//! A model's use of the lanes, for fair shares: weighted lane-seconds consumed (the
//! virtual time the cross-model policy orders by) and recent lane usage (what the
//! fair-share cap compares with each model's share).

use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Seconds over which recent lane usage is averaged (exponential decay constant).
pub(crate) const USAGE_TAU: f64 = 0.5;

/// Lanes in use on average over the last [`USAGE_TAU`] or so (exponentially weighted).
#[derive(Debug, Clone, Copy)]
struct Recent {
    rate: f64,
    at: Instant,
}

impl Recent {
    fn at(self, now: Instant) -> f64 {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.rate * (-dt / USAGE_TAU).exp()
    }
}

/// One model version's lane usage since it was loaded.
#[derive(Debug)]
pub(crate) struct LaneUsage {
    /// Weighted lane-seconds consumed (fair-share virtual time), in nanoseconds.
    virtual_ns: AtomicU64,
    /// Recent lane usage, for the scheduler's fair-share cap.
    recent: Mutex<Recent>,
}

impl LaneUsage {
    /// No usage yet, as of `now`.
    pub(crate) fn new(now: Instant) -> Self {
        LaneUsage {
            virtual_ns: AtomicU64::new(0),
            recent: Mutex::new(Recent { rate: 0.0, at: now }),
        }
    }

    /// Counts a batch that kept a lane busy for `busy` seconds, ending at `now`, for a
    /// model of fair-share `weight`.
    pub(crate) fn record(&self, busy: f64, weight: f64, now: Instant) {
        let weight = weight.max(1e-6);
        self.virtual_ns
            .fetch_add((busy / weight * 1e9) as u64, Ordering::Relaxed);
        let mut u = self.recent.lock();
        *u = Recent {
            rate: u.at(now) + busy / USAGE_TAU,
            at: now,
        };
    }

    /// Lanes kept busy on average over the last [`USAGE_TAU`] seconds or so.
    pub(crate) fn recent(&self, now: Instant) -> f64 {
        self.recent.lock().at(now)
    }

    /// Weighted lane-seconds consumed so far (fair-share virtual time).
    pub(crate) fn virtual_time(&self) -> f64 {
        self.virtual_ns.load(Ordering::Relaxed) as f64 * 1e-9
    }
}
