//! Tests of the load loops and the search on tokio's paused clock, against a fake
//! single-server FIFO target whose latency follows from the offered load (a queue model).

use crate::failure::FailKind;
use crate::loadgen::{LoadMode, LoadSpec, Pacing, arrival_gaps, measure, measure_from};
use crate::prepared::{Prepared, PreparedModel};
use crate::search::{SearchSpec, find_max_rate};
use crate::target::Target;
use crate::workload::GenRequest;
use rand::distr::weighted::WeightedIndex;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// One server, FIFO, fixed service time; optional one-off stall; records call times.
struct FifoServer {
    service: Duration,
    free_at: Mutex<Option<Instant>>,
    stall: Option<(Duration, Duration)>,
    start: Instant,
    calls: Mutex<Vec<Instant>>,
}

impl FifoServer {
    fn new(service_ms: u64) -> Self {
        FifoServer {
            service: Duration::from_millis(service_ms),
            free_at: Mutex::new(None),
            stall: None,
            start: Instant::now(),
            calls: Mutex::new(Vec::new()),
        }
    }
}

impl Target for FifoServer {
    type Encoded = ();

    fn name(&self) -> &'static str {
        "fifo"
    }

    fn encode(&self, _: &str, _: &GenRequest) -> anyhow::Result<()> {
        Ok(())
    }

    async fn infer(&self, model: &str, _: &()) -> Result<(), FailKind> {
        let now = Instant::now();
        self.calls.lock().unwrap().push(now);
        let done = {
            let mut free = self.free_at.lock().unwrap();
            let mut begin = free.map_or(now, |f| f.max(now));
            if let Some((at, len)) = self.stall
                && begin >= self.start + at
                && begin < self.start + at + len
            {
                begin = self.start + at + len;
            }
            *free = Some(begin + self.service);
            begin + self.service
        };
        tokio::time::sleep_until(done).await;
        if model == "bad" {
            Err(FailKind::Http(500))
        } else {
            Ok(())
        }
    }
}

fn pool(names: &[(&str, f64)]) -> Arc<Prepared<()>> {
    Arc::new(Prepared {
        models: names
            .iter()
            .map(|(n, _)| PreparedModel {
                name: n.to_string(),
                pool: vec![((), 2)],
            })
            .collect(),
        chooser: WeightedIndex::new(names.iter().map(|n| n.1)).unwrap(),
    })
}

/// An open-loop spec paced by tokio's timer, which follows the paused test clock.
fn open(rate: f64, secs: u64) -> LoadSpec {
    LoadSpec {
        pacing: Pacing::Tokio,
        ..LoadSpec::new(
            LoadMode::Open { rate },
            Duration::from_secs(1),
            Duration::from_secs(secs),
        )
    }
}

#[test]
fn poisson_gaps_have_the_right_mean_and_spread() {
    let rate = 250.0;
    let gaps: Vec<f64> = arrival_gaps(rate, 9)
        .take(100_000)
        .map(|d| d.as_secs_f64())
        .collect();
    let n = gaps.len() as f64;
    let mean = gaps.iter().sum::<f64>() / n;
    let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n;
    assert!(
        (mean * rate - 1.0).abs() < 0.01,
        "mean gap {mean} vs {}",
        1.0 / rate
    );
    // Exponential: coefficient of variation 1, P(gap > mean) = 1/e.
    assert!(
        (var.sqrt() / mean - 1.0).abs() < 0.02,
        "cv {}",
        var.sqrt() / mean
    );
    let above = gaps.iter().filter(|&&g| g > 1.0 / rate).count() as f64 / n;
    assert!(
        (above - (-1f64).exp()).abs() < 0.01,
        "P(gap > mean) {above}"
    );
}

#[tokio::test(start_paused = true)]
async fn open_loop_offers_the_rate_and_measures_service_time() {
    let server = Arc::new(FifoServer::new(10));
    let report = measure(server.clone(), pool(&[("m", 1.0)]), &open(40.0, 100)).await;
    // Every scheduled arrival is sent, each within the timer's 1 ms of its scheduled time.
    let calls = server.calls.lock().unwrap().clone();
    let mut at = Duration::ZERO;
    let scheduled: Vec<Duration> = arrival_gaps(40.0, 42)
        .map_while(|g| {
            at += g;
            (at < Duration::from_secs(101)).then_some(at)
        })
        .collect();
    assert_eq!(calls.len(), scheduled.len());
    for (call, want) in calls.iter().zip(&scheduled) {
        let got = *call - server.start;
        assert!(
            got >= *want && got <= *want + Duration::from_millis(1),
            "sent at {got:?}, scheduled {want:?}"
        );
    }
    // Throughput counts the measured window's arrivals (after the 1 s warm-up), all served.
    let in_window = scheduled
        .iter()
        .filter(|t| **t >= Duration::from_secs(1))
        .count();
    let o = &report.overall;
    assert_eq!(o.errors, 0);
    assert_eq!(o.ok, in_window as u64);
    assert!((o.throughput - in_window as f64 / 100.0).abs() < 1e-9);
    assert!(
        (o.throughput - 40.0).abs() < 40.0 * 0.1,
        "throughput {}",
        o.throughput
    );
    assert!((o.rows_per_s - 2.0 * o.throughput).abs() < 1e-6);
    assert!(o.p50_ms >= 10.0 && o.p50_ms < 13.0, "p50 {}", o.p50_ms);
    assert!(
        o.p99_ms > o.p50_ms,
        "queueing shows in the tail: p99 {}",
        o.p99_ms
    );
}

#[tokio::test(start_paused = true)]
async fn a_stall_is_charged_to_every_request_scheduled_during_it() {
    // 100 req/s; the server stalls 1 s at t = 3 s. Latency counts from the scheduled time,
    // so about 1% of the window's requests wait ~1 s and P99 shows it.
    let mut server = FifoServer::new(1);
    server.stall = Some((Duration::from_secs(3), Duration::from_secs(1)));
    let report = measure(Arc::new(server), pool(&[("m", 1.0)]), &open(100.0, 8)).await;
    let o = &report.overall;
    assert_eq!(o.errors, 0);
    assert!(o.p50_ms < 3.0, "p50 {}", o.p50_ms);
    assert!(o.p99_ms > 500.0, "the stall is hidden: p99 {}", o.p99_ms);
    assert!(o.max_ms > 900.0, "max {}", o.max_ms);
}

#[tokio::test(start_paused = true)]
async fn overload_beyond_the_outstanding_bound_counts_client_drops() {
    let server = Arc::new(FifoServer::new(10)); // capacity 100 req/s
    let spec = LoadSpec {
        max_outstanding: 20,
        ..open(300.0, 10)
    };
    let report = measure(server, pool(&[("m", 1.0)]), &spec).await;
    let o = &report.overall;
    let drops = o.errors_by_kind.get("client_drop").copied().unwrap_or(0);
    assert!(drops > 1000, "drops {drops}");
    assert!(
        o.throughput <= 101.0,
        "throughput {} above capacity",
        o.throughput
    );
    // At most 20 outstanding, each 10 ms of work: no success waits much longer than 200 ms.
    assert!(
        o.p99_ms > 150.0 && o.max_ms < 260.0,
        "p99 {} max {}",
        o.p99_ms,
        o.max_ms
    );
}

#[tokio::test(start_paused = true)]
async fn closed_loop_throughput_follows_littles_law() {
    let server = Arc::new(FifoServer::new(5));
    let spec = LoadSpec::new(
        LoadMode::Closed { concurrency: 4 },
        Duration::from_secs(1),
        Duration::from_secs(20),
    );
    let report = measure(server, pool(&[("m", 1.0)]), &spec).await;
    let o = &report.overall;
    assert!(
        (o.throughput - 200.0).abs() < 5.0,
        "throughput {}",
        o.throughput
    );
    assert!(
        (o.p50_ms - 20.0).abs() < 1.5,
        "p50 {} (4 clients x 5 ms)",
        o.p50_ms
    );
}

#[tokio::test(start_paused = true)]
async fn weighted_mix_and_errors_are_reported_per_model() {
    let server = Arc::new(FifoServer::new(1));
    let report = measure(server, pool(&[("a", 3.0), ("bad", 1.0)]), &open(200.0, 20)).await;
    let (a, bad) = (&report.models[0].1, &report.models[1].1);
    let share = a.ok as f64 / (a.ok + bad.errors) as f64;
    assert!((share - 0.75).abs() < 0.02, "share of a {share}");
    assert_eq!(a.errors, 0);
    assert_eq!(bad.ok, 0);
    assert_eq!(bad.errors_by_kind["http_500"], bad.errors);
    assert_eq!(report.overall.errors, bad.errors);
}

#[tokio::test(start_paused = true)]
async fn search_finds_a_rate_below_the_servers_capacity() {
    let server = Arc::new(FifoServer::new(2)); // capacity 500 req/s
    let load = LoadSpec {
        max_outstanding: 256,
        ..open(1.0, 10)
    };
    let spec = SearchSpec {
        start_rate: 25.0,
        precision: 0.05,
        ..SearchSpec::new(20.0)
    };
    let mut printed = 0;
    let res = find_max_rate(server, pool(&[("m", 1.0)]), &load, &spec, |_| printed += 1).await;
    let found = res.max_rate.expect("some rate passes");
    assert!(found > 300.0 && found < 500.0, "found {found}");
    let fail = res.first_fail.unwrap();
    assert!((fail - found) / found <= 0.05 + 1e-9);
    assert_eq!(printed, res.steps.len());
    // 500 requests at 25 req/s need 20 s: the 10 s window is stretched; at 400 it is not.
    assert_eq!(res.steps[0].report.window_s, 20.0);
    assert!(res.steps[0].report.overall.ok > 400);
    assert_eq!(
        res.steps
            .iter()
            .find(|s| s.rate == 400.0)
            .unwrap()
            .report
            .window_s,
        10.0
    );
    let best = res.best.unwrap();
    assert!(best.overall.p99_ms <= 20.0 && best.overall.errors == 0);
    assert!(
        res.steps
            .iter()
            .any(|s| !s.pass && s.report.overall.p99_ms > 20.0)
    );
}

#[test]
fn the_pacer_delivers_every_instant_once_in_order_never_early() {
    // Instants already past (delivered at once), repeats, and Poisson gaps at 5000/s, some
    // shorter than any sleep: each must come out once, in order, at or after its instant.
    let now = std::time::Instant::now();
    let mut schedule = vec![
        now - Duration::from_millis(10),
        now - Duration::from_millis(10),
    ];
    let mut at = now;
    for gap in arrival_gaps(5000.0, 7).take(300) {
        at += gap;
        schedule.push(at);
    }
    let repeat = schedule[100];
    schedule.insert(100, repeat);
    for spin in [
        Duration::ZERO,
        crate::loadgen::DEFAULT_SPIN,
        Duration::from_millis(1),
    ] {
        let mut delivered = Vec::new();
        crate::loadgen::pace(schedule.iter().copied(), spin, |at| {
            delivered.push((at, std::time::Instant::now()))
        });
        let ats: Vec<_> = delivered.iter().map(|d| d.0).collect();
        assert_eq!(
            ats, schedule,
            "spin {spin:?}: not each instant once, in order"
        );
        for (i, (at, when)) in delivered.iter().enumerate() {
            assert!(
                when >= at,
                "spin {spin:?}: arrival {i} delivered early by {:?}",
                *at - *when
            );
        }
    }
}

/// Returns at once; records when each call began.
struct CallLog(Mutex<Vec<Instant>>);

impl Target for CallLog {
    type Encoded = ();

    fn name(&self) -> &'static str {
        "log"
    }

    fn encode(&self, _: &str, _: &GenRequest) -> anyhow::Result<()> {
        Ok(())
    }

    async fn infer(&self, _: &str, _: &()) -> Result<(), FailKind> {
        self.0.lock().unwrap().push(Instant::now());
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_thread_pacer_sends_each_arrival_once_and_charges_its_lateness() {
    // The warm-up starts 100 ms in the past, so the first 100 ms of arrivals are late by
    // construction: each must still be sent (once, never early) and its latency must count
    // from its scheduled instant, so it includes that lateness whatever the machine does.
    let target = Arc::new(CallLog(Mutex::new(Vec::new())));
    let spec = LoadSpec {
        pacing: Pacing::THREAD,
        ..LoadSpec::new(
            LoadMode::Open { rate: 2000.0 },
            Duration::from_millis(50),
            Duration::from_millis(250),
        )
    };
    let entered = Instant::now();
    let start = entered - Duration::from_millis(100);
    let report = measure_from(target.clone(), pool(&[("m", 1.0)]), &spec, start).await;

    let (warm_end, end) = (start + spec.warmup, start + spec.warmup + spec.duration);
    let mut at = start;
    let scheduled: Vec<Instant> = arrival_gaps(2000.0, spec.seed)
        .map_while(|g| {
            at += g;
            (at < end).then_some(at)
        })
        .collect();
    let mut calls = target.0.lock().unwrap().clone();
    assert_eq!(
        calls.len(),
        scheduled.len(),
        "every arrival sent exactly once"
    );
    // Tasks may begin out of order across workers; sorted, the k-th call can be no
    // earlier than the k-th scheduled instant if every call follows its own.
    calls.sort();
    for (k, (call, want)) in calls.iter().zip(&scheduled).enumerate() {
        assert!(
            call >= want,
            "call {k} at {call:?} before its instant {want:?}"
        );
    }

    let measured: Vec<Instant> = scheduled
        .iter()
        .copied()
        .filter(|s| *s >= warm_end)
        .collect();
    let o = &report.overall;
    assert_eq!(o.errors, 0, "{:?}", o.errors_by_kind);
    assert_eq!(o.ok, measured.len() as u64);
    // A request scheduled at s cannot be answered before `entered`: latency >= entered - s.
    let owed_ms = |s: &Instant| entered.saturating_duration_since(*s).as_secs_f64() * 1e3;
    let first = owed_ms(&measured[0]);
    assert!(first > 40.0, "the schedule is not late: {first} ms");
    assert!(
        o.max_ms >= first,
        "max {} ms < lateness {first} ms",
        o.max_ms
    );
    let mean_owed = measured.iter().map(owed_ms).sum::<f64>() / measured.len() as f64;
    assert!(
        o.mean_ms >= mean_owed * 0.999,
        "mean {} ms < mean lateness {mean_owed} ms",
        o.mean_ms
    );
    let late = report
        .send_lateness
        .as_ref()
        .expect("open loop reports lateness");
    assert_eq!(late.pacing, "thread");
    assert!(
        late.max_us >= first * 1e3,
        "send lateness max {} us",
        late.max_us
    );
}
