//! The process-wide Prometheus recorder behind `GET /metrics`, installed once.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_process::Collector;
use std::sync::OnceLock;
use std::time::Duration;

/// Latency buckets in seconds: 50 µs to 10 s, roughly ×2 to ×2.5 apart.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// Batch-size buckets: powers of two up to 4096 rows.
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process metrics (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
/// `process_threads`, ...), read afresh at every scrape.
static PROCESS: OnceLock<Collector> = OnceLock::new();

/// Installs the global Prometheus recorder on first call (later calls return the same
/// handle) and starts its upkeep task on the current Tokio runtime the first time.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let handle = build().unwrap_or_else(|e| {
                // Another recorder is already global (e.g. an embedding application
                // installed its own): render an empty, private recorder instead of failing.
                tracing::warn!("prometheus recorder not installed: {e}; /metrics will be empty");
                PrometheusBuilder::new().build_recorder().handle()
            });
            let upkeep = handle.clone();
            // The upkeep thread lives as long as the process, like the recorder.
            std::thread::Builder::new()
                .name("cohost-metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .ok();
            handle
        })
        .clone()
}

fn build() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full("cohost_batch_size".into()), BATCH_BUCKETS)?
        .install_recorder()
}

/// The current metrics in Prometheus text exposition format, the process metrics read now.
pub fn render() -> String {
    let handle = install();
    PROCESS
        .get_or_init(|| {
            let c = Collector::default();
            c.describe();
            c
        })
        .collect();
    handle.render()
}

/// Counts a request refused at the HTTP or gRPC edge (before the runtime saw it).
pub fn edge_failure(model: &str, version: Option<u64>, reason: &'static str) {
    let version = version.map(|v| v.to_string()).unwrap_or_default();
    metrics::counter!(
        "cohost_request_failure_total",
        "model" => model.to_string(),
        "version" => version,
        "reason" => reason
    )
    .increment(1);
}
