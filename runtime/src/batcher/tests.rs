//! The batching policies on simulated clocks and hand-built queue states.

use super::*;

/// The adaptive policy with a 10 ms target and the default headroom.
fn adaptive_10ms() -> AdaptiveBatching {
    AdaptiveBatching {
        target: Duration::from_millis(10),
        headroom: 0.8,
    }
}

/// One request waiting at `t0`, at most 512 rows a batch, arrivals at `rate` req/s, the
/// model's share of the lanes `share`.
fn one_waiting(t0: Instant, lat: &LatencyModel, rate: f64, share: f64) -> QueueView<'_> {
    QueueView {
        max_rows: 512,
        arrival_rate: rate,
        lane_share: share,
        ..view(t0, t0, 1, lat)
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
            max_rows: 64,
            work_ahead: next() * 0.004,
            arrival_rate: next() * 60_000.0,
            ..view(now, oldest, rows, &lat)
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
                let next =
                    t.duration_since(oldest).as_secs_f64() + v.work_ahead + lat.predict(rows + 1);
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
                max_rows: 64,
                arrival_rate: rate * misjudge,
                ..view(at(now), at(queue[0]), queue.len(), &lat)
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
    let alone = p.rows_needed(&one_waiting(t0, &lat, 2_000.0, 2.0));
    let shared = p.rows_needed(&one_waiting(t0, &lat, 2_000.0, 0.25));
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
        let n1 = p.rows_needed(&one_waiting(t0, &lat, rate, 2.0));
        let n8 = p.rows_needed(&one_waiting(t0, &lat, rate / 8.0, 2.0 / 8.0));
        assert_eq!(n1, n8, "{rate} req/s: alone {n1} rows, one of 8 {n8}");
        // Same batches, so the same planned lane use over the slice, within the plan.
        let use1 = rate * lat.predict(n1) / n1 as f64;
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
    let mut v = one_waiting(t0, &lat, 250.0, 0.25);
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
