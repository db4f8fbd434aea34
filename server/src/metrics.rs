//! The process-wide Prometheus recorder behind `GET /metrics`, installed once.

use cohost_runtime::Runtime;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_process::Collector;
use std::collections::HashSet;
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

/// The current metrics in Prometheus text exposition format, the process metrics read now,
/// with only the model series of versions `runtime` serves (see [`keep_served`]).
pub fn render(runtime: &Runtime) -> String {
    let served = runtime.models();
    let models: HashSet<&str> = served.iter().map(|m| m.name.as_str()).collect();
    let versions: HashSet<(&str, String)> = served
        .iter()
        .map(|m| (m.name.as_str(), m.version.to_string()))
        .collect();
    keep_served(&render_all(), |model, version| match version {
        None | Some("") => models.contains(model),
        Some(v) => versions.contains(&(model, v.to_string())),
    })
}

/// Drops the samples whose `model` (and `version`, when present) label names a model
/// version that `served` says is not served, and the headers of families left empty.
///
/// The recorder cannot forget a series, so those of unloaded versions (and any a race
/// between a lookup and an unload creates) would otherwise be exported forever.
pub fn keep_served(text: &str, served: impl Fn(&str, Option<&str>) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut header = String::new();
    for line in text.split_inclusive('\n') {
        if line.starts_with('#') {
            header.push_str(line);
        } else if line.trim().is_empty() {
            // A family ends: its header is dropped with it when no sample was kept.
            if header.is_empty() {
                out.push_str(line);
            }
            header.clear();
        } else {
            let labels = sample_labels(line);
            let keep = match labels.iter().find(|(k, _)| *k == "model") {
                None => true,
                Some((_, model)) => {
                    let version = labels.iter().find(|(k, _)| *k == "version");
                    served(model, version.map(|(_, v)| v.as_str()))
                }
            };
            if keep {
                out.push_str(&header);
                header.clear();
                out.push_str(line);
            }
        }
    }
    out
}

/// The labels of one sample line (`name{k="v",...} value`), values unescaped.
fn sample_labels(line: &str) -> Vec<(&str, String)> {
    let mut labels = Vec::new();
    let Some(open) = line.find('{') else {
        return labels;
    };
    let mut rest = &line[open + 1..];
    while let Some(eq) = rest.find("=\"") {
        let key = rest[..eq].trim_start_matches(',');
        let mut value = String::new();
        let mut chars = rest[eq + 2..].char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => break,
                },
                '"' => {
                    end = Some(eq + 2 + i + 1);
                    break;
                }
                c => value.push(c),
            }
        }
        let Some(end) = end else { break };
        labels.push((key, value));
        rest = &rest[end..];
        if rest.starts_with('}') {
            break;
        }
    }
    labels
}

/// Everything the recorder holds, the process metrics read now.
fn render_all() -> String {
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

/// Counts a request refused at the HTTP or gRPC edge (before the runtime saw it); callers
/// pass only a model and version they looked up as served.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_served_versions_are_kept() {
        let text = "# TYPE a counter\na{model=\"m\",version=\"1\"} 1\na{model=\"m\",version=\"7\"} 2\n\n\
                    # TYPE b gauge\nb{model=\"gone\"} 1\n\n\
                    # TYPE c gauge\nc 3\nc{lane=\"0\"} 4\n\n\
                    # TYPE d histogram\nd_bucket{model=\"m\",version=\"\",le=\"0.5\"} 1\n\n";
        let got = keep_served(text, |m, v| {
            m == "m" && matches!(v, None | Some("") | Some("1"))
        });
        assert_eq!(
            got,
            "# TYPE a counter\na{model=\"m\",version=\"1\"} 1\n\n\
             # TYPE c gauge\nc 3\nc{lane=\"0\"} 4\n\n\
             # TYPE d histogram\nd_bucket{model=\"m\",version=\"\",le=\"0.5\"} 1\n\n"
        );
        let labels = sample_labels(r#"x{a="q\"uote",model="m"} 1"#);
        assert_eq!(
            labels,
            vec![("a", "q\"uote".to_string()), ("model", "m".to_string())]
        );
    }
}
