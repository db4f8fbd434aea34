//! KServe v2 HTTP end to end, success paths: health, metadata, config, stats, load,
//! JSON and binary inference checked against an in-process runtime, metrics.

use cohost_models::Family;
use cohost_runtime::{InferRequest, Tensor, TensorData};
use cohost_tests::*;
use serde_json::{Value, json};

/// Runs `inputs` through the in-process reference runtime over the same repository.
async fn reference(server: &TestServer, model: &str, inputs: Vec<Tensor>) -> Vec<Tensor> {
    let runtime = reference_runtime(server.repo.path());
    let request = InferRequest {
        inputs,
        ..Default::default()
    };
    let out = runtime
        .infer(model, None, request)
        .await
        .expect("reference infer")
        .outputs;
    runtime.shutdown();
    out
}

fn as_f32(t: &Tensor) -> Vec<f32> {
    match &t.data {
        TensorData::F32(v) => v.clone(),
        other => panic!("expected FP32 output, got {:?}", other.datatype()),
    }
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

fn json_f32(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("data array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_server_and_model_metadata() {
    let mut s = TestServer::start(|_| {}).await;
    assert_eq!(s.get_json("/v2/health/live").await.0, 200);
    assert_eq!(s.get_json("/v2/health/ready").await.0, 200);

    let (status, md) = s.get_json("/v2").await;
    assert_eq!(status, 200);
    assert_eq!(md["name"], "cohost");
    let ext: Vec<&str> = md["extensions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for e in [
        "binary_tensor_data",
        "model_configuration",
        "statistics",
        "model_repository",
    ] {
        assert!(ext.contains(&e), "extension {e} missing from {ext:?}");
    }
    // What the models run on: the CPU backend here (CUDA absent), with its lanes.
    assert_eq!(md["device"]["backend"], "cpu");
    assert_eq!(md["device"]["lanes"], 2);

    for family in [Family::Mlp, Family::Dlrm] {
        let model = s.model_of(family);
        let (_, config) = s.handle().runtime.config(&model, None).unwrap();
        let (status, md) = s.get_json(&format!("/v2/models/{model}")).await;
        assert_eq!(status, 200, "{md}");
        assert_eq!(md["name"], model.as_str());
        assert_eq!(md["versions"], json!(["1"]));
        let inputs = md["inputs"].as_array().unwrap();
        assert_eq!(inputs.len(), config.inputs.len());
        for (got, want) in inputs.iter().zip(&config.inputs) {
            assert_eq!(got["name"], want.name.as_str());
            assert_eq!(got["datatype"], want.datatype.as_str());
            assert_eq!(got["shape"], json!(want.dims));
        }
        assert_eq!(
            s.get_json(&format!("/v2/models/{model}/versions/1"))
                .await
                .0,
            200
        );
        assert_eq!(
            s.get_json(&format!("/v2/models/{model}/ready")).await.0,
            200
        );
        assert_eq!(
            s.get_json(&format!("/v2/models/{model}/versions/1/ready"))
                .await
                .0,
            200
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triton_config_stats_and_load_endpoints() {
    let mut s = TestServer::start(|_| {}).await;
    let model = s.model_of(Family::Mlp);
    let (_, config) = s.handle().runtime.config(&model, None).unwrap();

    for path in [
        format!("/v2/models/{model}/config"),
        format!("/v2/models/{model}/versions/1/config"),
    ] {
        let (status, c) = s.get_json(&path).await;
        assert_eq!(status, 200, "{c}");
        assert_eq!(c["name"], model.as_str());
        assert_eq!(c["max_batch_size"], config.max_batch_size);
        let input = &c["input"][0];
        assert_eq!(input["data_type"], "TYPE_FP32");
        assert_eq!(
            input["dims"],
            json!(config.inputs[0].dims[1..]),
            "dims without batch dim"
        );
        assert_eq!(c["output"][0]["dims"], json!(config.outputs[0].dims[1..]));
        assert!(
            c["dynamic_batching"].is_object(),
            "batching model lists dynamic_batching: {c}"
        );
    }

    // One inference so the statistics have something to show.
    let inputs = sample_inputs(&config, 3, 1);
    let body = json!({ "inputs": inputs.iter().map(json_input).collect::<Vec<_>>() });
    assert_eq!(
        s.post_json(&format!("/v2/models/{model}/infer"), &body)
            .await
            .0,
        200
    );

    // The lane records batch statistics just after answering: allow it a moment.
    let mut st = Value::Null;
    for _ in 0..50 {
        let (status, v) = s.get_json(&format!("/v2/models/{model}/stats")).await;
        assert_eq!(status, 200, "{v}");
        st = v;
        if st["model_stats"][0]["execution_count"].as_u64() >= Some(1) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let m = &st["model_stats"][0];
    assert_eq!(m["name"], model.as_str());
    assert_eq!(m["version"], "1");
    assert!(
        m["inference_stats"]["success"]["count"].as_u64().unwrap() >= 1,
        "{m}"
    );
    assert!(
        m["inference_stats"]["success"]["ns"].as_u64().unwrap() > 0,
        "{m}"
    );
    assert!(m["inference_count"].as_u64().unwrap() >= 3, "{m}");
    assert!(m["execution_count"].as_u64().unwrap() >= 1, "{m}");
    assert!(!m["batch_stats"].as_array().unwrap().is_empty(), "{m}");
    assert!(
        m["batch_stats"][0]["compute_infer"]["count"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert_eq!(
        s.get_json(&format!("/v2/models/{model}/versions/1/stats"))
            .await
            .0,
        200
    );

    let (status, all) = s.get_json("/v2/models/stats").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = all["model_stats"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert!(
        names.contains(&model.as_str()) && names.len() >= 2,
        "{names:?}"
    );

    let (status, load) = s.get_json(&format!("/v2/models/{model}/load")).await;
    assert_eq!(status, 200, "{load}");
    assert_eq!(load["model"], model.as_str());
    for k in ["model_load", "host_load"] {
        assert!(load[k].as_f64().unwrap() >= 0.0, "{k} in {load}");
    }
    for k in ["queued", "in_flight"] {
        assert!(load[k].is_u64(), "{k} in {load}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_infer_matches_runtime_with_nested_and_flat_data() {
    let mut s = TestServer::start(|_| {}).await;
    for family in [Family::Mlp, Family::Dlrm] {
        let model = s.model_of(family);
        let (_, config) = s.handle().runtime.config(&model, None).unwrap();
        let inputs = sample_inputs(&config, 4, 42);
        let want = reference(&s, &model, inputs.clone()).await;

        // Flat data, with an id and a timeout parameter that is generous.
        let body = json!({
            "id": "req-1",
            "parameters": { "timeout": 10_000_000 },
            "inputs": inputs.iter().map(json_input).collect::<Vec<_>>(),
        });
        let res = s.post(&format!("/v2/models/{model}/infer"), &body).await;
        assert_eq!(res.status(), 200);
        let load = res
            .headers()
            .get("endpoint-load-metrics")
            .expect("load header")
            .to_str()
            .unwrap()
            .to_string();
        let (model_load, host_load) =
            parse_load_header(&load).unwrap_or_else(|| panic!("unparseable {load}"));
        assert!(model_load >= 0.0 && host_load >= 0.0);
        let out: Value = res.json().await.unwrap();
        assert_eq!(out["id"], "req-1");
        assert_eq!(out["model_name"], model.as_str());
        assert_eq!(out["model_version"], "1");
        let outputs = out["outputs"].as_array().unwrap();
        assert_eq!(outputs.len(), want.len());
        for (got, w) in outputs.iter().zip(&want) {
            assert_eq!(got["name"], w.name.as_str());
            assert_eq!(got["datatype"], "FP32");
            assert_eq!(got["shape"], json!(w.shape));
            assert_close(
                &json_f32(&got["data"]),
                &as_f32(w),
                &format!("{model} flat {}", w.name),
            );
        }

        // Nested data: one inner array per row.
        let nested: Vec<Value> = inputs
            .iter()
            .map(|t| {
                let mut v = json_input(t);
                let width = t.shape[1] as usize;
                let flat = v["data"].as_array().unwrap().clone();
                v["data"] = Value::Array(
                    flat.chunks(width)
                        .map(|r| Value::Array(r.to_vec()))
                        .collect(),
                );
                v
            })
            .collect();
        let (status, out) = s
            .post_json(
                &format!("/v2/models/{model}/versions/1/infer"),
                &json!({ "inputs": nested }),
            )
            .await;
        assert_eq!(status, 200, "{out}");
        assert!(out.get("id").is_none());
        assert_close(
            &json_f32(&out["outputs"][0]["data"]),
            &as_f32(&want[0]),
            &format!("{model} nested"),
        );
    }
    s.stop().await;
}

/// Lanes that spin for work (`--lane-spin-us`) and the front end that then spins for
/// their answers change nothing in the answers: one request at a time (each taken by a
/// spinning lane) and a concurrent burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinning_lanes_answer_like_the_runtime() {
    let mut s = TestServer::start(|o| o.lane_spin = std::time::Duration::from_millis(2)).await;
    let runtime = reference_runtime(s.repo.path());
    for family in [Family::Mlp, Family::Dlrm] {
        let model = s.model_of(family);
        let (_, config) = s.handle().runtime.config(&model, None).unwrap();
        let path = format!("/v2/models/{model}/infer");
        let mut cases = Vec::new();
        for seed in 0..40u64 {
            let inputs = sample_inputs(&config, 1 + (seed % 3) as usize, seed);
            let request = InferRequest {
                inputs: inputs.clone(),
                ..Default::default()
            };
            let want = runtime.infer(&model, None, request).await.unwrap().outputs;
            let body = json!({ "inputs": inputs.iter().map(json_input).collect::<Vec<_>>() });
            cases.push((body, want));
        }
        for (i, (body, want)) in cases.iter().enumerate() {
            let (status, out) = s.post_json(&path, body).await;
            assert_eq!(status, 200, "{out}");
            let got = json_f32(&out["outputs"][0]["data"]);
            assert_close(&got, &as_f32(&want[0]), &format!("{model} sequential #{i}"));
        }
        let burst: Vec<_> = cases
            .iter()
            .map(|(body, _)| {
                let post = s.client.post(s.url(&path)).json(body).send();
                tokio::spawn(async move {
                    let res = post.await.unwrap();
                    (res.status().as_u16(), res.json::<Value>().await.unwrap())
                })
            })
            .collect();
        for (i, (task, (_, want))) in burst.into_iter().zip(&cases).enumerate() {
            let (status, out) = task.await.unwrap();
            assert_eq!(status, 200, "{out}");
            let got = json_f32(&out["outputs"][0]["data"]);
            assert_close(&got, &as_f32(&want[0]), &format!("{model} burst #{i}"));
        }
    }
    runtime.shutdown();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_tensors_in_and_out_match_runtime() {
    let mut s = TestServer::start(|_| {}).await;
    for family in [Family::Mlp, Family::Dlrm] {
        let model = s.model_of(family);
        let (_, config) = s.handle().runtime.config(&model, None).unwrap();
        let inputs = sample_inputs(&config, 5, 9);
        let want = reference(&s, &model, inputs.clone()).await;
        let url = s.url(&format!("/v2/models/{model}/infer"));

        // Binary inputs, binary outputs for all (request-level binary_data_output).
        let header = json!({
            "id": "bin",
            "parameters": { "binary_data_output": true },
            "inputs": inputs.iter().map(|t| json!({
                "name": t.name, "shape": t.shape, "datatype": t.datatype().as_str(),
                "parameters": { "binary_data_size": t.data.to_le_bytes().len() },
            })).collect::<Vec<_>>(),
        });
        let raws: Vec<Vec<u8>> = inputs.iter().map(|t| t.data.to_le_bytes()).collect();
        let (body, n) = binary_body(&header, &raws);
        let res = s
            .client
            .post(&url)
            .header("Inference-Header-Content-Length", n)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert!(res.headers().contains_key("endpoint-load-metrics"));
        let hl = res
            .headers()
            .get("inference-header-content-length")
            .map(|v| v.to_str().unwrap().parse().unwrap());
        assert!(
            hl.is_some(),
            "binary response carries Inference-Header-Content-Length"
        );
        let (head, raw) = split_binary(hl, &res.bytes().await.unwrap());
        assert_eq!(head["id"], "bin");
        let out0 = &head["outputs"][0];
        assert!(out0.get("data").is_none(), "binary output has no JSON data");
        let size = out0["parameters"]["binary_data_size"].as_u64().unwrap() as usize;
        assert_close(
            &f32s(&raw[..size]),
            &as_f32(&want[0]),
            &format!("{model} binary"),
        );

        // JSON inputs; one requested output as binary (output-level binary_data).
        let name = &config.outputs[0].name;
        let body = json!({
            "inputs": inputs.iter().map(json_input).collect::<Vec<_>>(),
            "outputs": [{ "name": name, "parameters": { "binary_data": true } }],
        });
        let res = s.client.post(&url).json(&body).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let hl = res
            .headers()
            .get("inference-header-content-length")
            .map(|v| v.to_str().unwrap().parse().unwrap());
        let (head, raw) = split_binary(hl, &res.bytes().await.unwrap());
        assert_eq!(head["outputs"].as_array().unwrap().len(), 1);
        assert_eq!(head["outputs"][0]["name"], name.as_str());
        assert_close(
            &f32s(&raw),
            &as_f32(&want[0]),
            &format!("{model} binary output only"),
        );

        // Requested subset as JSON.
        let body = json!({
            "inputs": inputs.iter().map(json_input).collect::<Vec<_>>(),
            "outputs": [{ "name": name }],
        });
        let res = s.client.post(&url).json(&body).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(
            res.headers()
                .get("inference-header-content-length")
                .is_none()
        );
        let out: Value = res.json().await.unwrap();
        assert_eq!(out["outputs"].as_array().unwrap().len(), 1);
        assert_close(
            &json_f32(&out["outputs"][0]["data"]),
            &as_f32(&want[0]),
            "subset",
        );
    }
    s.stop().await;
}
