//! One slice under open-loop load: seeded arrivals per model, a warm-up, a measured
//! window, the drain; and the search for the highest offered rate within a P99 target
//! (the harness's: double from a start until a step fails, then bisect).

use crate::events::Events;
use crate::slice::{Finished, ModelSpec, Slice, SliceEvent};
use crate::tally::{Summary, Tally};
use cohost_runtime::ScheduleKind;
use cohost_runtime::testing::VirtualClock;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Exp};
use serde::Serialize;
use std::sync::Arc;

/// How arrivals are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ArrivalKind {
    /// Exponential gaps (a Poisson process), as `cohost bench --rate`.
    Poisson,
    /// Equal gaps.
    Constant,
}

/// Seeded gaps of one arrival stream.
pub struct Arrivals {
    kind: ArrivalKind,
    rate: f64,
    rng: StdRng,
}

impl Arrivals {
    /// A stream of `rate` per second; `seed` fixes its draws.
    pub fn new(kind: ArrivalKind, rate: f64, seed: u64) -> Self {
        Arrivals {
            kind,
            rate,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Nanoseconds to the next arrival.
    pub fn gap(&mut self) -> u64 {
        let s = match self.kind {
            ArrivalKind::Constant => 1.0 / self.rate,
            ArrivalKind::Poisson => Exp::new(self.rate)
                .expect("positive rate")
                .sample(&mut self.rng),
        };
        ((s * 1e9) as u64).max(1)
    }
}

/// A seed for stream `i` of a run seeded `seed` (distinct streams, the same every run).
pub fn stream_seed(seed: u64, i: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i.wrapping_add(1).wrapping_mul(0xD1B5_4A32_D192_ED03)
}

/// One slice's run.
#[derive(Debug, Clone)]
pub struct SliceRun {
    /// The models on the slice.
    pub models: Vec<ModelSpec>,
    /// Offered requests per second, per model.
    pub rates: Vec<f64>,
    /// Lanes.
    pub lanes: usize,
    /// Cross-model policy.
    pub schedule: ScheduleKind,
    /// Arrival spacing.
    pub arrivals: ArrivalKind,
    /// Rows per request.
    pub rows: usize,
    /// Client timeout per request, seconds (None: none, as the harness's in-process target).
    pub timeout_s: Option<f64>,
    /// Seconds before the measured window.
    pub warmup_s: f64,
    /// Seconds of the measured window.
    pub duration_s: f64,
    /// Microseconds added to every answered request's latency (the front end's part).
    pub reply_us: f64,
    /// CPU microseconds each request costs outside the lanes on the cores the lanes run on
    /// (a CPU slice's client and front end): the lanes run slower by that share of the cores.
    pub host_us: f64,
    /// Seed of every draw.
    pub seed: u64,
}

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct SliceReport {
    /// Offered requests per second, all models.
    pub offered_rate: f64,
    /// Over every model.
    pub overall: Summary,
    /// Per model, by name.
    pub models: Vec<(String, Summary)>,
    /// Busy lane time over lanes × window.
    pub utilization: f64,
}

enum Ev {
    Arrive(usize),
    Slice(SliceEvent),
}

fn ns(seconds: f64) -> u64 {
    (seconds * 1e9).round() as u64
}

/// The pace of the lanes when each request also takes `host_us` of the cores they run on:
/// 1 less the cores' share the front end uses at the offered rate (processor sharing), at
/// least 0.05 (the front end alone would saturate the cores beyond that).
pub fn lane_speed(spec: &SliceRun) -> f64 {
    let rate: f64 = spec.rates.iter().sum();
    (1.0 - rate * spec.host_us * 1e-6 / spec.lanes.max(1) as f64).max(0.05)
}

/// Runs the slice: arrivals in the warm-up and the window, then until every request is
/// answered.
pub fn run(spec: &SliceRun) -> SliceReport {
    let clock = Arc::new(VirtualClock::new());
    let mut slice = Slice::new(
        clock.clone(),
        &spec.models,
        spec.lanes,
        spec.schedule,
        lane_speed(spec),
        stream_seed(spec.seed, u64::MAX),
    );
    let (w0, w1) = (ns(spec.warmup_s), ns(spec.warmup_s + spec.duration_s));
    slice.set_window(w0, w1);
    let timeout = spec.timeout_s.map(ns);
    let reply = ns(spec.reply_us * 1e-6);
    let mut events = Events::default();
    let mut streams: Vec<Arrivals> = spec
        .rates
        .iter()
        .enumerate()
        .map(|(i, &r)| Arrivals::new(spec.arrivals, r.max(1e-9), stream_seed(spec.seed, i as u64)))
        .collect();
    for (m, s) in streams.iter_mut().enumerate() {
        if spec.rates[m] > 0.0 {
            events.push(s.gap(), Ev::Arrive(m));
        }
    }
    let mut tallies = vec![Tally::default(); spec.models.len()];
    let mut out = Vec::new();
    let mut finished: Vec<Finished> = Vec::new();
    while let Some((t, ev)) = events.pop() {
        clock.set(t);
        let in_window = (w0..w1).contains(&t);
        match ev {
            Ev::Arrive(m) => {
                if in_window {
                    tallies[m].offered += 1;
                }
                match slice.offer(m, spec.rows, timeout) {
                    Ok(()) => slice.dispatch(&mut out),
                    Err(_) if in_window => tallies[m].refused += 1,
                    Err(_) => {}
                }
                let next = t + streams[m].gap();
                if next < w1 {
                    events.push(next, Ev::Arrive(m));
                }
            }
            Ev::Slice(SliceEvent::Done(lane)) => slice.done(lane, &mut finished, &mut out),
            Ev::Slice(SliceEvent::Wake) => slice.wake(&mut out),
        }
        for f in finished.drain(..) {
            if (w0..w1).contains(&f.arrived) {
                let tally = &mut tallies[f.slot];
                if f.on_time {
                    tally.latencies.push(f.done - f.arrived + reply);
                } else {
                    tally.timed_out += 1;
                }
            }
        }
        for (at, e) in out.drain(..) {
            events.push(at, Ev::Slice(e));
        }
    }
    let mut overall = Tally::default();
    let models = spec
        .models
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let t = &mut tallies[i];
            t.timed_out += slice.expired[i];
            (t.batches, t.batch_rows) = slice.batches[i];
            overall.merge(t);
            (m.name.clone(), t.summary(spec.duration_s))
        })
        .collect();
    SliceReport {
        offered_rate: spec.rates.iter().sum(),
        overall: overall.summary(spec.duration_s),
        models,
        utilization: slice.busy_ns as f64 / (spec.lanes as f64 * (w1 - w0) as f64),
    }
}

/// What passes a search step.
#[derive(Debug, Clone, Copy)]
pub struct Goal {
    /// P99 target, ms.
    pub p99_ms: f64,
    /// A step passes only with an error rate below this.
    pub max_error_rate: f64,
    /// First rate tried.
    pub start: f64,
    /// Stop when (first fail - last pass) / last pass is at most this.
    pub precision: f64,
}

impl Goal {
    /// Whether a report meets the goal.
    pub fn met(&self, s: &Summary) -> bool {
        s.ok > 0 && s.p99_ms <= self.p99_ms && s.error_rate < self.max_error_rate
    }
}

/// The result of a search.
#[derive(Debug, Clone, Serialize)]
pub struct Peak {
    /// The highest offered rate that met the goal.
    pub max_rate: Option<f64>,
    /// The lowest that did not.
    pub first_fail: Option<f64>,
    /// The run at `max_rate`.
    pub best: Option<SliceReport>,
    /// Every (rate, passed) step.
    pub steps: Vec<(f64, bool)>,
}

/// The highest total offered rate meeting `goal`, `at(rate)` building the run for it.
pub fn search(goal: &Goal, mut at: impl FnMut(f64) -> SliceReport) -> Peak {
    let mut steps = Vec::new();
    let (mut lo, mut hi): (Option<(f64, SliceReport)>, Option<f64>) = (None, None);
    let mut rate = goal.start;
    // Widen: double until a step fails (or narrow down from the start).
    while steps.len() < 40 {
        let r = at(rate);
        let pass = goal.met(&r.overall);
        steps.push((rate, pass));
        if pass {
            lo = Some((rate, r));
            rate *= 2.0;
        } else {
            hi = Some(rate);
            if lo.is_some() || rate < 1.0 {
                break;
            }
            rate /= 2.0;
        }
    }
    while let (Some((l, _)), Some(h)) = (&lo, hi) {
        if (h - l) / l <= goal.precision || steps.len() >= 40 {
            break;
        }
        let mid = (l + h) / 2.0;
        let r = at(mid);
        let pass = goal.met(&r.overall);
        steps.push((mid, pass));
        if pass {
            lo = Some((mid, r));
        } else {
            hi = Some(mid);
        }
    }
    Peak {
        max_rate: lo.as_ref().map(|l| l.0),
        first_fail: hi,
        best: lo.map(|l| l.1),
        steps,
    }
}
