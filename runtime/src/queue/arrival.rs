//! A queue's recent arrival rate, as batching policies see it.

use std::time::Instant;

/// Exponentially weighted arrival rate (requests/s) and the last arrival.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ArrivalRate {
    rate: f64,
    last: Option<Instant>,
}

impl ArrivalRate {
    /// Counts one arrival at `at`.
    pub(crate) fn observe(&mut self, at: Instant) {
        if let Some(last) = self.last {
            // Rate from a weighted mean of inter-arrival gaps (~the last 32 arrivals).
            let gap = at.saturating_duration_since(last).as_secs_f64().max(1e-7);
            let mean_gap = if self.rate > 0.0 {
                1.0 / self.rate
            } else {
                gap
            };
            self.rate = 1.0 / (mean_gap + (gap - mean_gap) / 32.0);
        }
        self.last = Some(self.last.map_or(at, |l| l.max(at)));
    }

    /// The latest arrival, if any.
    pub(crate) fn last(&self) -> Option<Instant> {
        self.last
    }

    /// The rate at `now`, lowered when the queue has been quiet for longer than its mean gap.
    pub(crate) fn at(&self, now: Instant) -> f64 {
        let quiet = self.last.map_or(f64::INFINITY, |l| {
            now.saturating_duration_since(l).as_secs_f64()
        });
        if self.rate > 0.0 && quiet * self.rate > 1.0 {
            1.0 / quiet
        } else {
            self.rate
        }
    }
}
