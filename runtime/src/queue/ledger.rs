//! The batches of one queue running on lanes now, with their predicted cost: what is
//! left of them is work ahead of the queue, and each is released exactly once.

use std::time::{Duration, Instant};

struct Running {
    started: Instant,
    predicted: f64,
}

/// Running batches by id.
#[derive(Default)]
pub(crate) struct Ledger {
    running: Vec<(u64, Running)>,
    next_id: u64,
}

impl Ledger {
    /// Records a batch started at `now` that is predicted to take `predicted` seconds;
    /// its id.
    pub(crate) fn start(&mut self, now: Instant, predicted: f64) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.running.push((
            id,
            Running {
                started: now,
                predicted,
            },
        ));
        id
    }

    /// Removes batch `id`; false when it is not running (already released).
    pub(crate) fn finish(&mut self, id: u64) -> bool {
        let Some(i) = self.running.iter().position(|(b, _)| *b == id) else {
            return false;
        };
        self.running.swap_remove(i);
        true
    }

    /// Each running batch: its id, how long it has run at `now`, its predicted seconds.
    pub(crate) fn batches(&self, now: Instant) -> Vec<(u64, Duration, f64)> {
        self.running
            .iter()
            .map(|(id, r)| (*id, now.saturating_duration_since(r.started), r.predicted))
            .collect()
    }

    /// Predicted seconds left of the running batches at `now`.
    pub(crate) fn left(&self, now: Instant) -> f64 {
        self.running
            .iter()
            .map(|(_, r)| {
                (r.predicted - now.saturating_duration_since(r.started).as_secs_f64()).max(0.0)
            })
            .sum()
    }
}
