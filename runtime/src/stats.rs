//! Per-model-version statistics in the shape of Triton's statistics extension.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A count and the total nanoseconds spent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatisticDuration {
    /// Number of events.
    pub count: u64,
    /// Total nanoseconds over those events.
    pub ns: u64,
}

/// Statistics of batches of one size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Rows in the batch.
    pub batch_size: u64,
    /// Time gathering and converting inputs.
    pub compute_input: StatisticDuration,
    /// Time in the model's forward.
    pub compute_infer: StatisticDuration,
    /// Time splitting outputs back.
    pub compute_output: StatisticDuration,
}

/// One model version's counters since it was loaded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelStats {
    /// Model name.
    pub name: String,
    /// Version.
    pub version: u64,
    /// Milliseconds since the epoch of the last inference (0 if none).
    pub last_inference_ms: u64,
    /// Rows inferred (a request of 4 rows counts 4).
    pub inference_count: u64,
    /// Batches executed.
    pub execution_count: u64,
    /// Successful requests, end to end.
    pub success: StatisticDuration,
    /// Failed requests, end to end.
    pub fail: StatisticDuration,
    /// Time requests waited in the queue.
    pub queue: StatisticDuration,
    /// Time gathering inputs into batches.
    pub compute_input: StatisticDuration,
    /// Time in forward.
    pub compute_infer: StatisticDuration,
    /// Time splitting outputs.
    pub compute_output: StatisticDuration,
    /// Per batch size.
    pub batch_stats: Vec<BatchStats>,
}

#[derive(Default)]
struct Acc {
    count: AtomicU64,
    ns: AtomicU64,
}

impl Acc {
    fn add(&self, ns: u64) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.ns.fetch_add(ns, Ordering::Relaxed);
    }
    fn get(&self) -> StatisticDuration {
        StatisticDuration {
            count: self.count.load(Ordering::Relaxed),
            ns: self.ns.load(Ordering::Relaxed),
        }
    }
}

/// Lock-free accumulators behind [`ModelStats`].
#[derive(Default)]
pub struct StatsRecorder {
    last_inference_ms: AtomicU64,
    inference_count: AtomicU64,
    execution_count: AtomicU64,
    success: Acc,
    fail: Acc,
    queue: Acc,
    compute_input: Acc,
    compute_infer: Acc,
    compute_output: Acc,
    batches: Mutex<BTreeMap<u64, BatchStats>>,
}

impl StatsRecorder {
    /// Records one finished request.
    pub fn request(&self, ok: bool, total_ns: u64, queue_ns: u64) {
        if ok {
            self.success.add(total_ns);
        } else {
            self.fail.add(total_ns);
        }
        self.queue.add(queue_ns);
    }

    /// Records one executed batch.
    pub fn batch(&self, rows: u64, input_ns: u64, infer_ns: u64, output_ns: u64) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.last_inference_ms.store(now, Ordering::Relaxed);
        self.inference_count.fetch_add(rows, Ordering::Relaxed);
        self.execution_count.fetch_add(1, Ordering::Relaxed);
        self.compute_input.add(input_ns);
        self.compute_infer.add(infer_ns);
        self.compute_output.add(output_ns);
        let mut b = self.batches.lock();
        let e = b.entry(rows).or_insert(BatchStats {
            batch_size: rows,
            ..Default::default()
        });
        for (d, ns) in [
            (&mut e.compute_input, input_ns),
            (&mut e.compute_infer, infer_ns),
            (&mut e.compute_output, output_ns),
        ] {
            d.count += 1;
            d.ns += ns;
        }
    }

    /// A snapshot.
    pub fn snapshot(&self, name: &str, version: u64) -> ModelStats {
        ModelStats {
            name: name.to_string(),
            version,
            last_inference_ms: self.last_inference_ms.load(Ordering::Relaxed),
            inference_count: self.inference_count.load(Ordering::Relaxed),
            execution_count: self.execution_count.load(Ordering::Relaxed),
            success: self.success.get(),
            fail: self.fail.get(),
            queue: self.queue.get(),
            compute_input: self.compute_input.get(),
            compute_infer: self.compute_infer.get(),
            compute_output: self.compute_output.get(),
            batch_stats: self.batches.lock().values().copied().collect(),
        }
    }
}
