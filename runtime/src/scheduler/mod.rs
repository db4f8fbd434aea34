//! The slice's scheduler: which ready batch a free lane runs next.
//!
//! Lanes pull work: a free lane asks [`Scheduler::next`], which asks every model's
//! batching policy whether its queue has a batch ready, then lets a [`SchedulePolicy`]
//! choose among the ready ones (`policy`). An idle lane may spin for new work before it
//! sleeps (`spin`). Lanes have priority classes: [`LaneRouting`] decides which ready batch
//! a lane of each class takes (`route`), and a `High` lane waits on its own condition
//! variable so that urgent work can wake one.
//!
//! A pass looks only at the *active* queues: those with requests queued or running, or an
//! arrival within the last half second (what fair shares count as active). A queue joins
//! when a request is queued ([`Scheduler::notify_queue`]) and leaves at the first pass
//! that finds it idle, so a thousand idle models cost a pass (and the load counter)
//! nothing.

mod assess;
mod caller;
mod policy;
mod route;
mod share;
mod spin;

pub use caller::Claimed;
#[cfg(feature = "testing")]
pub use policy::EdfFairShare;
pub use policy::{Candidate, OldestFirst, ScheduleKind, SchedulePolicy};
pub use route::LaneRouting;

use crate::LoadReport;
use crate::clock::Clock;
use crate::panic::panic_message;
use crate::queue::{FormedBatch, ModelQueue};
use assess::{Assessment, assess, decision_panicked, rescan};
use cohost_kernels::LanePriority;
use parking_lot::{Condvar, Mutex, MutexGuard};
use route::Route;
use spin::SpinGate;
pub(crate) use spin::spin_wait;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

struct State {
    /// Every scheduled queue (open or draining).
    queues: Vec<Arc<ModelQueue>>,
    /// The queues a pass looks at: every queue with work or a recent arrival, and maybe
    /// some that went idle since the last pass (a queue is in it at most once).
    active: Vec<Arc<ModelQueue>>,
    /// A wake-up named no queue: the next pass looks at every queue once first.
    rescan: bool,
    shutdown: bool,
    gate: SpinGate,
    /// When a lane last found nothing to do and no batch has started since.
    idle_since: Option<Instant>,
    /// Per lane (by index): waiting for work right now (spinning, asleep, or, polled, since
    /// its last idle answer).
    idle: Vec<bool>,
    /// Per lane: its thread is waiting on a condition variable (not spinning, not in a pass).
    asleep: Vec<bool>,
    /// Per lane: lent to a caller running a batch as it (see [`Claim`]).
    borrowed: Vec<bool>,
    /// Batches `High` lanes took so far (a `Normal` lane that left urgent work to them
    /// takes it itself if none did for a while).
    high_takes: u64,
}

/// How long a `Normal` lane leaves urgent work to an idle `High` lane that takes nothing
/// before it takes the work itself (a guard; a High lane woken takes it in microseconds).
const DEFER_LIMIT: Duration = Duration::from_millis(1);

/// Work handed to a lane: a batch of one model.
pub struct Work {
    /// The model version the batch belongs to.
    pub queue: Arc<ModelQueue>,
    /// The batch.
    pub batch: FormedBatch,
}

/// Hands ready batches to free lanes.
pub struct Scheduler {
    state: Mutex<State>,
    wake: Condvar,
    /// Where idle `High` lanes wait (a wake-up tries `wake` first, urgent work this).
    wake_high: Condvar,
    policy: Box<dyn SchedulePolicy>,
    lanes: usize,
    /// Each lane's priority class, by index (a lane past the end is `Normal`).
    classes: Vec<LanePriority>,
    /// Which ready batch a lane of each class takes.
    routing: LaneRouting,
    /// Looks at the queues so far (see [`Scheduler::passes`]).
    passes: AtomicU64,
    /// Spins begun by idle lanes so far (see [`Scheduler::spins`]).
    spins: AtomicU64,
    /// How long an idle lane spins for new work before it sleeps (zero: it sleeps at once).
    spin: Duration,
    /// Bumped by every wake-up; a spinning lane watches it instead of the condition variable.
    signals: AtomicU64,
    /// Lanes spinning right now; while any is, a wake-up needs no system call.
    spinning: AtomicUsize,
    /// Where each pass reads "now".
    clock: Clock,
    /// Longest predicted batch a caller may run itself (zero: none; see [`Claim`]).
    caller_max: Duration,
    /// Whether a caller may keep a waiting quick batch's timer (see [`Claimed::At`]).
    caller_timers: bool,
}

/// What one look at the queues found for a free lane (see [`Scheduler::poll`]).
#[cfg_attr(not(feature = "testing"), allow(dead_code))] // used by the simulator (cohost-sim)
pub enum Poll {
    /// A batch for the lane.
    Work(Work),
    /// Nothing to run now: look again at this instant, or when a request arrives (None:
    /// only then).
    Idle(Option<Instant>),
    /// Shut down, with nothing left queued.
    Closed,
}

impl Scheduler {
    /// A scheduler over `lanes` lanes with the given cross-model policy.
    pub fn new(policy: Box<dyn SchedulePolicy>, lanes: usize) -> Self {
        Scheduler {
            state: Mutex::new(State {
                queues: Vec::new(),
                active: Vec::new(),
                rescan: false,
                shutdown: false,
                gate: SpinGate::new(),
                idle_since: None,
                idle: Vec::new(),
                asleep: Vec::new(),
                borrowed: Vec::new(),
                high_takes: 0,
            }),
            wake: Condvar::new(),
            wake_high: Condvar::new(),
            policy,
            lanes: lanes.max(1),
            classes: Vec::new(),
            routing: LaneRouting::ClassBlind,
            passes: AtomicU64::new(0),
            spins: AtomicU64::new(0),
            spin: Duration::ZERO,
            signals: AtomicU64::new(0),
            spinning: AtomicUsize::new(0),
            clock: Clock::Real,
            caller_max: Duration::ZERO,
            caller_timers: false,
        }
    }

    #[cfg_attr(not(feature = "testing"), allow(dead_code))] // used by the simulator (cohost-sim)
    /// The same scheduler reading time from `clock`; with a virtual clock, drive it with
    /// [`Scheduler::poll`] (a blocking [`Scheduler::next`] would sleep in real time).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    #[cfg_attr(not(feature = "testing"), allow(dead_code))] // used by the simulator (cohost-sim)
    /// Lanes the scheduler shares out.
    pub fn lanes(&self) -> usize {
        self.lanes
    }

    /// Lets an idle lane spin up to `spin` for new work before it sleeps: a request that
    /// arrives meanwhile starts without waking a sleeping thread, at the price of that CPU.
    pub fn with_spin(mut self, spin: Duration) -> Self {
        self.spin = spin;
        self
    }

    /// Gives lane `i` the class `classes[i]`; with any `High` lane the routing becomes
    /// [`LaneRouting::Urgency`] (see [`Scheduler::with_routing`]), else stays class-blind.
    pub fn with_lane_classes(mut self, classes: Vec<LanePriority>) -> Self {
        if classes.contains(&LanePriority::High) {
            self.routing = LaneRouting::default();
        }
        let state = self.state.get_mut();
        state.idle = vec![false; classes.len()];
        state.asleep = vec![false; classes.len()];
        state.borrowed = vec![false; classes.len()];
        self.classes = classes;
        self
    }

    /// Sets the routing of ready batches to lane classes (after
    /// [`Scheduler::with_lane_classes`]).
    #[cfg_attr(not(feature = "testing"), allow(dead_code))] // tests compare the routings
    pub fn with_routing(mut self, routing: LaneRouting) -> Self {
        self.routing = routing;
        self
    }

    /// Lanes spinning for work right now: a request queued now starts at once.
    pub fn lanes_spinning(&self) -> usize {
        self.spinning.load(Ordering::Acquire)
    }

    /// Wakes one lane; the caller holds the state lock. A spinning lane sees the signal by
    /// itself, so a sleeping one is woken only when none spins; a sleeping `Normal` lane
    /// before a `High` one (kept free for urgent work).
    fn wake_one(&self) {
        self.signals.fetch_add(1, Ordering::AcqRel);
        if self.spinning.load(Ordering::Acquire) == 0 && !self.wake.notify_one() {
            self.wake_high.notify_one();
        }
    }

    /// Wakes an idle `High` lane for urgent work (spinning or asleep; the caller holds the
    /// state lock).
    fn wake_high(&self) {
        self.signals.fetch_add(1, Ordering::AcqRel);
        self.wake_high.notify_one();
    }

    /// Wakes every lane, spinning or sleeping.
    fn wake_all(&self) {
        self.signals.fetch_add(1, Ordering::AcqRel);
        self.wake.notify_all();
        self.wake_high.notify_all();
    }

    /// Spins (yielding the CPU to any thread that wants it) until a wake-up after `seen`
    /// or until `until`.
    fn spin_until(&self, seen: u64, until: Instant) {
        spin_wait(until, || self.signals.load(Ordering::Acquire) != seen);
    }

    /// Spins for new work begun by idle lanes so far (counted once the lane spins).
    pub fn spins(&self) -> u64 {
        self.spins.load(Ordering::Relaxed)
    }

    /// Wake-ups sent to the lanes so far (whether or not a thread was waiting for one).
    pub fn wakes(&self) -> u64 {
        self.signals.load(Ordering::Acquire)
    }

    /// How many times a lane looked at the queues for work: once when it becomes free and
    /// once per wake-up. Lanes woken for nothing show here as passes beyond two per batch.
    pub fn passes(&self) -> u64 {
        self.passes.load(Ordering::Relaxed)
    }

    /// Name of the cross-model policy.
    pub fn policy_name(&self) -> &'static str {
        self.policy.name()
    }

    /// Starts scheduling a model version's queue (a pass looks at it once a request is
    /// queued: see [`Scheduler::notify_queue`]).
    pub fn add(&self, q: Arc<ModelQueue>) {
        self.state.lock().queues.push(q);
    }

    /// Wakes a lane for a request just queued on `q` (a lane that finishes a batch looks
    /// for the next one itself); `q` joins the queues a pass looks at.
    pub fn notify_queue(&self, q: &Arc<ModelQueue>) {
        let mut state = self.state.lock();
        let urgent = self.join_active(&mut state, q);
        self.wake_for(&state, urgent);
    }

    /// Puts `q` in the active set; whether it is urgent (a model above the others'
    /// priority, with lane classes routing).
    fn join_active(&self, state: &mut State, q: &Arc<ModelQueue>) -> bool {
        let mut known = false;
        let mut floor = q.config.priority;
        for a in &state.active {
            known |= Arc::ptr_eq(a, q);
            floor = floor.min(a.config.priority);
        }
        if !known {
            state.active.push(q.clone());
        }
        q.config.priority > floor && self.routing != LaneRouting::ClassBlind
    }

    /// Wakes a lane for newly queued work: an idle High lane for urgent work (it takes it
    /// at once), else any lane.
    fn wake_for(&self, state: &State, urgent: bool) {
        if urgent && self.idle_high(state, None) > 0 {
            self.wake_high();
        } else {
            self.wake_one();
        }
    }

    /// Wakes a lane after a change to no queue in particular (a queue closed, requests
    /// queued by hand): its next pass looks at every queue once.
    pub fn notify(&self) {
        self.state.lock().rescan = true;
        self.wake_one();
    }

    /// Stops waiting for new work: lanes drain what is queued, then [`Scheduler::next`]
    /// returns None.
    pub fn shutdown(&self) {
        let mut state = self.state.lock();
        state.shutdown = true;
        state.rescan = true;
        drop(state);
        self.wake_all();
    }

    /// Every scheduled queue (open or draining).
    pub fn queues(&self) -> Vec<Arc<ModelQueue>> {
        self.state.lock().queues.clone()
    }

    /// Predicted seconds of all models' outstanding work (an idle queue has none, so
    /// only the active ones are asked).
    pub fn total_work(&self) -> f64 {
        let state = self.state.lock();
        state.active.iter().map(|q| q.outstanding_work()).sum()
    }

    /// The slice's utilization: the lanes the active models kept busy over the last half
    /// second or so (the fair-share cap's recent lane usage, summed) over all lanes,
    /// 0 to 1.
    pub fn utilization(&self) -> f64 {
        let now = self.clock.now();
        let state = self.state.lock();
        let busy: f64 = state.active.iter().map(|q| q.lane_usage(now)).sum();
        let u = busy / self.lanes as f64;
        if u.is_finite() {
            u.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    /// The load counter of a model served by `versions` (its loaded versions), and the
    /// host's over every model, as a response reports them.
    pub fn load_report(&self, versions: &[Arc<ModelQueue>]) -> LoadReport {
        let mut work = 0.0;
        let (mut queued, mut in_flight) = (0, 0);
        let mut lanes = 1;
        for q in versions {
            work += q.outstanding_work();
            let (a, b) = q.counts();
            queued += a;
            in_flight += b;
            lanes = lanes.max(q.max_lanes);
        }
        LoadReport {
            model_load: work / lanes as f64,
            host_load: self.total_work() / self.lanes as f64,
            queued,
            in_flight,
        }
    }

    /// Blocks until a batch is ready for a free lane; None once shut down and drained.
    ///
    /// A panic while deciding one model's batch (its batching policy, its view, its
    /// latency target) fails that model's oldest request with an internal error and the
    /// pass goes on, so a policy that always panics drains its queue instead of spinning.
    /// A panicking (or out-of-range) cross-model pick falls back to oldest-first.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))] // lanes call next_for; tests this
    pub fn next(&self) -> Option<Work> {
        self.next_inner(None)
    }

    /// [`Scheduler::next`] for lane `lane` (its index), routed by the lane's class.
    pub fn next_for(&self, lane: usize) -> Option<Work> {
        self.next_inner(Some(lane))
    }

    fn next_inner(&self, lane: Option<usize>) -> Option<Work> {
        match self.pass(true, lane) {
            Poll::Work(work) => Some(work),
            Poll::Idle(_) | Poll::Closed => None,
        }
    }

    #[cfg_attr(not(feature = "testing"), allow(dead_code))] // used by the simulator (cohost-sim)
    /// The decision [`Scheduler::next`] makes for a free lane at the clock's now, without
    /// waiting, spinning or sleeping: a batch, or when to look again. A simulator calls it
    /// for each free lane at each event of its virtual clock.
    pub fn poll(&self) -> Poll {
        self.pass(false, None)
    }

    #[cfg_attr(not(feature = "testing"), allow(dead_code))] // used by tests and cohost-sim
    /// [`Scheduler::poll`] for lane `lane` (its index), routed by the lane's class; the
    /// lane counts as idle from an idle answer until its next poll.
    pub fn poll_for(&self, lane: usize) -> Poll {
        self.pass(false, Some(lane))
    }

    /// Marks lane `lane` idle or not (no-op for an anonymous or unknown lane).
    fn set_idle(state: &mut State, lane: Option<usize>, idle: bool) {
        if let Some(slot) = lane.and_then(|i| state.idle.get_mut(i)) {
            *slot = idle;
        }
    }

    /// Marks lane `lane`'s thread asleep or not (no-op for an anonymous or unknown lane).
    fn set_asleep(state: &mut State, lane: Option<usize>, asleep: bool) {
        if let Some(slot) = lane.and_then(|i| state.asleep.get_mut(i)) {
            *slot = asleep;
        }
    }

    /// [`Scheduler::next`]'s loop for `lane` (None: an anonymous `Normal` lane); unless
    /// `block`, it returns instead of waiting.
    fn pass(&self, block: bool, lane: Option<usize>) -> Poll {
        let mut state = self.state.lock();
        let mut spin_end: Option<Instant> = None;
        let class = self.class(lane);
        // When this lane first left urgent work to idle High lanes, and their takes then.
        let mut deferred: Option<(Instant, u64)> = None;
        loop {
            if lane.is_some_and(|i| block && state.borrowed.get(i) == Some(&true)) {
                // A caller runs a batch as this lane: a wake-up that reached this thread
                // was meant for a free lane, so pass it on; sleep until the lane is back.
                if self.free_lane(&state, LanePriority::Normal).is_some() {
                    self.wake.notify_one();
                } else if self.free_lane(&state, LanePriority::High).is_some() {
                    self.wake_high.notify_one();
                }
                Self::set_asleep(&mut state, lane, true);
                self.wake.wait(&mut state);
                Self::set_asleep(&mut state, lane, false);
                continue;
            }
            Self::set_idle(&mut state, lane, false);
            self.passes.fetch_add(1, Ordering::Relaxed);
            let now = self.clock.now();
            if std::mem::take(&mut state.rescan) {
                rescan(&mut state, now);
            }
            // An idle queue (nothing queued or running, no recent arrival) leaves the
            // active set: left out, it changes no share, cap or candidate (it is inactive
            // and has nothing to run). A drained one leaves the scheduler too.
            let mut drained = false;
            state.active.retain(|q| {
                let gone = q.is_drained();
                drained |= gone;
                !gone && q.recently_active(now)
            });
            if drained {
                state.queues.retain(|q| !q.is_drained());
            }
            let mut ready: Vec<(usize, usize, Candidate)> = Vec::new();
            let mut wake_at: Option<Instant> = None;
            let mut failed = false;
            let active = vec![true; state.active.len()];
            let shares = self.shares(&state.active, &active, now);
            let shutdown = state.shutdown;
            let capped = if shutdown {
                vec![None; state.active.len()]
            } else {
                self.share_caps(&state.active, &active, now)
            };
            for (i, q) in state.active.iter().enumerate() {
                if q.lanes_busy() >= q.max_lanes {
                    continue;
                }
                if let Some(until) = capped[i] {
                    if q.has_queued() {
                        wake_at = Some(wake_at.map_or(until, |w: Instant| w.min(until)));
                    }
                    continue;
                }
                let share = shares[i];
                match catch_unwind(AssertUnwindSafe(|| assess(q, now, share, shutdown))) {
                    Ok(None) => {}
                    Ok(Some(Assessment::Ready(limit, candidate))) => {
                        ready.push((i, limit, candidate))
                    }
                    Ok(Some(Assessment::WaitUntil(t))) => {
                        wake_at = Some(wake_at.map_or(t, |w: Instant| w.min(t)));
                    }
                    Err(panic) => failed |= decision_panicked(q, &*panic),
                }
            }
            let mut route = None;
            if !ready.is_empty() {
                let cands: Vec<Candidate> = ready.iter().map(|r| r.2).collect();
                route = Some(self.route(&state, lane, class, &cands, now, &mut deferred));
            }
            if let Some(Route::Take { index, wake_high }) = route {
                let (qi, limit, _) = ready[index];
                let q = state.active[qi].clone();
                if let Some(batch) = q.take(limit, now) {
                    if wake_high {
                        self.wake_high();
                    }
                    // Another lane must see what is left: more ready work, or a queue whose
                    // batch waits for a timer this lane can no longer keep (it is about to
                    // run a batch, and the lanes asleep may have no timer set).
                    if ready.len() > 1 || failed || q.has_queued() || wake_at.is_some() {
                        self.wake_one();
                    }
                    if class == LanePriority::High {
                        state.high_takes += 1;
                    }
                    if let Some(idle) = state.idle_since.take() {
                        state.gate.record(now.duration_since(idle) <= self.spin * 2);
                    }
                    return Poll::Work(Work { queue: q, batch });
                }
                continue;
            }
            if route == Some(Route::Defer) {
                // Everything ready is left to idle High lanes: wake one, look again soon.
                self.wake_high();
                let again = now + DEFER_LIMIT;
                wake_at = Some(wake_at.map_or(again, |w: Instant| w.min(again)));
            }
            if failed {
                // The failed queue may hold more requests: look again before waiting.
                continue;
            }
            if state.shutdown && state.active.iter().all(|q| !q.has_queued()) {
                self.wake_all();
                return Poll::Closed;
            }
            if spin_end.is_none() {
                // This lane just found nothing to do: an idle period starts.
                state.idle_since = Some(now);
            }
            Self::set_idle(&mut state, lane, true);
            if !block {
                return Poll::Idle(wake_at);
            }
            let spin_end = *spin_end.get_or_insert_with(|| {
                if !self.spin.is_zero() && state.gate.admit() {
                    now + self.spin
                } else {
                    now
                }
            });
            // One spinning lane is enough to take the next arrival at once (and it wakes
            // another when more is queued); the others sleep instead of burning a core each.
            if now < spin_end && self.spinning.load(Ordering::Acquire) == 0 {
                let seen = self.signals.load(Ordering::Acquire);
                let until = wake_at.map_or(spin_end, |t| t.min(spin_end));
                self.spinning.fetch_add(1, Ordering::AcqRel);
                self.spins.fetch_add(1, Ordering::Relaxed);
                MutexGuard::unlocked(&mut state, || self.spin_until(seen, until));
                self.spinning.fetch_sub(1, Ordering::AcqRel);
                continue;
            }
            let cv = match class {
                LanePriority::High => &self.wake_high,
                LanePriority::Normal => &self.wake,
            };
            Self::set_asleep(&mut state, lane, true);
            match wake_at {
                Some(t) => {
                    cv.wait_until(&mut state, t);
                }
                None => {
                    cv.wait(&mut state);
                }
            }
            Self::set_asleep(&mut state, lane, false);
        }
    }

    /// The policy's pick among `cands`, or oldest-first when the policy panics or answers
    /// an index out of range.
    fn pick(&self, cands: &[Candidate]) -> usize {
        match catch_unwind(AssertUnwindSafe(|| self.policy.pick(cands))) {
            Ok(i) if i < cands.len() => i,
            Ok(i) => {
                tracing::error!(
                    policy = self.policy.name(),
                    "scheduling policy picked candidate {i} of {}; falling back to oldest-first",
                    cands.len()
                );
                OldestFirst.pick(cands)
            }
            Err(panic) => {
                tracing::error!(
                    policy = self.policy.name(),
                    "scheduling policy panicked: {}; falling back to oldest-first",
                    panic_message(&*panic)
                );
                OldestFirst.pick(cands)
            }
        }
    }
}
