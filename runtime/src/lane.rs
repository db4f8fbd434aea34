//! Lanes: the slice's execution contexts. On the CPU a lane is a worker thread; each
//! lane pulls batches from the scheduler and runs them, off the async runtime.
//!
//! A lane outlives panics. One in a model's `forward` fails that batch with the model's
//! message; one anywhere else while running a batch (gathering, splitting, statistics,
//! metrics, releasing it) answers each of the batch's requests with an internal error
//! and releases the batch's accounting once; one inside [`Scheduler::next`] that the
//! scheduler could not pin on a model is logged and retried after a growing pause.
//!
//! A supervisor thread watches the lanes ([`LanePool`]): a lane thread that died anyway
//! (a panic escaping the catches above, e.g. from dropping a panic's payload) is respawned
//! and counted (`cohost_lane_restarts_total`), and a batch running longer than its
//! [`Overrun`] limit is reported once (`cohost_batch_overruns_total` and a log line), even
//! while its forward has not returned.

mod rows;

use crate::panic::panic_message;
use crate::queue::{FormedBatch, ModelQueue, Reply};
use crate::scheduler::{Scheduler, Work};
use crate::{Error, Result};
use cohost_kernels::{DeviceFault, Lane};
use cohost_models::BackendHandle;
use parking_lot::{Condvar, Mutex};
use rows::{gather, scatter};
use std::any::Any;
use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest pause of a lane between two scheduler panics in a row.
const MAX_BACKOFF: Duration = Duration::from_millis(100);

/// The backend-neutral batch-boundary check a lane runs on its own thread after each
/// batch's forward, before it takes the next batch: a device fault found there fails that
/// batch (a no-op on the CPU; the context's stored error and stream state on CUDA).
pub type Boundary = Arc<dyn Fn(&Lane) -> std::result::Result<(), DeviceFault> + Send + Sync>;

/// What a lane asks of the device around each batch: the batch-boundary check, where to
/// report a sticky fault, whether batches may run at all now (not while the device is being
/// rebuilt) and which lane value to issue on (a rebuilt device has new streams).
pub trait BatchBoundary: Send + Sync {
    /// The batch-boundary check (see [`Boundary`]).
    fn check(&self, lane: &Lane) -> std::result::Result<(), DeviceFault>;

    /// A sticky fault was found at the boundary of a batch of `model`/`version` on `lane`.
    fn sticky(&self, _fault: &DeviceFault, _model: &str, _version: u64, _lane: usize) {}

    /// Why no batch may run now (the device is being rebuilt), if so: a batch taken then
    /// is answered with it, unrun, and one that finishes then is answered with it too.
    fn refuse(&self) -> Option<Error> {
        None
    }

    /// The lane to issue this batch on, when it is no longer the one the thread started
    /// with (a rebuilt device); None: the thread's own.
    fn current(&self, _lane: &Lane) -> Option<Lane> {
        None
    }
}

/// A plain [`Boundary`] closure as a [`BatchBoundary`] (no reset, no lane replacement).
#[cfg(feature = "testing")]
struct PlainBoundary(Boundary);

#[cfg(feature = "testing")]
impl BatchBoundary for PlainBoundary {
    fn check(&self, lane: &Lane) -> std::result::Result<(), DeviceFault> {
        (self.0)(lane)
    }
}

/// A [`Boundary`] closure as the shared [`BatchBoundary`] lanes take.
#[cfg(feature = "testing")]
pub fn plain_boundary(boundary: Boundary) -> Arc<dyn BatchBoundary> {
    Arc::new(PlainBoundary(boundary))
}

/// The [`Boundary`] of a backend: none on the CPU, [`cohost_kernels::cuda::CudaOps::batch_boundary`] on CUDA.
pub fn backend_boundary(handle: &BackendHandle) -> Boundary {
    match handle {
        BackendHandle::Cpu(_) => Arc::new(|_: &Lane| Ok(())),
        BackendHandle::Cuda(ops) => {
            let ops = ops.clone();
            Arc::new(move |lane: &Lane| ops.batch_boundary(lane))
        }
    }
}

/// Starts one worker thread per lane, unsupervised, with no batch-boundary check; they
/// exit when the scheduler shuts down. The runtime starts a [`LanePool`] instead.
#[cfg(feature = "testing")]
pub fn spawn_lanes(lanes: Vec<Lane>, scheduler: Arc<Scheduler>) -> Vec<JoinHandle<()>> {
    spawn_lanes_checked(lanes, scheduler, Arc::new(|_: &Lane| Ok(())))
}

/// [`spawn_lanes`] with a batch-boundary check (tests inject device faults through it).
#[cfg(feature = "testing")]
pub fn spawn_lanes_checked(
    lanes: Vec<Lane>,
    scheduler: Arc<Scheduler>,
    boundary: Boundary,
) -> Vec<JoinHandle<()>> {
    let boundary = plain_boundary(boundary);
    lanes
        .into_iter()
        .map(|lane| {
            spawn_lane(lane, scheduler.clone(), boundary.clone()).expect("spawn lane thread")
        })
        .collect()
}

fn spawn_lane(
    lane: Lane,
    sched: Arc<Scheduler>,
    boundary: Arc<dyn BatchBoundary>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("cohost-lane-{}", lane.index))
        .spawn(move || serve(&lane, &sched, &boundary))
}

/// When a running batch counts as overrunning: after `factor` times its predicted time
/// (the model's latency fit), and never before `floor`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Overrun {
    /// Multiple of the predicted time.
    pub factor: f64,
    /// Shortest run that can count as an overrun (scheduling noise stays below it).
    pub floor: Duration,
}

impl Overrun {
    /// How long a batch predicted to take `predicted` seconds may run before it overruns.
    pub fn limit(&self, predicted: f64) -> Duration {
        let scaled = Duration::try_from_secs_f64(predicted.max(0.0) * self.factor.max(0.0))
            .unwrap_or(Duration::MAX);
        scaled.max(self.floor)
    }

    /// The longest-running of `q`'s batches that overran at `now`: how long it has run and
    /// its predicted seconds.
    pub fn worst(&self, q: &ModelQueue, now: Instant) -> Option<(Duration, f64)> {
        q.running_batches(now)
            .into_iter()
            .filter(|(_, ran, predicted)| *ran > self.limit(*predicted))
            .map(|(_, ran, predicted)| (ran, predicted))
            .max_by_key(|(ran, _)| *ran)
    }
}

/// The lanes' threads and the supervisor that respawns dead ones and reports overruns.
pub struct LanePool {
    shared: Arc<Supervised>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

/// What the supervisor and the pool share.
struct Supervised {
    scheduler: Arc<Scheduler>,
    overrun: Overrun,
    boundary: Arc<dyn BatchBoundary>,
    /// Each lane and its current thread (None once joined or given up on).
    lanes: Vec<(Lane, Mutex<Option<JoinHandle<()>>>)>,
    restarts: AtomicU64,
    overruns: AtomicU64,
    stop: Mutex<bool>,
    wake: Condvar,
}

impl LanePool {
    /// Starts one thread per lane and their supervisor.
    pub fn start(
        lanes: Vec<Lane>,
        scheduler: Arc<Scheduler>,
        overrun: Overrun,
        boundary: Arc<dyn BatchBoundary>,
    ) -> LanePool {
        let lanes = lanes
            .into_iter()
            .map(|lane| {
                let handle = spawn_lane(lane.clone(), scheduler.clone(), boundary.clone())
                    .expect("spawn lane thread");
                (lane, Mutex::new(Some(handle)))
            })
            .collect();
        let shared = Arc::new(Supervised {
            scheduler,
            overrun,
            boundary,
            lanes,
            restarts: AtomicU64::new(0),
            overruns: AtomicU64::new(0),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let watched = shared.clone();
        let supervisor = std::thread::Builder::new()
            .name("cohost-lane-supervisor".into())
            .spawn(move || watched.supervise())
            .expect("spawn the lane supervisor");
        LanePool {
            shared,
            supervisor: Mutex::new(Some(supervisor)),
        }
    }

    /// Runs `work` on the calling thread as lane `index` (lent to it by a
    /// [`crate::scheduler::Claim`]) and answers its requests; never unwinds.
    pub fn run_as(&self, index: usize, work: Work) {
        let lanes = &self.shared.lanes;
        let (lane, _) = lanes
            .iter()
            .find(|(l, _)| l.index == index)
            .unwrap_or(&lanes[0]);
        run(lane, work, &self.shared.boundary);
    }

    /// Lane threads respawned so far.
    pub fn restarts(&self) -> u64 {
        self.shared.restarts.load(Ordering::Relaxed)
    }

    /// Batches reported as overrunning so far.
    pub fn overruns(&self) -> u64 {
        self.shared.overruns.load(Ordering::Relaxed)
    }

    /// Stops the supervisor (the scheduler is shut down next, so lanes exit by themselves).
    fn stop_supervisor(&self) {
        *self.shared.stop.lock() = true;
        self.shared.wake.notify_all();
        if let Some(h) = self.supervisor.lock().take() {
            let _ = h.join();
        }
    }

    /// Stops supervising and waits until `deadline` for every lane thread to exit; the
    /// indices of the lanes still running then (left running, not waited on).
    pub fn join_until(&self, deadline: Instant) -> Vec<usize> {
        self.stop_supervisor();
        loop {
            let mut running = Vec::new();
            for (lane, slot) in &self.shared.lanes {
                let mut slot = slot.lock();
                match slot.as_ref() {
                    Some(h) if h.is_finished() => {
                        if let Err(payload) = slot.take().expect("checked").join() {
                            // Dropping it could panic again (that may be how it escaped).
                            std::mem::forget(payload);
                        }
                    }
                    Some(_) => running.push(lane.index),
                    None => {}
                }
            }
            if running.is_empty() || Instant::now() >= deadline {
                // Dropping the handles of the stuck lanes detaches them.
                for (lane, slot) in &self.shared.lanes {
                    if running.contains(&lane.index) {
                        slot.lock().take();
                    }
                }
                return running;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for LanePool {
    fn drop(&mut self) {
        // The supervisor exits at its next tick; the lanes once the scheduler shuts down.
        *self.shared.stop.lock() = true;
        self.shared.wake.notify_all();
    }
}

impl Supervised {
    /// Every tick: respawns lanes that died, reports batches that overran.
    fn supervise(&self) {
        let tick =
            (self.overrun.floor / 4).clamp(Duration::from_millis(5), Duration::from_millis(250));
        let mut reported: HashSet<(usize, u64)> = HashSet::new();
        loop {
            {
                let mut stop = self.stop.lock();
                if !*stop {
                    self.wake.wait_for(&mut stop, tick);
                }
                if *stop {
                    return;
                }
            }
            for (lane, slot) in &self.lanes {
                self.respawn_if_dead(lane, slot);
            }
            self.report_overruns(&mut reported);
        }
    }

    /// Replaces a lane thread that ended by a panic (one that returned normally saw the
    /// scheduler shut down and stays ended).
    fn respawn_if_dead(&self, lane: &Lane, slot: &Mutex<Option<JoinHandle<()>>>) {
        let mut slot = slot.lock();
        if !slot.as_ref().is_some_and(|h| h.is_finished()) {
            return;
        }
        let Err(payload) = slot.take().expect("checked").join() else {
            return;
        };
        let msg = panic_message(&*payload);
        // Dropping the payload could panic again (that may be how it escaped its lane).
        std::mem::forget(payload);
        match spawn_lane(lane.clone(), self.scheduler.clone(), self.boundary.clone()) {
            Ok(h) => {
                *slot = Some(h);
                self.restarts.fetch_add(1, Ordering::Relaxed);
                crate::metrics::lane_restart(lane.index);
                tracing::error!(lane = lane.index, "lane thread died ({msg}); respawned it");
            }
            Err(e) => {
                tracing::error!(
                    lane = lane.index,
                    "lane thread died ({msg}) and cannot be respawned: {e}"
                )
            }
        }
    }

    /// Reports each running batch the first time the supervisor sees it over its limit.
    fn report_overruns(&self, reported: &mut HashSet<(usize, u64)>) {
        let now = Instant::now();
        let mut still = HashSet::new();
        let mut overrunning = 0usize;
        for q in self.scheduler.queues() {
            let key = Arc::as_ptr(&q) as usize;
            for (id, ran, predicted) in q.running_batches(now) {
                let limit = self.overrun.limit(predicted);
                if ran <= limit {
                    continue;
                }
                overrunning += 1;
                still.insert((key, id));
                if reported.contains(&(key, id)) {
                    continue;
                }
                self.overruns.fetch_add(1, Ordering::Relaxed);
                q.metrics.batch_overruns.increment(1);
                tracing::warn!(
                    model = %q.name,
                    version = q.version,
                    ran_ms = ran.as_secs_f64() * 1e3,
                    predicted_ms = predicted * 1e3,
                    "a batch has run over {:.0}x its predicted time and its forward has not returned; its requests are answered when their deadlines pass",
                    self.overrun.factor
                );
            }
        }
        *reported = still;
        crate::metrics::batches_overrunning(overrunning);
    }
}

/// A lane's loop: runs the scheduler's batches until it shuts down, whatever panics.
fn serve(lane: &Lane, sched: &Scheduler, boundary: &Arc<dyn BatchBoundary>) {
    let mut failures = 0u32;
    loop {
        // `run` answers and releases its batch itself; what lands here came from the
        // scheduler, whose state stays consistent (its mutex is released on unwind and a
        // queue's `take` is panic-safe).
        let step = catch_unwind(AssertUnwindSafe(|| {
            sched
                .next_for(lane.index)
                .map(|work| run(lane, work, boundary))
        }));
        match step {
            Ok(Some(())) => failures = 0,
            Ok(None) => return,
            Err(panic) => {
                // Pause, so a panic on every call cannot keep a core spinning.
                failures = failures.saturating_add(1);
                let pause = Duration::from_millis(1 << (failures - 1).min(7)).min(MAX_BACKOFF);
                tracing::error!(
                    lane = lane.index,
                    failures,
                    "lane panicked while scheduling: {}; retrying in {pause:?}",
                    panic_message(&*panic)
                );
                std::thread::sleep(pause);
            }
        }
    }
}

/// Runs one batch and answers each of its requests; never unwinds.
fn run(lane: &Lane, work: Work, boundary: &Arc<dyn BatchBoundary>) {
    let Work { queue, batch } = work;
    let current = boundary.current(lane);
    let lane = current.as_ref().unwrap_or(lane);
    let started = Instant::now();
    match catch_unwind(AssertUnwindSafe(|| {
        execute(lane, &queue, &batch, started, &**boundary)
    })) {
        Ok(replies) => {
            for (p, reply) in batch.requests.into_iter().zip(replies) {
                let _ = p.reply.send(reply);
            }
        }
        Err(panic) => fail(lane, &queue, batch, started, &*panic),
    }
    // No wake-up for the other lanes here: this lane asks the scheduler next and takes
    // whatever its finishing made ready (and `next` wakes another lane when more is
    // ready). Waking one would cost an idle lane two context switches per batch.
}

/// Gathers, runs and splits a batch, accounts for it and releases it; the replies, in
/// request order. The requests stay in `batch`, so a panic here loses none of them.
fn execute(
    lane: &Lane,
    queue: &ModelQueue,
    batch: &FormedBatch,
    started: Instant,
    boundary: &dyn BatchBoundary,
) -> Vec<Result<Reply>> {
    let rows = batch.rows;
    let refused = boundary.refuse();
    let input = gather(rows, &batch.requests);
    let t_input = Instant::now();
    let result = match refused {
        // The device is being rebuilt: nothing of this batch is issued on it.
        Some(_) => None,
        None => Some(catch_unwind(AssertUnwindSafe(|| {
            queue.model.forward(lane, &input)
        }))),
    };
    let t_infer = Instant::now();
    let infer_s = t_infer.duration_since(t_input).as_secs_f64();
    let outputs: Result<Vec<Vec<f32>>> = match result {
        None => Err(Error::unavailable("the device is being rebuilt")),
        Some(Ok(Ok(outs))) => Ok(outs),
        Some(Ok(Err(e))) => Err(Error::from(e)),
        Some(Err(panic)) => {
            let msg = panic_message(&*panic);
            tracing::error!(model = %queue.name, lane = lane.index, "model panicked: {msg}");
            Err(Error::internal(format!(
                "model '{}' failed while running a batch: {msg}",
                queue.name
            )))
        }
    };
    // A batch that finished while the device is being rebuilt is not trusted either.
    let outputs = match boundary.refuse() {
        Some(e) => Err(e),
        None => match boundary.check(lane) {
            Ok(()) => outputs,
            Err(fault) => Err(fault_error(lane, queue, &fault, boundary)),
        },
    };
    if outputs.is_ok() {
        queue.latency.observe(rows, infer_s);
    }
    // Split first, account for the batch, then answer: a client that reads statistics or
    // the load counter right after its response sees its own batch counted.
    let replies = scatter(queue, outputs, &batch.requests, rows, t_infer);
    let done = Instant::now();
    let busy = done.duration_since(started).as_secs_f64();
    queue.stats.batch(
        rows as u64,
        t_input.duration_since(started).as_nanos() as u64,
        (infer_s * 1e9) as u64,
        done.duration_since(t_infer).as_nanos() as u64,
    );
    queue.metrics.execution_count.increment(1);
    queue.metrics.inference_count.increment(rows as u64);
    queue.metrics.batch_size.record(rows as f64);
    queue.metrics.compute_duration.record(infer_s);
    crate::metrics::lane_busy(lane.index, busy);
    queue.finish(batch.id, batch.requests.len(), busy);
    replies
}

/// The error a batch's requests get for a device fault at its boundary: unavailable (503,
/// retry later) when the device context is lost, internal for a fault of this batch only.
#[cold]
fn fault_error(
    lane: &Lane,
    queue: &ModelQueue,
    fault: &DeviceFault,
    boundary: &dyn BatchBoundary,
) -> Error {
    crate::metrics::device_fault(fault.is_sticky());
    tracing::error!(
        model = %queue.name,
        version = queue.version,
        lane = lane.index,
        sticky = fault.is_sticky(),
        "{fault} at the boundary of a batch of this model; the batch fails"
    );
    let msg = format!(
        "model '{}': the device failed while running this batch: {fault}",
        queue.name
    );
    if fault.is_sticky() {
        boundary.sticky(fault, &queue.name, queue.version, lane.index);
        Error::unavailable(msg)
    } else {
        Error::internal(msg)
    }
}

/// After a panic while running `batch`: releases it (unless [`execute`] already did),
/// then answers every request with an internal error naming the model.
#[cold]
fn fail(
    lane: &Lane,
    queue: &ModelQueue,
    batch: FormedBatch,
    started: Instant,
    panic: &(dyn Any + Send),
) {
    let msg = panic_message(panic);
    let busy = started.elapsed().as_secs_f64();
    let n = batch.requests.len();
    // `finish` releases before it touches metrics, so a panic in it leaves the batch released.
    let released = catch_unwind(AssertUnwindSafe(|| queue.finish(batch.id, n, busy)));
    let error = Error::internal(format!(
        "model '{}': internal error while running a batch: {msg}",
        queue.name
    ));
    for p in batch.requests {
        let _ = p.reply.send(Err(error.clone()));
    }
    tracing::error!(
        model = %queue.name,
        lane = lane.index,
        requests = n,
        released_here = matches!(released, Ok(true)),
        "lane panicked while running a batch: {msg}"
    );
}
