//! What a run counts: latencies of answered requests, refusals, timeouts, batch sizes.

use serde::Serialize;

/// Counts for one model (or a whole run) over the measured window.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Latencies of requests answered within their timeout, nanoseconds.
    pub latencies: Vec<u64>,
    /// Requests offered (arrived in the window).
    pub offered: u64,
    /// Refused at admission (queue full, or deadline admission).
    pub refused: u64,
    /// Answered after their timeout, or dropped from the queue when it passed.
    pub timed_out: u64,
    /// Batches started in the window.
    pub batches: u64,
    /// Rows of those batches.
    pub batch_rows: u64,
}

/// A tally's summary.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Requests offered.
    pub offered: u64,
    /// Answered within their timeout.
    pub ok: u64,
    /// Answered requests per second of the window.
    pub throughput: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Refused and timed-out requests over offered.
    pub error_rate: f64,
    /// Timed-out requests over offered.
    pub timeout_rate: f64,
    /// Mean rows per batch.
    pub mean_batch: f64,
}

/// The `q`-quantile (0..=1) of sorted nanoseconds, in ms (nearest rank).
pub fn quantile_ms(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1e6
}

impl Tally {
    /// Adds another tally's counts.
    pub fn merge(&mut self, o: &Tally) {
        self.latencies.extend_from_slice(&o.latencies);
        self.offered += o.offered;
        self.refused += o.refused;
        self.timed_out += o.timed_out;
        self.batches += o.batches;
        self.batch_rows += o.batch_rows;
    }

    /// The summary over a window of `seconds`.
    pub fn summary(&self, seconds: f64) -> Summary {
        let mut l = self.latencies.clone();
        l.sort_unstable();
        let ok = l.len() as u64;
        let offered = self.offered.max(1) as f64;
        Summary {
            offered: self.offered,
            ok,
            throughput: ok as f64 / seconds,
            p50_ms: quantile_ms(&l, 0.5),
            p99_ms: quantile_ms(&l, 0.99),
            error_rate: (self.refused + self.timed_out) as f64 / offered,
            timeout_rate: self.timed_out as f64 / offered,
            mean_batch: self.batch_rows as f64 / self.batches.max(1) as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<u64> = (1..=100).map(|i| i * 1_000_000).collect();
        assert_eq!(quantile_ms(&v, 0.5), 50.0);
        assert_eq!(quantile_ms(&v, 0.99), 99.0);
        assert_eq!(quantile_ms(&v, 1.0), 100.0);
        assert_eq!(quantile_ms(&[], 0.99), 0.0);
    }
}
