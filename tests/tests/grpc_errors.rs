//! gRPC errors end to end: every failure gets the right status code and a message naming
//! the problem, and the server keeps serving on the same connection.

mod grpc_common;

use cohost_models::Family;
use cohost_protocol::inference as pb;
use cohost_runtime::{Tensor, TensorData};
use cohost_tests::{TestServer, parse_load_header, sample_inputs};
use grpc_common::*;
use pb::infer_parameter::ParameterChoice;
use std::time::Duration;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infer_errors_name_the_problem_and_the_server_keeps_serving() {
    let server = TestServer::start(|o| o.max_body_bytes = 64 << 10).await;
    let runtime = &server.handle().runtime;
    let mut c = client(&server).await;
    let mlp = server.model_of(Family::Mlp);
    let dlrm = server.model_of(Family::Dlrm);
    let (_, mlp_cfg) = runtime.config(&mlp, None).unwrap();
    let (_, dlrm_cfg) = runtime.config(&dlrm, None).unwrap();
    let good = sample_inputs(&mlp_cfg, 2, 1);
    let input0 = mlp_cfg.inputs[0].name.clone();

    // Unknown model and version.
    let mut req = infer_request("no-such-model", &good, true);
    assert_status(
        &c.model_infer(req.clone()).await.unwrap_err(),
        Code::NotFound,
        &["no-such-model"],
    );
    req.model_name = mlp.clone();
    req.model_version = "99".into();
    assert_status(
        &c.model_infer(req).await.unwrap_err(),
        Code::NotFound,
        &[&mlp],
    );

    // Wrong shape: the feature dim is off by one (element count consistent).
    let mut bad = good.clone();
    let width = bad[0].shape[1] + 1;
    bad[0] = Tensor::new(
        input0.clone(),
        vec![2, width],
        TensorData::F32(vec![0.5; 2 * width as usize]),
    );
    let e = c
        .model_infer(infer_request(&mlp, &bad, true))
        .await
        .unwrap_err();
    assert_status(&e, Code::InvalidArgument, &[&input0]);
    let load = e
        .metadata()
        .get("endpoint-load-metrics")
        .expect("errors carry the load");
    assert!(parse_load_header(load.to_str().unwrap()).is_some());

    // Wrong datatype: BYTES for a numeric input.
    let mut req = infer_request(&mlp, &good, false);
    req.inputs[0].datatype = "BYTES".into();
    req.inputs[0].contents = Some(pb::InferTensorContents {
        bytes_contents: vec![b"a".to_vec(); good[0].data.len()],
        ..Default::default()
    });
    let e = c.model_infer(req).await.unwrap_err();
    assert_status(&e, Code::InvalidArgument, &[&input0, "BYTES"]);
    // Typed contents in the wrong field for the declared datatype.
    let mut req = infer_request(&mlp, &good, false);
    req.inputs[0].datatype = "INT64".into();
    let e = c.model_infer(req).await.unwrap_err();
    assert_status(
        &e,
        Code::InvalidArgument,
        &[&input0, "int64_contents", "fp32_contents"],
    );

    // Truncated raw contents.
    let mut req = infer_request(&mlp, &good, true);
    let full = req.raw_input_contents[0].len();
    req.raw_input_contents[0].truncate(full - 3);
    let e = c.model_infer(req).await.unwrap_err();
    assert_status(
        &e,
        Code::InvalidArgument,
        &[&input0, &format!("{} bytes", full - 3)],
    );
    // Raw contents missing for one input.
    let mut req = infer_request(&mlp, &good, true);
    req.raw_input_contents.push(vec![0; 4]);
    assert_status(
        &c.model_infer(req).await.unwrap_err(),
        Code::InvalidArgument,
        &["raw_input_contents"],
    );

    // Out-of-range embedding index.
    let mut inputs = sample_inputs(&dlrm_cfg, 1, 3);
    let sparse = inputs
        .iter_mut()
        .find(|t| matches!(t.data, TensorData::I64(_)))
        .expect("index input");
    let TensorData::I64(v) = &mut sparse.data else {
        unreachable!()
    };
    v[0] = 1 << 40;
    let e = c
        .model_infer(infer_request(&dlrm, &inputs, true))
        .await
        .unwrap_err();
    assert_status(&e, Code::InvalidArgument, &[&(1u64 << 40).to_string()]);

    // Oversized message: 800 KB against the 64 KiB limit, refused before decoding.
    let mut big = good.clone();
    big[0] = Tensor::new(
        input0.clone(),
        vec![1, 200_000],
        TensorData::F32(vec![0.0; 200_000]),
    );
    let e = c
        .model_infer(infer_request(&mlp, &big, true))
        .await
        .unwrap_err();
    assert_status(&e, Code::ResourceExhausted, &["65536 bytes"]);

    // A timeout too short to meet: refused or timed out, never served late.
    let mut req = infer_request(&mlp, &good, true);
    req.parameters.insert(
        "timeout".into(),
        pb::InferParameter {
            parameter_choice: Some(ParameterChoice::Int64Param(1)),
        },
    );
    let e = c.model_infer(req).await.unwrap_err();
    assert!(
        matches!(e.code(), Code::DeadlineExceeded | Code::ResourceExhausted),
        "{e:?}"
    );
    assert!(e.message().contains(&mlp), "{}", e.message());
    // ... and a generous one (parameter and grpc-timeout header) succeeds.
    let mut req = infer_request(&mlp, &good, true);
    req.parameters.insert(
        "timeout".into(),
        pb::InferParameter {
            parameter_choice: Some(ParameterChoice::Int64Param(30_000_000)),
        },
    );
    let mut req = tonic::Request::new(req);
    req.set_timeout(Duration::from_secs(30));
    c.model_infer(req)
        .await
        .expect("generous timeout is served");

    // Still serving, on the same connection.
    assert!(
        c.server_live(pb::ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    c.model_infer(infer_request(&mlp, &good, false))
        .await
        .expect("serves after errors");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_with_resource_exhausted_before_the_tensors_are_read() {
    let server = TestServer::start(|_| {}).await;
    let runtime = &server.handle().runtime;
    let mut c = client(&server).await;
    let (config, held) = cohost_tests::fill_a_held_queue(runtime, "held", 2).await;
    // No inputs at all: a queue with room answers InvalidArgument; a full one refuses first.
    let empty = infer_request("held", &[], true);
    assert_status(
        &c.model_infer(empty.clone()).await.unwrap_err(),
        Code::ResourceExhausted,
        &["held", "queue is full"],
    );
    let good = infer_request("held", &sample_inputs(&config, 1, 4), true);
    assert_status(
        &c.model_infer(good.clone()).await.unwrap_err(),
        Code::ResourceExhausted,
        &["queue is full"],
    );
    for h in held {
        h.await.unwrap().expect("the held requests are answered");
    }
    assert_eq!(
        c.model_infer(empty).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    // Held by its batcher, then answered.
    c.model_infer(good)
        .await
        .expect("served once there is room");
}
