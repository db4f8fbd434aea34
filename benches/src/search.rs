//! Peak finding: the largest offered rate whose P99 stays within a target with fewer than
//! `max_error_rate` errors. Widen by doubling from a low start until a step fails, then
//! binary-search between the last pass and the first fail to a relative precision.

use crate::loadgen::{LoadMode, LoadSpec};
use crate::prepared::Prepared;
use crate::report::Report;
use crate::target::Target;
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// What the search looks for and how hard it tries.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchSpec {
    /// P99 latency target in milliseconds.
    pub p99_target_ms: f64,
    /// A step passes only with an error rate strictly below this (0.001 = 0.1%).
    pub max_error_rate: f64,
    /// First rate tried (requests per second).
    pub start_rate: f64,
    /// Never offer more than this.
    pub max_rate: f64,
    /// Give up narrowing downwards below this.
    pub min_rate: f64,
    /// Stop when (first fail - last pass) / last pass is at most this.
    pub precision: f64,
    /// Most steps in all.
    pub max_steps: usize,
    /// A step's window is stretched (up to 10x) so that about this many requests are
    /// measured: a P99 from a handful of samples is just their maximum.
    pub min_requests: u64,
    /// A failing step is measured again up to this many times and counts as a failure
    /// only if every attempt fails: one stall of a shared machine must not decide the
    /// search (a rate that really is too high fails every time).
    pub retries: u32,
}

impl SearchSpec {
    /// Defaults around a P99 target: start at 50 req/s, 0.1% errors, 5% precision.
    pub fn new(p99_target_ms: f64) -> Self {
        SearchSpec {
            p99_target_ms,
            max_error_rate: 0.001,
            start_rate: 50.0,
            max_rate: 1e7,
            min_rate: 1.0,
            precision: 0.05,
            max_steps: 30,
            min_requests: 500,
            retries: 0,
        }
    }
}

/// One measured step of the search.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// Offered rate (requests per second).
    pub rate: f64,
    /// "widen", "narrow" or "bisect".
    pub phase: &'static str,
    /// Whether it met the target.
    pub pass: bool,
    /// The measurement.
    pub report: Report,
}

/// Outcome of a search.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchResult {
    /// The largest passing rate found, if any passed.
    pub max_rate: Option<f64>,
    /// The smallest failing rate found, if any failed.
    pub first_fail: Option<f64>,
    /// The report at `max_rate`.
    pub best: Option<Report>,
    /// Every step in order.
    pub steps: Vec<Step>,
}

/// Measures one offered rate; the search calls it once per step.
pub trait Probe {
    /// Runs a warm-up and measured window at `rate` requests per second.
    fn probe(&mut self, rate: f64) -> impl Future<Output = Report>;
}

/// Runs the peak search with `probe`, calling `on_step` after each step.
pub async fn search<P: Probe>(
    probe: &mut P,
    spec: &SearchSpec,
    mut on_step: impl FnMut(&Step),
) -> SearchResult {
    let mut steps: Vec<Step> = Vec::new();
    let mut lo: Option<(f64, Report)> = None;
    let mut hi: Option<f64> = None;
    let mut run = async |rate: f64, phase: &'static str, steps: &mut Vec<Step>| -> (bool, Report) {
        let mut attempt = 0;
        loop {
            let report = probe.probe(rate).await;
            let pass = report.passes(spec.p99_target_ms, spec.max_error_rate);
            let step = Step {
                rate,
                phase: if attempt == 0 { phase } else { "retry" },
                pass,
                report: report.clone(),
            };
            on_step(&step);
            steps.push(step);
            if pass || attempt >= spec.retries {
                return (pass, report);
            }
            attempt += 1;
        }
    };
    // Widen: double until a step fails or the cap is reached.
    let mut rate = spec.start_rate.clamp(spec.min_rate, spec.max_rate);
    while steps.len() < spec.max_steps {
        let (pass, report) = run(rate, "widen", &mut steps).await;
        if !pass {
            hi = Some(rate);
            break;
        }
        lo = Some((rate, report));
        if rate >= spec.max_rate {
            break;
        }
        rate = (rate * 2.0).min(spec.max_rate);
    }
    // The start already failed: halve until something passes.
    if lo.is_none() {
        let mut rate = hi.unwrap_or(spec.start_rate) / 2.0;
        while rate >= spec.min_rate && steps.len() < spec.max_steps {
            let (pass, report) = run(rate, "narrow", &mut steps).await;
            if pass {
                lo = Some((rate, report));
                break;
            }
            hi = Some(rate);
            rate /= 2.0;
        }
    }
    // Bisect between the last pass and the first fail.
    while let (Some((l, _)), Some(h)) = (&lo, hi) {
        if (h - l) / l <= spec.precision || steps.len() >= spec.max_steps {
            break;
        }
        let mid = (l + h) / 2.0;
        let (pass, report) = run(mid, "bisect", &mut steps).await;
        if pass {
            lo = Some((mid, report));
        } else {
            hi = Some(mid);
        }
    }
    SearchResult {
        max_rate: lo.as_ref().map(|l| l.0),
        first_fail: hi,
        best: lo.map(|l| l.1),
        steps,
    }
}

/// A [`Probe`] that runs [`measure`] open-loop at each rate with a template spec.
pub struct MeasureProbe<T: Target> {
    /// Where requests go.
    pub target: Arc<T>,
    /// The encoded request pool.
    pub prepared: Arc<Prepared<T::Encoded>>,
    /// Windows, bounds and seed; the mode is replaced by each step's rate.
    pub load: LoadSpec,
    /// Stretch the window (up to 10x) so about this many requests are measured.
    pub min_requests: u64,
    /// Steps run so far (each gets its own arrival seed).
    pub steps: u64,
}

impl<T: Target> Probe for MeasureProbe<T> {
    async fn probe(&mut self, rate: f64) -> Report {
        let wanted = Duration::from_secs_f64(self.min_requests as f64 / rate.max(1e-9));
        let duration = self.load.duration.max(wanted.min(self.load.duration * 10));
        // A fresh arrival sequence per step (still reproducible): reusing one realisation
        // scaled by the rate would bias every step's achieved rate the same way.
        self.steps += 1;
        let spec = LoadSpec {
            mode: LoadMode::Open { rate },
            duration,
            seed: self
                .load
                .seed
                .wrapping_add(self.steps.wrapping_mul(0x9e37_79b9)),
            ..self.load.clone()
        };
        crate::server_side::measure(self.target.clone(), self.prepared.clone(), &spec).await
    }
}

/// Finds the maximum open-loop rate of `target` under `spec` (each step: `load`'s windows).
pub async fn find_max_rate<T: Target>(
    target: Arc<T>,
    prepared: Arc<Prepared<T::Encoded>>,
    load: &LoadSpec,
    spec: &SearchSpec,
    on_step: impl FnMut(&Step),
) -> SearchResult {
    let mut probe = MeasureProbe {
        target,
        prepared,
        load: load.clone(),
        min_requests: spec.min_requests,
        steps: 0,
    };
    search(&mut probe, spec, on_step).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Recorder, Report};

    /// P99 = base + k·r/(cap − r) below `cap` (an M/M/1-like knee), errors above `err_from`.
    struct Knee {
        base_ms: f64,
        k_ms: f64,
        cap: f64,
        err_from: f64,
    }

    impl Knee {
        fn p99(&self, r: f64) -> f64 {
            if r >= self.cap {
                1e9
            } else {
                self.base_ms + self.k_ms * r / (self.cap - r)
            }
        }
        /// The rate where p99 reaches `t`.
        fn inverse(&self, t: f64) -> f64 {
            self.cap * (t - self.base_ms) / (t - self.base_ms + self.k_ms)
        }
    }

    impl Probe for Knee {
        async fn probe(&mut self, rate: f64) -> Report {
            let mut r = Recorder::default();
            let p99 = Duration::from_secs_f64(self.p99(rate).min(60_000.0) / 1e3);
            for _ in 0..1000 {
                r.success(p99, 1);
            }
            if rate >= self.err_from {
                for _ in 0..2 {
                    r.failure(&crate::failure::FailKind::Http(503));
                }
            }
            Report::from_recorders(
                "knee",
                "open",
                rate,
                Duration::from_secs(1),
                &[("m".into(), r)],
            )
        }
    }

    fn run(knee: &mut Knee, spec: &SearchSpec) -> SearchResult {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(search(knee, spec, |_| {}))
    }

    #[test]
    fn converges_on_the_latency_knee() {
        let mut knee = Knee {
            base_ms: 1.0,
            k_ms: 0.5,
            cap: 3000.0,
            err_from: f64::INFINITY,
        };
        let spec = SearchSpec {
            precision: 0.02,
            ..SearchSpec::new(5.0)
        };
        let truth = knee.inverse(5.0);
        let res = run(&mut knee, &spec);
        let found = res.max_rate.expect("a rate passes");
        let fail = res.first_fail.expect("a rate fails");
        assert!(
            found <= truth + 1e-6,
            "found {found} above the true max {truth}"
        );
        assert!(
            fail > truth,
            "first fail {fail} not above the true max {truth}"
        );
        assert!(
            (fail - found) / found <= 0.02,
            "not narrowed: {found}..{fail}"
        );
        assert!(found >= truth * 0.98, "found {found} too far below {truth}");
        // Widening doubled from 50: 50, 100, ..., 3200 (fails); then bisection.
        let widen: Vec<f64> = res
            .steps
            .iter()
            .filter(|s| s.phase == "widen")
            .map(|s| s.rate)
            .collect();
        assert_eq!(
            widen,
            vec![50.0, 100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0]
        );
        assert!(res.steps.iter().all(|s| s.pass == (s.rate <= truth)));
        assert_eq!(res.best.unwrap().offered, found);
    }

    #[test]
    fn errors_above_a_rate_bound_the_result() {
        let mut knee = Knee {
            base_ms: 1.0,
            k_ms: 0.5,
            cap: 3000.0,
            err_from: 700.0,
        };
        let res = run(&mut knee, &SearchSpec::new(5.0));
        let found = res.max_rate.unwrap();
        assert!((700.0 * 0.95..700.0).contains(&found), "found {found}");
    }

    #[test]
    fn narrows_down_when_the_start_fails() {
        let mut knee = Knee {
            base_ms: 1.0,
            k_ms: 0.5,
            cap: 30.0,
            err_from: f64::INFINITY,
        };
        let truth = knee.inverse(5.0);
        let res = run(&mut knee, &SearchSpec::new(5.0));
        assert_eq!(res.steps[0].phase, "widen");
        assert!(!res.steps[0].pass);
        assert!(res.steps.iter().any(|s| s.phase == "narrow"));
        let found = res.max_rate.unwrap();
        assert!(
            found <= truth && found >= truth * 0.95,
            "found {found}, truth {truth}"
        );
    }

    #[test]
    fn a_failure_is_retried_before_it_counts() {
        // P99 5 ms up to 1000 req/s, 50 ms above; the first probe at 400 hits a stall.
        struct Stalls {
            stalled: bool,
        }
        impl Probe for Stalls {
            async fn probe(&mut self, rate: f64) -> Report {
                let stall = rate == 400.0 && !self.stalled;
                self.stalled |= stall;
                let ms = if stall || rate > 1000.0 { 50.0 } else { 5.0 };
                let mut r = Recorder::default();
                for _ in 0..1000 {
                    r.success(Duration::from_secs_f64(ms / 1e3), 1);
                }
                let models = [("m".to_string(), r)];
                Report::from_recorders("stalls", "open", rate, Duration::from_secs(1), &models)
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let spec = SearchSpec {
            start_rate: 100.0,
            ..SearchSpec::new(10.0)
        };
        let once = rt.block_on(search(&mut Stalls { stalled: false }, &spec, |_| {}));
        assert_eq!(
            once.first_fail,
            Some(400.0),
            "without retries the stall decides"
        );
        let spec = SearchSpec { retries: 1, ..spec };
        let res = rt.block_on(search(&mut Stalls { stalled: false }, &spec, |_| {}));
        let found = res.max_rate.unwrap();
        assert!((950.0..=1000.0).contains(&found), "found {found}");
        // The stalled step and every real failure above the knee were measured twice.
        let retries = res.steps.iter().filter(|s| s.phase == "retry").count();
        let fails = res
            .steps
            .iter()
            .filter(|s| !s.pass && s.phase != "retry")
            .count();
        assert_eq!(retries, fails, "each failing step is retried once");
    }

    #[test]
    fn nothing_passes_gives_none() {
        let mut knee = Knee {
            base_ms: 10.0,
            k_ms: 0.5,
            cap: 3000.0,
            err_from: f64::INFINITY,
        };
        let res = run(&mut knee, &SearchSpec::new(5.0));
        assert_eq!(res.max_rate, None);
        assert!(res.best.is_none());
        assert!(res.steps.iter().all(|s| !s.pass));
    }
}
