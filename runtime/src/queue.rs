//! One model version's bounded request queue, with the handles a lane needs to run it.

use crate::batcher::{BatchPolicy, QueueView};
use crate::load::LatencyModel;
use crate::metrics::ModelMetrics;
use crate::stats::StatsRecorder;
use crate::{Error, ModelConfig, Result, Tensor};
use cohost_models::{InputData, Model};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

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

struct Running {
    started: Instant,
    predicted: f64,
}

struct State {
    items: VecDeque<Pending>,
    /// Exponentially weighted arrival rate (requests/s) and the last arrival.
    arrival_rate: f64,
    last_arrival: Option<Instant>,
    rows: usize,
    /// Queued requests that carry a deadline (the deadline scan is skipped when 0).
    with_deadline: usize,
    closed: bool,
    running: Vec<(u64, Running)>,
    next_batch_id: u64,
}

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

/// A loaded model version: its model, queue, batching policy, latency model and counters.
pub struct ModelQueue {
    /// Model name.
    pub name: String,
    /// Version.
    pub version: u64,
    /// Configuration it was loaded with.
    pub config: ModelConfig,
    /// The runnable model, shared by every lane.
    pub model: Arc<dyn Model>,
    /// When to close a batch.
    pub policy: Box<dyn BatchPolicy>,
    /// Learned batch latency.
    pub latency: LatencyModel,
    /// Triton-style statistics.
    pub stats: StatsRecorder,
    /// Prometheus handles.
    pub metrics: ModelMetrics,
    /// Largest batch in rows.
    pub max_rows: usize,
    /// Queue bound in requests.
    pub max_len: usize,
    /// Most lanes this model may occupy at once.
    pub max_lanes: usize,
    state: Mutex<State>,
    in_flight: AtomicUsize,
    lanes_busy: AtomicUsize,
    /// Weighted lane-seconds consumed (fair-share virtual time), in nanoseconds.
    virtual_ns: AtomicU64,
    /// Recent lane usage, for the scheduler's fair-share cap.
    usage: Mutex<Usage>,
    _memory: MemoryLease,
}

/// Seconds over which recent lane usage is averaged (exponential decay constant).
pub const USAGE_TAU: f64 = 0.5;

/// A model counts as active for fair shares this long after its last arrival.
const ACTIVE_FOR: Duration = Duration::from_millis(500);

/// Lanes in use on average over the last [`USAGE_TAU`] or so (exponentially weighted).
#[derive(Debug, Clone, Copy)]
struct Usage {
    rate: f64,
    at: Instant,
}

impl Usage {
    fn at(self, now: Instant) -> f64 {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.rate * (-dt / USAGE_TAU).exp()
    }
}

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
            state: Mutex::new(State {
                items: VecDeque::new(),
                arrival_rate: 0.0,
                last_arrival: None,
                rows: 0,
                with_deadline: 0,
                closed: false,
                running: Vec::new(),
                next_batch_id: 0,
            }),
            in_flight: AtomicUsize::new(0),
            lanes_busy: AtomicUsize::new(0),
            virtual_ns: AtomicU64::new(0),
            usage: Mutex::new(Usage {
                rate: 0.0,
                at: Instant::now(),
            }),
            _memory: memory,
        }
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
        if let Some(last) = s.last_arrival {
            // Rate from a weighted mean of inter-arrival gaps (~the last 32 arrivals).
            let gap = p
                .enqueued
                .saturating_duration_since(last)
                .as_secs_f64()
                .max(1e-7);
            let mean_gap = if s.arrival_rate > 0.0 {
                1.0 / s.arrival_rate
            } else {
                gap
            };
            s.arrival_rate = 1.0 / (mean_gap + (gap - mean_gap) / 32.0);
        }
        s.last_arrival = Some(s.last_arrival.map_or(p.enqueued, |l| l.max(p.enqueued)));
        s.rows += p.rows;
        s.with_deadline += usize::from(p.deadline.is_some());
        s.items.push_back(p);
        self.metrics.pending.set(s.items.len() as f64);
        Ok(())
    }

    /// Lanes this model kept busy on average over the last [`USAGE_TAU`] seconds or so.
    pub fn lane_usage(&self, now: Instant) -> f64 {
        self.usage.lock().at(now)
    }

    /// True while the model has work or had an arrival in the last half second.
    pub fn recently_active(&self, now: Instant) -> bool {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return true;
        }
        let s = self.state.lock();
        !s.items.is_empty()
            || s.last_arrival
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
        self.virtual_ns.load(Ordering::Relaxed) as f64 * 1e-9
    }

    /// Predicted seconds of this model's work running plus queued (not divided by lanes).
    pub fn outstanding_work(&self) -> f64 {
        let s = self.state.lock();
        running_left(&s, Instant::now()) + self.queued_work(s.rows)
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
        running_left(&self.state.lock(), now)
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
        let running = running_left(&s, now);
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
                arrival_rate: current_rate(s.arrival_rate, s.last_arrival, now),
                lane_share: slice.lane_share.min(self.max_lanes as f64),
            },
            deadline,
        ))
    }

    /// Takes whole requests from the head up to `limit` rows (at least one live request);
    /// requests whose client has gone or whose deadline passed are answered and skipped.
    pub fn take(&self, limit: usize, now: Instant) -> Option<Batch> {
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
        let id = s.next_batch_id;
        s.next_batch_id += 1;
        s.running.push((
            id,
            Running {
                started: now,
                predicted: self.latency.predict(rows),
            },
        ));
        self.in_flight.fetch_add(taken.len(), Ordering::SeqCst);
        self.lanes_busy.fetch_add(1, Ordering::SeqCst);
        let batch = Batch {
            id,
            rows,
            requests: taken,
        };
        self.publish(s.items.len());
        Some(batch)
    }

    /// Sets the pending and in-flight gauges. Called once the queue's state is updated,
    /// so a panicking metrics recorder is logged, not propagated: unwinding from
    /// [`ModelQueue::take`] would drop a batch already counted as running, unanswered.
    fn publish(&self, pending: usize) {
        let set = || {
            self.metrics.pending.set(pending as f64);
            self.metrics
                .in_flight
                .set(self.in_flight.load(Ordering::SeqCst) as f64);
        };
        if let Err(panic) = catch_unwind(AssertUnwindSafe(set)) {
            tracing::error!(
                model = %self.name,
                version = self.version,
                "metrics recorder panicked: {}",
                crate::lane::panic_message(&*panic)
            );
        }
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
        let Some(i) = s.running.iter().position(|(id, _)| *id == batch_id) else {
            return false;
        };
        s.running.swap_remove(i);
        drop(s);
        self.in_flight.fetch_sub(requests, Ordering::SeqCst);
        self.lanes_busy.fetch_sub(1, Ordering::SeqCst);
        let weight = self.config.weight.max(1e-6);
        self.virtual_ns
            .fetch_add((busy / weight * 1e9) as u64, Ordering::Relaxed);
        {
            let now = Instant::now();
            let mut u = self.usage.lock();
            *u = Usage {
                rate: u.at(now) + busy / USAGE_TAU,
                at: now,
            };
        }
        self.metrics
            .in_flight
            .set(self.in_flight.load(Ordering::SeqCst) as f64);
        true
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

impl SliceShare {
    /// A model alone on `lanes` lanes.
    pub fn alone(lanes: usize) -> Self {
        SliceShare {
            lane_share: lanes as f64,
            others_ahead: 0.0,
        }
    }
}

fn running_left(s: &State, now: Instant) -> f64 {
    s.running
        .iter()
        .map(|(_, r)| {
            (r.predicted - now.saturating_duration_since(r.started).as_secs_f64()).max(0.0)
        })
        .sum()
}

/// The arrival rate, lowered when the queue has been quiet for longer than its mean gap.
fn current_rate(rate: f64, last: Option<Instant>, now: Instant) -> f64 {
    let quiet = last.map_or(f64::INFINITY, |l| {
        now.saturating_duration_since(l).as_secs_f64()
    });
    if rate > 0.0 && quiet * rate > 1.0 {
        1.0 / quiet
    } else {
        rate
    }
}

/// Requests taken from one queue to run together.
pub struct Batch {
    /// Identifies the batch among the queue's running ones.
    pub id: u64,
    /// Total rows.
    pub rows: usize,
    /// The requests, in arrival order.
    pub requests: Vec<Pending>,
}
