//! One slice (one host's accelerator) in simulation: the runtime's own queues, batching
//! policies, latency fits, scheduler and load counter on a shared virtual clock, and
//! lanes that take a profile's `t(n)` per batch instead of running a model.
//!
//! The decision points are the real runtime's: admission (`ModelQueue::full`, deadline
//! admission `ModelQueue::refuse_late`, `ModelQueue::enqueue`), a free lane asking the
//! scheduler for a batch (`Scheduler::poll`, the non-blocking pass of `Scheduler::next`),
//! and a batch's end (`LatencyModel::observe`, `ModelQueue::finish`). What is modelled
//! rather than run: a lane's batch takes `t(n) / speed` (times a lognormal factor when the
//! profile has a `cv`); a woken lane starts its pass at once (no thread wake-up latency);
//! every idle lane looks for work at each event (the real runtime wakes one, which wakes
//! the next when more is ready).

use crate::profile::Cost;
use cohost_kernels::Lane;
use cohost_models::{Batch, MemoryReport, Model, ModelConfig, ModelError};
use cohost_runtime::testing::{
    Clock, MemoryLease, ModelQueue, Pending, Poll, Reply, Scheduler, VirtualClock, Work,
};
use cohost_runtime::{LoadReport, ScheduleKind};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, LogNormal};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use tokio::sync::oneshot;

/// A model to place on a slice: its config (batching policy, queue bound, lanes, weight)
/// and its batch cost.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// Name.
    pub name: String,
    /// Configuration, as a `config.toml` gives it.
    pub config: ModelConfig,
    /// Batch cost on this slice's lane kind.
    pub cost: Cost,
}

/// Stands in for a built model: the queue needs one for its FLOPs (the latency fit's
/// prior); lanes in simulation never call `forward`.
struct Profiled {
    config: ModelConfig,
    flops_per_row: u64,
}

impl Model for Profiled {
    fn config(&self) -> &ModelConfig {
        &self.config
    }
    fn check(&self, _: &Batch) -> Result<(), ModelError> {
        Ok(())
    }
    fn forward(&self, _: &Lane, _: &Batch) -> Result<Vec<Vec<f32>>, ModelError> {
        Err(ModelError::Input(
            "a simulated model does not run".to_string(),
        ))
    }
    fn memory(&self) -> MemoryReport {
        MemoryReport::default()
    }
    fn flops_per_row(&self) -> u64 {
        self.flops_per_row
    }
}

/// Why a slice refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The model's queue is full (HTTP 429).
    Full,
    /// Deadline admission: the work ahead cannot finish within the request's timeout.
    Late,
}

/// Something the slice needs to happen later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SliceEvent {
    /// A lane's batch ends.
    Done(usize),
    /// A queue's batching policy asked to be looked at again.
    Wake,
}

/// A request answered (or dropped) by the slice.
#[derive(Debug, Clone, Copy)]
pub struct Finished {
    /// Model slot on the slice.
    pub slot: usize,
    /// Arrival, virtual ns.
    pub arrived: u64,
    /// Answered at, virtual ns.
    pub done: u64,
    /// Answered within its timeout (false: timed out; the client gave up).
    pub on_time: bool,
}

struct Running {
    work: Work,
    slot: usize,
    started: u64,
    seconds: f64,
}

/// One slice's runtime objects and lanes.
pub struct Slice {
    clock: Arc<VirtualClock>,
    sched: Scheduler,
    queues: Vec<Arc<ModelQueue>>,
    costs: Vec<Cost>,
    /// Per queue, the receivers of its waiting requests, oldest first (a dropped receiver
    /// would read as a client that went away).
    waiting: Vec<VecDeque<oneshot::Receiver<cohost_runtime::Result<Reply>>>>,
    lanes: Vec<Option<Running>>,
    timer: Option<u64>,
    speed: f64,
    rng: StdRng,
    window: (u64, u64),
    /// Lane-nanoseconds busy inside the window.
    pub busy_ns: u64,
    /// Per slot: batches started inside the window, and their rows.
    pub batches: Vec<(u64, u64)>,
    /// Requests dropped from a queue because their deadline passed, per slot (from the
    /// window's start on).
    pub expired: Vec<u64>,
    /// Per slot: batches still to pay a cold-start factor, and the factor.
    cold: Vec<(u64, f64)>,
}

impl Slice {
    /// A slice of `lanes` lanes running `models` with cross-model policy `schedule`; its
    /// lanes run at `speed` times the profiles' pace.
    pub fn new(
        clock: Arc<VirtualClock>,
        models: &[ModelSpec],
        lanes: usize,
        schedule: ScheduleKind,
        speed: f64,
        seed: u64,
    ) -> Self {
        let sched = Scheduler::new(schedule.policy_object(), lanes)
            .with_clock(Clock::Virtual(clock.clone()));
        let used = Arc::new(AtomicU64::new(0));
        let queues: Vec<Arc<ModelQueue>> = models
            .iter()
            .map(|m| {
                // The prior the real queue would start from: 50 µs + FLOPs at 5 GFLOP/s,
                // with the FLOPs that give the profile's own per-row slope.
                let per_row = (m.cost.seconds(2) - m.cost.seconds(1)).max(1e-9);
                let model = Arc::new(Profiled {
                    config: m.config.clone(),
                    flops_per_row: (per_row * 5e9) as u64,
                });
                let q = ModelQueue::new(
                    &m.name,
                    1,
                    m.config.clone(),
                    model,
                    lanes,
                    MemoryLease::new(0, used.clone()),
                )
                .with_clock(Clock::Virtual(clock.clone()));
                Arc::new(q)
            })
            .collect();
        for q in &queues {
            sched.add(q.clone());
        }
        Slice {
            clock,
            sched,
            costs: models.iter().map(|m| m.cost.clone()).collect(),
            waiting: queues.iter().map(|_| VecDeque::new()).collect(),
            batches: vec![(0, 0); queues.len()],
            expired: vec![0; queues.len()],
            cold: vec![(0, 1.0); queues.len()],
            queues,
            lanes: (0..lanes.max(1)).map(|_| None).collect(),
            timer: None,
            speed,
            rng: StdRng::seed_from_u64(seed),
            window: (0, u64::MAX),
            busy_ns: 0,
        }
    }

    /// Counts lane time and batches only inside `[from, to)` ns.
    pub fn set_window(&mut self, from: u64, to: u64) {
        self.window = (from, to);
    }

    /// Model `slot`'s next `batches` batches take `factor` times their profile's time (a
    /// new version's cold start: first kernel launches, caches and allocator warming up).
    pub fn set_cold_start(&mut self, slot: usize, batches: u64, factor: f64) {
        self.cold[slot] = (batches, factor);
    }

    /// The slice's utilization as the runtime's transition budget reads it
    /// (`Scheduler::utilization`: recent lane usage of the active models over all lanes).
    pub fn utilization(&self) -> f64 {
        self.sched.utilization()
    }

    /// Lanes of the slice.
    pub fn lanes(&self) -> usize {
        self.lanes.len()
    }

    /// A request of `rows` rows for model `slot` arriving now (the clock's time), with a
    /// client timeout of `timeout` ns: admitted or refused as the runtime's front end does.
    /// Call [`Slice::dispatch`] after it.
    pub fn offer(&mut self, slot: usize, rows: usize, timeout: Option<u64>) -> Result<(), Refusal> {
        let q = &self.queues[slot];
        if q.full().is_some() {
            return Err(Refusal::Full);
        }
        let now = self.clock.now();
        let deadline = timeout.map(|t| self.clock.at(self.clock.nanos() + t));
        if deadline.is_some_and(|d| q.refuse_late(rows, d, now).is_some()) {
            return Err(Refusal::Late);
        }
        let (tx, rx) = oneshot::channel();
        q.enqueue(Pending {
            rows,
            inputs: Vec::new(),
            outputs: Vec::new(),
            enqueued: now,
            deadline,
            reply: tx,
        })
        .map_err(|_| Refusal::Full)?;
        // As `Runtime::submit`: the queue joins the scheduler's active set.
        self.sched.notify_queue(q);
        self.waiting[slot].push_back(rx);
        Ok(())
    }

    /// Free lanes ask the scheduler for batches, as a lane's `Scheduler::next` does, until
    /// none is ready; batch ends and wake-ups to schedule go to `out`.
    pub fn dispatch(&mut self, out: &mut Vec<(u64, SliceEvent)>) {
        let now = self.clock.nanos();
        while let Some(lane) = self.lanes.iter().position(Option::is_none) {
            let poll = self.sched.poll();
            self.drop_taken();
            match poll {
                Poll::Work(work) => self.start(lane, work, now, out),
                Poll::Idle(wake) => {
                    if let Some(w) = wake {
                        // A wake-up due already would repeat this pass at the same instant.
                        let at = self.clock.nanos_of(w).max(now + 1_000);
                        if self.timer.is_none_or(|t| at < t || t < now) {
                            self.timer = Some(at);
                            out.push((at, SliceEvent::Wake));
                        }
                    }
                    return;
                }
                Poll::Closed => return,
            }
        }
    }

    /// Forgets the receivers of requests that left their queue (taken into a batch, or
    /// dropped because their deadline passed: those are counted).
    fn drop_taken(&mut self) {
        let counted = self.clock.nanos() >= self.window.0;
        for (slot, q) in self.queues.iter().enumerate() {
            let left = q.counts().0;
            let w = &mut self.waiting[slot];
            while w.len() > left {
                let mut rx = w.pop_front().expect("more receivers than queued requests");
                if let Ok(Err(_)) = rx.try_recv() {
                    self.expired[slot] += u64::from(counted);
                }
            }
        }
    }

    fn start(&mut self, lane: usize, work: Work, now: u64, out: &mut Vec<(u64, SliceEvent)>) {
        let slot = self
            .queues
            .iter()
            .position(|q| Arc::ptr_eq(q, &work.queue))
            .expect("the scheduler hands out only this slice's queues");
        let cost = &self.costs[slot];
        let mut seconds = cost.seconds(work.batch.rows) / self.speed;
        if cost.cv > 0.0 {
            let s2 = (1.0 + cost.cv * cost.cv).ln();
            let factor = LogNormal::new(-s2 / 2.0, s2.sqrt()).expect("finite cv");
            seconds *= factor.sample(&mut self.rng);
        }
        let cold = &mut self.cold[slot];
        if cold.0 > 0 {
            cold.0 -= 1;
            seconds *= cold.1;
        }
        let ns = ((seconds * 1e9).round() as u64).max(1);
        if (self.window.0..self.window.1).contains(&now) {
            self.batches[slot].0 += 1;
            self.batches[slot].1 += work.batch.rows as u64;
        }
        self.lanes[lane] = Some(Running {
            work,
            slot,
            started: now,
            seconds: ns as f64 * 1e-9,
        });
        out.push((now + ns, SliceEvent::Done(lane)));
    }

    /// Lane `lane`'s batch ends now: the latency fit learns its time, the queue releases
    /// it, its requests are answered (into `finished`); then free lanes look for work.
    pub fn done(
        &mut self,
        lane: usize,
        finished: &mut Vec<Finished>,
        out: &mut Vec<(u64, SliceEvent)>,
    ) {
        let now = self.clock.nanos();
        let r = self.lanes[lane]
            .take()
            .expect("a batch ends on a busy lane");
        let q = &r.work.queue;
        q.latency().observe(r.work.batch.rows, r.seconds);
        q.finish(r.work.batch.id, r.work.batch.requests.len(), r.seconds);
        let (from, to) = self.window;
        self.busy_ns += now.min(to).saturating_sub(r.started.max(from));
        for p in &r.work.batch.requests {
            finished.push(Finished {
                slot: r.slot,
                arrived: self.clock.nanos_of(p.enqueued),
                done: now,
                on_time: p.deadline.is_none_or(|d| now <= self.clock.nanos_of(d)),
            });
        }
        self.dispatch(out);
    }

    /// A wake-up asked for by a batching policy (or the fair-share cap) is due.
    pub fn wake(&mut self, out: &mut Vec<(u64, SliceEvent)>) {
        let now = self.clock.nanos();
        if self.timer.is_some_and(|t| t <= now) {
            self.timer = None;
        }
        self.dispatch(out);
    }

    /// The load counter of model `slot` and the host's, as a response would carry them.
    pub fn load(&self, slot: usize) -> LoadReport {
        self.sched
            .load_report(std::slice::from_ref(&self.queues[slot]))
    }

    /// Requests queued or running over every model (a host-level outstanding count).
    pub fn outstanding(&self) -> usize {
        self.queues
            .iter()
            .map(|q| {
                let (a, b) = q.counts();
                a + b
            })
            .sum()
    }
}
