//! KServe v2 HTTP end to end, error paths: each gets the right status, a message naming
//! the problem, and the server keeps serving afterwards.

use cohost_models::Family;
use cohost_tests::*;
use serde_json::{Value, json};

/// POSTs raw bytes with optional binary header; returns status, error text and headers.
async fn post_raw(
    s: &TestServer,
    path: &str,
    body: Vec<u8>,
    header_len: Option<usize>,
) -> (u16, String, reqwest::header::HeaderMap) {
    let mut req = s
        .client
        .post(s.url(path))
        .header("content-type", "application/json")
        .body(body);
    if let Some(n) = header_len {
        req = req.header("Inference-Header-Content-Length", n);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let v: Value = res.json().await.unwrap_or(Value::Null);
    (
        status,
        v["error"].as_str().unwrap_or_default().to_string(),
        headers,
    )
}

fn expect(status: u16, msg: &str, want_status: u16, needles: &[&str]) {
    assert_eq!(status, want_status, "message: {msg}");
    let lower = msg.to_lowercase();
    for n in needles {
        assert!(
            lower.contains(&n.to_lowercase()),
            "error {msg:?} should mention {n:?}"
        );
    }
}

async fn still_serving(s: &TestServer, model: &str, good: &Value) {
    let (status, out) = s
        .post_json(&format!("/v2/models/{model}/infer"), good)
        .await;
    assert_eq!(status, 200, "server still serves after errors: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_400_naming_the_problem() {
    let mut s = TestServer::start(|_| {}).await;
    let model = s.model_of(Family::Mlp);
    let (_, config) = s.handle().runtime.config(&model, None).unwrap();
    let input = &config.inputs[0];
    let width = input.dims[1] as usize;
    let good = json!({ "inputs": sample_inputs(&config, 1, 5).iter().map(json_input).collect::<Vec<_>>() });
    let path = format!("/v2/models/{model}/infer");

    let (st, msg, h) = post_raw(&s, &path, b"{\"inputs\": [".to_vec(), None).await;
    expect(st, &msg, 400, &["malformed", "json"]);
    assert!(
        h.contains_key("endpoint-load-metrics"),
        "errors carry the load header too"
    );

    let (st, msg, _) = post_raw(
        &s,
        &path,
        br#"{"inputs":[{"name":"x","datatype":"FP32","data":[1]}]}"#.to_vec(),
        None,
    )
    .await;
    expect(st, &msg, 400, &["shape"]);

    // Element count does not match the declared shape.
    let bad = json!({ "inputs": [{ "name": input.name, "shape": [1, width], "datatype": "FP32", "data": vec![0.5; width - 1] }] });
    let (st, v) = s.post_json(&path, &bad).await;
    expect(
        st,
        v["error"].as_str().unwrap_or(""),
        400,
        &[&input.name, "elements"],
    );

    // Shape that does not fit the model (one extra column).
    let bad = json!({ "inputs": [{ "name": input.name, "shape": [1, width + 1], "datatype": "FP32", "data": vec![0.5; width + 1] }] });
    let (st, v) = s.post_json(&path, &bad).await;
    expect(st, v["error"].as_str().unwrap_or(""), 400, &[&input.name]);

    // Wrong datatype: BYTES to a numeric model, and an unknown datatype name.
    let bad = json!({ "inputs": [{ "name": input.name, "shape": [1, width], "datatype": "BYTES", "data": vec!["a"; width] }] });
    let (st, v) = s.post_json(&path, &bad).await;
    expect(
        st,
        v["error"].as_str().unwrap_or(""),
        400,
        &[&input.name, "BYTES"],
    );
    let bad = json!({ "inputs": [{ "name": input.name, "shape": [1, width], "datatype": "FP33", "data": vec![0.5; width] }] });
    let (st, v) = s.post_json(&path, &bad).await;
    expect(
        st,
        v["error"].as_str().unwrap_or(""),
        400,
        &["unknown datatype", "FP33"],
    );
    let bad = json!({ "inputs": [{ "name": input.name, "shape": [1, width], "datatype": "FP32", "data": vec!["x"; width] }] });
    let (st, v) = s.post_json(&path, &bad).await;
    expect(
        st,
        v["error"].as_str().unwrap_or(""),
        400,
        &[&input.name, "FP32"],
    );

    // A missing input and an unknown one.
    let (st, v) = s.post_json(&path, &json!({ "inputs": [] })).await;
    expect(st, v["error"].as_str().unwrap_or(""), 400, &[&input.name]);

    still_serving(&s, &model, &good).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_models_versions_names_and_endpoints() {
    let mut s = TestServer::start(|_| {}).await;
    let model = s.model_of(Family::Mlp);
    let (_, config) = s.handle().runtime.config(&model, None).unwrap();
    let good = json!({ "inputs": sample_inputs(&config, 1, 5).iter().map(json_input).collect::<Vec<_>>() });

    let (st, v) = s.post_json("/v2/models/no-such-model/infer", &good).await;
    expect(
        st,
        v["error"].as_str().unwrap_or(""),
        404,
        &["no-such-model"],
    );
    let (st, v) = s.get_json("/v2/models/no-such-model").await;
    expect(
        st,
        v["error"].as_str().unwrap_or(""),
        404,
        &["no-such-model"],
    );
    let (st, v) = s
        .post_json(&format!("/v2/models/{model}/versions/999/infer"), &good)
        .await;
    expect(st, v["error"].as_str().unwrap_or(""), 404, &["999"]);
    let (st, v) = s
        .get_json(&format!("/v2/models/{model}/versions/999/config"))
        .await;
    expect(st, v["error"].as_str().unwrap_or(""), 404, &["999"]);
    let (st, v) = s
        .get_json(&format!("/v2/models/{model}/versions/abc"))
        .await;
    expect(
        st,
        v["error"].as_str().unwrap_or(""),
        400,
        &["invalid model version", "abc"],
    );
    assert_ne!(s.get_json("/v2/models/no-such-model/ready").await.0, 200);

    // Names that could escape the repository folder.
    for bad in ["..%2F..%2Fetc", "a%2Fb", ".hidden", "a%5Cb"] {
        let (st, v) = s.post_json(&format!("/v2/models/{bad}/infer"), &good).await;
        expect(
            st,
            v["error"].as_str().unwrap_or(""),
            400,
            &["invalid model name"],
        );
    }
    let (st, v) = s.get_json("/v2/no/such/endpoint").await;
    expect(
        st,
        v["error"].as_str().unwrap_or(""),
        404,
        &["/v2/no/such/endpoint"],
    );

    still_serving(&s, &model, &good).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_is_413() {
    let mut s = TestServer::start(|o| o.max_body_bytes = 4096).await;
    let model = s.model_of(Family::Mlp);
    let (_, config) = s.handle().runtime.config(&model, None).unwrap();
    let good = json!({ "inputs": sample_inputs(&config, 1, 5).iter().map(json_input).collect::<Vec<_>>() });
    let big = format!("{{\"inputs\": [], \"pad\": \"{}\"}}", "x".repeat(20_000)).into_bytes();
    let (st, msg, _) = post_raw(&s, &format!("/v2/models/{model}/infer"), big, None).await;
    expect(st, &msg, 413, &["4096", "--max-body-bytes"]);
    still_serving(&s, &model, &good).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_binary_payloads_are_400() {
    let mut s = TestServer::start(|_| {}).await;
    let model = s.model_of(Family::Mlp);
    let (_, config) = s.handle().runtime.config(&model, None).unwrap();
    let inputs = sample_inputs(&config, 2, 5);
    let t = &inputs[0];
    let raw = t.data.to_le_bytes();
    let path = format!("/v2/models/{model}/infer");
    let header = json!({ "inputs": [{
        "name": t.name, "shape": t.shape, "datatype": "FP32",
        "parameters": { "binary_data_size": raw.len() },
    }]});

    // Fewer bytes than binary_data_size declares.
    let (body, n) = binary_body(&header, &[raw[..raw.len() - 3].to_vec()]);
    let (st, msg, _) = post_raw(&s, &path, body, Some(n)).await;
    expect(st, &msg, 400, &["truncated", &t.name]);

    // Header length beyond the body.
    let (body, _) = binary_body(&header, &[]);
    let len = body.len();
    let (st, msg, _) = post_raw(&s, &path, body, Some(len + 100)).await;
    expect(st, &msg, 400, &["Inference-Header-Content-Length"]);

    // A size that does not match the shape (one element short, declared consistently).
    let short = json!({ "inputs": [{
        "name": t.name, "shape": t.shape, "datatype": "FP32",
        "parameters": { "binary_data_size": raw.len() - 4 },
    }]});
    let (body, n) = binary_body(&short, &[raw[..raw.len() - 4].to_vec()]);
    let (st, msg, _) = post_raw(&s, &path, body, Some(n)).await;
    expect(st, &msg, 400, &[&t.name, "elements"]);

    // The complete payload works.
    let (body, n) = binary_body(&header, std::slice::from_ref(&raw));
    let (st, msg, _) = post_raw(&s, &path, body, Some(n)).await;
    assert_eq!(st, 200, "{msg}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_embedding_index_and_timeouts() {
    let mut s = TestServer::start(|_| {}).await;
    let model = s.model_of(Family::Dlrm);
    let (_, config) = s.handle().runtime.config(&model, None).unwrap();
    let mut inputs = sample_inputs(&config, 2, 5);
    let good = json!({ "inputs": inputs.iter().map(json_input).collect::<Vec<_>>() });
    let idx = inputs
        .iter()
        .position(|t| t.datatype().as_str() == "INT64")
        .expect("an index input");
    if let cohost_runtime::TensorData::I64(v) = &mut inputs[idx].data {
        v[0] = 1_000_000_000;
    }
    let bad = json!({ "inputs": inputs.iter().map(json_input).collect::<Vec<_>>() });
    let (st, v) = s
        .post_json(&format!("/v2/models/{model}/infer"), &bad)
        .await;
    let msg = v["error"].as_str().unwrap_or("").to_string();
    assert_eq!(st, 400, "{msg}");
    assert!(
        msg.contains("1000000000") || msg.to_lowercase().contains("range"),
        "{msg}"
    );

    // A 1 µs deadline cannot be met: refused (429) or expired (504), never served late.
    let mut tight = good.clone();
    tight["parameters"] = json!({ "timeout": 1 });
    let res = s.post(&format!("/v2/models/{model}/infer"), &tight).await;
    let status = res.status().as_u16();
    if status == 429 {
        assert!(res.headers().contains_key("retry-after"));
    }
    let v: Value = res.json().await.unwrap();
    assert!(status == 504 || status == 429, "status {status}: {v}");
    assert!(!v["error"].as_str().unwrap_or("").is_empty());

    still_serving(&s, &model, &good).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_with_429_before_the_body_is_decoded() {
    let s = TestServer::start(|_| {}).await;
    let runtime = &s.handle().runtime;
    let (config, held) = fill_a_held_queue(runtime, "held", 2).await;
    let path = "/v2/models/held/infer";
    // Not JSON at all: a queue with room would answer 400; a full one refuses it unread.
    let (status, msg, headers) = post_raw(&s, path, b"{not json".to_vec(), None).await;
    expect(status, &msg, 429, &["held", "queue is full"]);
    assert!(headers.contains_key("endpoint-load-metrics"), "{headers:?}");
    let good = json!({ "inputs": sample_inputs(&config, 1, 9).iter().map(json_input).collect::<Vec<_>>() });
    let (status, out) = s.post_json(path, &good).await;
    assert_eq!(status, 429, "{out}");
    let stats = runtime.stats(Some("held"), None).unwrap();
    assert_eq!(stats[0].fail.count, 2, "both refusals counted once");
    for h in held {
        h.await.unwrap().expect("the held requests are answered");
    }
    // Room again: the same bad body is now decoded and refused as malformed.
    let (status, msg, _) = post_raw(&s, path, b"{not json".to_vec(), None).await;
    expect(status, &msg, 400, &["json"]);
    still_serving(&s, "held", &good).await;
}
