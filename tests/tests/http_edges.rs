//! Hardened HTTP edges (issue 18): timeouts of 0, metric series only for served versions,
//! model names checked before they are stored, relative failure reasons, admission before
//! work (in-flight limit, body timeout) and the control token.

mod grpc_common;

use cohost_models::Family;
use cohost_tests::raw_http::{read_response, start_slow_body};
use cohost_tests::*;
use grpc_common::*;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// A valid JSON inference body of `rows` rows for `model`.
fn infer_body(s: &TestServer, model: &str, rows: usize) -> Value {
    let (_, config) = s.handle().runtime.config(model, None).unwrap();
    json!({ "inputs": sample_inputs(&config, rows, 5).iter().map(json_input).collect::<Vec<_>>() })
}

/// Waits (at most 20 s) until `n` requests hold an in-flight permit.
async fn wait_for_in_flight(s: &TestServer, n: usize) {
    poll_until(
        &format!("{n} requests in flight"),
        HANG,
        Duration::from_millis(10),
        async || match s.handle().requests_in_flight() {
            m if m == n => Ok(()),
            m => Err(format!("{m} in flight")),
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_timeout_means_none() {
    let s = TestServer::start(|_| {}).await;
    let model = s.model_of(Family::Mlp);
    let mut body = infer_body(&s, &model, 2);
    body["parameters"] = json!({ "timeout": 0 });
    for _ in 0..3 {
        let (st, v) = s
            .post_json(&format!("/v2/models/{model}/infer"), &body)
            .await;
        assert_eq!(st, 200, "timeout 0 is no timeout, as in Triton: {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bogus_versions_create_no_metric_series() {
    let s = TestServer::start(|_| {}).await;
    let model = s.model_of(Family::Mlp);
    for v in 0..50 {
        let version = 7_000_000 + v;
        // A body the decoder refuses: before the fix it was counted under the version.
        let res = s
            .client
            .post(s.url(&format!("/v2/models/{model}/versions/{version}/infer")))
            .body("not json")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 404);
        let v: Value = res.json().await.unwrap();
        assert!(v["error"].as_str().unwrap().contains(&model), "{v}");
    }
    let text = s.get_text("/metrics").await;
    assert!(
        !text.contains("version=\"70000"),
        "series of versions never loaded: {}",
        text.lines()
            .filter(|l| l.contains("version=\"70000"))
            .take(3)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_of_an_unloaded_version_are_gone() {
    let s = TestServer::start(|_| {}).await;
    let runtime = &s.handle().runtime;
    // A name no other test in this binary serves (the recorder is process-wide).
    let name = "edge-unload-probe";
    let config = cohost_models::synth::preset("mlp-tiny").unwrap();
    runtime
        .load_model_from(
            name,
            3,
            config.clone(),
            &cohost_models::synth::random_weights(&config, 9),
        )
        .unwrap();
    let body = json!({ "inputs": sample_inputs(&config, 2, 1).iter().map(json_input).collect::<Vec<_>>() });
    let (st, _) = s
        .post_json(&format!("/v2/models/{name}/infer"), &body)
        .await;
    assert_eq!(st, 200);
    let (st, _) = s
        .post_json(&format!("/v2/models/{name}/infer"), &json!({ "inputs": 1 }))
        .await;
    assert_eq!(st, 400);
    let probe = format!("model=\"{name}\"");
    let text = s.get_text("/metrics").await;
    assert!(
        text.contains(&format!(
            "cohost_request_success_total{{{probe},version=\"3\"}}"
        )),
        "served version has its series"
    );
    runtime.unload_model(name).unwrap();
    let gone = "the unloaded version's series leave /metrics";
    poll_until(gone, HANG, Duration::from_millis(100), async || {
        let text = s.get_text("/metrics").await;
        let left: Vec<&str> = text.lines().filter(|l| l.contains(&probe)).collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(left[..left.len().min(3)].join("\n"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_failures_are_bounded_keyed_by_valid_names_and_relative() {
    let repo = tiny_repository();
    // A model folder whose config cannot be parsed.
    let broken = repo.path().join("broken-model");
    std::fs::create_dir_all(broken.join("1")).unwrap();
    std::fs::write(broken.join("config.toml"), "this is = = not toml").unwrap();
    let s = TestServer::start_in(repo, |o| o.model_control = ModelControlMode::Explicit).await;

    let (st, v) = s
        .post_json("/v2/repository/models/broken-model/load", &json!({}))
        .await;
    assert_ne!(st, 200, "{v}");
    let long = "x".repeat(200);
    for bad in [".hidden", long.as_str(), "a%20b"] {
        let (st, v) = s
            .post_json(&format!("/v2/repository/models/{bad}/load"), &json!({}))
            .await;
        assert_eq!(st, 400, "{bad}: {v}");
        let msg = v["error"].as_str().unwrap();
        assert!(
            msg.contains("invalid model name") && msg.len() < 300,
            "{msg}"
        );
    }
    // Many valid names that are not in the repository: the failure map stays bounded.
    for i in 0..1100 {
        let (st, _) = s
            .post_json(
                &format!("/v2/repository/models/absent-{i:04}/load"),
                &json!({}),
            )
            .await;
        assert_eq!(st, 404);
    }
    let (st, index) = s.post_json("/v2/repository/index", &json!({})).await;
    assert_eq!(st, 200);
    let rows = index.as_array().unwrap();
    assert!(rows.len() <= 1024 + 3, "{} index rows", rows.len());
    for row in rows {
        let name = row["name"].as_str().unwrap();
        assert!(cohost_runtime::validate_model_name(name).is_ok(), "{name}");
    }
    let row = rows
        .iter()
        .find(|r| r["name"] == "broken-model")
        .expect("the broken model is listed");
    let reason = row["reason"].as_str().unwrap();
    let absolute = s.repo.path().display().to_string();
    assert!(!reason.is_empty());
    assert!(
        !reason.contains(&absolute),
        "the reason names an absolute path: {reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_body_gets_408_while_others_are_served() {
    let s = TestServer::start(|o| o.body_timeout = Duration::from_millis(1500)).await;
    let model = s.model_of(Family::Mlp);
    let mut slow = start_slow_body(s.handle().http_addr, &model, 100_000).await;
    // Others are served meanwhile.
    for _ in 0..3 {
        assert_eq!(s.get_json("/v2/health/ready").await.0, 200);
        let (st, _) = s
            .post_json(
                &format!("/v2/models/{model}/infer"),
                &infer_body(&s, &model, 2),
            )
            .await;
        assert_eq!(st, 200);
    }
    // A byte now and then does not keep the body alive past its deadline.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = slow.write_all(b" ").await;
    }
    let (status, body) = read_response(&mut slow).await;
    assert_eq!(status, 408, "{body}");
    let v: Value = serde_json::from_str(&body).expect("a JSON error body");
    assert!(v["error"].as_str().unwrap().contains("body"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_inflight_limit_refuses_before_work_but_health_answers() {
    let s = TestServer::start(|o| o.max_inflight = 2).await;
    let model = s.model_of(Family::Mlp);
    let body = infer_body(&s, &model, 1);
    assert_eq!(
        s.post_json(&format!("/v2/models/{model}/infer"), &body)
            .await
            .0,
        200
    );
    // The answered request's permit is released by the server's connection task, which may
    // run a moment after the client has its response: wait for it (bounded) so that the
    // two slow bodies below meet two free permits.
    wait_for_in_flight(&s, 0).await;
    // Two slow bodies hold both permits (their headers are in, their bodies never end).
    let _a = start_slow_body(s.handle().http_addr, &model, 1_000_000).await;
    let _b = start_slow_body(s.handle().http_addr, &model, 1_000_000).await;
    wait_for_in_flight(&s, 2).await;
    let refused = "a request refused while both permits are held";
    let (status, v, retry_after) =
        poll_until(refused, HANG, Duration::from_millis(20), async || {
            let res = s.post(&format!("/v2/models/{model}/infer"), &body).await;
            let status = res.status().as_u16();
            let retry = res.headers().get("retry-after").cloned();
            let v: Value = res.json().await.unwrap_or(Value::Null);
            if status != 200 {
                Ok((status, v, retry))
            } else {
                Err("status 200".to_string())
            }
        })
        .await;
    assert_eq!(status, 429, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("--max-inflight"),
        "{v}"
    );
    assert_eq!(retry_after.unwrap(), "1");
    // Health and readiness are exempt.
    assert_eq!(s.get_json("/v2/health/ready").await.0, 200);
    assert_eq!(s.get_json("/v2/health/live").await.0, 200);
    assert_eq!(
        s.get_json(&format!("/v2/models/{model}/ready")).await.0,
        200
    );
    // The limit is shared with gRPC: ModelInfer is refused, ServerReady answers.
    let mut c = client(&s).await;
    let (_, cfg) = s.handle().runtime.config(&model, None).unwrap();
    let e = c
        .model_infer(infer_request(&model, &sample_inputs(&cfg, 1, 1), true))
        .await
        .unwrap_err();
    assert_status(&e, tonic::Code::ResourceExhausted, &["--max-inflight"]);
    let ready = c
        .server_ready(cohost_protocol::inference::ServerReadyRequest {})
        .await
        .unwrap();
    assert!(ready.into_inner().ready);
    // Once the slow bodies go away, requests are admitted again.
    drop((_a, _b));
    poll_until(
        "admitted again",
        HANG,
        Duration::from_millis(50),
        async || {
            let path = format!("/v2/models/{model}/infer");
            match s.post_json(&path, &body).await.0 {
                200 => Ok(()),
                st => Err(format!("status {st}")),
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_needs_the_bearer_token() {
    let s = TestServer::start(|o| {
        o.model_control = ModelControlMode::Explicit;
        o.control_token = Some("t0ken".into());
    })
    .await;
    let model = s.model_of(Family::Mlp);
    let paths = [
        "/v2/repository/index".to_string(),
        format!("/v2/repository/models/{model}/load"),
    ];
    for path in &paths {
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("t0ken"),
            Some("Basic t0ken"),
        ] {
            let mut req = s.client.post(s.url(path)).json(&json!({}));
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let res = req.send().await.unwrap();
            assert_eq!(res.status().as_u16(), 401, "{path} with {auth:?}");
            assert_eq!(res.headers()["www-authenticate"], "Bearer");
            let v: Value = res.json().await.unwrap();
            assert!(
                v["error"].as_str().unwrap().contains("--control-token"),
                "{v}"
            );
        }
        let res = s
            .client
            .post(s.url(path))
            .header("authorization", "Bearer t0ken")
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200, "{path}");
    }
    // Unload too; inference and metadata stay open.
    let unload = format!("/v2/repository/models/{model}/unload");
    assert_eq!(s.post_json(&unload, &json!({})).await.0, 401);
    assert_eq!(s.get_json(&format!("/v2/models/{model}")).await.0, 200);
    let res = s
        .client
        .post(s.url(&unload))
        .header("authorization", "Bearer t0ken")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
}
