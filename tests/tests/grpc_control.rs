//! gRPC repository control (explicit mode) and graceful shutdown with calls in flight.

mod grpc_common;

use cohost_models::Family;
use cohost_protocol::inference as pb;
use cohost_tests::{HANG, ModelControlMode, TestServer, poll_until, sample_inputs};
use grpc_common::*;
use std::time::Duration;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_model_control_unloads_and_loads() {
    let server = TestServer::start(|o| o.model_control = ModelControlMode::Explicit).await;
    let mut c = client(&server).await;
    let mlp = server.model_of(Family::Mlp);
    let (_, cfg) = server.handle().runtime.config(&mlp, None).unwrap();
    let ready = |name: &str| pb::ModelReadyRequest {
        name: name.into(),
        version: String::new(),
    };

    let unload = pb::RepositoryModelUnloadRequest {
        model_name: mlp.clone(),
        ..Default::default()
    };
    c.repository_model_unload(unload).await.expect("unload");
    let mut tries = 0;
    while c.model_ready(ready(&mlp)).await.unwrap().into_inner().ready {
        tries += 1;
        assert!(tries < 100, "model still ready after unload");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let e = c
        .model_infer(infer_request(&mlp, &sample_inputs(&cfg, 1, 2), true))
        .await
        .unwrap_err();
    assert!(
        matches!(e.code(), Code::NotFound | Code::Unavailable),
        "{e:?}"
    );

    let load = pb::RepositoryModelLoadRequest {
        model_name: mlp.clone(),
        ..Default::default()
    };
    c.repository_model_load(load).await.expect("load");
    assert!(c.model_ready(ready(&mlp)).await.unwrap().into_inner().ready);
    c.model_infer(infer_request(&mlp, &sample_inputs(&cfg, 1, 2), true))
        .await
        .expect("serves after reload");

    let missing = pb::RepositoryModelLoadRequest {
        model_name: "not-on-disk".into(),
        ..Default::default()
    };
    let e = c.repository_model_load(missing).await.unwrap_err();
    assert_status(&e, Code::NotFound, &["not-on-disk"]);
    let escape = pb::RepositoryModelLoadRequest {
        model_name: "../escape".into(),
        ..Default::default()
    };
    let e = c.repository_model_load(escape).await.unwrap_err();
    assert!(
        matches!(e.code(), Code::InvalidArgument | Code::NotFound)
            && e.message().contains("../escape"),
        "a name outside the repository is refused: {e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_calls() {
    let mut server = TestServer::start(|_| {}).await;
    let c = client(&server).await;
    let mlp = server.model_of(Family::Mlp);
    let (_, cfg) = server.handle().runtime.config(&mlp, None).unwrap();
    let rows = cfg.max_batch_size.min(256);
    let mut calls = Vec::new();
    for i in 0..16 {
        let mut c = c.clone();
        let req = infer_request(&mlp, &sample_inputs(&cfg, rows, i), true);
        calls.push(tokio::spawn(async move { c.model_infer(req).await }));
    }
    // Wait until the runtime has seen all 16 (queued, running or done), then shut down.
    let runtime = server.handle().runtime.clone();
    let seen = || {
        let load = runtime.load(&mlp).unwrap();
        let stats = runtime.stats(Some(&mlp), None).unwrap();
        let done: u64 = stats.iter().map(|s| s.success.count + s.fail.count).sum();
        done as usize + load.queued + load.in_flight
    };
    poll_until(
        "16 requests reach the runtime",
        HANG,
        Duration::from_millis(1),
        async || match seen() {
            n if n >= 16 => Ok(()),
            n => Err(format!("{n} seen")),
        },
    )
    .await;
    server.handle().shutdown();
    let mut ok = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => panic!("an accepted call failed during shutdown: {e:?}"),
        }
    }
    assert_eq!(ok, 16);
    let url = server.grpc_url();
    server.stop().await;
    assert!(
        Client::connect(url).await.is_err(),
        "stopped server still accepts"
    );
}
