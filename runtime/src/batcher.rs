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
    /// Recent arrival rate of requests per second (exponentially weighted).
    pub arrival_rate: f64,
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
        if view.rows >= view.max_rows || !view.latency.is_calibrated() {
            return Decision::Ready(view.max_rows);
        }
        // Plan for the batch the queue would have if it filled up: waiting is only worth
        // it while even a full batch would still meet the oldest request's target.
        let latest = self.latest_start(view, view.max_rows);
        if view.now >= latest {
            return Decision::Ready(view.max_rows);
        }
        // Idle: no company is expected before the latest start, so run at once.
        let slack = latest.duration_since(view.now).as_secs_f64();
        let mean_rows = view.rows as f64 / view.len.max(1) as f64;
        let expected_rows = view.arrival_rate * slack * mean_rows;
        if expected_rows < 1.0 {
            return Decision::Ready(view.max_rows);
        }
        // Busy: wait until the batch is expected to be full, never past the latest start.
        let to_fill = (view.max_rows - view.rows) as f64 / (view.arrival_rate * mean_rows);
        let fill_at = view.now + Duration::from_secs_f64(to_fill.max(0.0));
        Decision::WaitUntil(fill_at.min(latest))
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
            arrival_rate: 0.0,
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

    /// A calibrated latency model t(n) = a + b·n.
    fn calibrated(a: f64, b: f64) -> LatencyModel {
        let m = LatencyModel::new(a, b);
        for i in 0..64 {
            let n = 1 + i % 16;
            m.observe(n, a + b * n as f64);
        }
        m
    }

    #[test]
    fn adaptive_never_waits_past_the_oldest_requests_deadline() {
        // Simulated clock: random queue states, checked against the policy's own model.
        let lat = calibrated(200e-6, 20e-6);
        let p = AdaptiveBatching {
            target: Duration::from_millis(10),
            headroom: 0.8,
        };
        let t0 = Instant::now();
        let mut seed = 12345u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as f64 / (1u64 << 31) as f64
        };
        let mut waited = 0;
        for _ in 0..10_000 {
            let age = Duration::from_secs_f64(next() * 0.012);
            let now = t0 + Duration::from_millis(20);
            let oldest = now - age;
            let rows = 1 + (next() * 40.0) as usize;
            let v = QueueView {
                now,
                len: rows,
                rows,
                head_rows: 1,
                oldest,
                max_rows: 64,
                work_ahead: next() * 0.004,
                latency: &lat,
                arrival_rate: next() * 20_000.0,
            };
            match p.decide(&v) {
                Decision::Ready(n) => assert_eq!(n, 64),
                Decision::WaitUntil(t) => {
                    waited += 1;
                    assert!(t > now, "waiting for a moment already past");
                    // Started at t, the fullest batch still finishes within the target.
                    let finish = t.duration_since(oldest).as_secs_f64()
                        + v.work_ahead
                        + lat.predict(v.max_rows);
                    assert!(finish <= 0.010 * 0.8 + 1e-9, "would finish at {finish}s");
                }
            }
        }
        assert!(waited > 1000, "the policy never waited ({waited})");
    }

    #[test]
    fn adaptive_runs_at_once_when_idle_and_waits_under_load() {
        let lat = calibrated(200e-6, 20e-6);
        let p = AdaptiveBatching {
            target: Duration::from_millis(10),
            headroom: 0.8,
        };
        let t0 = Instant::now();
        let mut v = view(t0, t0, 1, &lat);
        v.max_rows = 64;
        v.arrival_rate = 10.0; // one request per 100 ms: nobody will join in time
        assert_eq!(p.decide(&v), Decision::Ready(64));
        v.arrival_rate = 50_000.0; // 50 per ms: the batch fills in ~1.3 ms
        match p.decide(&v) {
            Decision::WaitUntil(t) => {
                let w = t.duration_since(t0).as_secs_f64();
                assert!(w > 1e-3 && w < 1.5e-3, "waits {w}s");
            }
            d => panic!("expected a wait under load, got {d:?}"),
        }
        // Uncalibrated: no basis for waiting.
        let fresh = LatencyModel::new(200e-6, 20e-6);
        let mut v2 = view(t0, t0, 1, &fresh);
        v2.arrival_rate = 50_000.0;
        assert_eq!(p.decide(&v2), Decision::Ready(8));
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
