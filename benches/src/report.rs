//! Recording latencies (HDR histograms, nanoseconds) and summarising them: percentiles,
//! throughput, errors by kind; rendered as a markdown table, CSV and JSON.

use crate::failure::FailKind;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Raw measurements of one model (or of all): a latency histogram and counters.
#[derive(Debug, Clone)]
pub struct Recorder {
    /// Latencies of successful requests, in nanoseconds.
    pub hist: Histogram<u64>,
    /// Successful requests.
    pub ok: u64,
    /// Rows carried by successful requests.
    pub rows: u64,
    /// Failed requests by kind label.
    pub errors: BTreeMap<String, u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            // 1 ns .. 100 s at 3 significant digits; values beyond saturate.
            hist: Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid bounds"),
            ok: 0,
            rows: 0,
            errors: BTreeMap::new(),
        }
    }
}

impl Recorder {
    /// Records one success of `rows` rows that took `latency`.
    pub fn success(&mut self, latency: Duration, rows: usize) {
        self.hist
            .saturating_record(latency.as_nanos().clamp(1, u64::MAX as u128) as u64);
        self.ok += 1;
        self.rows += rows as u64;
    }

    /// Records one failure.
    pub fn failure(&mut self, kind: &FailKind) {
        *self.errors.entry(kind.label()).or_default() += 1;
    }

    /// Adds another recorder's measurements.
    pub fn merge(&mut self, other: &Recorder) {
        self.hist.add(&other.hist).expect("same histogram bounds");
        self.ok += other.ok;
        self.rows += other.rows;
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
    }

    /// Summarises over a window of `window`.
    pub fn stats(&self, window: Duration) -> Stats {
        let ms = |q: f64| {
            if self.hist.is_empty() {
                f64::NAN
            } else {
                self.hist.value_at_quantile(q) as f64 / 1e6
            }
        };
        let secs = window.as_secs_f64().max(1e-9);
        let errors: u64 = self.errors.values().sum();
        let total = self.ok + errors;
        Stats {
            ok: self.ok,
            errors,
            error_rate: if total == 0 {
                0.0
            } else {
                errors as f64 / total as f64
            },
            throughput: self.ok as f64 / secs,
            rows_per_s: self.rows as f64 / secs,
            mean_ms: if self.hist.is_empty() {
                f64::NAN
            } else {
                self.hist.mean() / 1e6
            },
            p50_ms: ms(0.50),
            p90_ms: ms(0.90),
            p95_ms: ms(0.95),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: if self.hist.is_empty() {
                f64::NAN
            } else {
                self.hist.max() as f64 / 1e6
            },
            errors_by_kind: self.errors.clone(),
        }
    }
}

/// Summary of one model (or all) over a measured window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// Successful requests.
    pub ok: u64,
    /// Failed requests (client drops included).
    pub errors: u64,
    /// errors / (ok + errors).
    pub error_rate: f64,
    /// Successful requests per second.
    pub throughput: f64,
    /// Rows of successful requests per second.
    pub rows_per_s: f64,
    /// Mean latency (ms).
    pub mean_ms: f64,
    /// Median latency (ms).
    pub p50_ms: f64,
    /// 90th percentile (ms).
    pub p90_ms: f64,
    /// 95th percentile (ms).
    pub p95_ms: f64,
    /// 99th percentile (ms).
    pub p99_ms: f64,
    /// 99.9th percentile (ms).
    pub p999_ms: f64,
    /// Largest latency (ms).
    pub max_ms: f64,
    /// Failures by kind label.
    pub errors_by_kind: BTreeMap<String, u64>,
}

/// The result of one measured window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Target name ("http-json", "in-process").
    pub target: String,
    /// "open" or "closed".
    pub mode: String,
    /// Offered request rate (open loop) or concurrency (closed loop).
    pub offered: f64,
    /// Measured window in seconds.
    pub window_s: f64,
    /// All models together.
    pub overall: Stats,
    /// Per model, in the workload's order.
    pub models: Vec<(String, Stats)>,
    /// Open loop: how late measured requests were sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_lateness: Option<SendLateness>,
    /// What the server did over the run (warm-up included), where its statistics are
    /// readable ([`crate::server_side::measure`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub server: Vec<crate::server_stats::ServerWindow>,
    /// CPU per answered request of the client and the server over the same span, where
    /// the server's statistics were readable ([`crate::server_side::measure`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<crate::server_stats::CpuWindow>,
}

/// Open loop: time from each measured request's scheduled instant to the start of its
/// `infer` (pacer lateness plus the runtime's pick-up), already included in its latency.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SendLateness {
    /// The pacer: "thread" or "tokio".
    pub pacing: String,
    /// Median (µs).
    pub p50_us: f64,
    /// 99th percentile (µs).
    pub p99_us: f64,
    /// Largest (µs).
    pub max_us: f64,
}

impl Report {
    /// Builds a report from per-model recorders.
    pub fn from_recorders(
        target: &str,
        mode: &str,
        offered: f64,
        window: Duration,
        per_model: &[(String, Recorder)],
    ) -> Report {
        let mut all = Recorder::default();
        for (_, r) in per_model {
            all.merge(r);
        }
        Report {
            target: target.to_string(),
            mode: mode.to_string(),
            offered,
            window_s: window.as_secs_f64(),
            overall: all.stats(window),
            models: per_model
                .iter()
                .map(|(n, r)| (n.clone(), r.stats(window)))
                .collect(),
            send_lateness: None,
            server: Vec::new(),
            cpu: None,
        }
    }

    /// Whether this step meets a P99 target (ms) with an error rate below `max_error_rate`.
    pub fn passes(&self, p99_target_ms: f64, max_error_rate: f64) -> bool {
        self.overall.ok > 0
            && self.overall.p99_ms <= p99_target_ms
            && self.overall.error_rate < max_error_rate
    }
}

/// CSV/table columns, in order.
pub const COLUMNS: [&str; 15] = [
    "target",
    "mode",
    "offered",
    "model",
    "ok",
    "errors",
    "error_rate",
    "throughput",
    "rows_per_s",
    "p50_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
    "p999_ms",
    "max_ms",
];

fn row(r: &Report, model: &str, s: &Stats) -> Vec<String> {
    vec![
        r.target.clone(),
        r.mode.clone(),
        format!("{:.1}", r.offered),
        model.to_string(),
        s.ok.to_string(),
        s.errors.to_string(),
        format!("{:.5}", s.error_rate),
        format!("{:.1}", s.throughput),
        format!("{:.1}", s.rows_per_s),
        format!("{:.3}", s.p50_ms),
        format!("{:.3}", s.p90_ms),
        format!("{:.3}", s.p95_ms),
        format!("{:.3}", s.p99_ms),
        format!("{:.3}", s.p999_ms),
        format!("{:.3}", s.max_ms),
    ]
}

fn rows(reports: &[Report]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for r in reports {
        if r.models.len() > 1 {
            for (name, s) in &r.models {
                out.push(row(r, name, s));
            }
        }
        let name = if r.models.len() == 1 {
            r.models[0].0.as_str()
        } else {
            "(all)"
        };
        out.push(row(r, name, &r.overall));
    }
    out
}

/// A markdown table of the reports (one row per model when several, plus the total).
pub fn markdown(reports: &[Report]) -> String {
    let mut out = format!("| {} |\n", COLUMNS.join(" | "));
    out += &format!("|{}\n", "---|".repeat(COLUMNS.len()));
    for r in rows(reports) {
        out += &format!("| {} |\n", r.join(" | "));
    }
    out
}

/// CSV with a header line, same rows as [`markdown`].
pub fn csv(reports: &[Report]) -> String {
    let mut out = COLUMNS.join(",") + "\n";
    for r in rows(reports) {
        out += &(r.join(",") + "\n");
    }
    out
}

/// Error counts by kind, for printing ("http_503=4 client_drop=2").
pub fn errors_line(s: &Stats) -> String {
    s.errors_by_kind
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder_1_to_1000_us() -> Recorder {
        let mut r = Recorder::default();
        for us in 1..=1000u64 {
            r.success(Duration::from_micros(us), 2);
        }
        r
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let s = recorder_1_to_1000_us().stats(Duration::from_secs(2));
        let near = |got: f64, want: f64| (got - want).abs() <= want * 0.002 + 1e-9;
        assert!(near(s.p50_ms, 0.500), "p50 {}", s.p50_ms);
        assert!(near(s.p90_ms, 0.900), "p90 {}", s.p90_ms);
        assert!(near(s.p95_ms, 0.950), "p95 {}", s.p95_ms);
        assert!(near(s.p99_ms, 0.990), "p99 {}", s.p99_ms);
        assert!(near(s.p999_ms, 0.999), "p99.9 {}", s.p999_ms);
        assert!(near(s.max_ms, 1.000), "max {}", s.max_ms);
        assert_eq!(s.ok, 1000);
        assert!((s.throughput - 500.0).abs() < 1e-9);
        assert!((s.rows_per_s - 1000.0).abs() < 1e-9);
    }

    #[test]
    fn errors_count_against_the_error_rate_and_pass() {
        let mut r = recorder_1_to_1000_us();
        r.failure(&FailKind::Http(503));
        r.failure(&FailKind::ClientDrop);
        let report = Report::from_recorders(
            "t",
            "open",
            10.0,
            Duration::from_secs(1),
            &[("m".into(), r)],
        );
        assert_eq!(report.overall.errors, 2);
        assert_eq!(report.overall.errors_by_kind["http_503"], 1);
        assert_eq!(report.overall.errors_by_kind["client_drop"], 1);
        assert!((report.overall.error_rate - 2.0 / 1002.0).abs() < 1e-12);
        assert!(
            !report.passes(5.0, 0.001),
            "0.2% errors must fail a 0.1% bound"
        );
        assert!(report.passes(5.0, 0.01));
        assert!(
            !report.passes(0.5, 0.01),
            "p99 0.99 ms must fail a 0.5 ms target"
        );
    }

    #[test]
    fn csv_and_markdown_shape() {
        let a = recorder_1_to_1000_us();
        let mut b = Recorder::default();
        b.success(Duration::from_millis(3), 1);
        let report = Report::from_recorders(
            "http-json",
            "open",
            100.0,
            Duration::from_secs(1),
            &[("a".into(), a), ("b".into(), b)],
        );
        let text = csv(std::slice::from_ref(&report));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "header + 2 models + total:\n{text}");
        assert_eq!(lines[0], COLUMNS.join(","));
        for l in &lines {
            assert_eq!(l.split(',').count(), COLUMNS.len(), "{l}");
        }
        assert!(
            lines[3].starts_with("http-json,open,100.0,(all),1001,0,"),
            "{}",
            lines[3]
        );
        let md = markdown(std::slice::from_ref(&report));
        assert_eq!(md.lines().count(), 5);
        assert!(md.lines().all(|l| l.starts_with('|') && l.ends_with('|')));
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["overall"]["ok"], 1001);
        assert_eq!(json["models"][1][0], "b");
        assert!(json["overall"]["p99_ms"].as_f64().unwrap() > 0.9);
    }
}
