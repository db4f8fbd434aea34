//! Batching policies: when a model's queue closes a batch, and how many rows it may take.
//!
//! A policy sees a read-only [`QueueView`] and answers with a [`Decision`]. The simple
//! baselines ([`NoBatching`], [`StaticBatching`]) sit next to the SLO-aware one so
//! benchmarks can compare them on the same workload.

use crate::latency_model::LatencyModel;
use cohost_models::{BatchingPolicyKind, ModelConfig};
use std::time::{Duration, Instant};

/// What a policy sees of one model's queue.
#[derive(Debug, Clone, Copy)]
pub struct QueueView<'a> {
    /// Now, as the scheduler's clock reads it.
    pub now: Instant,
    /// Requests waiting.
    pub len: usize,
    /// Rows waiting (sum over requests).
    pub rows: usize,
    /// Rows of the request at the head of the queue.
    pub head_rows: usize,
    /// When the oldest waiting request was enqueued.
    pub oldest: Instant,
    /// Largest batch in rows.
    pub max_rows: usize,
    /// Predicted seconds of this model's work already running or queued on its lanes,
    /// per lane, excluding what is waiting here.
    pub work_ahead: f64,
    /// The model's online latency model.
    pub latency: &'a LatencyModel,
    /// Recent arrival rate of requests per second (exponentially weighted).
    pub arrival_rate: f64,
    /// Lanes' worth of capacity this model can count on: its weighted share of the
    /// slice's lanes among the models active in the last half second (at most its
    /// `max_lanes`).
    pub lane_share: f64,
}

/// A policy's answer for one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Close a batch now with at most this many rows (at least the head request).
    Ready(usize),
    /// Nothing to close yet; look again at this instant (or when a request arrives).
    WaitUntil(Instant),
}

/// Decides when a model's queue closes a batch.
pub trait BatchPolicy: Send + Sync {
    /// Short name for logs and reports.
    fn name(&self) -> &'static str;
    /// The decision for a non-empty queue.
    fn decide(&self, view: &QueueView<'_>) -> Decision;
}

/// Every request runs on its own, at once.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoBatching;

impl BatchPolicy for NoBatching {
    fn name(&self) -> &'static str {
        "none"
    }
    fn decide(&self, view: &QueueView<'_>) -> Decision {
        Decision::Ready(view.head_rows)
    }
}

/// Triton-like: close at `max_rows` rows or once the oldest request waited `max_delay`.
#[derive(Debug, Clone, Copy)]
pub struct StaticBatching {
    /// Longest the oldest request waits for company.
    pub max_delay: Duration,
}

impl BatchPolicy for StaticBatching {
    fn name(&self) -> &'static str {
        "static"
    }
    fn decide(&self, view: &QueueView<'_>) -> Decision {
        let due = view.oldest + self.max_delay;
        if view.rows >= view.max_rows || view.now >= due {
            Decision::Ready(view.max_rows)
        } else {
            Decision::WaitUntil(due)
        }
    }
}

/// Fraction of its lane share the adaptive policy plans to keep busy: a batch needs
/// enough rows that `rate · t(n) / n ≤ KEEP_UP · lane_share`. The share is the model's
/// weighted part of all the slice's lanes, so the capacity planned over every active
/// model together is `KEEP_UP · lanes` however many models share the slice: 8 models at
/// an eighth of the traffic each batch like one model with all of it (each waits longer
/// for its rows), instead of each sizing its batches as if it had a lane of its own. Half
/// the lanes leaves the rest for what else runs on the cores (request decoding and
/// responses on a CPU) and for bursts.
const KEEP_UP: f64 = 0.5;

/// Part of the planned latency budget a request may spend waiting for company; the rest
/// is for queueing behind running batches, the batch's own run, and noise. Without it, a
/// model whose traffic is thin (one of many sharing a slice) would wait for its next
/// arrival, re-planned on every wake-up, until the latest start: every request then
/// finished just inside the target and any stall of the host pushed it over. A quarter of
/// the 8 ms planned for a 10 ms target is 2 ms, the delay of the best static setting in
/// the 2026-11-21 grid of docs/BATCHING.md § (a) (the 2026-11-30 grid's best waited 0.5 ms).
const GATHER: f64 = 0.25;

/// SLO-aware: a batch waits for company only while its oldest request can still finish
/// within the P99 target, given the work ahead and the learned latency `t(n) = a + b·n`,
/// only as long as it lacks the rows needed to keep up with the arrival rate, and at most
/// [`GATHER`] of the planned budget.
#[derive(Debug, Clone, Copy)]
pub struct AdaptiveBatching {
    /// The model's latency target.
    pub target: Duration,
    /// Fraction of the target the policy plans to use (the rest absorbs noise).
    pub headroom: f64,
}

impl AdaptiveBatching {
    /// Longest the oldest request waits for company, in seconds: [`GATHER`] of the planned
    /// budget.
    pub fn max_gather(&self) -> f64 {
        self.target.as_secs_f64() * self.headroom * GATHER
    }

    /// Rows arriving per second (requests per second times the mean rows waiting).
    fn rows_rate(view: &QueueView<'_>) -> f64 {
        view.arrival_rate * view.rows as f64 / view.len.max(1) as f64
    }

    /// Seconds the queue may still wait: a batch closed then, holding the rows expected
    /// to arrive meanwhile (at most `max_rows`), still finishes its oldest request within
    /// the planned budget by the model's own latency estimate. 0 when already due.
    pub fn max_wait(&self, view: &QueueView<'_>) -> f64 {
        let (_, b) = view.latency.coefficients();
        let age = view
            .now
            .saturating_duration_since(view.oldest)
            .as_secs_f64();
        let budget = self.target.as_secs_f64() * self.headroom - age - view.work_ahead;
        let slack = budget - view.latency.predict(view.rows.max(1));
        if slack <= 0.0 {
            return 0.0;
        }
        // Waiting s seconds adds rows_rate·s rows, each costing b: s + b·rows_rate·s ≤ slack.
        let rows_rate = Self::rows_rate(view);
        let wait = slack / (1.0 + b * rows_rate);
        if rows_rate > 0.0 {
            // A full batch closes at once, so waiting to fill is as far as it goes.
            let to_fill = view.max_rows.saturating_sub(view.rows) as f64 / rows_rate;
            wait.min(to_fill)
        } else {
            wait
        }
    }

    /// Most rows one batch takes: the largest `n` whose predicted run `t(n)` uses at most
    /// half the planned budget (a backlog drained in one huge batch would make every
    /// request in it miss the target), within `1..=max_rows`.
    pub fn batch_cap(&self, view: &QueueView<'_>) -> usize {
        let (a, b) = view.latency.coefficients();
        let half = self.target.as_secs_f64() * self.headroom / 2.0;
        if b <= 0.0 {
            return view.max_rows;
        }
        let n = ((half - a) / b).floor();
        if n >= view.max_rows as f64 {
            view.max_rows
        } else {
            (n.max(1.0)) as usize
        }
    }

    /// Rows a batch needs so that the model's planned part of the lanes keeps up with its
    /// arrival rate: the least `n` with `rows_rate · t(n) / n ≤ KEEP_UP · lane_share`;
    /// `max_rows` when none does.
    pub fn rows_needed(&self, view: &QueueView<'_>) -> usize {
        let (a, b) = view.latency.coefficients();
        let rows_rate = Self::rows_rate(view);
        let spare = KEEP_UP * view.lane_share.max(1e-3) - rows_rate * b;
        if spare <= 0.0 {
            return view.max_rows;
        }
        let n = (rows_rate * a / spare).ceil();
        if n >= view.max_rows as f64 {
            view.max_rows
        } else {
            (n as usize).max(1)
        }
    }
}

impl BatchPolicy for AdaptiveBatching {
    fn name(&self) -> &'static str {
        "adaptive"
    }
    fn decide(&self, view: &QueueView<'_>) -> Decision {
        if !view.latency.is_calibrated() {
            return Decision::Ready(view.max_rows);
        }
        let cap = self.batch_cap(view);
        let view = &QueueView {
            max_rows: cap,
            ..*view
        };
        if view.rows >= cap {
            return Decision::Ready(cap);
        }
        let wait = self.max_wait(view);
        // Due: waiting any longer would make the oldest request miss its target.
        // Idle: no company is expected before then, so run at once.
        if wait <= 0.0 || view.arrival_rate * wait < 1.0 {
            return Decision::Ready(cap);
        }
        // Big enough to keep up: waiting would only add latency.
        let needed = self.rows_needed(view);
        if view.rows >= needed {
            return Decision::Ready(cap);
        }
        // Busy: wait for the rows needed, never past the latest start, and never once the
        // oldest request has waited its part of the budget for company.
        let to_needed = (needed - view.rows) as f64 / Self::rows_rate(view);
        let age = view
            .now
            .saturating_duration_since(view.oldest)
            .as_secs_f64();
        let left = self.max_gather() - age;
        if left <= 0.0 {
            return Decision::Ready(cap);
        }
        let s = to_needed.min(wait).min(left);
        Decision::WaitUntil(view.now + Duration::from_secs_f64(s))
    }
}

/// The policy a model's `[batching]` table asks for.
pub fn policy_for(config: &ModelConfig) -> Box<dyn BatchPolicy> {
    let b = &config.batching;
    match b.policy {
        BatchingPolicyKind::None => Box::new(NoBatching),
        BatchingPolicyKind::Static => Box::new(StaticBatching {
            max_delay: Duration::from_micros(b.max_queue_delay_us),
        }),
        BatchingPolicyKind::Adaptive => Box::new(AdaptiveBatching {
            target: Duration::from_secs_f64(b.p99_target_ms.unwrap_or(10.0) / 1e3),
            headroom: 0.8,
        }),
    }
}

#[cfg(test)]
mod tests;
