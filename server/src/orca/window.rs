//! Request, error and lane-busy rates over the last second or so, from the runtime's
//! per-model statistics (sampled at most every [`TICK`], on demand: no task runs while
//! nobody asks for a report).

use cohost_runtime::ModelStats;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Least time between two samples of the runtime's statistics.
pub const TICK: Duration = Duration::from_millis(100);

/// The span rates are averaged over (at least; longer after an idle spell).
pub const SPAN: Duration = Duration::from_secs(1);

/// Counters that only grow: requests finished, of which failed, lane busy nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Totals {
    requests: u64,
    errors: u64,
    busy_ns: u64,
}

impl Totals {
    fn of(s: &ModelStats) -> Totals {
        Totals {
            requests: s.success.count + s.fail.count,
            errors: s.fail.count,
            // Gather, forward and split: the time the batch held its lane.
            busy_ns: s.compute_input.ns + s.compute_infer.ns + s.compute_output.ns,
        }
    }

    /// What happened since `before` (a counter that went back was reset by a reload:
    /// all of it is new).
    fn since(self, before: Totals) -> Totals {
        let d = |now: u64, then: u64| if now >= then { now - then } else { now };
        Totals {
            requests: d(self.requests, before.requests),
            errors: d(self.errors, before.errors),
            busy_ns: d(self.busy_ns, before.busy_ns),
        }
    }

    fn add(&mut self, d: Totals) {
        self.requests += d.requests;
        self.errors += d.errors;
        self.busy_ns += d.busy_ns;
    }
}

/// Rates over the window, every model of the runtime together.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    /// Requests finished per second (successes and failures).
    pub rps: f64,
    /// Failed requests per second.
    pub eps: f64,
    /// Lanes kept busy on average (lane-seconds per second).
    pub lanes_busy: f64,
}

/// The samples a window keeps and the rates they give.
#[derive(Debug)]
pub struct Window {
    /// Each model version's counters at the last sample.
    seen: HashMap<(String, u64), Totals>,
    /// Everything counted since the window was made.
    totals: Totals,
    samples: VecDeque<(Instant, Totals)>,
    rates: Rates,
}

impl Window {
    /// A window whose first sample is `stats` at `now`.
    pub fn new(now: Instant, stats: &[ModelStats]) -> Window {
        let mut w = Window {
            seen: HashMap::new(),
            totals: Totals::default(),
            samples: VecDeque::new(),
            rates: Rates::default(),
        };
        w.observe(now, stats);
        w
    }

    /// True when the last sample is at least [`TICK`] old at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.samples
            .back()
            .is_none_or(|(at, _)| now.saturating_duration_since(*at) >= TICK)
    }

    /// Adds a sample of every model's statistics taken at `now`, and updates the rates.
    pub fn observe(&mut self, now: Instant, stats: &[ModelStats]) {
        let mut seen = HashMap::with_capacity(stats.len());
        for s in stats {
            let key = (s.name.clone(), s.version);
            let t = Totals::of(s);
            let before = self.seen.get(&key).copied().unwrap_or_default();
            self.totals.add(t.since(before));
            seen.insert(key, t);
        }
        // Versions gone since the last sample leave nothing behind.
        self.seen = seen;
        self.samples.push_back((now, self.totals));
        // Keep the newest sample that is at least SPAN old as the window's start.
        while self.samples.len() > 2 && now.saturating_duration_since(self.samples[1].0) >= SPAN {
            self.samples.pop_front();
        }
        let (start, first) = self.samples[0];
        let dt = now.saturating_duration_since(start).as_secs_f64();
        if dt > 0.0 {
            let d = self.totals.since(first);
            self.rates = Rates {
                rps: d.requests as f64 / dt,
                eps: d.errors as f64 / dt,
                lanes_busy: d.busy_ns as f64 * 1e-9 / dt,
            };
        }
    }

    /// The rates at the last sample.
    pub fn rates(&self) -> Rates {
        self.rates
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cohost_runtime::StatisticDuration;

    fn stats(name: &str, ok: u64, failed: u64, busy_ms: u64) -> ModelStats {
        ModelStats {
            name: name.into(),
            version: 1,
            success: StatisticDuration { count: ok, ns: 0 },
            fail: StatisticDuration {
                count: failed,
                ns: 0,
            },
            compute_infer: StatisticDuration {
                count: 1,
                ns: busy_ms * 1_000_000,
            },
            ..Default::default()
        }
    }

    #[test]
    fn rates_over_the_span_survive_a_reload() {
        let t0 = Instant::now();
        let mut w = Window::new(t0, &[stats("a", 10, 0, 0)]);
        assert_eq!(w.rates(), Rates::default(), "one sample: no rate yet");
        assert!(!w.due(t0 + TICK / 2) && w.due(t0 + TICK));
        // Half a second later: 50 more requests (5 failed) and 250 ms of lane time.
        w.observe(t0 + SPAN / 2, &[stats("a", 55, 5, 250)]);
        let r = w.rates();
        assert!((r.rps - 100.0).abs() < 1e-9, "{r:?}");
        assert!((r.eps - 10.0).abs() < 1e-9, "{r:?}");
        assert!((r.lanes_busy - 0.5).abs() < 1e-9, "{r:?}");
        // The model is reloaded (counters restart) and another one appears.
        w.observe(t0 + SPAN, &[stats("a", 5, 0, 0), stats("b", 40, 0, 500)]);
        let r = w.rates();
        // 50 + 5 + 40 requests since the first sample, a second ago.
        assert!((r.rps - 95.0).abs() < 1e-9, "{r:?}");
        assert!((r.lanes_busy - 0.75).abs() < 1e-9, "{r:?}");
        // Two seconds on, nothing new: the window slid past the traffic.
        w.observe(
            t0 + SPAN * 2,
            &[stats("a", 5, 0, 0), stats("b", 40, 0, 500)],
        );
        w.observe(
            t0 + SPAN * 3,
            &[stats("a", 5, 0, 0), stats("b", 40, 0, 500)],
        );
        assert_eq!(w.rates().rps, 0.0, "{:?}", w.rates());
    }
}
