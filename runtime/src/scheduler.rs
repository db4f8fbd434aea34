//! The slice's scheduler: which ready batch a free lane runs next.
//!
//! Lanes pull work: a free lane asks [`Scheduler::next`], which asks every model's
//! batching policy whether its queue has a batch ready, then lets a [`SchedulePolicy`]
//! choose among the ready ones. The baseline ([`OldestFirst`]) sits next to the
//! deadline-and-fair-share policy ([`EdfFairShare`]).

use crate::Error;
use crate::batcher::Decision;
use crate::lane::panic_message;
use crate::queue::{Batch, ModelQueue, SliceShare};
use parking_lot::{Condvar, Mutex, MutexGuard};
use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A model whose queue has a batch ready, as a scheduling policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    /// When its oldest request arrived.
    pub oldest: Instant,
    /// The earliest deadline among its requests (or its latency target from `oldest`).
    pub deadline: Instant,
    /// Fair-share weight.
    pub weight: f64,
    /// Priority (higher first on ties).
    pub priority: i32,
    /// Weighted lane-seconds it consumed so far.
    pub virtual_time: f64,
}

/// Chooses which ready model a free lane serves.
pub trait SchedulePolicy: Send + Sync {
    /// Short name for logs and reports.
    fn name(&self) -> &'static str;
    /// Index into `ready` (never empty) of the model to serve.
    fn pick(&self, ready: &[Candidate]) -> usize;
    /// While two or more models are active, a model whose recent lane usage exceeds this
    /// multiple of its weighted share of the lanes starts no batch until it falls back
    /// (its excess queues, then is refused); None lets any model use idle lanes.
    fn share_cap(&self) -> Option<f64> {
        None
    }
}

/// First come, first served across models: the oldest waiting request wins.
#[derive(Debug, Default, Clone, Copy)]
pub struct OldestFirst;

impl SchedulePolicy for OldestFirst {
    fn name(&self) -> &'static str {
        "fifo"
    }
    fn pick(&self, ready: &[Candidate]) -> usize {
        (0..ready.len())
            .min_by_key(|&i| ready[i].oldest)
            .unwrap_or(0)
    }
}

/// Earliest deadline first among the models within `window` lane-seconds of the least
/// served one (weighted fair share), so a flooded model cannot starve the others; with
/// `share_cap`, a model over its share does not borrow idle lanes while others are active.
#[derive(Debug, Clone, Copy)]
pub struct EdfFairShare {
    /// How far ahead of the least-served model (weighted lane-seconds) a model may run.
    pub window: f64,
    /// See [`SchedulePolicy::share_cap`].
    pub share_cap: Option<f64>,
}

impl Default for EdfFairShare {
    fn default() -> Self {
        EdfFairShare {
            window: 0.05,
            share_cap: Some(1.25),
        }
    }
}

impl SchedulePolicy for EdfFairShare {
    fn name(&self) -> &'static str {
        if self.share_cap.is_some() {
            "edf-fair"
        } else {
            "edf-fair-work-conserving"
        }
    }
    fn share_cap(&self) -> Option<f64> {
        self.share_cap
    }
    fn pick(&self, ready: &[Candidate]) -> usize {
        let least = ready
            .iter()
            .map(|c| c.virtual_time)
            .fold(f64::INFINITY, f64::min);
        (0..ready.len())
            .filter(|&i| ready[i].virtual_time <= least + self.window)
            .min_by(|&a, &b| {
                let (x, y) = (&ready[a], &ready[b]);
                x.deadline
                    .cmp(&y.deadline)
                    .then(y.priority.cmp(&x.priority))
            })
            .unwrap_or(0)
    }
}

/// Which cross-model policy a runtime uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScheduleKind {
    /// [`EdfFairShare`] with its share cap: isolates tenants on a contended slice.
    #[default]
    EdfFair,
    /// [`EdfFairShare`] without the cap: any model may use idle lanes.
    EdfFairWorkConserving,
    /// [`OldestFirst`]: the baseline.
    Fifo,
}

impl ScheduleKind {
    /// Every kind with its name, as the CLI spells it.
    pub const ALL: [(ScheduleKind, &'static str); 3] = [
        (ScheduleKind::EdfFair, "edf-fair"),
        (
            ScheduleKind::EdfFairWorkConserving,
            "edf-fair-work-conserving",
        ),
        (ScheduleKind::Fifo, "fifo"),
    ];

    /// The policy object.
    pub fn policy(self) -> Box<dyn SchedulePolicy> {
        match self {
            ScheduleKind::EdfFair => Box::new(EdfFairShare::default()),
            ScheduleKind::EdfFairWorkConserving => Box::new(EdfFairShare {
                share_cap: None,
                ..EdfFairShare::default()
            }),
            ScheduleKind::Fifo => Box::new(OldestFirst),
        }
    }
}

impl std::str::FromStr for ScheduleKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        ScheduleKind::ALL
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(k, _)| *k)
            .ok_or_else(|| {
                let names: Vec<&str> = ScheduleKind::ALL.iter().map(|(_, n)| *n).collect();
                format!(
                    "unknown schedule policy '{s}' (one of: {})",
                    names.join(", ")
                )
            })
    }
}

/// One model as the fair-share cap sees it.
#[derive(Debug, Clone, Copy)]
pub struct Tenant {
    /// Has work or had an arrival recently.
    pub active: bool,
    /// Fair-share weight.
    pub weight: f64,
    /// Lanes it kept busy recently (see [`crate::queue::USAGE_TAU`]).
    pub usage: f64,
}

/// Until when each tenant is held back: while two or more are active, one whose usage
/// exceeds `slack` × its weighted share of `lanes` waits until its usage (decaying as
/// `exp(-t/τ)`) is back under that cap; None for the others.
pub fn share_caps(
    slack: f64,
    lanes: usize,
    tenants: &[Tenant],
    now: Instant,
) -> Vec<Option<Instant>> {
    let weight = |t: &Tenant| t.weight.max(1e-6);
    let active = tenants.iter().filter(|t| t.active);
    if active.clone().count() < 2 {
        return vec![None; tenants.len()];
    }
    let total: f64 = active.map(weight).sum();
    tenants
        .iter()
        .map(|t| {
            let cap = slack * lanes as f64 * weight(t) / total;
            (t.active && t.usage > cap).then(|| {
                now + Duration::from_secs_f64(crate::queue::USAGE_TAU * (t.usage / cap).ln())
            })
        })
        .collect()
}

struct State {
    queues: Vec<Arc<ModelQueue>>,
    shutdown: bool,
    gate: SpinGate,
    /// When a lane last found nothing to do and no batch has started since.
    idle_since: Option<Instant>,
}

/// Whether idle lanes have lately found work soon enough for a spin to pay. An idle period
/// (from a lane finding nothing to do to the next batch starting, on whichever lane) that
/// ends within twice the spin counts as a hit, whether a lane spun or slept meanwhile (so
/// arrivals a little further apart than the spin, which spinning would bring closer, still
/// count); once fewer than a quarter of recent idle periods are hits, lanes sleep at once
/// until arrivals pick up again.
#[derive(Debug, Clone, Copy)]
struct SpinGate {
    /// Share of recent idle periods that ended in work within twice the spin, decaying.
    hit_rate: f64,
}

impl SpinGate {
    /// Below this share of hits, lanes stop spinning.
    const MIN_HIT_RATE: f64 = 0.25;
    /// Weight of the past in `hit_rate` (about the last 8 idle periods count).
    const KEEP: f64 = 0.875;

    fn new() -> Self {
        SpinGate { hit_rate: 1.0 }
    }

    /// Whether a lane going idle now should spin.
    fn admit(&self) -> bool {
        self.hit_rate >= Self::MIN_HIT_RATE
    }

    /// Learns whether an idle period ended in work soon enough (`hit`).
    fn record(&mut self, hit: bool) {
        self.hit_rate = Self::KEEP * self.hit_rate + (1.0 - Self::KEEP) * f64::from(u8::from(hit));
    }
}

/// Work handed to a lane: a batch of one model.
pub struct Work {
    /// The model version the batch belongs to.
    pub queue: Arc<ModelQueue>,
    /// The batch.
    pub batch: Batch,
}

/// Hands ready batches to free lanes.
pub struct Scheduler {
    state: Mutex<State>,
    wake: Condvar,
    policy: Box<dyn SchedulePolicy>,
    lanes: usize,
    /// Looks at the queues so far (see [`Scheduler::passes`]).
    passes: AtomicU64,
    /// How long an idle lane spins for new work before it sleeps (zero: it sleeps at once).
    spin: Duration,
    /// Bumped by every wake-up; a spinning lane watches it instead of the condition variable.
    signals: AtomicU64,
    /// Lanes spinning right now; while any is, a wake-up needs no system call.
    spinning: AtomicUsize,
}

impl Scheduler {
    /// A scheduler over `lanes` lanes with the given cross-model policy.
    pub fn new(policy: Box<dyn SchedulePolicy>, lanes: usize) -> Self {
        Scheduler {
            state: Mutex::new(State {
                queues: Vec::new(),
                shutdown: false,
                gate: SpinGate::new(),
                idle_since: None,
            }),
            wake: Condvar::new(),
            policy,
            lanes: lanes.max(1),
            passes: AtomicU64::new(0),
            spin: Duration::ZERO,
            signals: AtomicU64::new(0),
            spinning: AtomicUsize::new(0),
        }
    }

    /// Lets an idle lane spin up to `spin` for new work before it sleeps: a request that
    /// arrives meanwhile starts without waking a sleeping thread, at the price of that CPU.
    pub fn with_spin(mut self, spin: Duration) -> Self {
        self.spin = spin;
        self
    }

    /// Lanes spinning for work right now: a request queued now starts at once.
    pub fn lanes_spinning(&self) -> usize {
        self.spinning.load(Ordering::Acquire)
    }

    /// Wakes one lane; the caller holds the state lock. A spinning lane sees the signal by
    /// itself, so a sleeping one is woken only when none spins.
    fn wake_one(&self) {
        self.signals.fetch_add(1, Ordering::AcqRel);
        if self.spinning.load(Ordering::Acquire) == 0 {
            self.wake.notify_one();
        }
    }

    /// Wakes every lane, spinning or sleeping.
    fn wake_all(&self) {
        self.signals.fetch_add(1, Ordering::AcqRel);
        self.wake.notify_all();
    }

    /// Spins (yielding the CPU to any thread that wants it) until a wake-up after `seen`
    /// or until `until`.
    fn spin_until(&self, seen: u64, until: Instant) {
        let mut turns = 0u32;
        while self.signals.load(Ordering::Acquire) == seen {
            std::hint::spin_loop();
            turns = turns.wrapping_add(1);
            if turns.is_multiple_of(64) {
                if Instant::now() >= until {
                    return;
                }
                std::thread::yield_now();
            }
        }
    }

    /// Each queue's weighted share of the lanes among the recently active models (`active`,
    /// one flag per queue), and the other models' running work per lane when every lane is
    /// busy. Recent activity, not work at this instant, so that a model's share does not
    /// swing with which of its neighbours happen to have a request queued right now.
    fn shares(&self, queues: &[Arc<ModelQueue>], active: &[bool], now: Instant) -> Vec<SliceShare> {
        let running: Vec<f64> = queues.iter().map(|q| q.running_work(now)).collect();
        let weight = |q: &ModelQueue| q.config.weight.max(1e-6);
        let active_weight: f64 = queues
            .iter()
            .zip(active)
            .filter(|(_, a)| **a)
            .map(|(q, _)| weight(q))
            .sum();
        let total_running: f64 = running.iter().sum();
        let lanes = self.lanes as f64;
        // Other models' running batches delay this one only when no lane is free.
        let all_busy = queues.iter().map(|q| q.lanes_busy()).sum::<usize>() >= self.lanes;
        queues
            .iter()
            .zip(&running)
            .map(|(q, &mine)| SliceShare {
                lane_share: if active_weight > 0.0 {
                    (lanes * weight(q) / active_weight).min(lanes)
                } else {
                    lanes
                },
                others_ahead: if all_busy {
                    (total_running - mine).max(0.0) / lanes
                } else {
                    0.0
                },
            })
            .collect()
    }

    /// For each queue, until when it is held back for using more than its share of the
    /// lanes (None: free to run). Only while two or more models are active.
    fn share_caps(
        &self,
        queues: &[Arc<ModelQueue>],
        active: &[bool],
        now: Instant,
    ) -> Vec<Option<Instant>> {
        let Some(slack) = self.policy.share_cap() else {
            return vec![None; queues.len()];
        };
        let tenants: Vec<Tenant> = queues
            .iter()
            .zip(active)
            .map(|(q, &active)| Tenant {
                active,
                weight: q.config.weight,
                usage: if active { q.lane_usage(now) } else { 0.0 },
            })
            .collect();
        share_caps(slack, self.lanes, &tenants, now)
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

    /// Starts scheduling a model version's queue.
    pub fn add(&self, q: Arc<ModelQueue>) {
        self.state.lock().queues.push(q);
    }

    /// Wakes a lane: a request arrived or a queue closed (a lane that finishes a batch
    /// looks for the next one itself).
    pub fn notify(&self) {
        let _g = self.state.lock();
        self.wake_one();
    }

    /// Stops waiting for new work: lanes drain what is queued, then [`Scheduler::next`]
    /// returns None.
    pub fn shutdown(&self) {
        self.state.lock().shutdown = true;
        self.wake_all();
    }

    /// Every scheduled queue (open or draining).
    pub fn queues(&self) -> Vec<Arc<ModelQueue>> {
        self.state.lock().queues.clone()
    }

    /// Predicted seconds of all models' outstanding work.
    pub fn total_work(&self) -> f64 {
        self.queues().iter().map(|q| q.outstanding_work()).sum()
    }

    /// Blocks until a batch is ready for a free lane; None once shut down and drained.
    ///
    /// A panic while deciding one model's batch (its batching policy, its view, its
    /// latency target) fails that model's oldest request with an internal error and the
    /// pass goes on, so a policy that always panics drains its queue instead of spinning.
    /// A panicking (or out-of-range) cross-model pick falls back to oldest-first.
    pub fn next(&self) -> Option<Work> {
        let mut state = self.state.lock();
        let mut spin_end: Option<Instant> = None;
        loop {
            self.passes.fetch_add(1, Ordering::Relaxed);
            let now = Instant::now();
            state.queues.retain(|q| !q.is_drained());
            let mut ready: Vec<(usize, usize, Candidate)> = Vec::new();
            let mut wake_at: Option<Instant> = None;
            let mut failed = false;
            let active: Vec<bool> = state
                .queues
                .iter()
                .map(|q| q.recently_active(now))
                .collect();
            let shares = self.shares(&state.queues, &active, now);
            let shutdown = state.shutdown;
            let capped = if shutdown {
                vec![None; state.queues.len()]
            } else {
                self.share_caps(&state.queues, &active, now)
            };
            for (i, q) in state.queues.iter().enumerate() {
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
            if !ready.is_empty() {
                let cands: Vec<Candidate> = ready.iter().map(|r| r.2).collect();
                let (qi, limit, _) = ready[self.pick(&cands)];
                let q = state.queues[qi].clone();
                if let Some(batch) = q.take(limit, now) {
                    if ready.len() > 1 || failed || q.has_queued() {
                        self.wake_one();
                    }
                    if let Some(idle) = state.idle_since.take() {
                        state.gate.record(now.duration_since(idle) <= self.spin * 2);
                    }
                    return Some(Work { queue: q, batch });
                }
                continue;
            }
            if failed {
                // The failed queue may hold more requests: look again before waiting.
                continue;
            }
            if state.shutdown && state.queues.iter().all(|q| !q.has_queued()) {
                self.wake_all();
                return None;
            }
            if spin_end.is_none() {
                // This lane just found nothing to do: an idle period starts.
                state.idle_since = Some(now);
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
                MutexGuard::unlocked(&mut state, || self.spin_until(seen, until));
                self.spinning.fetch_sub(1, Ordering::AcqRel);
                continue;
            }
            match wake_at {
                Some(t) => {
                    self.wake.wait_until(&mut state, t);
                }
                None => {
                    self.wake.wait(&mut state);
                }
            }
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

/// One queue's state for this scheduling pass.
enum Assessment {
    /// A batch of at most this many rows may run now.
    Ready(usize, Candidate),
    /// Nothing to run before this instant (or a new request).
    WaitUntil(Instant),
}

/// Asks a queue's batching policy (or, at shutdown, nobody) whether a batch is ready;
/// None when the queue is empty.
fn assess(q: &ModelQueue, now: Instant, share: SliceShare, shutdown: bool) -> Option<Assessment> {
    let (view, deadline) = q.view(now, share)?;
    let decision = if shutdown {
        Decision::Ready(q.max_rows)
    } else {
        q.policy.decide(&view)
    };
    Some(match decision {
        Decision::Ready(limit) => {
            let target = q
                .config
                .batching
                .p99_target_ms
                .map(|ms| view.oldest + Duration::from_secs_f64(ms / 1e3))
                .unwrap_or(deadline);
            Assessment::Ready(
                limit,
                Candidate {
                    oldest: view.oldest,
                    deadline: target.min(deadline),
                    weight: q.config.weight,
                    priority: q.config.priority,
                    virtual_time: q.virtual_time(),
                },
            )
        }
        Decision::WaitUntil(t) => Assessment::WaitUntil(t),
    })
}

/// Deciding `q`'s batch panicked: fails its oldest request so the next pass moves on;
/// false when it had none.
#[cold]
fn decision_panicked(q: &ModelQueue, panic: &(dyn Any + Send)) -> bool {
    let msg = panic_message(panic);
    tracing::error!(
        model = %q.name,
        version = q.version,
        "deciding a batch panicked: {msg}; failing the oldest request"
    );
    q.fail_oldest(Error::internal(format!(
        "model '{}' could not be scheduled: deciding its batch panicked: {msg}",
        q.name
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(t0: Instant, oldest_us: u64, deadline_us: u64, vt: f64) -> Candidate {
        Candidate {
            oldest: t0 + Duration::from_micros(oldest_us),
            deadline: t0 + Duration::from_micros(deadline_us),
            weight: 1.0,
            priority: 0,
            virtual_time: vt,
        }
    }

    fn tenant(active: bool, weight: f64, usage: f64) -> Tenant {
        Tenant {
            active,
            weight,
            usage,
        }
    }

    #[test]
    fn lanes_stop_spinning_when_work_comes_late_and_start_again_when_it_comes_soon() {
        let mut gate = SpinGate::new();
        // Fresh: spin.
        assert!(gate.admit());
        // Ten idle periods in a row end late: 0.875^10 = 0.26, still over the bar.
        for _ in 0..10 {
            gate.record(false);
        }
        assert!(gate.admit());
        // The eleventh: 0.23, under it.
        gate.record(false);
        assert!(!gate.admit());
        // One idle period that ends soon (observed while sleeping) lifts it back over.
        gate.record(true);
        assert!(gate.admit());
    }

    #[test]
    fn idle_periods_that_end_soon_a_third_of_the_time_keep_lanes_spinning() {
        let mut gate = SpinGate::new();
        for i in 0..300 {
            gate.record(i % 3 == 0);
        }
        assert!(gate.admit(), "hit rate {}", gate.hit_rate);
    }

    #[test]
    fn share_cap_holds_back_only_a_model_over_its_share_among_active_ones() {
        let now = Instant::now();
        let tau = crate::queue::USAGE_TAU;
        // 4 active equal models on 2 lanes: share 0.5 lanes each, cap 1.25 x 0.5 = 0.625.
        let t = [
            tenant(true, 1.0, 0.1),
            tenant(true, 1.0, 0.2),
            tenant(true, 1.0, 0.6),
            tenant(true, 1.0, 1.0),
        ];
        let caps = share_caps(1.25, 2, &t, now);
        assert_eq!(&caps[..3], &[None, None, None]);
        let until = caps[3].expect("the model over its share is held back");
        let want = tau * (1.0f64 / 0.625).ln();
        assert!((until.duration_since(now).as_secs_f64() - want).abs() < 1e-6);
        // Alone (the others idle), any usage is allowed: no lane is kept idle for nobody.
        let t = [tenant(true, 1.0, 2.0), tenant(false, 1.0, 0.0)];
        assert_eq!(share_caps(1.25, 2, &t, now), vec![None, None]);
        // Weights: 3:1 on 2 lanes gives caps 1.875 and 0.625.
        let t = [tenant(true, 3.0, 1.8), tenant(true, 1.0, 0.7)];
        let caps = share_caps(1.25, 2, &t, now);
        assert!(caps[0].is_none() && caps[1].is_some(), "{caps:?}");
        // An inactive model is never held back (it has nothing to run).
        let t = [
            tenant(true, 1.0, 0.1),
            tenant(true, 1.0, 0.1),
            tenant(false, 1.0, 5.0),
        ];
        assert_eq!(share_caps(1.25, 2, &t, now), vec![None, None, None]);
    }

    #[test]
    fn fifo_picks_the_oldest_request() {
        let t0 = Instant::now();
        let c = [
            cand(t0, 30, 100, 0.0),
            cand(t0, 10, 900, 0.0),
            cand(t0, 20, 50, 0.0),
        ];
        assert_eq!(OldestFirst.pick(&c), 1);
    }

    #[test]
    fn edf_picks_earliest_deadline_within_fair_share() {
        let t0 = Instant::now();
        let p = EdfFairShare {
            window: 0.05,
            share_cap: None,
        };
        // All within the window: earliest deadline wins.
        let c = [
            cand(t0, 30, 100, 0.0),
            cand(t0, 10, 900, 0.01),
            cand(t0, 20, 50, 0.02),
        ];
        assert_eq!(p.pick(&c), 2);
        // The earliest deadline belongs to a model far ahead on lane time: skipped.
        let c = [
            cand(t0, 30, 100, 0.0),
            cand(t0, 10, 900, 0.01),
            cand(t0, 20, 50, 1.0),
        ];
        assert_eq!(p.pick(&c), 0);
    }
}
