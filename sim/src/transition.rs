//! A version transition on one slice, with and without the runtime's transition budget:
//! a model serves as version 1; mid-run version 2 is loaded beside it (its first batches
//! slower, a cold-start factor); the unversioned traffic moves to version 2 at once
//! (no budget) or when the runtime's own decision (`cohost_runtime::transition_decision`,
//! the supervisor's tick) says so, read every `TRANSITION_TICK` of virtual time against
//! the slice's utilization as the runtime computes it (`Scheduler::utilization`).
//!
//! Modelled rather than run: the two versions are two queues of the same slice (the
//! runtime gives each loaded version its own queue, scheduled as a tenant); loading takes
//! no lane time; the old version, once switched away from, drains and then sits idle (its
//! unload frees nothing the simulation uses).

use crate::ArrivalKind;
use crate::events::Events;
use crate::run::{Arrivals, stream_seed};
use crate::slice::{Finished, ModelSpec, Slice, SliceEvent};
use crate::tally::{Summary, Tally};
use cohost_runtime::testing::VirtualClock;
use cohost_runtime::{ScheduleKind, TRANSITION_TICK, transition_decision};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// One transition run.
#[derive(Debug, Clone)]
pub struct TransitionRun {
    /// The model (both versions have its config and cost).
    pub model: ModelSpec,
    /// Lanes of the slice.
    pub lanes: usize,
    /// Cross-model policy.
    pub schedule: ScheduleKind,
    /// Offered load: (until second, req/s) phases in order; arrivals stop after the last.
    pub phases: Vec<(f64, f64)>,
    /// When version 2 is loaded, seconds.
    pub arrive_s: f64,
    /// Version 2's first batches that pay the cold-start factor.
    pub cold_batches: u64,
    /// Cold-start factor on those batches' time.
    pub cold_factor: f64,
    /// The transition budget (None: switch at once, the runtime's default).
    pub budget: Option<f64>,
    /// The runtime's `transition_max_wait`, seconds.
    pub max_wait_s: f64,
    /// Client timeout, seconds.
    pub timeout_s: f64,
    /// Seed.
    pub seed: u64,
}

/// What a transition run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransitionReport {
    /// When the unversioned traffic moved to version 2, seconds (None: never).
    pub switched_s: Option<f64>,
    /// The decision's outcome label (`below_budget`, `max_wait`, or `no_budget`).
    pub outcome: String,
    /// The slice's utilization when it switched.
    pub utilization_at_switch: f64,
    /// Requests arriving from version 2's load to the end, both versions.
    pub after_load: Summary,
    /// Requests answered by version 2 in its cold batches (latency of those answered in
    /// time; timeouts among all of them).
    pub cold: Summary,
}

enum Ev {
    Arrive,
    Tick,
    Slice(SliceEvent),
}

fn ns(seconds: f64) -> u64 {
    (seconds * 1e9).round() as u64
}

/// Runs one transition; the same spec and seed give the same report.
pub fn run(spec: &TransitionRun) -> anyhow::Result<TransitionReport> {
    anyhow::ensure!(
        !spec.phases.is_empty() && spec.phases.iter().all(|p| p.1 > 0.0 && p.0 > 0.0),
        "phases need positive ends and rates"
    );
    if let Some(b) = spec.budget {
        anyhow::ensure!(b > 0.0 && b <= 1.0, "the budget is a fraction in (0, 1]");
    }
    let end_s = spec.phases.last().expect("checked").0;
    anyhow::ensure!(
        spec.arrive_s >= 0.0 && spec.arrive_s < end_s,
        "version 2 must arrive before the load ends"
    );
    let clock = Arc::new(VirtualClock::new());
    let mut v1 = spec.model.clone();
    v1.name = format!("{}-v1", spec.model.name);
    let mut v2 = spec.model.clone();
    v2.name = format!("{}-v2", spec.model.name);
    let mut slice = Slice::new(
        clock.clone(),
        &[v1, v2],
        spec.lanes,
        spec.schedule,
        1.0,
        stream_seed(spec.seed, u64::MAX),
    );
    slice.set_cold_start(1, spec.cold_batches, spec.cold_factor);
    let (arrive, end) = (ns(spec.arrive_s), ns(end_s));
    slice.set_window(arrive, u64::MAX);
    let timeout = ns(spec.timeout_s);
    let mut events = Events::default();
    let mut rates: Vec<Arrivals> = spec
        .phases
        .iter()
        .enumerate()
        .map(|(i, p)| Arrivals::new(ArrivalKind::Poisson, p.1, stream_seed(spec.seed, i as u64)))
        .collect();
    let phase_at = |t: u64| spec.phases.iter().position(|p| t < ns(p.0));
    events.push(rates[0].gap(), Ev::Arrive);
    events.push(arrive, Ev::Tick);
    let (mut serving, mut switched, mut loaded) = (0usize, None::<u64>, false);
    let mut outcome = String::from("none");
    let mut u_switch = 0.0;
    let (mut after, mut cold) = (Tally::default(), Tally::default());
    // Version 2's batches so far decide which answers came from a cold batch.
    let mut v2_batches_done = 0u64;
    let (mut out, mut finished): (Vec<_>, Vec<Finished>) = (Vec::new(), Vec::new());
    while let Some((t, ev)) = events.pop() {
        clock.set(t);
        match ev {
            Ev::Arrive => {
                if t >= arrive {
                    after.offered += 1;
                }
                match slice.offer(serving, 1, Some(timeout)) {
                    Ok(()) => slice.dispatch(&mut out),
                    Err(_) if t >= arrive => after.refused += 1,
                    Err(_) => {}
                }
                if let Some(i) = phase_at(t) {
                    let next = t + rates[i].gap();
                    if next < end {
                        events.push(next, Ev::Arrive);
                    }
                }
            }
            Ev::Tick => {
                let u = slice.utilization();
                let decision = match spec.budget {
                    None => Some("no_budget".to_string()),
                    Some(b) => transition_decision(
                        u,
                        b,
                        Duration::from_nanos(t - arrive),
                        Duration::from_secs_f64(spec.max_wait_s),
                    )
                    .map(|o| o.label().to_string()),
                };
                loaded = true;
                match decision {
                    Some(o) => {
                        serving = 1;
                        switched = Some(t);
                        outcome = o;
                        u_switch = u;
                    }
                    None if t < end => events.push(t + TRANSITION_TICK.as_nanos() as u64, Ev::Tick),
                    None => {}
                }
            }
            Ev::Slice(SliceEvent::Done(lane)) => {
                let before = finished.len();
                slice.done(lane, &mut finished, &mut out);
                if finished[before..].first().is_some_and(|f| f.slot == 1) {
                    v2_batches_done += 1;
                }
                let is_cold = v2_batches_done <= spec.cold_batches;
                for f in &finished[before..] {
                    if f.slot == 1 && is_cold {
                        count(&mut cold, f);
                        cold.offered += 1;
                    }
                }
            }
            Ev::Slice(SliceEvent::Wake) => slice.wake(&mut out),
        }
        for f in finished.drain(..) {
            if f.arrived >= arrive {
                count(&mut after, &f);
            }
        }
        for (at, e) in out.drain(..) {
            events.push(at, Ev::Slice(e));
        }
    }
    debug_assert!(loaded);
    after.timed_out += slice.expired.iter().sum::<u64>();
    (after.batches, after.batch_rows) = (
        slice.batches.iter().map(|b| b.0).sum(),
        slice.batches.iter().map(|b| b.1).sum(),
    );
    let seconds = end_s - spec.arrive_s;
    Ok(TransitionReport {
        switched_s: switched.map(|t| t as f64 / 1e9),
        outcome,
        utilization_at_switch: u_switch,
        after_load: after.summary(seconds),
        cold: cold.summary(seconds),
    })
}

fn count(t: &mut Tally, f: &Finished) {
    if f.on_time {
        t.latencies.push(f.done - f.arrived);
    } else {
        t.timed_out += 1;
    }
}
