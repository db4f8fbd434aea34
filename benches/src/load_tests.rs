//! Tests of the load loops and the search on tokio's paused clock, against a fake
//! single-server FIFO target whose latency follows from the offered load (a queue model).

use crate::load::{LoadMode, LoadSpec, arrival_gaps, measure};
use crate::search::{SearchSpec, find_max_rate};
use crate::target::{FailKind, Target};
use crate::workload::{GenRequest, Prepared, PreparedModel};
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

fn open(rate: f64, secs: u64) -> LoadSpec {
    LoadSpec::new(
        LoadMode::Open { rate },
        Duration::from_secs(1),
        Duration::from_secs(secs),
    )
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
