//! Load generation: open-loop Poisson arrivals (latency from the scheduled send time, a
//! bounded number outstanding, excess counted as client drops) and closed-loop concurrency.
//! Both run a warm-up, then a measured window. Open-loop arrivals are paced by a dedicated
//! OS thread ([`Pacing::Thread`], microseconds late) or by tokio's 1 ms timer
//! ([`Pacing::Tokio`], which follows tokio's clock and so runs on a paused test clock).

use crate::failure::FailKind;
use crate::prepared::Prepared;
use crate::report::{Recorder, Report, SendLateness};
use crate::target::Target;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Exp};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Default busy-wait before each arrival of [`Pacing::Thread`]: about one sleep's wake-up
/// latency on the 2-core development VM (see docs/BENCHMARKS.md § Harness).
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);

/// What paces open-loop arrivals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// tokio's timer: up to 1 ms late per arrival, but follows tokio's (pausable) clock.
    Tokio,
    /// A dedicated OS thread: sleeps with 1 ns timer slack (Linux), then busy-waits the last
    /// `spin`, and spawns each arrival onto the runtime. Needs tokio's real clock.
    Thread {
        /// Busy-wait (yielding the CPU) this long before each arrival instead of sleeping,
        /// capped at a tenth of the mean gap so the spin costs at most ~10% of a core.
        spin: Duration,
    },
}

impl Pacing {
    /// The thread pacer with [`DEFAULT_SPIN`].
    pub const THREAD: Pacing = Pacing::Thread { spin: DEFAULT_SPIN };

    /// "thread" or "tokio".
    pub fn name(&self) -> &'static str {
        match self {
            Pacing::Tokio => "tokio",
            Pacing::Thread { .. } => "thread",
        }
    }
}

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
    /// Open loop: what paces arrivals.
    pub pacing: Pacing,
}

impl LoadSpec {
    /// A spec with the given mode and windows and defaults for the rest (thread pacing).
    pub fn new(mode: LoadMode, warmup: Duration, duration: Duration) -> Self {
        LoadSpec {
            mode,
            warmup,
            duration,
            max_outstanding: 1024,
            drain_timeout: Duration::from_secs(5),
            seed: 42,
            progress: false,
            pacing: Pacing::THREAD,
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
    /// Open loop, measured window: scheduled instant to the start of `infer`, in ns.
    lateness: Mutex<Histogram<u64>>,
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

/// Open-loop arrival instants in `[start, end)`: `start` plus the running sum of
/// [`arrival_gaps`]. Both pacers walk this same schedule.
fn schedule(
    start: std::time::Instant,
    end: std::time::Instant,
    rate: f64,
    seed: u64,
) -> impl Iterator<Item = std::time::Instant> {
    let mut at = start;
    arrival_gaps(rate, seed).map_while(move |gap| {
        at += gap;
        (at < end).then_some(at)
    })
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
    measure_from(target, prepared, spec, Instant::now()).await
}

/// [`measure`] with the warm-up starting at `start` (tests start it in the past to make the
/// pacer late on purpose).
pub(crate) async fn measure_from<T: Target>(
    target: Arc<T>,
    prepared: Arc<Prepared<T::Encoded>>,
    spec: &LoadSpec,
    start: Instant,
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
        lateness: Mutex::new(Recorder::default().hist),
    });
    let (mode, offered) = match spec.mode {
        LoadMode::Open { rate } => ("open", rate),
        LoadMode::Closed { concurrency } => ("closed", concurrency as f64),
    };
    let bar = progress_bar(spec, format!("{mode} {offered:.1}"));
    let warm_end = start + spec.warmup;
    let end = warm_end + spec.duration;
    let mut tasks = JoinSet::new();
    match (spec.mode, spec.pacing) {
        (LoadMode::Open { rate }, Pacing::Tokio) => {
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
        (LoadMode::Open { rate }, Pacing::Thread { spin }) => {
            tasks = open_loop_thread(
                &shared,
                tasks,
                spec,
                rate,
                spin,
                (start, warm_end, end),
                &bar,
            )
            .await
        }
        (LoadMode::Closed { concurrency }, _) => {
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
    let mut report = Report::from_recorders(
        shared.target.name(),
        mode,
        offered,
        spec.duration,
        &per_model,
    );
    let lateness = shared.lateness.lock().expect("lateness lock");
    if !lateness.is_empty() {
        let us = |ns: u64| ns as f64 / 1e3;
        report.send_lateness = Some(SendLateness {
            pacing: spec.pacing.name().to_string(),
            p50_us: us(lateness.value_at_quantile(0.5)),
            p99_us: us(lateness.value_at_quantile(0.99)),
            max_us: us(lateness.max()),
        });
    }
    report
}

/// The open loop's per-arrival bookkeeping, the same under both pacers.
struct Arrivals {
    rng: StdRng,
    max_outstanding: usize,
    start: Instant,
    warm_end: Instant,
    last_tick: Instant,
    bar: Option<ProgressBar>,
}

impl Arrivals {
    fn new(spec: &LoadSpec, start: Instant, warm_end: Instant, bar: &Option<ProgressBar>) -> Self {
        Arrivals {
            rng: StdRng::seed_from_u64(spec.seed.wrapping_add(1)),
            max_outstanding: spec.max_outstanding,
            start,
            warm_end,
            last_tick: start,
            bar: bar.clone(),
        }
    }

    /// Offers the arrival scheduled at `scheduled` (now or a little after): a client drop
    /// when `max_outstanding` requests are in flight, else a task on `handle`.
    fn arrive<T: Target>(
        &mut self,
        shared: &Arc<Shared<T>>,
        tasks: &mut JoinSet<()>,
        handle: &Handle,
        scheduled: Instant,
    ) {
        let (model, request) = shared.prepared.pick(&mut self.rng);
        let measured = scheduled >= self.warm_end;
        let out = shared.outstanding.load(Ordering::Relaxed);
        if scheduled - self.last_tick >= Duration::from_millis(100) {
            self.last_tick = scheduled;
            tick(
                &self.bar,
                self.start,
                self.warm_end,
                shared.sent.load(Ordering::Relaxed),
                out,
            );
        }
        if out >= self.max_outstanding {
            if measured {
                let mut r = shared.recorders[model].lock().expect("recorder lock");
                r.failure(&FailKind::ClientDrop);
            }
            return;
        }
        shared.outstanding.fetch_add(1, Ordering::Relaxed);
        shared.sent.fetch_add(1, Ordering::Relaxed);
        if measured {
            shared.measured_in_flight.fetch_add(1, Ordering::Relaxed);
        }
        let s = shared.clone();
        tasks.spawn_on(
            async move {
                if measured {
                    let late = Instant::now().saturating_duration_since(scheduled);
                    s.lateness
                        .lock()
                        .expect("lateness lock")
                        .saturating_record(late.as_nanos().clamp(1, u64::MAX as u128) as u64);
                }
                // Latency counts from the scheduled time, so a late send is not forgiven.
                s.send(model, request, scheduled, measured).await;
                s.outstanding.fetch_sub(1, Ordering::Relaxed);
            },
            handle,
        );
    }
}

async fn open_loop<T: Target>(
    shared: &Arc<Shared<T>>,
    tasks: &mut JoinSet<()>,
    spec: &LoadSpec,
    rate: f64,
    (start, warm_end, end): (Instant, Instant, Instant),
    bar: &Option<ProgressBar>,
) {
    let handle = Handle::current();
    let mut arrivals = Arrivals::new(spec, start, warm_end, bar);
    for at in schedule(start.into_std(), end.into_std(), rate, spec.seed) {
        let scheduled = Instant::from_std(at);
        if scheduled > Instant::now() {
            tokio::time::sleep_until(scheduled).await;
        }
        while tasks.try_join_next().is_some() {}
        arrivals.arrive(shared, tasks, &handle, scheduled);
    }
}

/// Runs the open loop on a dedicated OS thread ([`pace`]), which spawns each arrival onto
/// this runtime; hands `tasks` there and back.
async fn open_loop_thread<T: Target>(
    shared: &Arc<Shared<T>>,
    mut tasks: JoinSet<()>,
    spec: &LoadSpec,
    rate: f64,
    spin: Duration,
    (start, warm_end, end): (Instant, Instant, Instant),
    bar: &Option<ProgressBar>,
) -> JoinSet<()> {
    let handle = Handle::current();
    let spin = spin.min(Duration::from_secs_f64(0.1 / rate.max(1e-9)));
    let mut arrivals = Arrivals::new(spec, start, warm_end, bar);
    let arrivals_at = schedule(start.into_std(), end.into_std(), rate, spec.seed);
    let shared = shared.clone();
    // If this future is dropped, the pacer stops at its next arrival.
    let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
    let stopped = stop.0.clone();
    let (done, finished) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("cohost-pacer".into())
        .spawn(move || {
            precise_sleeps();
            let arrivals_at = arrivals_at.take_while(|_| !stopped.load(Ordering::Relaxed));
            pace(arrivals_at, spin, |at| {
                arrivals.arrive(&shared, &mut tasks, &handle, Instant::from_std(at));
                // Reap finished tasks after the send, off the arrival's critical path.
                while tasks.try_join_next().is_some() {}
            });
            let _ = done.send(tasks);
        })
        .expect("spawn the pacer thread");
    match finished.await {
        Ok(tasks) => tasks,
        Err(_) => match thread.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the pacer thread returns its tasks"),
        },
    }
}

/// Sets a flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Walks `schedule` on the calling thread, calling `deliver` with each instant in order,
/// never before it: sleeps until `spin` before it, then busy-waits (yielding the CPU).
/// An instant already past is delivered at once.
pub(crate) fn pace(
    schedule: impl IntoIterator<Item = std::time::Instant>,
    spin: Duration,
    mut deliver: impl FnMut(std::time::Instant),
) {
    for at in schedule {
        loop {
            let now = std::time::Instant::now();
            if now >= at {
                break;
            }
            let left = at - now;
            if left > spin {
                std::thread::sleep(left - spin);
            } else {
                std::thread::yield_now();
            }
        }
        deliver(at);
    }
}

/// Lets this thread's sleeps end when asked: timer slack 1 ns instead of the default 50 µs.
#[cfg(target_os = "linux")]
fn precise_sleeps() {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and affects only this thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
}

/// Timer slack is a Linux setting.
#[cfg(not(target_os = "linux"))]
fn precise_sleeps() {}

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
