//! The real binary under SIGTERM: it stops accepting, answers every request it accepted,
//! and exits 0.

use cohost_models::{BatchingPolicyKind, synth};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_answers_every_accepted_request_and_exits_zero() {
    let repo = tempfile::tempdir().unwrap();
    synth::generate(repo.path(), "mlp-tiny", 1, 1, None, &mut |_, _| {}).unwrap();
    // A slow batcher keeps requests queued when the signal arrives.
    let cfg_path = repo.path().join("mlp-tiny/config.toml");
    let mut cfg = cohost_models::ModelConfig::from_file(&cfg_path).unwrap();
    cfg.batching.policy = BatchingPolicyKind::Static;
    cfg.batching.max_queue_delay_us = 400_000;
    std::fs::write(&cfg_path, cfg.to_toml()).unwrap();

    let (http, grpc) = (free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_cohost"))
        .args(["serve", "--model-repository"])
        .arg(repo.path())
        .args([
            "--http-port",
            &http.to_string(),
            "--grpc-port",
            &grpc.to_string(),
            "--device",
            "cpu",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{http}");
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("{base}/v2/health/ready")).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "server never became ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let body = serde_json::json!({
        "inputs": [{"name": cfg.inputs[0].name, "datatype": "FP32", "shape": [1, 8], "data": vec![0.5f32; 8]}]
    });
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let (client, url, body) = (
            client.clone(),
            format!("{base}/v2/models/mlp-tiny/infer"),
            body.clone(),
        );
        tasks.push(tokio::spawn(async move {
            client.post(url).json(&body).send().await
        }));
    }
    // Let every request reach the server's queue, then ask it to stop.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    for t in tasks {
        let resp = t
            .await
            .unwrap()
            .expect("an accepted request lost its connection");
        assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "server did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0));
    // It no longer accepts connections.
    assert!(
        client
            .get(format!("{base}/v2/health/live"))
            .send()
            .await
            .is_err()
    );
}
