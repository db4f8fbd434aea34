//! Model control over HTTP (none / explicit / poll), the repository index, and graceful
//! shutdown with requests in flight.

use cohost_models::Family;
use cohost_tests::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn wait_for_status(s: &TestServer, path: &str, want: impl Fn(u16) -> bool, what: &str) {
    poll_until(what, HANG, Duration::from_millis(100), async || {
        let status = s.get_json(path).await.0;
        if want(status) {
            Ok(())
        } else {
            Err(format!("status {status}"))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_refused_unless_explicit_but_index_works() {
    let mut s = TestServer::start(|_| {}).await;
    let model = s.model_of(Family::Mlp);
    for action in ["load", "unload"] {
        let (st, v) = s
            .post_json(
                &format!("/v2/repository/models/{model}/{action}"),
                &json!({}),
            )
            .await;
        let msg = v["error"].as_str().unwrap_or("");
        assert_eq!(st, 400, "{msg}");
        assert!(msg.contains("--model-control-mode explicit"), "{msg}");
    }
    assert_eq!(
        s.get_json(&format!("/v2/models/{model}/ready")).await.0,
        200,
        "still loaded"
    );

    let (st, index) = s.post_json("/v2/repository/index", &json!({})).await;
    assert_eq!(st, 200, "{index}");
    let rows = index.as_array().unwrap();
    let row = rows
        .iter()
        .find(|r| r["name"] == model.as_str())
        .expect("model in index");
    assert_eq!(row["state"], "READY");
    assert_eq!(row["version"], "1");
    let (st, ready) = s
        .post_json("/v2/repository/index", &json!({ "ready": true }))
        .await;
    assert_eq!(st, 200);
    assert!(
        ready
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["state"] == "READY")
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_mode_unloads_and_loads() {
    let mut s = TestServer::start(|o| o.model_control = ModelControlMode::Explicit).await;
    let model = s.model_of(Family::Mlp);
    let (_, config) = s.handle().runtime.config(&model, None).unwrap();
    let good = json!({ "inputs": sample_inputs(&config, 1, 5).iter().map(json_input).collect::<Vec<_>>() });
    let infer = format!("/v2/models/{model}/infer");

    let (st, v) = s
        .post_json(&format!("/v2/repository/models/{model}/unload"), &json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
    wait_for_status(
        &s,
        &format!("/v2/models/{model}/ready"),
        |st| st != 200,
        "unloaded",
    )
    .await;
    let (st, v) = s.post_json(&infer, &good).await;
    assert!(
        st == 404 || st == 503,
        "infer on an unloaded model: {st} {v}"
    );
    assert!(v["error"].as_str().unwrap_or("").contains(&model), "{v}");

    let (st, v) = s
        .post_json(&format!("/v2/repository/models/{model}/load"), &json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
    wait_for_status(
        &s,
        &format!("/v2/models/{model}/ready"),
        |st| st == 200,
        "loaded",
    )
    .await;
    assert_eq!(s.post_json(&infer, &good).await.0, 200);

    let (st, v) = s
        .post_json("/v2/repository/models/not-there/load", &json!({}))
        .await;
    assert_eq!(st, 404, "{v}");
    assert!(
        v["error"].as_str().unwrap_or("").contains("not-there"),
        "{v}"
    );
    let (st, v) = s
        .post_json("/v2/repository/models/..%2Fx/load", &json!({}))
        .await;
    assert_eq!(st, 400, "{v}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_mode_picks_up_new_and_removed_models() {
    let mut s = TestServer::start(|o| {
        o.model_control = ModelControlMode::Poll;
        o.poll_interval = Duration::from_millis(200);
    })
    .await;
    // Refused in poll mode too.
    assert_eq!(
        s.post_json("/v2/repository/models/mlp-tiny/load", &json!({}))
            .await
            .0,
        400
    );

    // A new model dropped into the repository (generated aside, then moved in whole).
    let aside = tempfile::tempdir().unwrap();
    generate(aside.path(), "mlp-tiny", 1, 99);
    std::fs::rename(aside.path().join("mlp-tiny"), s.repo.path().join("polled")).unwrap();
    wait_for_status(
        &s,
        "/v2/models/polled/ready",
        |st| st == 200,
        "polled model ready",
    )
    .await;
    let (_, config) = s.handle().runtime.config("polled", None).unwrap();
    let good = json!({ "inputs": sample_inputs(&config, 1, 5).iter().map(json_input).collect::<Vec<_>>() });
    assert_eq!(s.post_json("/v2/models/polled/infer", &good).await.0, 200);

    // A new version of an existing model: version 2 takes over (latest-1 policy).
    let v2 = s.repo.path().join("polled").join("2");
    std::fs::create_dir_all(&v2).unwrap();
    std::fs::copy(
        s.repo.path().join("polled/1/model.safetensors"),
        v2.join("model.safetensors"),
    )
    .unwrap();
    wait_for_status(
        &s,
        "/v2/models/polled/versions/2/ready",
        |st| st == 200,
        "version 2 ready",
    )
    .await;
    let (st, out) = s.post_json("/v2/models/polled/infer", &good).await;
    assert_eq!(st, 200, "{out}");
    poll_until(
        "version 1 retires",
        HANG,
        Duration::from_millis(100),
        async || {
            let (_, md) = s.get_json("/v2/models/polled").await;
            if md["versions"] == json!(["2"]) {
                Ok(())
            } else {
                Err(md.to_string())
            }
        },
    )
    .await;
    let (_, out) = s.post_json("/v2/models/polled/infer", &good).await;
    assert_eq!(out["model_version"], "2", "{out}");

    // Removed from disk: unloaded.
    std::fs::remove_dir_all(s.repo.path().join("polled")).unwrap();
    wait_for_status(
        &s,
        "/v2/models/polled/ready",
        |st| st != 200,
        "polled model gone",
    )
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_answers_accepted_requests() {
    let mut s = TestServer::start(|_| {}).await;
    let model = s.model_of(Family::Dlrm);
    let (_, config) = s.handle().runtime.config(&model, None).unwrap();
    let body = json!({ "inputs": sample_inputs(&config, 8, 5).iter().map(json_input).collect::<Vec<_>>() });
    let url = s.url(&format!("/v2/models/{model}/infer"));
    // Warm connections so the requests below are accepted before shutdown starts.
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (client, url, body) = (s.client.clone(), url.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let res = client.post(&url).json(&body).send().await?;
            Ok::<_, reqwest::Error>((res.status().as_u16(), res.json::<Value>().await?))
        }));
    }
    // Shut down once the first request has been served, so the rest are in flight (a fixed
    // short sleep raced the clients on a loaded machine: none had connected yet).
    let served = |s: &TestServer| {
        let stats = s
            .handle()
            .runtime
            .stats(Some(&model), None)
            .unwrap_or_default();
        stats.iter().map(|m| m.success.count).sum::<u64>()
    };
    let give_up = Instant::now() + Duration::from_secs(30);
    while served(&s) == 0 && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let handle = s.handle.take().unwrap();
    handle.stop().await.expect("clean shutdown");
    let mut answered = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok((status, v)) => {
                assert_eq!(status, 200, "accepted request answered: {v}");
                answered += 1;
            }
            // Not yet connected when the listener closed: refused, never half-answered.
            Err(e) => assert!(e.is_connect() || e.is_request(), "{e}"),
        }
    }
    assert!(answered > 0, "some requests were accepted before shutdown");
    assert!(
        reqwest::get(&url).await.is_err(),
        "listener closed after shutdown"
    );
}
