//! Caller runs: a batch that is ready as its request is queued, and predicted to take a
//! few microseconds, runs on the thread that queued it, as a lane whose thread is asleep.
//!
//! Handing such a batch to a sleeping lane costs two thread wake-ups (the lane's, then the
//! front end's for the answer), each a system call and a context switch on both sides:
//! for a small model that is several times the forward. [`Scheduler::claim`] instead lends
//! the caller a sleeping `Normal` lane (*borrowed*): the batch is taken under the same
//! shares, caps and batching decision a pass would apply to that queue, the lane counts as
//! busy meanwhile, and its thread, if it wakes, passes the wake-up on and sleeps until the
//! [`Claim`] is dropped. Anything else (no lane asleep, a lane spinning, a batch that is
//! not ready or would run long, urgent work for High lanes) takes the lanes' path.

use super::assess::{Assessment, assess, decision_panicked};
use super::{Scheduler, State, Work};
use crate::queue::ModelQueue;
use cohost_kernels::LanePriority;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;

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

impl Scheduler {
    /// Lets batches predicted to take at most `max` run on the thread that queued their
    /// request when a lane sleeps (zero, the default: never).
    pub fn with_caller_runs(mut self, max: std::time::Duration) -> Self {
        self.caller_max = max;
        self
    }

    /// After a request was queued on `q`: a batch of `q` for the caller to run now as the
    /// claimed lane, or None, having woken a lane as [`Scheduler::notify_queue`] does.
    pub fn claim(&self, q: &Arc<ModelQueue>) -> Option<(Claim<'_>, Work)> {
        if self.caller_max.is_zero() {
            self.notify_queue(q);
            return None;
        }
        let mut state = self.state.lock();
        let urgent = self.join_active(&mut state, q);
        if !(urgent && self.idle_high(&state, None) > 0)
            && let Some(lane) = self.sleeping_lane(&state)
            && let Some(work) = self.take_for_caller(&mut state, q)
        {
            state.borrowed[lane] = true;
            state.idle[lane] = false;
            if let Some(idle) = state.idle_since.take() {
                let now = self.clock.now();
                state.gate.record(now.duration_since(idle) <= self.spin * 2);
            }
            drop(state);
            return Some((
                Claim {
                    scheduler: self,
                    lane,
                },
                work,
            ));
        }
        self.wake_for(&state, urgent);
        None
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
    /// ready and it is predicted to take at most the caller bound; else None (nothing
    /// taken, or after a panicking decision, that request failed).
    fn take_for_caller(&self, state: &mut State, q: &Arc<ModelQueue>) -> Option<Work> {
        if q.lanes_busy() >= q.max_lanes {
            return None;
        }
        let now = self.clock.now();
        let index = state.active.iter().position(|a| Arc::ptr_eq(a, q))?;
        let active = vec![true; state.active.len()];
        if self.share_caps(&state.active, &active, now)[index].is_some() {
            return None;
        }
        let share = self.shares(&state.active, &active, now)[index];
        let limit = match catch_unwind(AssertUnwindSafe(|| assess(q, now, share, false))) {
            Ok(Some(Assessment::Ready(limit, _))) => limit,
            Ok(_) => return None,
            Err(panic) => {
                decision_panicked(q, &*panic);
                return None;
            }
        };
        let rows = limit.min(q.queued_rows());
        let predicted = q.latency.calibrated_prediction(rows)?;
        if predicted > self.caller_max.as_secs_f64() {
            return None;
        }
        let batch = q.take(limit, now)?;
        if q.has_queued() {
            self.wake_one();
        }
        Some(Work {
            queue: q.clone(),
            batch,
        })
    }
}
