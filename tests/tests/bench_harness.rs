//! The harness (`cohost bench`'s library) against a real server over real sockets: every
//! request of a closed and an open loop answered over HTTP JSON, HTTP binary and gRPC,
//! and a server's refusal attributed to its status.

use cohost_bench::grpc::GrpcTarget;
use cohost_bench::workload::read_config;
use cohost_bench::{
    BatchDist, FailKind, HttpTarget, IndexDist, LoadMode, LoadSpec, ModelShare, Target, Workload,
    measure, prepare,
};
use cohost_tests::TestServer;
use std::sync::Arc;
use std::time::Duration;

fn workload(repo: &std::path::Path) -> Workload {
    let models = ["mlp-tiny", "dlrm-tiny"]
        .iter()
        .map(|n| ModelShare {
            name: n.to_string(),
            weight: 1.0,
            config: read_config(repo, n).unwrap(),
        })
        .collect();
    Workload {
        models,
        batch: BatchDist::parse("1:0.7,4:0.3").unwrap(),
        index: IndexDist::Zipf(1.05),
        pool_size: 32,
        seed: 5,
    }
}

/// Every request of a closed loop and an open loop succeeds, per model, with rows counted.
async fn serves_everything<T: Target>(target: T, repo: &std::path::Path) {
    let name = target.name();
    let target = Arc::new(target);
    let prepared = Arc::new(prepare(target.as_ref(), &workload(repo)).unwrap());
    for mode in [
        LoadMode::Closed { concurrency: 4 },
        LoadMode::Open { rate: 300.0 },
    ] {
        let spec = LoadSpec::new(mode, Duration::from_millis(100), Duration::from_millis(600));
        let report = measure(target.clone(), prepared.clone(), &spec).await;
        assert_eq!(report.models.len(), 2, "{name} {mode:?}");
        for (model, s) in &report.models {
            assert!(s.ok > 10, "{name} {mode:?} {model}: only {} answered", s.ok);
            assert_eq!(
                s.errors, 0,
                "{name} {mode:?} {model}: {:?}",
                s.errors_by_kind
            );
            assert!(s.rows_per_s > s.throughput, "{name} {mode:?} {model}: rows");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_json_binary_and_grpc_targets_get_every_answer() {
    let mut server = TestServer::start(|_| {}).await;
    let repo = server.repo.path().to_path_buf();
    let timeout = Duration::from_secs(10);
    serves_everything(
        HttpTarget::new(&server.base, false, timeout).unwrap(),
        &repo,
    )
    .await;
    serves_everything(HttpTarget::new(&server.base, true, timeout).unwrap(), &repo).await;
    let grpc = GrpcTarget::connect(&server.grpc_url(), 2, timeout)
        .await
        .unwrap();
    serves_everything(grpc, &repo).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_refusals_are_counted_by_status_and_the_connection_survives() {
    let mut server = TestServer::start(|_| {}).await;
    let repo = server.repo.path().to_path_buf();
    let target = HttpTarget::new(&server.base, false, Duration::from_secs(10)).unwrap();
    let prepared = prepare(&target, &workload(&repo)).unwrap();
    let good = &prepared.models[0].pool[0].0;
    assert_eq!(target.infer("mlp-tiny", good).await, Ok(()));
    // The same body sent to a model that does not exist: 404, then a good one again.
    let mut missing = good.clone();
    missing.path = "/v2/models/no-such-model/infer".into();
    assert_eq!(
        target.infer("no-such-model", &missing).await,
        Err(FailKind::Http(404))
    );
    // A body the server cannot decode: 400.
    let mut garbage = good.clone();
    garbage.body = bytes::Bytes::from_static(b"{\"inputs\": 7}");
    assert_eq!(
        target.infer("mlp-tiny", &garbage).await,
        Err(FailKind::Http(400))
    );
    assert_eq!(target.infer("mlp-tiny", good).await, Ok(()));
    server.stop().await;
}

/// A one-connection gRPC target on `server` and an encoded mlp-tiny request it has
/// already answered once.
async fn grpc_target_on(server: &TestServer) -> (GrpcTarget, bytes::Bytes) {
    let target = GrpcTarget::connect(&server.grpc_url(), 1, Duration::from_secs(10))
        .await
        .unwrap();
    let prepared = prepare(&target, &workload(server.repo.path())).unwrap();
    let request = prepared.models[0].pool[0].0.clone();
    assert_eq!(target.infer("mlp-tiny", &request).await, Ok(()));
    (target, request)
}

/// The gRPC target reports the server's status codes by name, and its connection serves
/// the next call after a refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_refusals_are_counted_by_status_code() {
    use cohost_protocol::inference::ModelInferRequest;
    use cohost_protocol::inference::model_infer_request::InferInputTensor;
    let mut server = TestServer::start(|_| {}).await;
    let (target, good) = grpc_target_on(&server).await;
    let missing = cohost_bench::grpc::frame(&ModelInferRequest {
        model_name: "no-such-model".into(),
        ..Default::default()
    });
    assert_eq!(
        target.infer("no-such-model", &missing).await,
        Err(FailKind::Grpc("not_found".into()))
    );
    // Three FP32 values where mlp-tiny takes rows of 8.
    let misshapen = cohost_bench::grpc::frame(&ModelInferRequest {
        model_name: "mlp-tiny".into(),
        inputs: vec![InferInputTensor {
            name: "input".into(),
            datatype: "FP32".into(),
            shape: vec![1, 3],
            ..Default::default()
        }],
        raw_input_contents: vec![vec![0; 12]],
        ..Default::default()
    });
    assert_eq!(
        target.infer("mlp-tiny", &misshapen).await,
        Err(FailKind::Grpc("invalid_argument".into()))
    );
    assert_eq!(target.infer("mlp-tiny", &good).await, Ok(()));
    server.stop().await;
}

/// A gRPC connection the server closed is opened again on the next call: calls fail as
/// transport errors while nothing listens, and succeed once a server is back on the port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_target_reconnects_after_the_server_restarts() {
    let mut first = TestServer::start(|_| {}).await;
    let port = first.handle().grpc_addr.port();
    let (target, request) = grpc_target_on(&first).await;
    first.stop().await;
    // Nothing listens: the closed connection is noticed and reopening it fails.
    let mut failed = None;
    for _ in 0..50 {
        match target.infer("mlp-tiny", &request).await {
            Ok(()) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    assert_eq!(failed, Some(FailKind::Transport));
    let mut second = TestServer::start(|o| o.grpc_port = port).await;
    assert_eq!(target.infer("mlp-tiny", &request).await, Ok(()));
    assert_eq!(target.infer("mlp-tiny", &request).await, Ok(()));
    second.stop().await;
}

/// The server's statistics over a run (`cohost bench`'s server-side table) count exactly
/// the requests and rows the client had answered, over HTTP, gRPC and in-process alike.
/// `with_metrics`: the target reads the server's `/metrics` (HTTP always, gRPC when told).
async fn server_window_matches_the_client<T: Target>(
    target: T,
    repo: &std::path::Path,
    with_metrics: bool,
) {
    let name = target.name();
    let target = Arc::new(target);
    let prepared = Arc::new(prepare(target.as_ref(), &workload(repo)).unwrap());
    let before = target.server_stats().await.expect("statistics readable");
    // No warm-up: every request sent is one the report counts.
    let spec = LoadSpec::new(
        LoadMode::Closed { concurrency: 3 },
        Duration::ZERO,
        Duration::from_millis(500),
    );
    let report = measure(target.clone(), prepared.clone(), &spec).await;
    let after = target.server_stats().await.expect("statistics readable");
    let names = ["mlp-tiny", "dlrm-tiny"];
    let windows = cohost_bench::server_stats::window(&before, &after, &names);
    assert_eq!(windows.len(), 2, "{name}: {windows:?}");
    // The measuring entry point fills the same table into the report by itself.
    let again = cohost_bench::server_side::measure(target.clone(), prepared.clone(), &spec).await;
    assert_eq!(again.server.len(), 2, "{name}: {:?}", again.server);
    // CPU per answered request: this process's own (client, and here the server too),
    // and over HTTP the server's process_cpu_seconds_total from /metrics. The test server
    // runs in this process, so the two are one process read two ways (getrusage and
    // /proc ticks of 10 ms): they must agree.
    let cpu = again.cpu.as_ref().expect("CPU window");
    assert_eq!(
        cpu.requests,
        again.server.iter().map(|w| w.requests).sum::<u64>(),
        "{name}"
    );
    assert!(
        cpu.client_us_per_request > 0.0 && cpu.client_us_per_request.is_finite(),
        "{name}: {cpu:?}"
    );
    match name {
        "in-process" => assert!(cpu.shared_process && cpu.server_us_per_request.is_none()),
        "grpc" if !with_metrics => assert_eq!(cpu.server_us_per_request, None, "{cpu:?}"),
        _ if cfg!(target_os = "linux") => {
            let server = cpu
                .server_us_per_request
                .expect("process_cpu_seconds_total read");
            let client = cpu.client_us_per_request;
            assert!(
                (server - client).abs() <= 0.2 * client.max(server),
                "{name}: one process, read two ways: {cpu:?}"
            );
        }
        _ => {}
    }
    for w in &again.server {
        let (_, s) = again.models.iter().find(|(m, _)| m == &w.model).unwrap();
        assert_eq!(
            w.requests, s.ok,
            "{name} {}: report.server vs client",
            w.model
        );
    }
    for w in &windows {
        let model = &w.model;
        let (_, s) = report.models.iter().find(|(m, _)| m == model).unwrap();
        assert_eq!(s.errors, 0, "{name} {model}");
        assert_eq!(
            w.requests, s.ok,
            "{name} {model}: server vs client requests"
        );
        // Requests of 1 or 4 rows: more rows than requests, at least one row per batch.
        assert!(w.rows > w.requests, "{name} {model}: {w:?}");
        assert!(
            w.batches >= 1 && w.batches <= w.rows,
            "{name} {model}: {w:?}"
        );
        assert!(w.rows_per_batch >= 1.0, "{name} {model}: {w:?}");
        assert!(w.compute_us_per_batch > 0.0, "{name} {model}: {w:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_window_counts_what_the_client_saw() {
    let mut server = TestServer::start(|_| {}).await;
    let repo = server.repo.path().to_path_buf();
    let http = HttpTarget::new(&server.base, false, Duration::from_secs(10)).unwrap();
    server_window_matches_the_client(http, &repo, true).await;
    let grpc_url = server.grpc_url();
    let grpc = || GrpcTarget::connect(&grpc_url, 1, Duration::from_secs(10));
    server_window_matches_the_client(grpc().await.unwrap(), &repo, false).await;
    let with_metrics = grpc().await.unwrap().with_metrics(&server.base);
    server_window_matches_the_client(with_metrics, &repo, true).await;
    server.stop().await;
    let runtime = cohost_runtime::Runtime::new(
        cohost_runtime::RuntimeOptions::default()
            .repository(repo.clone())
            .lanes(2),
    )
    .unwrap();
    assert!(runtime.load_all().is_empty());
    server_window_matches_the_client(
        cohost_bench::InProcessTarget::new(runtime.clone()),
        &repo,
        false,
    )
    .await;
    runtime.shutdown();
}
