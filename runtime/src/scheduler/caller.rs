//! Caller runs: a batch that is ready as its request is queued, and predicted to take a
//! few microseconds, runs on the thread that queued it, as a lane whose thread is asleep.
//!
//! Handing such a batch to a sleeping lane costs two thread wake-ups (the lane's, then the
//! front end's for the answer), each a system call and a context switch on both sides:
//! for a small model that is several times the forward. [`Scheduler::claim`] instead lends
//! the caller a sleeping `Normal` lane (*borrowed*): the batch is taken under the same
//! shares, caps and batching decision a pass would apply to that queue, the lane counts as
//! busy meanwhile, and its thread, if it wakes, passes the wake-up on and sleeps until the
//! [`Claim`] is dropped. Anything else (no lane asleep, a lane spinning, a batch that would
//! run long, urgent work for High lanes) takes the lanes' path.
//!
//! A quick batch that is not ready yet (a batcher waiting for company) would cost a lane
//! thread two more wake-ups: one to learn of the request, one when its delay ends. With
//! caller timers on, [`Claimed::At`] leaves that timer to the caller instead (no lane is
//! woken): it claims again at that instant, or wakes the lanes if it cannot.
//!
//! Under load, a batch run in place holds the caller's thread while the requests arriving
//! on it wait unread: on a server with one front-end thread every batch would be one
//! request. When company is likely ([`COMPANY_LIKELY`]), [`Claimed::Yield`] asks the
//! caller, before anything is decided, to let them be queued first and claim again.

use super::assess::{Assessment, assess, decision_panicked};
use super::{Scheduler, State, Work};
use crate::queue::ModelQueue;
use cohost_kernels::LanePriority;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// A lane lent to the thread that queued a request, for one batch; dropping it gives the
/// lane back (and wakes one for what is queued meanwhile).
pub struct Claim<'a> {
    scheduler: &'a Scheduler,
    lane: usize,
}

impl Claim<'_> {
    /// Index of the borrowed lane.
    pub fn lane(&self) -> usize {
        self.lane
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let s = self.scheduler;
        let mut state = s.state.lock();
        state.borrowed[self.lane] = false;
        // Its thread is still asleep (it sleeps while borrowed), so the lane is idle again.
        state.idle[self.lane] = true;
        let now = s.clock.now();
        state.idle_since.get_or_insert(now);
        // What arrived meanwhile, or a timer the borrowed lane's thread could not keep,
        // needs a lane now.
        if state.active.iter().any(|q| q.has_queued()) {
            s.wake_one();
        }
    }
}

/// Arrivals expected while a batch is formed and run from which a caller yields before it
/// claims ([`Claimed::Yield`]). Below it, as at a low rate, the yield's extra I/O poll
/// (~3,500 instructions a request, measured) would buy nothing.
const COMPANY_LIKELY: f64 = 0.25;

/// A front-end thread's own time per request (decode, reply) on a CPU core, as the company
/// estimate counts it: the span over which readable requests pile up unread.
const FRONT_END_TIME: f64 = 50e-6;

/// What [`Scheduler::claim`] leaves to the thread that queued a request.
pub enum Claimed<'a> {
    /// Run this batch now, as the claimed lane.
    Run(Claim<'a>, Work),
    /// Nothing: a lane was woken for the queue if it needed one.
    Lanes,
    /// The queue's batch will be ready at this instant and no lane was woken: claim again
    /// then, or [`Scheduler::notify_queue`] if the caller cannot wait for it.
    At(Instant),
    /// More requests are likely on their way: nothing decided, no lane woken; yield so
    /// they can be queued, then claim again without `yield_for` (or
    /// [`Scheduler::notify_queue`] if the caller gives up meanwhile).
    Yield,
}

/// What [`Scheduler::take_for_caller`] found in a queue.
enum Take {
    Work(Work),
    At(Instant),
    Nothing,
}

impl Scheduler {
    /// Lets batches predicted to take at most `max` run on the thread that queued their
    /// request when a lane sleeps (zero, the default: never).
    pub fn with_caller_runs(mut self, max: std::time::Duration) -> Self {
        self.caller_max = max;
        self
    }

    /// Lets [`Scheduler::claim`] leave a waiting batch's timer to the caller
    /// ([`Claimed::At`]); off by default.
    pub fn with_caller_timers(mut self, on: bool) -> Self {
        self.caller_timers = on;
        self
    }

    /// After a request was queued on `q` (or a caller's timer for it ended, or its yield):
    /// a batch of `q` for the caller to run now as the claimed lane, an instant for it to
    /// come back at, a yield first when `yield_for` holds the request's rows and company
    /// is likely, or nothing, having woken a lane as [`Scheduler::notify_queue`] does if the
    /// queue still holds requests.
    pub fn claim(&self, q: &Arc<ModelQueue>, yield_for: Option<usize>) -> Claimed<'_> {
        if self.caller_max.is_zero() {
            self.notify_queue(q);
            return Claimed::Lanes;
        }
        if yield_for.is_some_and(|rows| self.company_likely(q, rows)) {
            return Claimed::Yield;
        }
        let mut state = self.state.lock();
        let urgent = self.join_active(&mut state, q);
        if !(urgent && self.idle_high(&state, None) > 0)
            && let Some(lane) = self.sleeping_lane(&state)
        {
            match self.take_for_caller(&mut state, q) {
                Take::Work(work) => {
                    state.borrowed[lane] = true;
                    state.idle[lane] = false;
                    if let Some(idle) = state.idle_since.take() {
                        let now = self.clock.now();
                        state.gate.record(now.duration_since(idle) <= self.spin * 2);
                    }
                    drop(state);
                    let claim = Claim {
                        scheduler: self,
                        lane,
                    };
                    return Claimed::Run(claim, work);
                }
                Take::At(at) => return Claimed::At(at),
                Take::Nothing => {}
            }
        }
        // Emptied meanwhile (after a yield, another caller's batch took the request):
        // whoever took the requests answers them, so no lane is woken, free or busy.
        if q.has_queued() {
            self.wake_for(&state, urgent);
        }
        Claimed::Lanes
    }

    /// True when `q`'s arrival rate makes another request likely within a front end's time
    /// per request plus the predicted run of `rows`, and no lane spins (a spinning lane
    /// takes what is queued at once).
    fn company_likely(&self, q: &ModelQueue, rows: usize) -> bool {
        self.spinning.load(Ordering::Acquire) == 0
            && q.latency.calibrated_prediction(rows).is_some_and(|t| {
                q.arrival_rate(self.clock.now()) * (t + FRONT_END_TIME) >= COMPANY_LIKELY
            })
    }

    /// A `Normal` lane whose thread sleeps waiting for work and is not lent out, when no
    /// lane spins (a spinning one takes the request at once itself).
    fn sleeping_lane(&self, state: &State) -> Option<usize> {
        if state.shutdown || self.spinning.load(Ordering::Acquire) > 0 {
            return None;
        }
        self.free_lane(state, LanePriority::Normal)
    }

    /// A free lane of `class`: idle, its thread asleep, not lent out.
    pub(super) fn free_lane(&self, state: &State, class: LanePriority) -> Option<usize> {
        (0..state.idle.len()).find(|&i| {
            state.idle[i]
                && state.asleep[i]
                && !state.borrowed[i]
                && self.classes.get(i).copied().unwrap_or_default() == class
        })
    }

    /// `q`'s batch as a pass would take it for a free lane now, if its policy has one
    /// ready and it is predicted to take at most the caller bound; with caller timers, the
    /// instant such a batch will be ready; else nothing (nothing taken, or after a
    /// panicking decision, that request failed).
    fn take_for_caller(&self, state: &mut State, q: &Arc<ModelQueue>) -> Take {
        if q.lanes_busy() >= q.max_lanes {
            return Take::Nothing;
        }
        let now = self.clock.now();
        let Some(index) = state.active.iter().position(|a| Arc::ptr_eq(a, q)) else {
            return Take::Nothing;
        };
        let active = vec![true; state.active.len()];
        if self.share_caps(&state.active, &active, now)[index].is_some() {
            return Take::Nothing;
        }
        let share = self.shares(&state.active, &active, now)[index];
        let (limit, at) = match catch_unwind(AssertUnwindSafe(|| assess(q, now, share, false))) {
            Ok(Some(Assessment::Ready(limit, _))) => (limit, None),
            Ok(Some(Assessment::WaitUntil(at))) if self.caller_timers => (q.max_rows, Some(at)),
            Ok(_) => return Take::Nothing,
            Err(panic) => {
                decision_panicked(q, &*panic);
                return Take::Nothing;
            }
        };
        let rows = limit.min(q.queued_rows());
        let quick = q
            .latency
            .calibrated_prediction(rows)
            .is_some_and(|p| p <= self.caller_max.as_secs_f64());
        if !quick {
            return Take::Nothing;
        }
        if let Some(at) = at {
            return Take::At(at);
        }
        let Some(batch) = q.take(limit, now) else {
            return Take::Nothing;
        };
        if q.has_queued() {
            self.wake_one();
        }
        Take::Work(Work {
            queue: q.clone(),
            batch,
        })
    }
}
