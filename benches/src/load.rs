//! Load generation: open-loop Poisson arrivals (latency from the scheduled send time, a
//! bounded number outstanding, excess counted as client drops) and closed-loop concurrency.
//! Both run a warm-up, then a measured window; times come from tokio's clock.

use crate::report::{Recorder, Report};
use crate::target::{FailKind, Target};
use crate::workload::Prepared;
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Exp};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How requests are offered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LoadMode {
    /// Poisson arrivals at `rate` requests per second, independent of responses.
    Open {
        /// Requests per second.
        rate: f64,
    },
    /// `concurrency` clients, each sending its next request when the last one returns.
    Closed {
        /// Number of clients.
        concurrency: usize,
    },
}

/// One measurement: mode, warm-up and measured window.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Open or closed loop.
    pub mode: LoadMode,
    /// Time before the measured window (requests sent, not recorded).
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// Open loop: most requests in flight; an arrival beyond it is a client drop.
    pub max_outstanding: usize,
    /// How long to wait for in-flight requests after the window; the rest count as timeouts.
    pub drain_timeout: Duration,
    /// Seed of arrivals and request choice.
    pub seed: u64,
    /// Show a progress bar (drawn only on a terminal).
    pub progress: bool,
}

impl LoadSpec {
    /// A spec with the given mode and windows and defaults for the rest.
    pub fn new(mode: LoadMode, warmup: Duration, duration: Duration) -> Self {
        LoadSpec {
            mode,
            warmup,
            duration,
            max_outstanding: 1024,
            drain_timeout: Duration::from_secs(5),
            seed: 42,
            progress: false,
        }
    }
}

/// Shared between the request tasks of one measurement.
struct Shared<T: Target> {
    target: Arc<T>,
    prepared: Arc<Prepared<T::Encoded>>,
    recorders: Vec<Mutex<Recorder>>,
    outstanding: AtomicUsize,
    /// Requests of the measured window still in flight.
    measured_in_flight: AtomicUsize,
    sent: AtomicU64,
}

impl<T: Target> Shared<T> {
    fn record(&self, model: usize, rows: usize, latency: Duration, result: &Result<(), FailKind>) {
        let mut r = self.recorders[model].lock().expect("recorder lock");
        match result {
            Ok(()) => r.success(latency, rows),
            Err(kind) => r.failure(kind),
        }
    }

    async fn send(&self, model: usize, request: usize, since: Instant, measured: bool) {
        let m = &self.prepared.models[model];
        let (encoded, rows) = &m.pool[request];
        let result = self.target.infer(&m.name, encoded).await;
        let latency = Instant::now().saturating_duration_since(since);
        if measured {
            self.record(model, *rows, latency, &result);
            self.measured_in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Gaps between Poisson arrivals at `rate` per second: exponential with mean `1/rate`.
pub fn arrival_gaps(rate: f64, seed: u64) -> impl Iterator<Item = Duration> {
    let mut rng = StdRng::seed_from_u64(seed);
    let gaps = Exp::new(rate.max(1e-9)).expect("positive rate");
    std::iter::repeat_with(move || Duration::from_secs_f64(gaps.sample(&mut rng)))
}

fn progress_bar(spec: &LoadSpec, label: String) -> Option<ProgressBar> {
    if !spec.progress {
        return None;
    }
    let total = (spec.warmup + spec.duration).as_millis() as u64;
    let bar = ProgressBar::new(total.max(1));
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {elapsed}/{duration} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(label);
    Some(bar)
}

fn tick(bar: &Option<ProgressBar>, start: Instant, warm_end: Instant, sent: u64, out: usize) {
    if let Some(b) = bar {
        let now = Instant::now();
        b.set_position(now.saturating_duration_since(start).as_millis() as u64);
        let phase = if now < warm_end {
            "warm-up"
        } else {
            "measuring"
        };
        b.set_message(format!("{phase} sent={sent} in-flight={out}"));
    }
}

/// Runs one warm-up plus measured window of `spec` against `target` and summarises it.
pub async fn measure<T: Target>(
    target: Arc<T>,
    prepared: Arc<Prepared<T::Encoded>>,
    spec: &LoadSpec,
) -> Report {
    let shared = Arc::new(Shared {
        target,
        recorders: prepared
            .models
            .iter()
            .map(|_| Mutex::new(Recorder::default()))
            .collect(),
        prepared,
        outstanding: AtomicUsize::new(0),
        measured_in_flight: AtomicUsize::new(0),
        sent: AtomicU64::new(0),
    });
    let (mode, offered) = match spec.mode {
        LoadMode::Open { rate } => ("open", rate),
        LoadMode::Closed { concurrency } => ("closed", concurrency as f64),
    };
    let bar = progress_bar(spec, format!("{mode} {offered:.1}"));
    let start = Instant::now();
    let warm_end = start + spec.warmup;
    let end = warm_end + spec.duration;
    let mut tasks = JoinSet::new();
    match spec.mode {
        LoadMode::Open { rate } => {
            open_loop(
                &shared,
                &mut tasks,
                spec,
                rate,
                (start, warm_end, end),
                &bar,
            )
            .await
        }
        LoadMode::Closed { concurrency } => {
            closed_loop(
                &shared,
                &mut tasks,
                spec,
                concurrency,
                (start, warm_end, end),
                &bar,
            )
            .await
        }
    }
    // Drain: give in-flight requests a bounded time, then abandon them as timeouts.
    let drain_end = Instant::now() + spec.drain_timeout;
    while !tasks.is_empty() {
        match tokio::time::timeout_at(drain_end, tasks.join_next()).await {
            Ok(_) => {}
            Err(_) => break,
        }
    }
    tasks.shutdown().await;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let abandoned = shared.measured_in_flight.load(Ordering::Relaxed);
    let mut per_model: Vec<(String, Recorder)> = shared
        .prepared
        .models
        .iter()
        .zip(&shared.recorders)
        .map(|(m, r)| (m.name.clone(), r.lock().expect("recorder lock").clone()))
        .collect();
    if abandoned > 0 {
        // Attribute abandoned requests to the first model: only the total is known.
        for _ in 0..abandoned {
            per_model[0].1.failure(&FailKind::Timeout);
        }
    }
    Report::from_recorders(
        shared.target.name(),
        mode,
        offered,
        spec.duration,
        &per_model,
    )
}

async fn open_loop<T: Target>(
    shared: &Arc<Shared<T>>,
    tasks: &mut JoinSet<()>,
    spec: &LoadSpec,
    rate: f64,
    (start, warm_end, end): (Instant, Instant, Instant),
    bar: &Option<ProgressBar>,
) {
    let mut rng = StdRng::seed_from_u64(spec.seed.wrapping_add(1));
    let mut gaps = arrival_gaps(rate, spec.seed);
    let mut scheduled = start;
    let mut last_tick = start;
    loop {
        scheduled += gaps.next().expect("endless");
        if scheduled >= end {
            break;
        }
        if scheduled > Instant::now() {
            tokio::time::sleep_until(scheduled).await;
        }
        while tasks.try_join_next().is_some() {}
        let (model, request) = shared.prepared.pick(&mut rng);
        let measured = scheduled >= warm_end;
        let out = shared.outstanding.load(Ordering::Relaxed);
        if scheduled - last_tick >= Duration::from_millis(100) {
            last_tick = scheduled;
            tick(
                bar,
                start,
                warm_end,
                shared.sent.load(Ordering::Relaxed),
                out,
            );
        }
        if out >= spec.max_outstanding {
            if measured {
                let mut r = shared.recorders[model].lock().expect("recorder lock");
                r.failure(&FailKind::ClientDrop);
            }
            continue;
        }
        shared.outstanding.fetch_add(1, Ordering::Relaxed);
        shared.sent.fetch_add(1, Ordering::Relaxed);
        if measured {
            shared.measured_in_flight.fetch_add(1, Ordering::Relaxed);
        }
        let s = shared.clone();
        tasks.spawn(async move {
            // Latency counts from the scheduled time, so a late send is not forgiven.
            s.send(model, request, scheduled, measured).await;
            s.outstanding.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn closed_loop<T: Target>(
    shared: &Arc<Shared<T>>,
    tasks: &mut JoinSet<()>,
    spec: &LoadSpec,
    concurrency: usize,
    (start, warm_end, end): (Instant, Instant, Instant),
    bar: &Option<ProgressBar>,
) {
    for worker in 0..concurrency.max(1) {
        let s = shared.clone();
        let seed = spec.seed ^ (worker as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        tasks.spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed);
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let (model, request) = s.prepared.pick(&mut rng);
                let measured = now >= warm_end;
                if measured {
                    s.measured_in_flight.fetch_add(1, Ordering::Relaxed);
                }
                s.outstanding.fetch_add(1, Ordering::Relaxed);
                s.sent.fetch_add(1, Ordering::Relaxed);
                s.send(model, request, now, measured).await;
                s.outstanding.fetch_sub(1, Ordering::Relaxed);
            }
        });
    }
    while Instant::now() < end {
        let next = (Instant::now() + Duration::from_millis(100)).min(end);
        tokio::time::sleep_until(next).await;
        let out = shared.outstanding.load(Ordering::Relaxed);
        tick(
            bar,
            start,
            warm_end,
            shared.sent.load(Ordering::Relaxed),
            out,
        );
    }
}
