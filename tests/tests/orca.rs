//! ORCA load reports as a balancer receives them, over real sockets: the gRPC
//! `endpoint-load-metrics-bin` trailer, the out-of-band `OpenRcaService` stream and the
//! HTTP `endpoint-load-metrics` header in each form (TEXT, JSON, BIN), decoded with the
//! generated `OrcaLoadReport` and checked against `/v2/models/{m}/load`.
//! `orca_xds_protos.rs` decodes the same with Python's `xds-protos`, which cohost did not write.

mod grpc_common;

use base64::Engine;
use cohost_models::Family;
use cohost_protocol::prost::Message;
use cohost_protocol::xds::data::orca::v3::OrcaLoadReport;
use cohost_protocol::xds::service::orca::v3::OrcaLoadReportRequest;
use cohost_protocol::xds::service::orca::v3::open_rca_service_client::OpenRcaServiceClient;
use cohost_runtime::Tensor;
use cohost_tests::{TestServer, json_input, parse_load_header, sample_inputs};
use grpc_common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Every value finite and not negative, the fractions at most 1, the named metrics there.
fn assert_sane(r: &OrcaLoadReport, per_call: bool) {
    let scalars = [
        r.cpu_utilization,
        r.mem_utilization,
        r.rps_fractional,
        r.eps,
        r.application_utilization,
    ];
    let all = scalars
        .iter()
        .chain(r.utilization.values())
        .chain(r.named_metrics.values());
    for v in all {
        assert!(v.is_finite() && *v >= 0.0, "{r:?}");
    }
    assert!(
        r.cpu_utilization <= 1.0 && r.utilization["lanes"] <= 1.0,
        "{r:?}"
    );
    assert!(r.application_utilization >= r.cpu_utilization, "{r:?}");
    assert!(r.named_metrics.contains_key("host_load"), "{r:?}");
    assert_eq!(
        r.named_metrics.contains_key("model_load"),
        per_call,
        "{r:?}"
    );
}

/// The HTTP body of an inference over `inputs`.
fn http_body(inputs: &[Tensor]) -> Value {
    json!({ "inputs": inputs.iter().map(json_input).collect::<Vec<_>>() })
}

/// Parses Envoy's TEXT grammar (`key=value` or `key:value`, comma separated) into a report;
/// None for a key Envoy does not know or a value that is not a finite number.
fn parse_text(value: &str) -> Option<OrcaLoadReport> {
    let mut r = OrcaLoadReport::default();
    for part in value.strip_prefix("TEXT ")?.split(',') {
        let (k, v) = part.trim().split_once(['=', ':'])?;
        let v: f64 = v.trim().parse().ok().filter(|v: &f64| v.is_finite())?;
        match k.trim() {
            "application_utilization" => r.application_utilization = v,
            "cpu_utilization" => r.cpu_utilization = v,
            "mem_utilization" => r.mem_utilization = v,
            "rps_fractional" => r.rps_fractional = v,
            "eps" => r.eps = v,
            k => {
                let name = k.strip_prefix("named_metrics.")?;
                r.named_metrics.insert(name.to_string(), v);
            }
        }
    }
    Some(r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_in_the_trailer_the_stream_and_every_http_form() {
    let mut server = TestServer::start(|_| {}).await;
    let model = server.model_of(Family::Mlp);
    let (_, cfg) = server.handle().runtime.config(&model, None).unwrap();
    let inputs = sample_inputs(&cfg, 2, 5);
    let mut c = client(&server).await;

    // gRPC: a burst, then the binary trailer of the next call counts it.
    for _ in 0..20 {
        c.model_infer(infer_request(&model, &inputs, true))
            .await
            .unwrap();
    }
    // Reports are sampled at most every 100 ms: the next sample comes after the burst.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let resp = c
        .model_infer(infer_request(&model, &inputs, true))
        .await
        .unwrap();
    let bin = resp
        .metadata()
        .get_bin("endpoint-load-metrics-bin")
        .expect("ORCA report in the trailer")
        .to_bytes()
        .unwrap();
    let report = OrcaLoadReport::decode(bin).expect("an OrcaLoadReport");
    assert_sane(&report, true);
    assert!(report.rps_fractional > 0.0, "{report:?}");
    assert!(
        report.cpu_utilization > 0.0,
        "lanes ran batches: {report:?}"
    );
    assert_eq!(report.eps, 0.0, "{report:?}");
    // The text form stays beside it.
    let text = resp.metadata().get("endpoint-load-metrics").unwrap();
    assert!(parse_load_header(text.to_str().unwrap()).is_some());

    // A refused call (wrong shape) carries a report too, and the next one counts the error.
    let mut bad = infer_request(&model, &inputs, false);
    let t = &mut bad.inputs[0];
    t.shape[1] += 1;
    let rows = t.shape[0] as usize;
    let contents = t.contents.as_mut().unwrap();
    contents
        .fp32_contents
        .extend(std::iter::repeat_n(0.0, rows));
    let e = c.model_infer(bad).await.unwrap_err();
    assert!(
        e.metadata().get_bin("endpoint-load-metrics-bin").is_some(),
        "{e:?}"
    );
    // Reports are sampled at most every 100 ms: the next sample comes after the refusal.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let resp = c
        .model_infer(infer_request(&model, &inputs, true))
        .await
        .unwrap();
    let bin = resp
        .metadata()
        .get_bin("endpoint-load-metrics-bin")
        .unwrap();
    let report = OrcaLoadReport::decode(bin.to_bytes().unwrap()).unwrap();
    assert!(
        report.eps > 0.0,
        "the refusal is an error per second: {report:?}"
    );

    // HTTP: each form on request, and the server's default (TEXT) without one; the idle
    // model's load matches /v2/models/{m}/load.
    let url = server.url(&format!("/v2/models/{model}/infer"));
    for format in ["TEXT", "JSON", "BIN", ""] {
        let mut req = server.client.post(&url).json(&http_body(&inputs));
        if !format.is_empty() {
            req = req.header("endpoint-load-metrics-format", format);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200);
        let value = res.headers()["endpoint-load-metrics"]
            .to_str()
            .unwrap()
            .to_string();
        let report = match format {
            "JSON" => {
                let v: Value = serde_json::from_str(value.strip_prefix("JSON ").unwrap()).unwrap();
                let mut r = OrcaLoadReport {
                    application_utilization: v["applicationUtilization"].as_f64().unwrap(),
                    cpu_utilization: v["cpuUtilization"].as_f64().unwrap(),
                    rps_fractional: v["rpsFractional"].as_f64().unwrap(),
                    eps: v["eps"].as_f64().unwrap(),
                    ..Default::default()
                };
                for (key, field) in [
                    ("namedMetrics", &mut r.named_metrics),
                    ("utilization", &mut r.utilization),
                ] {
                    for (k, x) in v[key].as_object().unwrap() {
                        field.insert(k.clone(), x.as_f64().unwrap());
                    }
                }
                r
            }
            "BIN" => {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(value.strip_prefix("BIN ").unwrap())
                    .unwrap();
                OrcaLoadReport::decode(&raw[..]).unwrap()
            }
            _ => {
                let mut r =
                    parse_text(&value).unwrap_or_else(|| panic!("Envoy's grammar: {value}"));
                r.utilization.insert("lanes".into(), r.cpu_utilization);
                r
            }
        };
        assert_sane(&report, true);
        assert!(report.rps_fractional > 0.0, "{format}: {report:?}");
        let (status, load) = server.get_json(&format!("/v2/models/{model}/load")).await;
        assert_eq!(status, 200);
        assert_eq!(
            report.named_metrics["model_load"],
            load["model_load"].as_f64().unwrap(),
            "{format}: {value} vs {load}"
        );
        assert_eq!(
            report.named_metrics["host_load"],
            load["host_load"].as_f64().unwrap(),
            "{format}: {value} vs {load}"
        );
    }

    // Out of band: a first report at once, the next no sooner than the 1 s floor although
    // 10 ms were asked for; shutdown ends the stream rather than waiting on it.
    let mut oob = OpenRcaServiceClient::connect(server.grpc_url())
        .await
        .unwrap();
    let mut stream = oob
        .stream_core_metrics(OrcaLoadReportRequest {
            report_interval: Some(cohost_protocol::prost_types::Duration {
                seconds: 0,
                nanos: 10_000_000,
            }),
            request_cost_names: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().expect("a first report");
    let at = Instant::now();
    assert_sane(&first, false);
    let second = stream.message().await.unwrap().expect("a second report");
    assert_sane(&second, false);
    assert!(
        at.elapsed() >= Duration::from_millis(900),
        "{:?}",
        at.elapsed()
    );
    tokio::time::timeout(Duration::from_secs(60), server.stop())
        .await
        .expect("shutdown ends the report stream");
    let end = stream.message().await;
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
}
