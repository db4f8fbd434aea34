//! ORCA load reports (`xds.data.orca.v3.OrcaLoadReport`): what gRPC's
//! `weighted_round_robin` and Envoy's `client_side_weighted_round_robin` balance on.
//!
//! * `window`: request, error and lane-busy rates over the last second, sampled from the
//!   runtime's statistics.
//! * `header`: the HTTP `endpoint-load-metrics` forms (`TEXT`, `JSON`, `BIN`).
//! * `oob`: the out-of-band service `xds.service.orca.v3.OpenRcaService`.
//!
//! A report's fields (docs/FLEET.md says the same for operators):
//!
//! * `cpu_utilization`: the fraction of the slice's lanes kept busy over the last second,
//!   every model together (lane busy time: gather, forward and split of each batch), 0 to 1.
//!   On the CPU backend the lanes are the threads that run models.
//! * `application_utilization`: the same plus the backlog: `cpu_utilization +
//!   host_load / 1 s`, where `host_load` is the load counter's predicted seconds of work
//!   queued and running per lane. Past 1.0 the slice has more work than it can do in a
//!   second; balancers prefer this field to `cpu_utilization`.
//! * `rps_fractional`, `eps`: requests finished and failed per second over the last
//!   second, every model together (the endpoint's totals, as ORCA defines them).
//! * `mem_utilization`: device memory in use over `--memory-budget` (0 without a budget).
//! * `utilization["lanes"]`: `cpu_utilization` again, under the lane kind's name.
//! * `named_metrics`: `model_load` (per call only: the called model's load counter) and
//!   `host_load`.
//!
//! Every value is finite and not negative.

mod header;
mod oob;
mod window;

pub use header::{FORMAT_HEADER, Format, header_value, load_text};
pub use oob::{MIN_REPORT_INTERVAL, OutOfBand};

use cohost_protocol::xds::data::orca::v3::OrcaLoadReport;
use cohost_runtime::{LoadReport, ModelState, Runtime};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use window::Window;

/// The metadata key of the binary per-call report (gRPC trailer, Envoy's legacy header).
pub const BIN_METADATA: &str = "endpoint-load-metrics-bin";

/// Seconds of backlog that count as one whole slice of demand in `application_utilization`.
const BACKLOG_HORIZON_SECS: f64 = 1.0;

/// Builds ORCA reports for one runtime (cheap to clone; clones share the window).
#[derive(Clone)]
pub struct LoadReporter {
    runtime: Runtime,
    window: Arc<Mutex<Window>>,
    format: Format,
}

impl std::fmt::Debug for LoadReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadReporter")
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl LoadReporter {
    /// A reporter over `runtime` whose HTTP header form is `format` unless a request asks
    /// for another.
    pub fn new(runtime: Runtime, format: Format) -> Self {
        let stats = runtime.stats(None, None).unwrap_or_default();
        let window = Window::new(Instant::now(), &stats);
        LoadReporter {
            runtime,
            window: Arc::new(Mutex::new(window)),
            format,
        }
    }

    /// The HTTP header form used when a request names none.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The report after a call to a model whose load was `load`; `None` for the endpoint
    /// as a whole (the out-of-band stream), which carries no `model_load`.
    pub fn report(&self, load: Option<&LoadReport>) -> OrcaLoadReport {
        let rates = self.rates();
        let lanes = self.runtime.lane_count().max(1) as f64;
        let busy = fraction(rates.lanes_busy / lanes);
        let host_load = clean(match load {
            Some(l) => l.host_load,
            None => self.host_load(),
        });
        let mut report = OrcaLoadReport {
            cpu_utilization: busy,
            mem_utilization: self.memory_fraction(),
            rps_fractional: clean(rates.rps),
            eps: clean(rates.eps),
            application_utilization: clean(busy + host_load / BACKLOG_HORIZON_SECS),
            ..Default::default()
        };
        report.utilization.insert("lanes".into(), busy);
        if let Some(l) = load {
            report
                .named_metrics
                .insert("model_load".into(), clean(l.model_load));
        }
        report.named_metrics.insert("host_load".into(), host_load);
        report
    }

    fn rates(&self) -> window::Rates {
        let now = Instant::now();
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if w.due(now)
            && let Ok(stats) = self.runtime.stats(None, None)
        {
            w.observe(now, &stats);
        }
        w.rates()
    }

    /// The slice's load counter, read through any ready model (0 with none loaded).
    fn host_load(&self) -> f64 {
        self.runtime
            .models()
            .into_iter()
            .find(|m| m.state == ModelState::Ready)
            .and_then(|m| self.runtime.load(&m.name).ok())
            .map_or(0.0, |l| l.host_load)
    }

    fn memory_fraction(&self) -> f64 {
        match self.runtime.options().memory_budget {
            Some(budget) if budget > 0 => {
                fraction(self.runtime.memory_used() as f64 / budget as f64)
            }
            _ => 0.0,
        }
    }
}

/// `x` if finite and positive, else 0.
fn clean(x: f64) -> f64 {
    if x.is_finite() && x > 0.0 { x } else { 0.0 }
}

/// `x` clamped to 0..=1 (NaN is 0).
fn fraction(x: f64) -> f64 {
    clean(x).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_finite_and_not_negative() {
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0, -0.0] {
            assert_eq!(clean(x), 0.0, "{x}");
            assert_eq!(fraction(x), 0.0, "{x}");
        }
        assert_eq!(clean(2.5), 2.5);
        assert_eq!(fraction(2.5), 1.0);
    }
}
