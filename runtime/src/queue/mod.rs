//! One model version's bounded request queue, with the handles a lane needs to run it.
//!
//! Beside the queue: the version's share of the memory budget (`lease`), its arrival
//! rate (`arrival`), its use of the lanes for fair shares (`usage`) and the batches it
//! has running (`ledger`).

mod arrival;
mod lease;
mod ledger;
pub(crate) mod usage;

use crate::batcher::{BatchPolicy, QueueView};
use crate::clock::Clock;
use crate::latency_model::LatencyModel;
use crate::metrics::ModelMetrics;
use crate::stats::StatsRecorder;
use crate::{Error, ModelConfig, Result, Tensor};
use arrival::ArrivalRate;
use cohost_models::{InputData, Model};
pub use lease::MemoryLease;
use ledger::Ledger;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use usage::LaneUsage;

/// A request admitted to a queue, waiting for a batch.
pub struct Pending {
    /// Rows it carries.
    pub rows: usize,
    /// Converted inputs, in the model's input order.
    pub inputs: Vec<InputData>,
    /// Indices of the model outputs to return.
    pub outputs: Vec<usize>,
    /// When it was admitted.
    pub enqueued: Instant,
    /// When its client stops waiting.
    pub deadline: Option<Instant>,
    /// Where its outputs go.
    pub reply: oneshot::Sender<Result<Reply>>,
}

/// What a lane sends back for one request.
pub struct Reply {
    /// The requested outputs.
    pub outputs: Vec<Tensor>,
    /// Seconds the request waited in the queue.
    pub queue_seconds: f64,
}

/// Requests taken from one queue to run together (the model's own input batch is
/// [`cohost_models::Batch`], gathered from these).
pub struct FormedBatch {
    /// Identifies the batch among the queue's running ones.
    pub id: u64,
    /// Total rows.
    pub rows: usize,
    /// The requests, in arrival order.
    pub requests: Vec<Pending>,
}

struct State {
    items: VecDeque<Pending>,
    arrivals: ArrivalRate,
    rows: usize,
    /// Queued requests that carry a deadline (the deadline scan is skipped when 0).
    with_deadline: usize,
    closed: bool,
    running: Ledger,
}

/// A loaded model version: its model, queue, batching policy, latency model and counters.
pub struct ModelQueue {
    /// Model name.
    pub(crate) name: String,
    /// Version.
    pub(crate) version: u64,
    /// Configuration it was loaded with.
    pub(crate) config: ModelConfig,
    /// The runnable model, shared by every lane.
    pub(crate) model: Arc<dyn Model>,
    /// When to close a batch.
    pub(crate) policy: Box<dyn BatchPolicy>,
    /// Learned batch latency.
    pub(crate) latency: LatencyModel,
    /// Triton-style statistics.
    pub(crate) stats: StatsRecorder,
    /// Prometheus handles.
    pub(crate) metrics: ModelMetrics,
    /// Largest batch in rows.
    pub(crate) max_rows: usize,
    /// Queue bound in requests.
    pub(crate) max_len: usize,
    /// Most lanes this model may occupy at once.
    pub(crate) max_lanes: usize,
    state: Counted<State>,
    in_flight: AtomicUsize,
    lanes_busy: AtomicUsize,
    usage: LaneUsage,
    /// Where "now" is read when the caller does not pass it (load counter, lane usage).
    clock: Clock,
    _memory: MemoryLease,
}

/// A model counts as active for fair shares this long after its last arrival.
const ACTIVE_FOR: Duration = Duration::from_millis(500);

impl ModelQueue {
    /// Wraps a built model for serving on up to `lanes` lanes.
    pub fn new(
        name: &str,
        version: u64,
        config: ModelConfig,
        model: Arc<dyn Model>,
        lanes: usize,
        memory: MemoryLease,
    ) -> Self {
        let max_lanes = config.max_lanes.unwrap_or(lanes).clamp(1, lanes.max(1));
        ModelQueue {
            name: name.to_string(),
            version,
            policy: crate::batcher::policy_for(&config),
            latency: LatencyModel::from_flops(model.flops_per_row(), 5e9),
            stats: StatsRecorder::default(),
            metrics: ModelMetrics::new(name, version),
            max_rows: config.batch_limit(),
            max_len: config.max_queue_len.max(1),
            max_lanes,
            config,
            model,
            state: Counted::new(State {
                items: VecDeque::new(),
                arrivals: ArrivalRate::default(),
                rows: 0,
                with_deadline: 0,
                closed: false,
                running: Ledger::default(),
            }),
            in_flight: AtomicUsize::new(0),
            lanes_busy: AtomicUsize::new(0),
            usage: LaneUsage::new(Instant::now()),
            clock: Clock::Real,
            _memory: memory,
        }
    }

    /// The same queue deciding its batches with `policy` instead of its config's.
    #[cfg(feature = "testing")]
    pub fn with_policy(mut self, policy: Box<dyn BatchPolicy>) -> Self {
        self.policy = policy;
        self
    }

    /// The same queue reading time from `clock` (a simulator's virtual clock); set before
    /// the first request.
    #[cfg(feature = "testing")]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.usage = LaneUsage::new(clock.now());
        self.clock = clock;
        self
    }

    /// Model name.
    #[cfg(feature = "testing")]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The model's learned batch latency.
    #[cfg(feature = "testing")]
    pub fn latency(&self) -> &LatencyModel {
        &self.latency
    }

    /// Most lanes this model may occupy at once.
    #[cfg(feature = "testing")]
    pub fn max_lanes(&self) -> usize {
        self.max_lanes
    }

    /// The refusal a request would get now because the queue is full, if it is: checked
    /// before a request's payload is decoded, so a flood costs as little as possible.
    pub fn full(&self) -> Option<Error> {
        let s = self.state.lock();
        (!s.closed && s.items.len() >= self.max_len).then(|| self.full_error())
    }

    fn full_error(&self) -> Error {
        Error::overloaded(format!(
            "model '{}' queue is full ({} requests waiting); retry later",
            self.name, self.max_len
        ))
    }

    /// Admits a request, or refuses it when the queue is closed or full.
    pub fn enqueue(&self, p: Pending) -> Result<()> {
        let mut s = self.state.lock();
        if s.closed {
            return Err(Error::unavailable(format!(
                "model '{}' version {} is unloading",
                self.name, self.version
            )));
        }
        if s.items.len() >= self.max_len {
            return Err(self.full_error());
        }
        s.arrivals.observe(p.enqueued);
        s.rows += p.rows;
        s.with_deadline += usize::from(p.deadline.is_some());
        s.items.push_back(p);
        self.metrics.pending.set(s.items.len() as f64);
        Ok(())
    }

    /// Lanes this model kept busy on average over the last `USAGE_TAU` seconds or so.
    pub fn lane_usage(&self, now: Instant) -> f64 {
        self.usage.recent(now)
    }

    /// Requests arriving per second lately (lowered while the queue is quiet).
    pub fn arrival_rate(&self, now: Instant) -> f64 {
        self.state.lock().arrivals.at(now)
    }

    /// True while the model has work or had an arrival in the last half second.
    pub fn recently_active(&self, now: Instant) -> bool {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return true;
        }
        let s = self.state.lock();
        !s.items.is_empty()
            || s.arrivals
                .last()
                .is_some_and(|l| now.saturating_duration_since(l) < ACTIVE_FOR)
    }

    /// True once the queue stopped admitting requests (its version is unloading).
    pub fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    /// Stops admitting requests; queued ones still run.
    pub fn close(&self) {
        self.state.lock().closed = true;
    }

    /// True once closed with nothing queued or running.
    pub fn is_drained(&self) -> bool {
        let s = self.state.lock();
        s.closed && s.items.is_empty() && self.in_flight.load(Ordering::SeqCst) == 0
    }

    /// True while admitting requests.
    pub fn is_open(&self) -> bool {
        !self.state.lock().closed
    }

    /// Requests waiting and executing.
    pub fn counts(&self) -> (usize, usize) {
        (
            self.state.lock().items.len(),
            self.in_flight.load(Ordering::SeqCst),
        )
    }

    /// Lanes running this model now.
    pub fn lanes_busy(&self) -> usize {
        self.lanes_busy.load(Ordering::SeqCst)
    }

    /// Weighted lane-seconds consumed so far (fair-share virtual time).
    pub fn virtual_time(&self) -> f64 {
        self.usage.virtual_time()
    }

    /// Predicted seconds of this model's work running plus queued (not divided by lanes).
    pub fn outstanding_work(&self) -> f64 {
        let s = self.state.lock();
        s.running.left(self.clock.now()) + self.queued_work(s.rows)
    }

    /// The refusal a request of `rows` rows due by `deadline` gets at `now` when the work
    /// ahead of it and its own run, by the calibrated latency fit, cannot finish by then
    /// (None: admit it, or the fit is not calibrated yet).
    pub fn refuse_late(&self, rows: usize, deadline: Instant, now: Instant) -> Option<Error> {
        let run = self.latency.calibrated_prediction(rows)?;
        let predicted = self.outstanding_work() / self.max_lanes as f64 + run;
        let budget = deadline.saturating_duration_since(now).as_secs_f64();
        (predicted > budget).then(|| {
            Error::overloaded(format!(
                "model '{}' cannot answer within the request's timeout: {:.2} ms of work is ahead, {:.2} ms remain",
                self.name,
                predicted * 1e3,
                budget * 1e3
            ))
        })
    }

    fn queued_work(&self, rows: usize) -> f64 {
        if rows == 0 {
            return 0.0;
        }
        let (a, b) = self.latency.coefficients();
        let batches = rows.div_ceil(self.max_rows);
        a * batches as f64 + b * rows as f64
    }

    /// Predicted seconds left of this model's batches running now.
    pub fn running_work(&self, now: Instant) -> f64 {
        self.state.lock().running.left(now)
    }

    /// This version's batches running on lanes now: id, time run so far, predicted seconds
    /// (the lane supervisor reports those running far past their prediction).
    pub fn running_batches(&self, now: Instant) -> Vec<(u64, Duration, f64)> {
        self.state.lock().running.batches(now)
    }

    /// Rows of the requests waiting.
    pub fn queued_rows(&self) -> usize {
        self.state.lock().rows
    }

    /// True when requests are waiting.
    pub fn has_queued(&self) -> bool {
        !self.state.lock().items.is_empty()
    }

    /// The queue as a batching policy sees it, or None when empty; `slice` says what the
    /// other models are doing with the lanes.
    pub fn view(&self, now: Instant, slice: SliceShare) -> Option<(QueueView<'_>, Instant)> {
        let s = self.state.lock();
        let head = s.items.front()?;
        let running = s.running.left(now);
        let oldest = head.enqueued;
        let no_deadline = oldest + Duration::from_secs(3600);
        let deadline = if s.with_deadline == 0 {
            no_deadline
        } else {
            s.items
                .iter()
                .filter_map(|p| p.deadline)
                .min()
                .unwrap_or(no_deadline)
        };
        Some((
            QueueView {
                now,
                len: s.items.len(),
                rows: s.rows,
                head_rows: head.rows,
                oldest,
                max_rows: self.max_rows,
                work_ahead: running / self.max_lanes as f64 + slice.others_ahead,
                latency: &self.latency,
                arrival_rate: s.arrivals.at(now),
                lane_share: slice.lane_share.min(self.max_lanes as f64),
            },
            deadline,
        ))
    }

    /// Takes whole requests from the head up to `limit` rows (at least one live request);
    /// requests whose client has gone or whose deadline passed are answered and skipped.
    pub fn take(&self, limit: usize, now: Instant) -> Option<FormedBatch> {
        let mut s = self.state.lock();
        let mut taken = Vec::new();
        let mut rows = 0;
        while let Some(front) = s.items.front() {
            if front.reply.is_closed() || front.deadline.is_some_and(|d| d <= now) {
                let p = s.items.pop_front().unwrap();
                s.with_deadline -= usize::from(p.deadline.is_some());
                s.rows -= p.rows;
                if !p.reply.is_closed() {
                    let _ = p.reply.send(Err(Error::new(
                        crate::ErrorKind::DeadlineExceeded,
                        format!("request to model '{}' timed out in the queue", self.name),
                    )));
                }
                continue;
            }
            if !taken.is_empty() && rows + front.rows > limit {
                break;
            }
            let p = s.items.pop_front().unwrap();
            s.with_deadline -= usize::from(p.deadline.is_some());
            s.rows -= p.rows;
            rows += p.rows;
            taken.push(p);
            if rows >= limit {
                break;
            }
        }
        if taken.is_empty() {
            self.publish(s.items.len());
            return None;
        }
        let id = s.running.start(now, self.latency.predict(rows));
        self.in_flight.fetch_add(taken.len(), Ordering::SeqCst);
        self.lanes_busy.fetch_add(1, Ordering::SeqCst);
        let batch = FormedBatch {
            id,
            rows,
            requests: taken,
        };
        self.publish(s.items.len());
        Some(batch)
    }

    /// Sets the pending and in-flight gauges, once the queue's state is updated (a
    /// panicking recorder is logged, not propagated: see [`ModelMetrics::queue_gauges`]).
    fn publish(&self, pending: usize) {
        self.metrics
            .queue_gauges(pending, || self.in_flight.load(Ordering::SeqCst));
    }

    /// Answers the oldest waiting request with `error` and drops it (deciding a batch for
    /// this queue panicked, so the scheduler moves past it); false when none waits.
    pub fn fail_oldest(&self, error: Error) -> bool {
        let mut s = self.state.lock();
        let Some(p) = s.items.pop_front() else {
            return false;
        };
        s.with_deadline -= usize::from(p.deadline.is_some());
        s.rows -= p.rows;
        let _ = p.reply.send(Err(error));
        self.publish(s.items.len());
        true
    }

    /// Releases a batch from [`ModelQueue::take`] after `busy` seconds on a lane (before
    /// touching any metric); true only for the call that released it, later calls (a lane
    /// recovering from a panic) do nothing.
    pub fn finish(&self, batch_id: u64, requests: usize, busy: f64) -> bool {
        let mut s = self.state.lock();
        if !s.running.finish(batch_id) {
            return false;
        }
        drop(s);
        self.in_flight.fetch_sub(requests, Ordering::SeqCst);
        self.lanes_busy.fetch_sub(1, Ordering::SeqCst);
        self.usage
            .record(busy, self.config.weight, self.clock.now());
        self.metrics
            .in_flight
            .set(self.in_flight.load(Ordering::SeqCst) as f64);
        true
    }
}

/// The queue's state behind its mutex; in testing builds it counts how often it was
/// locked, so a test can tell which queues a scheduling pass touched.
struct Counted<T> {
    inner: Mutex<T>,
    #[cfg(any(test, feature = "testing"))]
    locks: std::sync::atomic::AtomicU64,
}

impl<T> Counted<T> {
    fn new(value: T) -> Self {
        Counted {
            inner: Mutex::new(value),
            #[cfg(any(test, feature = "testing"))]
            locks: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, T> {
        #[cfg(any(test, feature = "testing"))]
        self.locks.fetch_add(1, Ordering::Relaxed);
        self.inner.lock()
    }
}

#[cfg(any(test, feature = "testing"))]
impl ModelQueue {
    /// How many times the queue's state was locked so far (testing builds only).
    pub fn state_locks(&self) -> u64 {
        self.state.locks.load(Ordering::Relaxed)
    }
}

/// What the rest of the slice means for one model's batching decision.
#[derive(Debug, Clone, Copy)]
pub struct SliceShare {
    /// Lanes' worth of capacity the model can count on (its weighted fair share).
    pub lane_share: f64,
    /// Seconds per lane of other models' batches still running (a lane must free up).
    pub others_ahead: f64,
}
