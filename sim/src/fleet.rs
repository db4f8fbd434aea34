//! A fleet: H hosts, each one simulated slice running the runtime's own policy objects
//! for the models placed on it, and a router that picks a replica per request.
//!
//! Modelled: skewed placement (model popularity Zipf(`skew`); the most popular model on
//! `top_share` of the hosts, replicas falling with popularity, at least `min_replicas`),
//! heterogeneous model costs (a seeded lognormal factor per model) and host speeds (a
//! seeded lognormal factor per host), per-model Poisson arrivals. Abstracted: the network
//! (routing and responses take no time), the routers (one logical router with a global
//! view of what it was told), failures, and the front end's CPU.
//!
//! Routers: `random`; power of two choices on the host-level outstanding-request count
//! (`p2c-host`); P2C on cohost's per-model load counter, with the host's load counter when
//! the two model figures are within `TIE` (`p2c-model`, as docs/SERVING.md advises). Each
//! reads the figures either polled at decision time (`fresh`) or as the last response
//! from that host (and model) carried them (`stale`). A refused request (HTTP 429 or
//! deadline admission) is retried once on the other choice.

use crate::events::Events;
use crate::profile::Cost;
use crate::run::{ArrivalKind, Arrivals, stream_seed};
use crate::slice::{Finished, ModelSpec, Slice, SliceEvent};
use crate::tally::{Summary, Tally, quantile_ms};
use cohost_models::ModelConfig;
use cohost_runtime::ScheduleKind;
use cohost_runtime::testing::VirtualClock;
use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use serde::Serialize;
use std::sync::Arc;

/// Two model-load figures closer than this (seconds per lane) are a tie, broken on the
/// host's load.
const TIE: f64 = 100e-6;

/// How the router picks a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum Router {
    /// Uniformly at random.
    Random,
    /// Power of two choices on the host's outstanding requests.
    P2cHost,
    /// Power of two choices on cohost's per-model load counter (host load on ties).
    P2cModel,
}

/// Where the router's load figures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum Freshness {
    /// Polled at each decision.
    Fresh,
    /// Piggy-backed: as of the last response from that host (and model).
    Stale,
}

/// A fleet experiment's shape.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    /// Hosts.
    pub hosts: usize,
    /// Distinct models.
    pub models: usize,
    /// Lanes per host.
    pub lanes: usize,
    /// Zipf exponent of model popularity.
    pub skew: f64,
    /// Fraction of hosts holding the most popular model.
    pub top_share: f64,
    /// Fewest replicas of any model.
    pub min_replicas: usize,
    /// Coefficient of variation of per-model cost factors.
    pub model_cost_cv: f64,
    /// Coefficient of variation of per-host speed factors.
    pub host_speed_cv: f64,
    /// Every model's config (batching policy, queue bound).
    pub config: ModelConfig,
    /// The batch cost of a model of factor 1 on a host of speed 1.
    pub cost: Cost,
    /// Cross-model policy on each host.
    pub schedule: ScheduleKind,
    /// Client timeout, seconds.
    pub timeout_s: f64,
    /// Warm-up and window, seconds.
    pub warmup_s: f64,
    /// Window, seconds.
    pub duration_s: f64,
    /// Seed of placement, factors and arrivals.
    pub seed: u64,
}

/// Where models are and how fast things are.
#[derive(Debug, Clone)]
pub struct Placement {
    /// Hosts of each model.
    pub replicas: Vec<Vec<usize>>,
    /// Models on each host, with their slot there.
    pub on_host: Vec<Vec<usize>>,
    /// Share of the traffic of each model.
    pub popularity: Vec<f64>,
    /// Cost factor of each model.
    pub cost_factor: Vec<f64>,
    /// Speed factor of each host.
    pub speed: Vec<f64>,
}

fn lognormal(cv: f64) -> Option<LogNormal<f64>> {
    (cv > 0.0).then(|| {
        let s2 = (1.0 + cv * cv).ln();
        LogNormal::new(-s2 / 2.0, s2.sqrt()).expect("finite cv")
    })
}

impl FleetSpec {
    /// The seeded placement.
    pub fn placement(&self) -> Placement {
        let mut rng = StdRng::seed_from_u64(stream_seed(self.seed, 1 << 40));
        let weights: Vec<f64> = (0..self.models)
            .map(|m| 1.0 / ((m + 1) as f64).powf(self.skew))
            .collect();
        let total: f64 = weights.iter().sum();
        let popularity: Vec<f64> = weights.iter().map(|w| w / total).collect();
        let mut replicas: Vec<Vec<usize>> = (0..self.models)
            .map(|m| {
                let r = (self.hosts as f64 * self.top_share * weights[m]).round() as usize;
                let r = r.clamp(self.min_replicas.min(self.hosts), self.hosts);
                let mut hosts = sample(&mut rng, self.hosts, r).into_vec();
                hosts.sort_unstable();
                hosts
            })
            .collect();
        let mut on_host: Vec<Vec<usize>> = vec![Vec::new(); self.hosts];
        for (m, hs) in replicas.iter().enumerate() {
            for &h in hs {
                on_host[h].push(m);
            }
        }
        // A host left empty takes a random model, so every host serves something.
        for (h, models) in on_host.iter_mut().enumerate() {
            if models.is_empty() {
                let m = rng.random_range(0..self.models);
                models.push(m);
                replicas[m].push(h);
            }
        }
        let draw = |dist: Option<LogNormal<f64>>, n: usize, rng: &mut StdRng| -> Vec<f64> {
            (0..n)
                .map(|_| dist.map_or(1.0, |d| d.sample(&mut *rng)))
                .collect()
        };
        let cost_factor = draw(lognormal(self.model_cost_cv), self.models, &mut rng);
        let speed = draw(lognormal(self.host_speed_cv), self.hosts, &mut rng);
        Placement {
            replicas,
            on_host,
            popularity,
            cost_factor,
            speed,
        }
    }
}

/// What a fleet run measured.
#[derive(Debug, Clone, Serialize)]
pub struct FleetReport {
    /// Router.
    pub router: Router,
    /// Freshness of its figures.
    pub freshness: Freshness,
    /// Offered requests per second.
    pub offered_rate: f64,
    /// Over every request.
    pub overall: Summary,
    /// Host utilization (busy lane time / lanes × window): median.
    pub util_p50: f64,
    /// 95th percentile.
    pub util_p95: f64,
    /// Maximum.
    pub util_max: f64,
    /// Refused requests over offered (after the one retry).
    pub refusal_rate: f64,
}

enum Ev {
    Arrive(usize),
    Host(usize, SliceEvent),
}

/// The router's view: the last figures responses carried.
struct Seen {
    /// Per host: outstanding requests and host load when its last response left.
    host: Vec<(usize, f64)>,
    /// Per host and slot: model load when that model's last response there left.
    model: Vec<Vec<f64>>,
}

/// One fleet run at `rate` requests per second.
pub fn run(
    spec: &FleetSpec,
    placement: &Placement,
    router: Router,
    freshness: Freshness,
    rate: f64,
) -> FleetReport {
    let clock = Arc::new(VirtualClock::new());
    let ns = |s: f64| (s * 1e9).round() as u64;
    let (w0, w1) = (ns(spec.warmup_s), ns(spec.warmup_s + spec.duration_s));
    let mut hosts: Vec<Slice> = placement
        .on_host
        .iter()
        .enumerate()
        .map(|(h, models)| {
            let specs: Vec<ModelSpec> = models
                .iter()
                .map(|&m| ModelSpec {
                    name: format!("m{m}"),
                    config: spec.config.clone(),
                    cost: Cost {
                        points: spec
                            .cost
                            .points
                            .iter()
                            .map(|p| crate::profile::Point {
                                seconds: p.seconds * placement.cost_factor[m],
                                ..*p
                            })
                            .collect(),
                        fixed_s: spec.cost.fixed_s * placement.cost_factor[m],
                        per_row_s: spec.cost.per_row_s * placement.cost_factor[m],
                        cv: spec.cost.cv,
                    },
                })
                .collect();
            let mut s = Slice::new(
                clock.clone(),
                &specs,
                spec.lanes,
                spec.schedule,
                placement.speed[h],
                stream_seed(spec.seed, (2 << 40) + h as u64),
            );
            s.set_window(w0, w1);
            s
        })
        .collect();
    // Slot of model m on host h.
    let slot = |h: usize, m: usize| -> usize {
        placement.on_host[h]
            .iter()
            .position(|&x| x == m)
            .expect("a replica's host holds the model")
    };
    let mut seen = Seen {
        host: vec![(0, 0.0); spec.hosts],
        model: placement
            .on_host
            .iter()
            .map(|ms| vec![0.0; ms.len()])
            .collect(),
    };
    let mut pick_rng = StdRng::seed_from_u64(stream_seed(spec.seed, 3 << 40));
    let mut streams: Vec<Arrivals> = placement
        .popularity
        .iter()
        .enumerate()
        .map(|(m, p)| {
            Arrivals::new(
                ArrivalKind::Poisson,
                (rate * p).max(1e-9),
                stream_seed(spec.seed, m as u64),
            )
        })
        .collect();
    let mut events = Events::default();
    for (m, s) in streams.iter_mut().enumerate() {
        events.push(s.gap(), Ev::Arrive(m));
    }
    let timeout = Some(ns(spec.timeout_s));
    let mut tally = Tally::default();
    let mut out = Vec::new();
    let mut finished: Vec<Finished> = Vec::new();
    while let Some((t, ev)) = events.pop() {
        clock.set(t);
        match ev {
            Ev::Arrive(m) => {
                let in_window = (w0..w1).contains(&t);
                tally.offered += u64::from(in_window);
                let reps = &placement.replicas[m];
                let (first, second) = choose(
                    router,
                    freshness,
                    reps,
                    m,
                    &hosts,
                    &seen,
                    &slot,
                    &mut pick_rng,
                );
                let mut admitted = false;
                for h in [first, second] {
                    let s = slot(h, m);
                    if hosts[h].offer(s, 1, timeout).is_ok() {
                        hosts[h].dispatch(&mut out);
                        for (at, e) in out.drain(..) {
                            events.push(at, Ev::Host(h, e));
                        }
                        admitted = true;
                        break;
                    }
                }
                if !admitted && in_window {
                    tally.refused += 1;
                }
                let next = t + streams[m].gap();
                if next < w1 {
                    events.push(next, Ev::Arrive(m));
                }
            }
            Ev::Host(h, e) => {
                match e {
                    SliceEvent::Done(lane) => hosts[h].done(lane, &mut finished, &mut out),
                    SliceEvent::Wake => hosts[h].wake(&mut out),
                }
                for (at, e) in out.drain(..) {
                    events.push(at, Ev::Host(h, e));
                }
                if !finished.is_empty() {
                    // The responses carry the load counters as of now.
                    seen.host[h] = (hosts[h].outstanding(), hosts[h].load(0).host_load);
                }
                for f in finished.drain(..) {
                    seen.model[h][f.slot] = hosts[h].load(f.slot).model_load;
                    if (w0..w1).contains(&f.arrived) {
                        if f.on_time {
                            tally.latencies.push(f.done - f.arrived);
                        } else {
                            tally.timed_out += 1;
                        }
                    }
                }
            }
        }
    }
    for s in &hosts {
        tally.timed_out += s.expired.iter().sum::<u64>();
        for &(b, r) in &s.batches {
            tally.batches += b;
            tally.batch_rows += r;
        }
    }
    let mut util: Vec<u64> = hosts
        .iter()
        .map(|s| (s.busy_ns as f64 / (s.lanes() as f64 * (w1 - w0) as f64) * 1e6) as u64)
        .collect();
    util.sort_unstable();
    // quantile_ms divides by 1e6: utilization stored in millionths comes back as a fraction.
    let summary = tally.summary(spec.duration_s);
    FleetReport {
        router,
        freshness,
        offered_rate: rate,
        overall: summary,
        util_p50: quantile_ms(&util, 0.5),
        util_p95: quantile_ms(&util, 0.95),
        util_max: quantile_ms(&util, 1.0),
        refusal_rate: tally.refused as f64 / tally.offered.max(1) as f64,
    }
}

/// The router's two candidates for model `m`, best first (the second is the retry).
#[allow(clippy::too_many_arguments)]
fn choose(
    router: Router,
    freshness: Freshness,
    reps: &[usize],
    m: usize,
    hosts: &[Slice],
    seen: &Seen,
    slot: &impl Fn(usize, usize) -> usize,
    rng: &mut StdRng,
) -> (usize, usize) {
    if reps.len() == 1 {
        return (reps[0], reps[0]);
    }
    let two = sample(rng, reps.len(), 2);
    let (a, b) = (reps[two.index(0)], reps[two.index(1)]);
    let better_b = match router {
        Router::Random => false,
        Router::P2cHost => {
            let count = |h: usize| match freshness {
                Freshness::Fresh => hosts[h].outstanding(),
                Freshness::Stale => seen.host[h].0,
            };
            count(b) < count(a)
        }
        Router::P2cModel => {
            let figures = |h: usize| {
                let s = slot(h, m);
                match freshness {
                    Freshness::Fresh => {
                        let r = hosts[h].load(s);
                        (r.model_load, r.host_load)
                    }
                    Freshness::Stale => (seen.model[h][s], seen.host[h].1),
                }
            };
            let ((ma, ha), (mb, hb)) = (figures(a), figures(b));
            if (ma - mb).abs() <= TIE {
                hb < ha
            } else {
                mb < ma
            }
        }
    };
    if better_b { (b, a) } else { (a, b) }
}
