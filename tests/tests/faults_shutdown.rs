//! SIGTERM on the real binary (issue 18 item 7): with a held-open `ModelStreamInfer`
//! stream and unary requests in flight, the unary requests are answered, the stream is
//! ended with UNAVAILABLE once `--drain-timeout` passes, and the process exits by itself;
//! a second signal exits at once.

mod faults_common;
mod grpc_common;

use cohost_protocol::inference as pb;
use cohost_protocol::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use cohost_tests::{fetch_json, json_input, poll_until, reference_runtime, sample_inputs};
use faults_common::*;
use grpc_common::{assert_close, infer_request, output_f32};
use serde_json::{Value, json};
use std::time::Duration;
use tonic::codegen::tokio_stream::{self, StreamExt};

/// The drain deadline the server is started with.
const DRAIN: Duration = Duration::from_secs(4);
/// How long the held model keeps each request before running it (well within `DRAIN`).
const HOLD_US: u64 = 1_000_000;
/// Exiting takes the drain, then at most a few seconds of grace; far more is a hang.
const EXIT_BOUND: Duration = Duration::from_secs(30);

type Client = GrpcInferenceServiceClient<tonic::transport::Channel>;

async fn grpc_client(server: &Cohost) -> Client {
    GrpcInferenceServiceClient::connect(server.grpc_url())
        .await
        .expect("gRPC connects")
}

/// A stream that sends `first` and then stays open without sending more.
fn held_open(
    first: pb::ModelInferRequest,
) -> impl tokio_stream::Stream<Item = pb::ModelInferRequest> {
    tokio_stream::iter(vec![first]).chain(tokio_stream::pending())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_inflight_requests_cuts_the_open_stream_and_exits() {
    let repo = repository();
    // References first, from the unmodified models, each input run alone.
    let reference = reference_runtime(repo.path());
    let (_, config) = reference.config("mlp-tiny", None).unwrap();
    let inputs: Vec<_> = (0..6)
        .map(|seed| sample_inputs(&config, 1, 100 + seed))
        .collect();
    let mut want = Vec::new();
    for input in &inputs {
        let request = cohost_runtime::InferRequest {
            inputs: input.clone(),
            ..Default::default()
        };
        let resp = reference.infer("mlp-tiny", None, request).await.unwrap();
        let cohost_runtime::TensorData::F32(v) = &resp.outputs[0].data else {
            panic!("FP32 output")
        };
        want.push(v.clone());
    }
    reference.shutdown();
    hold_batches(&repo.path().join("mlp-tiny"), HOLD_US);

    let drain = format!("{}", DRAIN.as_secs());
    let mut server = Cohost::start(repo.path(), &["--drain-timeout", &drain]);
    let http = reqwest::Client::new();
    let mut grpc = grpc_client(&server).await;

    // The held-open stream: one answer, then the client neither sends nor closes.
    let first_input = sample_inputs(&config, 1, 1);
    let mut stream = grpc
        .model_stream_infer(held_open(infer_request("mlp-tiny", &first_input, true)))
        .await
        .expect("the stream opens")
        .into_inner();
    let first = tokio::time::timeout(START, stream.message())
        .await
        .expect("the stream's first answer")
        .expect("no error")
        .expect("an answer");
    assert!(first.error_message.is_empty(), "{}", first.error_message);

    // Unary requests in flight: four over HTTP, two over gRPC, all held by the batcher.
    let mut unary = Vec::new();
    for (i, input) in inputs.iter().enumerate().take(4) {
        let (http, url) = (
            http.clone(),
            format!("{}/v2/models/mlp-tiny/infer", server.http_url()),
        );
        let body = json!({ "inputs": input.iter().map(json_input).collect::<Vec<_>>() });
        unary.push(tokio::spawn(async move {
            let res = http
                .post(url)
                .json(&body)
                .send()
                .await
                .expect("HTTP answer");
            let status = res.status().as_u16();
            let v: Value = res.json().await.expect("JSON");
            assert_eq!(status, 200, "HTTP #{i}: {v}");
            v["outputs"][0]["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect::<Vec<f32>>()
        }));
    }
    for (i, input) in inputs.iter().enumerate().skip(4) {
        let mut grpc = grpc.clone();
        let request = infer_request("mlp-tiny", input, true);
        unary.push(tokio::spawn(async move {
            let resp = grpc
                .model_infer(request)
                .await
                .unwrap_or_else(|e| panic!("gRPC #{i}: {e}"));
            output_f32(&resp.into_inner(), 0)
        }));
    }
    // All six are queued before the signal.
    poll_until(
        "the six requests queue",
        START,
        Duration::from_millis(20),
        async || {
            let v = fetch_json(
                &http,
                &format!("{}/v2/models/mlp-tiny/load", server.http_url()),
            )
            .await;
            let queued = v["queued"].as_u64().unwrap_or(0) + v["in_flight"].as_u64().unwrap_or(0);
            if queued >= 6 {
                Ok(())
            } else {
                Err(v.to_string())
            }
        },
    )
    .await;

    server.signal("TERM");
    for (i, task) in unary.into_iter().enumerate() {
        let got = tokio::time::timeout(START, task)
            .await
            .unwrap_or_else(|_| panic!("unary #{i} is answered during the drain"))
            .expect("unary task");
        assert_close(&got, &want[i], &format!("unary #{i}"));
    }
    // The stream stays open until the deadline, then ends with a status.
    let end = tokio::time::timeout(START, stream.message())
        .await
        .expect("the stream ends");
    let status = end.expect_err("the stream ends with a status, not a clean end");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("--drain-timeout"), "{status:?}");

    let exit = tokio::task::spawn_blocking(move || {
        let exit = server.wait_exit(EXIT_BOUND);
        (exit, server)
    })
    .await
    .unwrap();
    let (exit, server) = exit;
    let log = server.log_text();
    let exit =
        exit.unwrap_or_else(|| panic!("cohost still runs {EXIT_BOUND:?} after SIGTERM:\n{log}"));
    assert!(exit.success(), "exit status {exit:?}:\n{log}");
    assert!(log.contains("drain deadline"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let repo = repository();
    // A drain far longer than the test: only the second signal can end it.
    let mut server = Cohost::start(repo.path(), &["--drain-timeout", "600"]);
    let mut grpc = grpc_client(&server).await;
    let config = cohost_models::synth::preset("mlp-tiny").unwrap();
    let mut stream = grpc
        .model_stream_infer(held_open(infer_request(
            "mlp-tiny",
            &sample_inputs(&config, 1, 3),
            true,
        )))
        .await
        .expect("the stream opens")
        .into_inner();
    tokio::time::timeout(START, stream.message())
        .await
        .expect("the stream's first answer")
        .expect("no error");

    server.signal("TERM");
    // Still draining: the open stream holds it.
    assert!(
        server.wait_exit(Duration::from_millis(500)).is_none(),
        "{}",
        server.log_text()
    );
    server.signal("INT");
    let exit = tokio::task::spawn_blocking(move || {
        let exit = server.wait_exit(EXIT_BOUND);
        (exit, server)
    })
    .await
    .unwrap();
    let (exit, server) = exit;
    let exit =
        exit.unwrap_or_else(|| panic!("a second signal did not exit:\n{}", server.log_text()));
    assert_eq!(exit.code(), Some(130), "{}", server.log_text());
}
