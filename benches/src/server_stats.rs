//! What the server did during a measured run, from its statistics before and after (as
//! `perf_analyzer` prints it): batches, rows per batch, queue and forward time; and the CPU
//! the client and the server spent per answered request; and reading them from a server
//! (Triton's statistics JSON, a Prometheus `/metrics`). [`crate::server_side::measure`]
//! takes the snapshots around a run.

use cohost_runtime::{ModelStats, StatisticDuration};
use serde::Serialize;
use std::fmt::Write;

/// CPU per answered request over a run (warm-up included), from the CPU totals before and
/// after of the client (this process) and of the server process.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CpuWindow {
    /// Requests the server answered over the span (all the workload's models).
    pub requests: u64,
    /// µs of this process's CPU (user + system) per answered request.
    pub client_us_per_request: f64,
    /// µs of the server process's CPU per answered request, where it exports
    /// `process_cpu_seconds_total` (cohost does, on `/metrics`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_us_per_request: Option<f64>,
    /// The server runs in this process (in-process target): the client's figure is both.
    pub shared_process: bool,
}

/// The [`CpuWindow`] of `requests` answered while the client's CPU seconds went from the
/// first to the second of `client` and the server's likewise; None without requests or
/// without the client's reading.
pub fn cpu_window(
    requests: u64,
    client: Option<(f64, f64)>,
    server: Option<(f64, f64)>,
    shared_process: bool,
) -> Option<CpuWindow> {
    if requests == 0 {
        return None;
    }
    let per_request =
        |(before, after): (f64, f64)| (after - before).max(0.0) * 1e6 / requests as f64;
    Some(CpuWindow {
        requests,
        client_us_per_request: per_request(client?),
        server_us_per_request: server.map(per_request),
        shared_process,
    })
}

/// This process's CPU seconds so far (user + system, all threads); None where unknown.
#[cfg(unix)]
pub fn process_cpu_seconds() -> Option<f64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage writes a whole rusage into the pointer it is given on success.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return None;
        }
        usage.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(secs(usage.ru_utime) + secs(usage.ru_stime))
}

/// This process's CPU seconds so far; unknown off Unix.
#[cfg(not(unix))]
pub fn process_cpu_seconds() -> Option<f64> {
    None
}

/// `process_cpu_seconds_total` from `GET {base}/metrics`; None if unreachable, absent or
/// not answered within [`SCRAPE_TIMEOUT`].
pub async fn scrape_cpu_seconds(base: &str) -> Option<f64> {
    let scrape = async {
        let response = reqwest::get(format!("{base}/metrics")).await.ok()?;
        response.text().await.ok()
    };
    let text = tokio::time::timeout(SCRAPE_TIMEOUT, scrape).await.ok()??;
    prometheus_value(&text, "process_cpu_seconds_total")
}

/// Longest a report waits for a server's statistics or metrics.
pub const SCRAPE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The value of the unlabelled sample `name` in a Prometheus text exposition.
pub fn prometheus_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// One line saying what [`CpuWindow`] measured.
pub fn cpu_line(cpu: &CpuWindow) -> String {
    if cpu.shared_process {
        return format!(
            "CPU per answered request: {:.1} us (bench and runtime in one process; {} requests, warm-up included)",
            cpu.client_us_per_request, cpu.requests
        );
    }
    let server = cpu
        .server_us_per_request
        .map_or_else(|| "not exported".to_string(), |us| format!("{us:.1} us"));
    format!(
        "CPU per answered request: client {:.1} us, server {server} (process_cpu_seconds_total; {} requests, warm-up included)",
        cpu.client_us_per_request, cpu.requests
    )
}

/// One model's server-side counters over a run (the difference of two snapshots).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerWindow {
    /// Model name.
    pub model: String,
    /// Successful requests.
    pub requests: u64,
    /// Rows inferred.
    pub rows: u64,
    /// Batches executed.
    pub batches: u64,
    /// Mean rows per batch.
    pub rows_per_batch: f64,
    /// Mean µs a successful request waited in the queue.
    pub queue_us: f64,
    /// Mean µs of a batch's input gathering, forward and output splitting.
    pub compute_us_per_batch: f64,
    /// The same per row.
    pub compute_us_per_row: f64,
    /// Of `compute_us_per_batch`: gathering the requests' inputs into the batch.
    pub input_us_per_batch: f64,
    /// Of `compute_us_per_batch`: the model's forward.
    pub infer_us_per_batch: f64,
    /// Of `compute_us_per_batch`: splitting the outputs back to the requests.
    pub output_us_per_batch: f64,
}

/// The per-model differences `after - before` for `models` (missing or idle models skipped).
pub fn window(before: &[ModelStats], after: &[ModelStats], models: &[&str]) -> Vec<ServerWindow> {
    models
        .iter()
        .filter_map(|&m| {
            let a = total(after, m)?;
            let b = total(before, m).unwrap_or_default();
            let rows = a.inference_count.saturating_sub(b.inference_count);
            let batches = a.execution_count.saturating_sub(b.execution_count);
            let requests = a.success.count.saturating_sub(b.success.count);
            if batches == 0 {
                return None;
            }
            let ns = |f: fn(&ModelStats) -> u64| f(&a).saturating_sub(f(&b)) as f64;
            let per_batch = |ns: f64| ns / 1e3 / batches as f64;
            let (input, infer, output) = (
                ns(|s| s.compute_input.ns),
                ns(|s| s.compute_infer.ns),
                ns(|s| s.compute_output.ns),
            );
            let compute = input + infer + output;
            Some(ServerWindow {
                model: m.to_string(),
                requests,
                rows,
                batches,
                rows_per_batch: rows as f64 / batches as f64,
                queue_us: ns(|s| s.queue.ns) / 1e3 / requests.max(1) as f64,
                compute_us_per_batch: per_batch(compute),
                compute_us_per_row: compute / 1e3 / rows.max(1) as f64,
                input_us_per_batch: per_batch(input),
                infer_us_per_batch: per_batch(infer),
                output_us_per_batch: per_batch(output),
            })
        })
        .collect()
}

/// Model `m`'s counters summed over every version listed (`None` when none is).
fn total(stats: &[ModelStats], m: &str) -> Option<ModelStats> {
    let add = |a: StatisticDuration, b: StatisticDuration| StatisticDuration {
        count: a.count + b.count,
        ns: a.ns + b.ns,
    };
    stats
        .iter()
        .filter(|s| s.name == m)
        .cloned()
        .reduce(|a, b| ModelStats {
            inference_count: a.inference_count + b.inference_count,
            execution_count: a.execution_count + b.execution_count,
            success: add(a.success, b.success),
            fail: add(a.fail, b.fail),
            queue: add(a.queue, b.queue),
            compute_input: add(a.compute_input, b.compute_input),
            compute_infer: add(a.compute_infer, b.compute_infer),
            compute_output: add(a.compute_output, b.compute_output),
            ..a
        })
}

/// Parses `GET /v2/models/stats` (Triton's statistics JSON) into [`ModelStats`].
pub fn from_triton_json(json: &serde_json::Value) -> Option<Vec<ModelStats>> {
    let num = |v: &serde_json::Value| {
        v.as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(0)
    };
    let dur = |v: &serde_json::Value| StatisticDuration {
        count: num(&v["count"]),
        ns: num(&v["ns"]),
    };
    let models = json["model_stats"].as_array()?;
    Some(
        models
            .iter()
            .map(|m| {
                let i = &m["inference_stats"];
                ModelStats {
                    name: m["name"].as_str().unwrap_or_default().to_string(),
                    version: num(&m["version"]),
                    inference_count: num(&m["inference_count"]),
                    execution_count: num(&m["execution_count"]),
                    success: dur(&i["success"]),
                    fail: dur(&i["fail"]),
                    queue: dur(&i["queue"]),
                    compute_input: dur(&i["compute_input"]),
                    compute_infer: dur(&i["compute_infer"]),
                    compute_output: dur(&i["compute_output"]),
                    ..Default::default()
                }
            })
            .collect(),
    )
}

/// A markdown table of [`ServerWindow`]s.
pub fn markdown(windows: &[ServerWindow]) -> String {
    let mut s = String::from(
        "| model | requests | rows | batches | rows/batch | queue us/request | compute us/batch | compute us/row |\n|---|---|---|---|---|---|---|---|\n",
    );
    for w in windows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.2} | {:.1} | {:.1} | {:.1} |",
            w.model,
            w.requests,
            w.rows,
            w.batches,
            w.rows_per_batch,
            w.queue_us,
            w.compute_us_per_batch,
            w.compute_us_per_row
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(name: &str, rows: u64, batches: u64, requests: u64, queue_ns: u64) -> ModelStats {
        ModelStats {
            name: name.into(),
            inference_count: rows,
            execution_count: batches,
            success: StatisticDuration {
                count: requests,
                ns: 0,
            },
            queue: StatisticDuration {
                count: requests,
                ns: queue_ns,
            },
            compute_input: StatisticDuration {
                count: batches,
                ns: batches * 1_000,
            },
            compute_infer: StatisticDuration {
                count: batches,
                ns: batches * 100_000,
            },
            compute_output: StatisticDuration {
                count: batches,
                ns: batches * 9_000,
            },
            ..Default::default()
        }
    }

    #[test]
    fn window_is_the_difference_of_two_snapshots() {
        let before = [stats("a", 10, 5, 10, 1_000_000), stats("b", 4, 4, 4, 0)];
        let after = [stats("a", 40, 10, 40, 7_000_000), stats("b", 4, 4, 4, 0)];
        let w = window(&before, &after, &["a", "b", "missing"]);
        // b did nothing in the window, and "missing" is not served: both left out.
        assert_eq!(w.len(), 1);
        let a = &w[0];
        assert_eq!((a.requests, a.rows, a.batches), (30, 30, 5));
        assert!((a.rows_per_batch - 6.0).abs() < 1e-12);
        // 6 ms of queueing over 30 requests.
        assert!((a.queue_us - 200.0).abs() < 1e-9);
        // 110 µs per batch (1 + 100 + 9), 5 batches over 30 rows.
        assert!((a.compute_us_per_batch - 110.0).abs() < 1e-9);
        assert!((a.compute_us_per_row - 110.0 * 5.0 / 30.0).abs() < 1e-9);
        let parts = (
            a.input_us_per_batch,
            a.infer_us_per_batch,
            a.output_us_per_batch,
        );
        assert_eq!(parts, (1.0, 100.0, 9.0));
        let table = markdown(&w);
        assert!(
            table.contains("| a | 30 | 30 | 5 | 6.00 | 200.0 | 110.0 | 18.3 |"),
            "{table}"
        );
    }

    #[test]
    fn triton_json_parses_counts_given_as_numbers_or_strings() {
        let json = serde_json::json!({"model_stats": [{
            "name": "a", "version": "3", "inference_count": 40, "execution_count": "10",
            "inference_stats": {
                "success": {"count": 40, "ns": 5}, "queue": {"count": 40, "ns": 7_000_000},
                "compute_infer": {"count": 10, "ns": "1000000"}
            }
        }]});
        let s = from_triton_json(&json).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(
            (s[0].version, s[0].inference_count, s[0].execution_count),
            (3, 40, 10)
        );
        assert_eq!(s[0].queue.ns, 7_000_000);
        assert_eq!(s[0].compute_infer.ns, 1_000_000);
        assert_eq!(s[0].compute_input, StatisticDuration::default());
        assert!(from_triton_json(&serde_json::json!({"error": "x"})).is_none());
    }

    #[test]
    fn versions_of_a_model_are_summed() {
        let mut v2 = stats("a", 6, 2, 6, 3_000);
        v2.version = 2;
        let w = window(&[], &[stats("a", 8, 2, 8, 1_000), v2], &["a"]);
        assert_eq!((w[0].requests, w[0].rows, w[0].batches), (14, 14, 4));
        assert!((w[0].queue_us - 4.0 / 14.0).abs() < 1e-12);
    }

    #[test]
    fn cpu_per_request_is_the_change_over_the_answered_requests() {
        let cpu = cpu_window(4_000, Some((1.0, 1.4)), Some((10.0, 10.8)), false).unwrap();
        assert_eq!(cpu.requests, 4_000);
        assert!((cpu.client_us_per_request - 100.0).abs() < 1e-9);
        assert!((cpu.server_us_per_request.unwrap() - 200.0).abs() < 1e-9);
        assert_eq!(
            cpu_line(&cpu),
            "CPU per answered request: client 100.0 us, server 200.0 us (process_cpu_seconds_total; 4000 requests, warm-up included)"
        );
        let alone = cpu_window(10, Some((0.0, 0.001)), None, true).unwrap();
        assert_eq!(alone.server_us_per_request, None);
        assert!(cpu_line(&alone).contains("100.0 us (bench and runtime in one process"));
        assert_eq!(cpu_window(0, Some((0.0, 1.0)), None, false), None);
        assert_eq!(cpu_window(5, None, Some((0.0, 1.0)), false), None);
    }

    #[test]
    fn prometheus_samples_are_read_by_exact_name() {
        let text = "# HELP process_cpu_seconds_total Total CPU.\n\
                    # TYPE process_cpu_seconds_total gauge\n\
                    process_cpu_seconds_total_extra 9\n\
                    process_cpu_seconds_total 12.34\n\
                    process_threads 7 1700000000000\n";
        assert_eq!(
            prometheus_value(text, "process_cpu_seconds_total"),
            Some(12.34)
        );
        assert_eq!(prometheus_value(text, "process_threads"), Some(7.0));
        assert_eq!(prometheus_value(text, "process_open_fds"), None);
    }

    #[test]
    fn this_process_cpu_time_grows_with_work() {
        let Some(before) = process_cpu_seconds() else {
            return;
        };
        // Spinning on this thread moves the total within a few ms of CPU; 5 s is a hang.
        let mut x = 0u64;
        let start = std::time::Instant::now();
        let mut after = before;
        while after <= before && start.elapsed() < std::time::Duration::from_secs(5) {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            after = process_cpu_seconds().unwrap();
        }
        assert!(after > before, "{before} -> {after}");
    }

    #[test]
    fn a_model_absent_before_counts_from_zero() {
        let w = window(&[], &[stats("a", 8, 2, 8, 0)], &["a"]);
        assert_eq!((w[0].rows, w[0].batches), (8, 2));
    }
}
