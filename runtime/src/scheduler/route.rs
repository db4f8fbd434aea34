//! Routing by lane class: which of the ready batches a lane of each priority class may
//! take. The baseline ([`LaneRouting::ClassBlind`]) ignores the classes; the urgency
//! routing sends urgent batches (a model priority above the other active models', or a
//! deadline at risk) to `High` lanes first.

use super::policy::Candidate;
use super::{DEFER_LIMIT, Scheduler, State};
use cohost_kernels::LanePriority;
use std::time::Instant;

/// How the scheduler matches ready batches to lane priority classes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LaneRouting {
    /// Every lane takes the policy's pick, whatever its class: the baseline.
    ClassBlind,
    /// A `High` lane takes the policy's pick among urgent batches first; a `Normal` lane
    /// leaves urgent batches to idle `High` lanes and takes the next one.
    Urgency {
        /// A batch is at risk when its slack to the deadline is below its predicted time
        /// times this margin.
        margin: f64,
    },
}

impl Default for LaneRouting {
    fn default() -> Self {
        LaneRouting::Urgency { margin: 2.0 }
    }
}

/// What a lane should do with the ready candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    /// Take candidate `index`; when `wake_high`, urgent batches were left for idle `High`
    /// lanes, which must be woken.
    Take { index: usize, wake_high: bool },
    /// Take nothing: every candidate is urgent and left for idle `High` lanes (wake them).
    Defer,
}

/// True when `c` is urgent: its priority is above `floor` (the lowest among the active
/// models) or its deadline is at risk at `now`.
pub(super) fn is_urgent(c: &Candidate, floor: i32, margin: f64, now: Instant) -> bool {
    if c.priority > floor {
        return true;
    }
    let slack = c.deadline.saturating_duration_since(now).as_secs_f64();
    slack < c.predicted * margin
}

impl LaneRouting {
    /// The route of a lane of `class` among `cands` (never empty) with `idle_high` other
    /// `High` lanes idle; `pick` is the cross-model policy's choice within a subset.
    pub(super) fn route(
        &self,
        class: LanePriority,
        cands: &[Candidate],
        floor: i32,
        idle_high: usize,
        now: Instant,
        pick: impl Fn(&[Candidate]) -> usize,
    ) -> Route {
        let all = || Route::Take {
            index: pick(cands),
            wake_high: false,
        };
        let LaneRouting::Urgency { margin } = *self else {
            return all();
        };
        let mut urgent: Vec<usize> = (0..cands.len())
            .filter(|&i| is_urgent(&cands[i], floor, margin, now))
            .collect();
        if urgent.is_empty() {
            return all();
        }
        match class {
            LanePriority::High => Route::Take {
                index: pick_within(cands, &urgent, &pick),
                wake_high: false,
            },
            LanePriority::Normal if idle_high == 0 => all(),
            LanePriority::Normal => {
                // Leave the most urgent batches, one per idle High lane; take the next.
                let mut left = vec![false; cands.len()];
                for _ in 0..idle_high {
                    if urgent.is_empty() {
                        break;
                    }
                    let best = pick_within(cands, &urgent, &pick);
                    left[best] = true;
                    urgent.retain(|&i| i != best);
                }
                let rest: Vec<usize> = (0..cands.len()).filter(|&i| !left[i]).collect();
                if rest.is_empty() {
                    Route::Defer
                } else {
                    Route::Take {
                        index: pick_within(cands, &rest, &pick),
                        wake_high: true,
                    }
                }
            }
        }
    }
}

/// The policy's pick among the candidates at `subset` (never empty), as an index into
/// `cands`.
fn pick_within(
    cands: &[Candidate],
    subset: &[usize],
    pick: &impl Fn(&[Candidate]) -> usize,
) -> usize {
    let sub: Vec<Candidate> = subset.iter().map(|&i| cands[i]).collect();
    subset[pick(&sub).min(subset.len() - 1)]
}

/// The scheduler's side of the routing: lane classes, idle High lanes, the route a pass takes.
impl Scheduler {
    /// Lane `lane`'s class (`Normal` for an unknown or anonymous lane).
    pub(super) fn class(&self, lane: Option<usize>) -> LanePriority {
        lane.and_then(|i| self.classes.get(i).copied())
            .unwrap_or_default()
    }

    /// `High` lanes other than `lane` waiting for work now.
    pub(super) fn idle_high(&self, state: &State, lane: Option<usize>) -> usize {
        (0..state.idle.len())
            .filter(|&i| state.idle[i] && Some(i) != lane && self.classes[i] == LanePriority::High)
            .count()
    }

    /// Which of `cands` (never empty) lane `lane` of `class` takes, by the routing; a
    /// `Normal` lane that left urgent work to idle High lanes for [`DEFER_LIMIT`] with
    /// none of them taking anything takes the policy's pick itself.
    pub(super) fn route(
        &self,
        state: &State,
        lane: Option<usize>,
        class: LanePriority,
        cands: &[Candidate],
        now: Instant,
        deferred: &mut Option<(Instant, u64)>,
    ) -> Route {
        if state.shutdown || self.routing == LaneRouting::ClassBlind {
            return Route::Take {
                index: self.pick(cands),
                wake_high: false,
            };
        }
        let floor = state
            .active
            .iter()
            .map(|q| q.config.priority)
            .min()
            .unwrap_or(0);
        let mut idle_high = self.idle_high(state, lane);
        if let Some((since, takes)) = *deferred
            && takes == state.high_takes
            && now.duration_since(since) >= DEFER_LIMIT
        {
            idle_high = 0;
        }
        let route = self
            .routing
            .route(class, cands, floor, idle_high, now, |c| self.pick(c));
        // A deferral starts the guard's clock, again once a High lane took something.
        if route == Route::Defer && deferred.is_none_or(|(_, t)| t != state.high_takes) {
            *deferred = Some((now, state.high_takes));
        }
        route
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::{OldestFirst, SchedulePolicy};
    use std::time::Duration;

    fn cand(t0: Instant, oldest_us: u64, deadline_ms: u64, priority: i32) -> Candidate {
        Candidate {
            oldest: t0 + Duration::from_micros(oldest_us),
            deadline: t0 + Duration::from_millis(deadline_ms),
            priority,
            virtual_time: 0.0,
            predicted: 0.001,
        }
    }

    fn route(
        r: LaneRouting,
        class: LanePriority,
        c: &[Candidate],
        idle: usize,
        now: Instant,
    ) -> Route {
        r.route(class, c, 0, idle, now, |s| OldestFirst.pick(s))
    }

    #[test]
    fn urgent_batches_go_to_high_lanes_and_normal_lanes_leave_them() {
        let t0 = Instant::now();
        // The flood (priority 0) is older; the priority model (10) is urgent.
        let c = [cand(t0, 0, 3_600_000, 0), cand(t0, 50, 3_600_000, 10)];
        let urgency = LaneRouting::default();
        let take = |index, wake_high| Route::Take { index, wake_high };
        assert_eq!(
            route(urgency, LanePriority::High, &c, 0, t0),
            take(1, false)
        );
        assert_eq!(
            route(urgency, LanePriority::Normal, &c, 1, t0),
            take(0, true)
        );
        // No High lane idle: a Normal lane takes the policy's pick.
        assert_eq!(
            route(urgency, LanePriority::Normal, &c, 0, t0),
            take(0, false)
        );
        // Only urgent work and a High lane idle: the Normal lane defers.
        assert_eq!(
            route(urgency, LanePriority::Normal, &c[1..], 1, t0),
            Route::Defer
        );
        // Baseline: the class changes nothing.
        let blind = LaneRouting::ClassBlind;
        assert_eq!(route(blind, LanePriority::High, &c, 0, t0), take(0, false));
        assert_eq!(
            route(blind, LanePriority::Normal, &c, 1, t0),
            take(0, false)
        );
    }

    #[test]
    fn a_deadline_at_risk_is_urgent_and_nothing_urgent_means_any_work() {
        let t0 = Instant::now();
        // Same priority; the younger one's deadline is 1 ms away with a 1 ms batch.
        let c = [cand(t0, 0, 3_600_000, 0), cand(t0, 50, 1, 0)];
        let urgency = LaneRouting::default();
        assert!(is_urgent(&c[1], 0, 2.0, t0) && !is_urgent(&c[0], 0, 2.0, t0));
        let high = route(urgency, LanePriority::High, &c, 0, t0);
        assert_eq!(
            high,
            Route::Take {
                index: 1,
                wake_high: false
            }
        );
        // Nothing urgent: a High lane takes ordinary work (no starvation).
        let high = route(urgency, LanePriority::High, &c[..1], 0, t0);
        assert_eq!(
            high,
            Route::Take {
                index: 0,
                wake_high: false
            }
        );
    }
}
