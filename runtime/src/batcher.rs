//! Batching policies: when a model's queue closes a batch, and how many rows it may take.
//!
//! A policy sees a read-only [`QueueView`] and answers with a [`Decision`]. The simple
//! baselines ([`NoBatching`], [`StaticBatching`]) sit next to the SLO-aware one so
//! benchmarks can compare them on the same workload.

use crate::load::LatencyModel;
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

/// SLO-aware: a batch waits for company only while its oldest request can still finish
/// within the P99 target, given the work ahead and the learned latency `t(n) = a + b·n`.
#[derive(Debug, Clone, Copy)]
pub struct AdaptiveBatching {
    /// The model's latency target.
    pub target: Duration,
    /// Fraction of the target the policy plans to use (the rest absorbs noise).
    pub headroom: f64,
}

impl AdaptiveBatching {
    /// Latest instant at which a batch of `rows` rows may start so that its oldest
    /// request still meets the target.
    pub fn latest_start(&self, view: &QueueView<'_>, rows: usize) -> Instant {
        let budget = self.target.as_secs_f64() * self.headroom;
        let run = view.latency.predict(rows.max(1));
        let slack = (budget - run - view.work_ahead).max(0.0);
        view.oldest + Duration::from_secs_f64(slack)
    }
}

impl BatchPolicy for AdaptiveBatching {
    fn name(&self) -> &'static str {
        "adaptive"
    }
    fn decide(&self, view: &QueueView<'_>) -> Decision {
        if view.rows >= view.max_rows {
            return Decision::Ready(view.max_rows);
        }
        // Plan for the batch the queue would have if it filled up: waiting is only worth
        // it while even a full batch would still meet the oldest request's target.
        let latest = self.latest_start(view, view.max_rows);
        if view.now >= latest || !view.latency.is_calibrated() {
            Decision::Ready(view.max_rows)
        } else {
            Decision::WaitUntil(latest)
        }
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
mod tests {
    use super::*;

    fn view(now: Instant, oldest: Instant, rows: usize, lat: &LatencyModel) -> QueueView<'_> {
        QueueView {
            now,
            len: rows,
            rows,
            head_rows: 1,
            oldest,
            max_rows: 8,
            work_ahead: 0.0,
            latency: lat,
        }
    }

    #[test]
    fn static_waits_until_delay_then_closes() {
        let lat = LatencyModel::new(1e-4, 1e-5);
        let t0 = Instant::now();
        let p = StaticBatching {
            max_delay: Duration::from_micros(500),
        };
        assert_eq!(
            p.decide(&view(t0, t0, 3, &lat)),
            Decision::WaitUntil(t0 + Duration::from_micros(500))
        );
        assert_eq!(
            p.decide(&view(t0 + Duration::from_micros(500), t0, 3, &lat)),
            Decision::Ready(8)
        );
        assert_eq!(p.decide(&view(t0, t0, 8, &lat)), Decision::Ready(8));
    }

    #[test]
    fn no_batching_takes_only_the_head() {
        let lat = LatencyModel::new(1e-4, 1e-5);
        let t0 = Instant::now();
        assert_eq!(
            NoBatching.decide(&view(t0, t0, 5, &lat)),
            Decision::Ready(1)
        );
    }
}
