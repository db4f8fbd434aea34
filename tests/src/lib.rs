//! Shared helpers for the end-to-end tests: a tiny generated repository, a real server
//! on 127.0.0.1 port 0 started in-process, an in-process reference `Runtime` over the same
//! weights, deterministic inputs, and the KServe binary-extension body format.

use cohost_models::{DataType, Family, ModelConfig};
use cohost_runtime::{Device, Runtime, RuntimeOptions, Tensor, TensorData};
pub use cohost_server::{ModelControlMode, ServeOptions, ServerHandle};

pub mod raw_http;
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;
use tempfile::TempDir;

/// Presets in the tiny test repository, with the seed of each.
pub const TINY_PRESETS: &[(&str, u64)] = &[("mlp-tiny", 7), ("dlrm-tiny", 11)];

/// Generates one preset into `dir` (a model folder per generated model).
pub fn generate(dir: &Path, preset: &str, count: usize, seed: u64) {
    cohost_models::synth::generate(dir, preset, count, seed, None, &mut |_, _| {})
        .unwrap_or_else(|e| panic!("generating {preset} into {}: {e}", dir.display()));
}

/// A fresh temporary repository with one `mlp-tiny` and one `dlrm-tiny` model.
pub fn tiny_repository() -> TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (preset, seed) in TINY_PRESETS {
        generate(dir.path(), preset, 1, *seed);
    }
    dir
}

/// Server options for tests: 127.0.0.1, ports 0, CPU, two lanes, no model control.
pub fn test_options(repository: &Path) -> ServeOptions {
    ServeOptions {
        repository: Some(repository.to_path_buf()),
        host: IpAddr::V4(Ipv4Addr::LOCALHOST),
        http_port: 0,
        grpc_port: 0,
        metrics_port: None,
        model_control: ModelControlMode::None,
        poll_interval: Duration::from_millis(200),
        lanes: 2,
        lane_spin: Duration::ZERO,
        schedule: Default::default(),
        memory_budget: None,
        device: Device::Cpu,
        max_body_bytes: 64 << 20,
        ..ServeOptions::default()
    }
}

/// A running test server over its own tiny repository.
pub struct TestServer {
    /// The server (None once stopped).
    pub handle: Option<ServerHandle>,
    /// The repository it serves (deleted on drop).
    pub repo: TempDir,
    /// `http://127.0.0.1:port`.
    pub base: String,
    /// A client for it.
    pub client: reqwest::Client,
}

impl TestServer {
    /// Generates a tiny repository and serves it with `configure`d options.
    pub async fn start(configure: impl FnOnce(&mut ServeOptions)) -> TestServer {
        let repo = tiny_repository();
        Self::start_in(repo, configure).await
    }

    /// Serves an existing repository with `configure`d options.
    pub async fn start_in(repo: TempDir, configure: impl FnOnce(&mut ServeOptions)) -> TestServer {
        let mut options = test_options(repo.path());
        configure(&mut options);
        let handle = cohost_server::serve(options, std::future::pending())
            .await
            .expect("server starts");
        let base = handle.http_url();
        TestServer {
            handle: Some(handle),
            repo,
            base,
            client: reqwest::Client::new(),
        }
    }

    /// The running server.
    pub fn handle(&self) -> &ServerHandle {
        self.handle.as_ref().expect("server running")
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// POSTs `body` as JSON to `path`, failing the test on a transport error; the whole
    /// response, headers included.
    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// The gRPC endpoint, `http://127.0.0.1:port`.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.handle().grpc_addr)
    }

    /// The name of the first loaded model of `family`.
    pub fn model_of(&self, family: Family) -> String {
        model_of(&self.handle().runtime, family)
    }

    /// GET `path` and return the body as text (e.g. `/metrics`).
    pub async fn get_text(&self, path: &str) -> String {
        let res = self.client.get(self.url(path)).send().await.expect("GET");
        res.text().await.expect("body")
    }

    /// GET `path`, returning status and body as JSON (Null when empty or not JSON).
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let res = self.client.get(self.url(path)).send().await.expect("GET");
        let status = res.status().as_u16();
        (
            status,
            serde_json::from_slice(&res.bytes().await.expect("body")).unwrap_or(Value::Null),
        )
    }

    /// POST a JSON body to `path`, returning status and JSON body.
    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let res = self.post(path, body).await;
        let status = res.status().as_u16();
        (
            status,
            serde_json::from_slice(&res.bytes().await.expect("body")).unwrap_or(Value::Null),
        )
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.stop().await.expect("clean shutdown");
        }
    }
}

/// The name of the first loaded model of `family` in `runtime`.
pub fn model_of(runtime: &Runtime, family: Family) -> String {
    let mut names: Vec<String> = runtime.models().into_iter().map(|m| m.name).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .find(|n| {
            runtime
                .config(n, None)
                .map(|(_, c)| c.family == family)
                .unwrap_or(false)
        })
        .unwrap_or_else(|| panic!("no {family:?} model loaded"))
}

/// An in-process runtime over `repository` (same weights as the server), all loaded.
pub fn reference_runtime(repository: &Path) -> Runtime {
    let runtime = Runtime::new(
        RuntimeOptions::default()
            .lanes(1)
            .device(Device::Cpu)
            .repository(repository.to_path_buf()),
    )
    .expect("reference runtime");
    let failures = runtime.load_all();
    assert!(
        failures.is_empty(),
        "reference runtime failed to load: {failures:?}"
    );
    runtime
}

/// The smallest embedding table of a DLRM config (indices below it are valid everywhere).
pub fn min_table_rows(config: &ModelConfig) -> usize {
    config
        .dlrm
        .as_ref()
        .and_then(|d| d.table_sizes.iter().copied().min())
        .unwrap_or(1)
}

/// Deterministic inputs for `rows` rows of every input of `config`: floats in [-1, 1),
/// integer indices valid for every table.
pub fn sample_inputs(config: &ModelConfig, rows: usize, seed: u64) -> Vec<Tensor> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as u32
    };
    let max_index = min_table_rows(config) as u32;
    config
        .inputs
        .iter()
        .map(|spec| {
            let mut shape = spec.dims.clone();
            shape[0] = rows as i64;
            let n = Tensor::shape_elements(&shape).expect("static dims");
            let data = match spec.datatype {
                DataType::FP32 => TensorData::F32(
                    (0..n)
                        .map(|_| (next() as f64 / (1u64 << 31) as f64 - 1.0) as f32)
                        .collect(),
                ),
                DataType::INT64 => {
                    TensorData::I64((0..n).map(|_| (next() % max_index) as i64).collect())
                }
                DataType::INT32 => {
                    TensorData::I32((0..n).map(|_| (next() % max_index) as i32).collect())
                }
                other => panic!("sample_inputs: unsupported input datatype {other}"),
            };
            Tensor::new(spec.name.clone(), shape, data)
        })
        .collect()
}

/// A tensor as a KServe JSON input with flat `data`.
pub fn json_input(t: &Tensor) -> Value {
    let data: Value = match &t.data {
        TensorData::F32(v) => v.iter().map(|&x| Value::from(x as f64)).collect(),
        TensorData::I64(v) => v.iter().map(|&x| Value::from(x)).collect(),
        TensorData::I32(v) => v.iter().map(|&x| Value::from(x)).collect(),
        other => panic!("json_input: unsupported {:?}", other.datatype()),
    };
    serde_json::json!({ "name": t.name, "shape": t.shape, "datatype": t.datatype().as_str(), "data": data })
}

/// A KServe binary-extension body: the JSON header then the raw tensors; returns the
/// body and the value for `Inference-Header-Content-Length`.
pub fn binary_body(header: &Value, raws: &[Vec<u8>]) -> (Vec<u8>, usize) {
    let mut body = serde_json::to_vec(header).expect("json");
    let n = body.len();
    for raw in raws {
        body.extend_from_slice(raw);
    }
    (body, n)
}

/// Splits a binary-extension response into its JSON header and the raw data after it.
pub fn split_binary(header_length: Option<usize>, body: &[u8]) -> (Value, Vec<u8>) {
    let n = header_length.unwrap_or(body.len());
    let json = serde_json::from_slice(&body[..n]).expect("JSON header");
    (json, body[n..].to_vec())
}

/// Reads a little-endian f32 buffer.
pub fn f32s(raw: &[u8]) -> Vec<f32> {
    raw.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Parses `endpoint-load-metrics: TEXT named_metrics.model_load=x, named_metrics.host_load=y`.
pub fn parse_load_header(value: &str) -> Option<(f64, f64)> {
    let rest = value.strip_prefix("TEXT ")?;
    let mut model = None;
    let mut host = None;
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "named_metrics.model_load" => model = v.parse().ok(),
            "named_metrics.host_load" => host = v.parse().ok(),
            _ => {}
        }
    }
    Some((model?, host?))
}

/// Loads `name` into `runtime`: mlp-tiny whose static batcher holds requests 4 s (time for
/// a slow machine to send a few more while the queue is full) and whose queue takes
/// `queue_len`, then fills that queue from spawned requests (returned, each answering
/// after the hold) and waits until they are all queued.
pub async fn fill_a_held_queue(
    runtime: &Runtime,
    name: &str,
    queue_len: usize,
) -> (
    ModelConfig,
    Vec<tokio::task::JoinHandle<cohost_runtime::Result<()>>>,
) {
    let mut config = cohost_models::synth::preset("mlp-tiny").expect("preset");
    config.batching.policy = cohost_models::BatchingPolicyKind::Static;
    config.batching.max_queue_delay_us = 4_000_000;
    config.max_queue_len = queue_len;
    runtime
        .load_model_from(
            name,
            1,
            config.clone(),
            &cohost_models::synth::random_weights(&config, 3),
        )
        .expect("load the held model");
    let held = (0..queue_len as u64)
        .map(|seed| {
            let (runtime, name) = (runtime.clone(), name.to_string());
            let request = cohost_runtime::InferRequest {
                id: None,
                inputs: sample_inputs(&config, 1, seed),
                outputs: Vec::new(),
                timeout: None,
            };
            tokio::spawn(async move { runtime.infer(&name, None, request).await.map(|_| ()) })
        })
        .collect();
    let start = std::time::Instant::now();
    while runtime.load(name).expect("loaded").queued < queue_len {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "the held requests did not all queue"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (config, held)
}

/// Longest an end-to-end test polls for a state that must come: a hang guard far beyond
/// any expected time, not a timing assertion.
pub const HANG: Duration = Duration::from_secs(20);

/// Runs `probe` every `every` until it returns `Ok`, failing the test after `hang` with
/// `what` and the last `Err` (the state seen).
pub async fn poll_until<T>(
    what: &str,
    hang: Duration,
    every: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let start = std::time::Instant::now();
    loop {
        match probe().await {
            Ok(done) => return done,
            Err(seen) => assert!(
                start.elapsed() < hang,
                "not within {hang:?}: {what} (last: {seen})"
            ),
        }
        tokio::time::sleep(every).await;
    }
}

/// GETs `url` and reads its body as JSON, failing the test on a transport error or a body
/// that is not JSON.
pub async fn fetch_json(client: &reqwest::Client, url: &str) -> Value {
    let res = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    res.json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: body is not JSON: {e}"))
}
