//! Prometheus `/metrics` after traffic, and the per-model load counter (header, poll
//! endpoint) under saturation.

use cohost_models::Family;
use cohost_tests::*;
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_traffic_on_both_ports() {
    let mut s = TestServer::start(|o| o.metrics_port = Some(0)).await;
    let model = s.model_of(Family::Dlrm);
    let (_, config) = s.handle().runtime.config(&model, None).unwrap();
    let body = json!({ "inputs": sample_inputs(&config, 2, 3).iter().map(json_input).collect::<Vec<_>>() });
    for _ in 0..3 {
        assert_eq!(
            s.post_json(&format!("/v2/models/{model}/infer"), &body)
                .await
                .0,
            200
        );
    }
    let (status, _) = s
        .post_json(
            &format!("/v2/models/{model}/infer"),
            &json!({ "inputs": 1 }),
        )
        .await;
    assert_eq!(status, 400);

    let text = s.get_text("/metrics").await;
    for name in [
        "cohost_request_success_total",
        "cohost_request_failure_total",
        "cohost_inference_count_total",
        "cohost_execution_count_total",
        "cohost_batch_size_bucket",
        "cohost_queue_duration_seconds_bucket",
        "cohost_compute_duration_seconds_bucket",
        "cohost_request_duration_seconds_bucket",
        "cohost_pending_requests",
        "cohost_inflight_requests",
        "cohost_model_load",
        "cohost_host_load",
        "cohost_lane_busy_seconds_total",
    ] {
        assert!(text.contains(name), "/metrics lacks {name}:\n{text}");
    }
    // The standard process metrics, read at the scrape: this test process has run three
    // DLRM batches and started a server, so its CPU total is positive.
    if cfg!(target_os = "linux") {
        let cpu = prometheus_value(&text, "process_cpu_seconds_total")
            .unwrap_or_else(|| panic!("/metrics lacks process_cpu_seconds_total:\n{text}"));
        assert!(
            cpu > 0.0 && cpu.is_finite(),
            "process_cpu_seconds_total {cpu}"
        );
        let rss = prometheus_value(&text, "process_resident_memory_bytes").unwrap();
        assert!(rss > 1e6, "process_resident_memory_bytes {rss}");
    }
    let edge = text.lines().any(|l| {
        l.starts_with("cohost_request_failure_total")
            && l.contains(&format!("model=\"{model}\""))
            && l.contains("reason=\"invalid_argument\"")
    });
    assert!(
        edge,
        "malformed request counted as invalid_argument for {model}:\n{text}"
    );

    let addr = s.handle().metrics_addr.expect("metrics port bound");
    let other = s
        .client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    assert!(
        other
            .text()
            .await
            .unwrap()
            .contains("cohost_request_success_total")
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_counter_rises_under_saturation_and_drains() {
    let mut s = TestServer::start(|o| o.lanes = 1).await;
    let busy = s.model_of(Family::Dlrm);
    let idle = s.model_of(Family::Mlp);
    let (_, config) = s.handle().runtime.config(&busy, None).unwrap();
    let body = json!({ "inputs": sample_inputs(&config, config.max_batch_size, 3).iter().map(json_input).collect::<Vec<_>>() });
    let url = s.url(&format!("/v2/models/{busy}/infer"));

    let (_, idle_config) = s.handle().runtime.config(&idle, None).unwrap();
    let idle_body = json!({ "inputs": sample_inputs(&idle_config, 1, 4).iter().map(json_input).collect::<Vec<_>>() });
    let idle_url = s.url(&format!("/v2/models/{idle}/infer"));
    let (mut peak, mut idle_peak, mut idle_host_peak) = (0.0f64, 0.0f64, 0.0f64);
    let mut header_peak = 0.0f64;
    // A burst of 256 full batches can drain before the first poll on a fast machine, so
    // bursts repeat until the polls have overlapped one (the properties are the same in
    // every burst; only the overlap is left to timing).
    for _burst in 0..20 {
        let mut tasks = Vec::new();
        for _ in 0..256 {
            let (client, url, body) = (s.client.clone(), url.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                let res = client.post(&url).json(&body).send().await.unwrap();
                let header = res
                    .headers()
                    .get("endpoint-load-metrics")
                    .map(|v| v.to_str().unwrap().to_string());
                (res.status().as_u16(), header)
            }));
        }
        while !tasks.iter().all(|t| t.is_finished()) {
            let (_, l) = s.get_json(&format!("/v2/models/{busy}/load")).await;
            peak = peak.max(l["model_load"].as_f64().unwrap());
            let (_, l) = s.get_json(&format!("/v2/models/{idle}/load")).await;
            idle_peak = idle_peak.max(l["model_load"].as_f64().unwrap());
            idle_host_peak = idle_host_peak.max(l["host_load"].as_f64().unwrap());
            // A quiet model's responses carry the host load as a router's tie-breaker.
            let res = s
                .client
                .post(&idle_url)
                .json(&idle_body)
                .send()
                .await
                .unwrap();
            if let Some(h) = res.headers().get("endpoint-load-metrics") {
                let (_, host) = parse_load_header(h.to_str().unwrap()).expect("parseable");
                idle_host_peak = idle_host_peak.max(host);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        for t in tasks {
            let (status, header) = t.await.unwrap();
            assert!(status == 200 || status == 429, "status {status}");
            let (model_load, host_load) =
                parse_load_header(&header.expect("load header")).expect("parseable");
            assert!(host_load >= 0.0);
            header_peak = header_peak.max(model_load);
        }
        if idle_host_peak > 0.0 && (peak > 0.0 || header_peak > 0.0) {
            break;
        }
    }
    assert!(
        idle_host_peak > 0.0,
        "the idle model's header shows the busy host"
    );
    assert!(
        peak > 0.0 || header_peak > 0.0,
        "a saturated model shows load (poll {peak}, header {header_peak})"
    );
    assert_eq!(idle_peak, 0.0, "an idle model shows no load of its own");

    // Drained: back to zero.
    let mut last = Value::Null;
    for _ in 0..100 {
        last = s.get_json(&format!("/v2/models/{busy}/load")).await.1;
        if last["model_load"].as_f64() == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(last["model_load"].as_f64(), Some(0.0), "{last}");
    assert_eq!(last["queued"], 0);
    assert_eq!(last["in_flight"], 0);

    // The header and the Prometheus gauge come from one computation: after a response,
    // with nothing else running, they agree.
    let res = s.client.post(&url).json(&body).send().await.unwrap();
    let header = res
        .headers()
        .get("endpoint-load-metrics")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let (header_load, _) = parse_load_header(&header).unwrap();
    let text = s.get_text("/metrics").await;
    let gauge: f64 = text
        .lines()
        .find(|l| l.starts_with("cohost_model_load{") && l.contains(&format!("model=\"{busy}\"")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("cohost_model_load gauge for the busy model");
    assert_eq!(gauge, header_load, "gauge {gauge} vs header {header}");
    s.stop().await;
}

/// The value of an unlabelled sample `name` in Prometheus text.
fn prometheus_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}
