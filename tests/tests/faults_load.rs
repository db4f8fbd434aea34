//! Load faults on the real binary (issue 18 item 7), asserting correctness, not timing:
//! three times the measured capacity, slow and idle clients, maximum-size bodies, and a
//! version rolled over in poll mode while requests flow.

mod faults_common;
mod grpc_common;

use cohost_runtime::{InferRequest, Runtime, Tensor, TensorData};
use cohost_tests::raw_http::{read_response, start_slow_body};
use cohost_tests::{fetch_json, json_input, poll_until, reference_runtime, sample_inputs};
use faults_common::*;
use grpc_common::assert_close;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// Server memory the overload test allows (tiny models; the debug binary idles near
/// 60 MiB here). Bodies in flight are bounded by `--max-inflight` x their size.
const RSS_BOUND: u64 = 512 << 20;

/// Longest any one request may take before the test counts it as a server that stopped
/// serving (a failure, not a measurement).
const STALL: Duration = Duration::from_secs(20);

/// `n` inputs of one row for `model` and the reference runtime's output for each alone.
async fn references(reference: &Runtime, model: &str, n: u64) -> Vec<(Vec<Tensor>, Vec<f32>)> {
    let (_, config) = reference.config(model, None).unwrap();
    let mut out = Vec::new();
    for seed in 0..n {
        let inputs = sample_inputs(&config, 1, 1000 + seed);
        let request = InferRequest {
            inputs: inputs.clone(),
            ..Default::default()
        };
        let resp = reference.infer(model, None, request).await.unwrap();
        let TensorData::F32(v) = &resp.outputs[0].data else {
            panic!("FP32 output")
        };
        out.push((inputs, v.clone()));
    }
    out
}

fn infer_json(inputs: &[Tensor]) -> Value {
    json!({ "inputs": inputs.iter().map(json_input).collect::<Vec<_>>() })
}

fn output_of(v: &Value) -> Vec<f32> {
    v["outputs"][0]["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no outputs in {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// What one request got: an answer checked against its reference, a refusal with a KServe
/// error body, or a failure (anything else, connection errors included).
#[derive(Debug, PartialEq)]
enum Outcome {
    Correct,
    Refused,
}

async fn infer_checked(
    client: &reqwest::Client,
    url: &str,
    (inputs, want): &(Vec<Tensor>, Vec<f32>),
) -> Result<Outcome, String> {
    let res = client
        .post(url)
        .json(&infer_json(inputs))
        .timeout(STALL)
        .send()
        .await
        .map_err(|e| format!("request failed (reset, refused or stalled): {e}"))?;
    let status = res.status().as_u16();
    let body = res
        .bytes()
        .await
        .map_err(|e| format!("body cut off: {e}"))?;
    let v: Value = serde_json::from_slice(&body).map_err(|e| {
        format!(
            "{status}: not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    })?;
    match status {
        200 => {
            assert_close(&output_of(&v), want, "an answer under load");
            Ok(Outcome::Correct)
        }
        429 | 503 if v["error"].is_string() => Ok(Outcome::Refused),
        _ => Err(format!("{status}: {v}")),
    }
}

/// Requests answered by `clients` closed-loop clients in `window`, per second.
async fn capacity(
    client: &reqwest::Client,
    url: &str,
    refs: &Arc<Vec<(Vec<Tensor>, Vec<f32>)>>,
    clients: usize,
    window: Duration,
) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + window;
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (client, url, refs, done) =
                (client.clone(), url.to_string(), refs.clone(), done.clone());
            tokio::spawn(async move {
                let mut i = c;
                while Instant::now() < until {
                    let outcome = infer_checked(&client, &url, &refs[i % refs.len()])
                        .await
                        .unwrap();
                    assert_eq!(
                        outcome,
                        Outcome::Correct,
                        "refused while measuring capacity"
                    );
                    done.fetch_add(1, Ordering::Relaxed);
                    i += clients;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / window.as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_times_capacity_gets_correct_answers_or_refusals_in_bounded_memory() {
    let repo = repository();
    let reference = reference_runtime(repo.path());
    let refs = Arc::new(references(&reference, "mlp-tiny", 64).await);
    reference.shutdown();
    let server = Cohost::start(repo.path(), &["--max-inflight", "64"]);
    let url = format!("{}/v2/models/mlp-tiny/infer", server.http_url());
    let client = reqwest::Client::new();

    let cap = capacity(&client, &url, &refs, 4, Duration::from_secs(2)).await;
    assert!(cap > 0.0);
    // Open loop at three times that for a bounded time, at most 512 requests outstanding
    // in the client (arrivals beyond are not sent, and counted).
    let rate = 3.0 * cap;
    let window = Duration::from_secs(4);
    let outstanding = Arc::new(tokio::sync::Semaphore::new(512));
    let stop = Arc::new(AtomicBool::new(false));
    let peak_rss = Arc::new(AtomicU64::new(server.rss_bytes()));
    let pid = server.pid();
    let sampler = {
        let (stop, peak) = (stop.clone(), peak_rss.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Some(rss) = rss_of(pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };
    let mut tasks = Vec::new();
    let mut not_sent = 0u64;
    let start = Instant::now();
    let mut next = start;
    let gap = Duration::from_secs_f64(1.0 / rate);
    let mut i = 0usize;
    while next < start + window {
        tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
        next += gap;
        let Ok(permit) = outstanding.clone().try_acquire_owned() else {
            not_sent += 1;
            continue;
        };
        let (client, url, refs) = (client.clone(), url.clone(), refs.clone());
        let n = i;
        i += 1;
        tasks.push(tokio::spawn(async move {
            let outcome = infer_checked(&client, &url, &refs[n % refs.len()]).await;
            drop(permit);
            outcome
        }));
    }
    let (mut correct, mut refused) = (0, 0);
    let mut failures = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(Outcome::Correct) => correct += 1,
            Ok(Outcome::Refused) => refused += 1,
            Err(e) => failures.push(e),
        }
    }
    stop.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    let peak = peak_rss.load(Ordering::Relaxed);
    let summary = format!(
        "capacity {cap:.0}/s, offered {rate:.0}/s for {window:?}: {correct} correct, {refused} refused, {} failed, {not_sent} not sent (client limit); peak RSS {} MiB",
        failures.len(),
        peak >> 20
    );
    eprintln!("{summary}");
    assert!(
        failures.is_empty(),
        "{summary}; first failures: {:?}",
        &failures[..failures.len().min(5)]
    );
    assert!(correct > 0, "{summary}");
    assert!(
        peak < RSS_BOUND,
        "{summary}: over the bound of {} MiB",
        RSS_BOUND >> 20
    );

    // Afterwards it serves normally: every request answered, correctly.
    for r in refs.iter().take(20) {
        assert_eq!(infer_checked(&client, &url, r).await, Ok(Outcome::Correct));
    }
}

fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_do_not_stop_others() {
    let repo = repository();
    let reference = reference_runtime(repo.path());
    let refs = references(&reference, "mlp-tiny", 20).await;
    reference.shutdown();
    let server = Cohost::start(repo.path(), &["--body-timeout-secs", "3"]);
    let url = format!("{}/v2/models/mlp-tiny/infer", server.http_url());

    // Idle connections, connections stuck inside their headers, and trickling bodies.
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(tokio::net::TcpStream::connect(server.http).await.unwrap());
    }
    for _ in 0..20 {
        let mut conn = tokio::net::TcpStream::connect(server.http).await.unwrap();
        conn.write_all(b"POST /v2/models/mlp-tiny/infer HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        idle.push(conn);
    }
    let tricklers: Vec<_> = (0..4)
        .map(|_| {
            let addr = server.http;
            tokio::spawn(async move {
                let mut conn = start_slow_body(addr, "mlp-tiny", 100_000).await;
                let trickle = async {
                    loop {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        if conn.write_all(b" ").await.is_err() {
                            break;
                        }
                    }
                };
                // The server answers while the body still trickles.
                let _ = tokio::time::timeout(Duration::from_secs(4), trickle).await;
                read_response(&mut conn).await
            })
        })
        .collect();

    // Meanwhile everyone else is served.
    let client = reqwest::Client::new();
    for (i, r) in refs.iter().enumerate() {
        let ready = client
            .get(format!("{}/v2/health/ready", server.http_url()))
            .timeout(STALL)
            .send()
            .await
            .unwrap_or_else(|e| panic!("health check #{i} failed: {e}"));
        assert_eq!(ready.status().as_u16(), 200);
        assert_eq!(
            infer_checked(&client, &url, r).await,
            Ok(Outcome::Correct),
            "#{i}"
        );
    }
    for t in tricklers {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 408, "{body}");
        let v: Value = serde_json::from_str(&body).expect("a JSON error body");
        assert!(v["error"].is_string(), "{v}");
    }
    // Still serving after the slow ones are answered.
    for r in refs.iter().take(5) {
        assert_eq!(infer_checked(&client, &url, r).await, Ok(Outcome::Correct));
    }
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_maximum_size_bodies_do_not_stop_health_checks() {
    let repo = repository();
    let limit = 16usize << 20;
    let server = Cohost::start(repo.path(), &["--max-body-bytes", "16MiB"]);
    // A JSON body of exactly the limit: one long FP32 tensor (more rows than the model
    // takes, so it is refused once decoded; decoding is the expensive part).
    let mut body =
        String::from(r#"{"inputs":[{"name":"input","shape":[1,8],"datatype":"FP32","data":["#);
    while body.len() < limit - 64 {
        body.push_str("0.123456789,");
    }
    body.push_str("0.5]}]}");
    while body.len() < limit {
        body.insert(body.len() - 3, ' ');
    }
    assert_eq!(body.len(), limit);
    let body = bytes::Bytes::from(body);
    let stop = Arc::new(AtomicBool::new(false));
    let url = format!("{}/v2/models/mlp-tiny/infer", server.http_url());
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let (url, body, stop) = (url.clone(), body.clone(), stop.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut sent = 0;
                while !stop.load(Ordering::Relaxed) {
                    let res = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .timeout(Duration::from_secs(120))
                        .send()
                        .await
                        .expect("a maximum-size body is answered");
                    let status = res.status().as_u16();
                    let v: Value = res.json().await.expect("a JSON answer");
                    assert!(matches!(status, 400 | 429), "{status}: {v}");
                    assert!(v["error"].is_string(), "{v}");
                    sent += 1;
                }
                sent
            })
        })
        .collect();
    let client = reqwest::Client::new();
    for i in 0..40 {
        for path in ["/v2/health/ready", "/v2/health/live"] {
            let res = client
                .get(format!("{}{path}", server.http_url()))
                .timeout(STALL)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{path} #{i} while big bodies arrive: {e}"));
            assert_eq!(res.status().as_u16(), 200, "{path} #{i}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for s in senders {
        total += s.await.unwrap();
    }
    assert!(total > 0, "no big body was answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_rolled_over_in_poll_mode_fails_no_request() {
    let repo = repository();
    let reference = reference_runtime(repo.path());
    let refs = Arc::new(references(&reference, "mlp-tiny", 16).await);
    reference.shutdown();
    let server = Cohost::start(
        repo.path(),
        &[
            "--model-control-mode",
            "poll",
            "--poll-interval-secs",
            "0.2",
        ],
    );
    let url = format!("{}/v2/models/mlp-tiny/infer", server.http_url());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..3)
        .map(|c| {
            let (url, refs, stop) = (url.clone(), refs.clone(), stop.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let (mut versions, mut failures) = (std::collections::BTreeMap::new(), Vec::new());
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    let (inputs, want) = &refs[i % refs.len()];
                    i += 3;
                    let res = client
                        .post(&url)
                        .json(&infer_json(inputs))
                        .timeout(STALL)
                        .send()
                        .await;
                    match res {
                        Ok(res) if res.status().as_u16() == 200 => {
                            let v: Value = res.json().await.unwrap();
                            assert_close(&output_of(&v), want, "during the roll-over");
                            let version = v["model_version"].as_str().unwrap_or("?").to_string();
                            *versions.entry(version).or_insert(0u64) += 1;
                        }
                        Ok(res) => {
                            let status = res.status();
                            failures.push(format!(
                                "{status}: {}",
                                res.text().await.unwrap_or_default()
                            ));
                        }
                        Err(e) => failures.push(e.to_string()),
                    }
                }
                (versions, failures)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Version 2: the same weights, so every answer has one right value.
    let model = repo.path().join("mlp-tiny");
    std::fs::create_dir_all(model.join("2")).unwrap();
    std::fs::copy(
        model.join("1/model.safetensors"),
        model.join("2/model.safetensors"),
    )
    .unwrap();
    let probe = reqwest::Client::new();
    let replaced = "version 2 replaces version 1";
    poll_until(replaced, START, Duration::from_millis(100), async || {
        let v = fetch_json(&probe, &format!("{}/v2/models/mlp-tiny", server.http_url())).await;
        if v["versions"] == json!(["2"]) {
            Ok(())
        } else {
            Err(v.to_string())
        }
    })
    .await;
    // Requests keep flowing a while on the new version.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let mut versions = std::collections::BTreeMap::new();
    let mut failures = Vec::new();
    for c in clients {
        let (v, f) = c.await.unwrap();
        for (k, n) in v {
            *versions.entry(k).or_insert(0) += n;
        }
        failures.extend(f);
    }
    assert!(
        failures.is_empty(),
        "{} failed: {:?} (answered by version: {versions:?})",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        versions.contains_key("1") && versions.contains_key("2"),
        "{versions:?}"
    );
}
