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
/// the 8 ms planned for a 10 ms target is 2 ms: the delay of the best static setting in
/// the grid of docs/BATCHING.md § (a).
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
    /// Latest instant at which a batch of `rows` rows may start so that its oldest
    /// request still meets the target.
    pub fn latest_start(&self, view: &QueueView<'_>, rows: usize) -> Instant {
        let budget = self.target.as_secs_f64() * self.headroom;
        let run = view.latency.predict(rows.max(1));
        let slack = (budget - run - view.work_ahead).max(0.0);
        view.oldest + Duration::from_secs_f64(slack)
    }

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
mod tests {
    use super::*;

    /// The adaptive policy with a 10 ms target and the default headroom.
    fn adaptive_10ms() -> AdaptiveBatching {
        AdaptiveBatching {
            target: Duration::from_millis(10),
            headroom: 0.8,
        }
    }

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
            lane_share: 1.0,
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
        let p = adaptive_10ms();
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
            let rows = 1 + (next() * 12.0) as usize;
            let v = QueueView {
                now,
                len: rows,
                rows,
                head_rows: 1,
                oldest,
                max_rows: 64,
                work_ahead: next() * 0.004,
                latency: &lat,
                arrival_rate: next() * 60_000.0,
                lane_share: 1.0,
            };
            match p.decide(&v) {
                Decision::Ready(n) => assert_eq!(n, 64),
                Decision::WaitUntil(t) => {
                    waited += 1;
                    assert!(t > now, "waiting for a moment already past");
                    // Started at t with the rows the policy expects by then (at most a
                    // full batch), the oldest request still finishes within the target.
                    let s = t.duration_since(now).as_secs_f64();
                    let expected = (rows as f64 + v.arrival_rate * s).min(64.0);
                    let (a, b) = lat.coefficients();
                    let finish =
                        t.duration_since(oldest).as_secs_f64() + v.work_ahead + a + b * expected;
                    assert!(finish <= 0.010 * 0.8 + 1e-6, "would finish at {finish}s");
                    // Even the rows already waiting plus one more arrival fit.
                    let next = t.duration_since(oldest).as_secs_f64()
                        + v.work_ahead
                        + lat.predict(rows + 1);
                    assert!(next <= 0.010 * 0.8 + 1e-6, "one more arrival: {next}s");
                }
            }
        }
        assert!(waited > 1000, "the policy never waited ({waited})");
    }

    #[test]
    fn adaptive_runs_at_once_when_idle_and_waits_under_load() {
        let lat = calibrated(200e-6, 20e-6);
        let p = adaptive_10ms();
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

    /// One batch of a simulated run: (oldest arrival, start, rows, lane idle since).
    type SimBatch = (f64, f64, usize, f64);

    /// Discrete-event run on a simulated clock: Poisson arrivals of 1-row requests at
    /// `rate`, one lane whose batches take exactly `t(n)` by the model, the policy asked
    /// on every arrival, wake-up and free lane; it sees the rate as `rate * misjudge`.
    fn simulate(rate: f64, misjudge: f64, n: usize) -> Vec<SimBatch> {
        let lat = calibrated(200e-6, 20e-6);
        let p = adaptive_10ms();
        let t0 = Instant::now();
        let at = |x: f64| t0 + Duration::from_secs_f64(x);
        let mut seed = 7u64;
        let mut gap = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = ((seed >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            -u.ln() / rate
        };
        let (mut queue, mut out) = (std::collections::VecDeque::new(), Vec::new());
        let mut next_arrival = gap();
        let (mut lane_free, mut wake) = (0.0f64, f64::INFINITY);
        let mut now = 0.0;
        while out.len() < n {
            while next_arrival <= now {
                queue.push_back(next_arrival);
                next_arrival += gap();
            }
            if !queue.is_empty() && lane_free <= now {
                let v = QueueView {
                    now: at(now),
                    len: queue.len(),
                    rows: queue.len(),
                    head_rows: 1,
                    oldest: at(queue[0]),
                    max_rows: 64,
                    work_ahead: 0.0,
                    latency: &lat,
                    arrival_rate: rate * misjudge,
                    lane_share: 1.0,
                };
                match p.decide(&v) {
                    Decision::Ready(limit) => {
                        let rows = queue.len().min(limit);
                        out.push((queue[0], now, rows, lane_free.max(queue[0])));
                        queue.drain(..rows);
                        lane_free = now + lat.predict(rows);
                        wake = f64::INFINITY;
                    }
                    Decision::WaitUntil(t) => {
                        wake = t.duration_since(t0).as_secs_f64();
                        assert!(wake > now, "woke for a moment already past");
                    }
                }
            }
            let ready_at = if queue.is_empty() {
                f64::INFINITY
            } else if lane_free > now {
                lane_free
            } else {
                wake
            };
            now = next_arrival.min(ready_at);
        }
        out
    }

    #[test]
    fn adaptive_simulated_batches_never_wait_past_their_oldest_requests_target() {
        let budget = 0.010 * 0.8;
        let lat = calibrated(200e-6, 20e-6);
        let mut held = 0;
        for rate in [100.0, 1_000.0, 5_000.0, 15_000.0, 30_000.0] {
            for misjudge in [0.25, 1.0, 4.0] {
                let batches = simulate(rate, misjudge, 2_000);
                for &(oldest, start, rows, idle_since) in &batches {
                    // A batch the policy held back (the lane was free before it started)
                    // still finishes its oldest request within the budget.
                    if start > idle_since + 1e-12 {
                        held += 1;
                        // Nor does it wait for company longer than its part of the budget.
                        assert!(
                            start - oldest <= budget * GATHER + 1e-9,
                            "rate {rate} x{misjudge}: held {}s for company",
                            start - oldest
                        );
                        let finish = start - oldest + lat.predict(rows);
                        assert!(
                            finish <= budget + 1e-9,
                            "rate {rate} x{misjudge}: held {rows} rows to finish at {finish}s"
                        );
                    }
                }
            }
        }
        assert!(held > 1_000, "the policy held back only {held} batches");
    }

    #[test]
    fn adaptive_simulated_batches_grow_with_load_and_run_at_once_when_idle() {
        let lat = calibrated(200e-6, 20e-6);
        let stats = |rate: f64| {
            let b = simulate(rate, 1.0, 2_000);
            let mean_rows = b.iter().map(|x| x.2 as f64).sum::<f64>() / b.len() as f64;
            let worst = b
                .iter()
                .map(|&(o, s, r, _)| s - o + lat.predict(r))
                .fold(0.0, f64::max);
            (mean_rows, worst)
        };
        let (idle_rows, idle_worst) = stats(100.0);
        assert!(idle_rows < 1.05, "idle batches of {idle_rows} rows");
        // Idle: a request finds the lane free and runs at once (t(1) = 220 us).
        assert!(idle_worst < 1e-3, "idle worst latency {idle_worst}s");
        let (busy_rows, busy_worst) = stats(30_000.0);
        assert!(busy_rows > 10.0, "busy batches of only {busy_rows} rows");
        // One lane at 30k req/s keeps every request within the target.
        assert!(busy_worst <= 0.010, "busy worst latency {busy_worst}s");
        assert!(stats(5_000.0).0 < busy_rows);
    }

    #[test]
    fn adaptive_caps_a_batch_at_half_the_budget() {
        let lat = calibrated(200e-6, 20e-6);
        let p = adaptive_10ms();
        let t0 = Instant::now();
        let mut v = view(t0, t0, 400, &lat);
        v.max_rows = 512;
        // t(n) <= 4 ms  <=>  n <= (4 ms - 200 us) / 20 us = 190.
        let cap = p.batch_cap(&v);
        assert!((188..=190).contains(&cap), "cap {cap}");
        assert_eq!(p.decide(&v), Decision::Ready(cap));
        v.max_rows = 64;
        assert_eq!(p.batch_cap(&v), 64);
    }

    #[test]
    fn a_smaller_lane_share_asks_for_bigger_batches() {
        // 8 models on 2 lanes get a quarter lane each: to keep up with the same arrival
        // rate on a quarter of the capacity, each must batch more.
        let lat = calibrated(300e-6, 35e-6);
        let p = adaptive_10ms();
        let t0 = Instant::now();
        let mut v = view(t0, t0, 1, &lat);
        v.max_rows = 512;
        v.arrival_rate = 2_000.0;
        v.lane_share = 2.0;
        let alone = p.rows_needed(&v);
        v.lane_share = 0.25;
        let shared = p.rows_needed(&v);
        // Planned capacity KEEP_UP · share: 1 lane alone, an eighth of a lane shared.
        // n ≥ r·a / (c − r·b): alone 0.6 / 0.93 → 1; shared 0.6 / 0.055 → 11.
        assert_eq!((alone, shared), (1, 11));
    }

    #[test]
    fn models_sharing_the_lanes_batch_like_one_model_with_all_the_traffic() {
        // One model alone on 2 lanes at R req/s, and each of 8 equal-weight models at R/8
        // with a quarter of the lanes: the same rows per batch, so the slice runs the same
        // number of batches for the same traffic (the planned capacity does not grow with
        // the number of tenants).
        let lat = calibrated(160e-6, 30e-6);
        let p = adaptive_10ms();
        let t0 = Instant::now();
        for rate in [500.0, 2_000.0, 7_000.0, 15_000.0, 22_000.0] {
            let mut one = view(t0, t0, 1, &lat);
            one.max_rows = 512;
            one.arrival_rate = rate;
            one.lane_share = 2.0;
            let mut each = one;
            each.arrival_rate = rate / 8.0;
            each.lane_share = 2.0 / 8.0;
            let (n1, n8) = (p.rows_needed(&one), p.rows_needed(&each));
            assert_eq!(n1, n8, "{rate} req/s: alone {n1} rows, one of 8 {n8}");
            // Planned lane use over the slice: one model's, or 8 models' together.
            let use1 = rate * lat.predict(n1) / n1 as f64;
            let use8 = 8.0 * (rate / 8.0) * lat.predict(n8) / n8 as f64;
            assert!(
                (use1 - use8).abs() < 1e-9,
                "{rate} req/s: {use1} vs {use8} lanes"
            );
            assert!(
                use1 <= KEEP_UP * 2.0 + 1e-9,
                "{rate} req/s plans {use1} lanes"
            );
        }
    }

    #[test]
    fn thin_traffic_waits_for_company_only_its_part_of_the_budget() {
        // One of 8 models at 250 req/s with an eighth of the lanes' planned capacity needs
        // 2 rows a batch to keep up (250 · t(1) = 0.16 > 0.125), but its next arrival is
        // 4 ms away on average: it waits at most GATHER of the budget (2 ms), however often
        // it is asked again meanwhile.
        let lat = calibrated(600e-6, 50e-6);
        let p = adaptive_10ms();
        let t0 = Instant::now();
        let mut v = view(t0, t0, 1, &lat);
        v.max_rows = 512;
        v.arrival_rate = 250.0;
        v.lane_share = 0.25;
        assert_eq!(p.rows_needed(&v), 2);
        let gather = Duration::from_secs_f64(p.max_gather());
        assert!((gather.as_secs_f64() - 0.002).abs() < 1e-9);
        let mut now = t0;
        let mut asked = 0;
        loop {
            v.now = now;
            match p.decide(&v) {
                Decision::WaitUntil(t) => {
                    assert!(t > now && t <= t0 + gather, "waits until {:?}", t - t0);
                    now = t;
                    asked += 1;
                    assert!(asked < 100, "never stops waiting");
                }
                Decision::Ready(_) => break,
            }
        }
        assert!(
            now - t0 >= gather - Duration::from_micros(1),
            "ran after {:?}",
            now - t0
        );
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
