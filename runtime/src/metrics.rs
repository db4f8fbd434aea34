//! Metric emission through the `metrics` facade; the server installs the Prometheus
//! recorder. Names are prefixed `cohost_`; handles are resolved once per model version.

use crate::panic::panic_message;
use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use parking_lot::RwLock;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

/// The failure reasons [`ModelMetrics::failure`] keeps a handle for (every
/// [`crate::ErrorKind`] label); any other reason is looked up per call.
const FAILURE_REASONS: [&str; 6] = [
    "not_found",
    "invalid_argument",
    "overloaded",
    "deadline_exceeded",
    "unavailable",
    "internal",
];

/// Metric handles of one model version.
pub struct ModelMetrics {
    model: String,
    version: String,
    /// Requests answered successfully.
    pub success: Counter,
    /// Rows inferred.
    pub inference_count: Counter,
    /// Batches executed.
    pub execution_count: Counter,
    /// Rows per executed batch.
    pub batch_size: Histogram,
    /// Seconds a request waited in the queue.
    pub queue_duration: Histogram,
    /// Seconds a batch spent in forward.
    pub compute_duration: Histogram,
    /// Seconds from arrival to response.
    pub request_duration: Histogram,
    /// Requests waiting in the queue.
    pub pending: Gauge,
    /// Requests executing.
    pub in_flight: Gauge,
    /// The model's load counter.
    pub load: Gauge,
    /// Batches that ran past their overrun limit (reported while still running).
    pub batch_overruns: Counter,
    /// `cohost_host_load`, resolved on first use (so the series appears with the first
    /// report, as before handles were kept).
    host_load: OnceLock<Gauge>,
    /// `cohost_request_failure_total` per reason in [`FAILURE_REASONS`], resolved on first use.
    failures: [OnceLock<Counter>; FAILURE_REASONS.len()],
}

impl ModelMetrics {
    /// Registers the handles for `model`/`version`.
    pub fn new(model: &str, version: u64) -> Self {
        let m = model.to_string();
        let v = version.to_string();
        let l = [("model", m.clone()), ("version", v.clone())];
        ModelMetrics {
            success: counter!("cohost_request_success_total", &l),
            inference_count: counter!("cohost_inference_count_total", &l),
            execution_count: counter!("cohost_execution_count_total", &l),
            batch_size: histogram!("cohost_batch_size", &l),
            queue_duration: histogram!("cohost_queue_duration_seconds", &l),
            compute_duration: histogram!("cohost_compute_duration_seconds", &l),
            request_duration: histogram!("cohost_request_duration_seconds", &l),
            pending: gauge!("cohost_pending_requests", &l),
            in_flight: gauge!("cohost_inflight_requests", &l),
            load: gauge!("cohost_model_load", "model" => m.clone()),
            batch_overruns: counter!("cohost_batch_overruns_total", &l),
            host_load: OnceLock::new(),
            failures: Default::default(),
            model: m,
            version: v,
        }
    }

    /// Counts one failed request with its reason label.
    pub fn failure(&self, reason: &'static str) {
        let resolve = || {
            counter!(
                "cohost_request_failure_total",
                "model" => self.model.clone(),
                "version" => self.version.clone(),
                "reason" => reason
            )
        };
        match FAILURE_REASONS.iter().position(|r| *r == reason) {
            Some(i) => self.failures[i].get_or_init(resolve).increment(1),
            None => resolve().increment(1),
        }
    }

    /// Sets the pending and in-flight gauges (`in_flight` read after the first is set).
    /// A panicking metrics recorder is logged, not propagated: unwinding from a queue's
    /// `take` would drop a batch already counted as running, unanswered.
    pub fn queue_gauges(&self, pending: usize, in_flight: impl FnOnce() -> usize) {
        let set = || {
            self.pending.set(pending as f64);
            self.in_flight.set(in_flight() as f64);
        };
        if let Err(panic) = catch_unwind(AssertUnwindSafe(set)) {
            tracing::error!(
                model = %self.model,
                version = %self.version,
                "metrics recorder panicked: {}",
                panic_message(&*panic)
            );
        }
    }

    /// Sets the host-wide load gauge (`cohost_host_load`) through this model's handle.
    pub fn host_load(&self, value: f64) {
        self.host_load
            .get_or_init(|| gauge!("cohost_host_load"))
            .set(value);
    }
}

/// Sets the host-wide load gauge.
pub fn host_load(value: f64) {
    gauge!("cohost_host_load").set(value);
}

/// Lane gauges resolved so far, with the recorder they were resolved against.
struct LaneGauges {
    recorder: usize,
    gauges: Vec<Option<Gauge>>,
}

static LANE_GAUGES: RwLock<LaneGauges> = RwLock::new(LaneGauges {
    recorder: 0,
    gauges: Vec::new(),
});

/// Identifies the recorder `gauge!` would use now (the global one, a thread's local one, or
/// the no-op one before any is installed), so cached handles follow a recorder change.
fn current_recorder() -> usize {
    metrics::with_recorder(|r| std::ptr::from_ref(r).cast::<()>() as usize)
}

/// Adds busy seconds to a lane's running total (a monotonic f64, exported as a gauge).
/// Called once per batch: the handle is resolved once per lane, not per call.
pub fn lane_busy(lane: usize, seconds: f64) {
    let recorder = current_recorder();
    {
        let cache = LANE_GAUGES.read();
        if cache.recorder == recorder
            && let Some(Some(g)) = cache.gauges.get(lane)
        {
            g.increment(seconds);
            return;
        }
    }
    let g = gauge!("cohost_lane_busy_seconds_total", "lane" => lane.to_string());
    g.increment(seconds);
    let mut cache = LANE_GAUGES.write();
    if cache.recorder != recorder {
        cache.recorder = recorder;
        cache.gauges.clear();
    }
    if cache.gauges.len() <= lane {
        cache.gauges.resize(lane + 1, None);
    }
    cache.gauges[lane] = Some(g);
}

/// Counts one respawn of a lane thread that died (`cohost_lane_restarts_total{lane}`).
pub fn lane_restart(lane: usize) {
    counter!("cohost_lane_restarts_total", "lane" => lane.to_string()).increment(1);
}

/// Counts one device fault found at a batch boundary
/// (`cohost_device_faults_total{kind="sticky"|"transient"}`).
pub fn device_fault(sticky: bool) {
    let kind = if sticky { "sticky" } else { "transient" };
    counter!("cohost_device_faults_total", "kind" => kind).increment(1);
}

/// Counts one device reset that ended with `outcome` ("ok", or "failed" for a rebuild
/// attempt that failed) (`cohost_device_resets_total{outcome}`).
pub fn device_reset(outcome: &'static str) {
    counter!("cohost_device_resets_total", "outcome" => outcome).increment(1);
}

/// Exports the supervision series at 0 for `lanes` lanes, so that alerts on their
/// increase see them before the first restart.
pub fn supervision_started(lanes: usize) {
    for lane in 0..lanes {
        counter!("cohost_lane_restarts_total", "lane" => lane.to_string()).increment(0);
    }
    for kind in ["sticky", "transient"] {
        counter!("cohost_device_faults_total", "kind" => kind).increment(0);
    }
    for outcome in ["ok", "failed"] {
        counter!("cohost_device_resets_total", "outcome" => outcome).increment(0);
    }
    batches_overrunning(0);
}

/// Sets how many batches are running past their overrun limit now.
pub fn batches_overrunning(n: usize) {
    gauge!("cohost_batches_overrunning").set(n as f64);
}

/// Publishes what the runtime runs on: `cohost_device_info{backend,device,mig_profile} 1`,
/// the lane count and the memory budget.
pub fn device(info: &crate::DeviceInfo, lanes: usize, budget: Option<u64>) {
    gauge!(
        "cohost_device_info",
        "backend" => info.backend,
        "device" => info.name.clone(),
        "mig_profile" => info.mig_profile.clone().unwrap_or_default()
    )
    .set(1.0);
    gauge!("cohost_lanes").set(lanes as f64);
    if let Some(b) = budget {
        gauge!("cohost_memory_budget_bytes").set(b as f64);
    }
}

/// Sets the device bytes held by loaded models.
pub fn memory_used(bytes: u64) {
    gauge!("cohost_memory_used_bytes").set(bytes as f64);
}

/// Moves `cohost_transitions_waiting` (version transitions waiting for the slice's
/// utilization to drop below the budget) by `delta`; every runtime in the process adds
/// its own.
pub fn transitions_waiting(delta: f64) {
    gauge!("cohost_transitions_waiting").increment(delta);
}

/// Counts one finished version transition of `model` (`cohost_transitions_total{model,outcome}`).
pub fn transition_finished(model: &str, outcome: &'static str) {
    counter!("cohost_transitions_total", "model" => model.to_string(), "outcome" => outcome)
        .increment(1);
}
