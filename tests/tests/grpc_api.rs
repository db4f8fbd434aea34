//! `inference.GRPCInferenceService` end to end: a real server on 127.0.0.1, the generated
//! tonic client, every RPC, typed and raw tensors, success and error, outputs equal to an
//! in-process `Runtime` over the same weights, and the load counter in trailing metadata.

use cohost_models::Family;
use cohost_protocol::inference as pb;
use cohost_protocol::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use cohost_runtime::{InferRequest, Tensor, TensorData};
use cohost_tests::{
    ModelControlMode, TestServer, parse_load_header, reference_runtime, sample_inputs,
};
use pb::infer_parameter::ParameterChoice;
use pb::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use std::time::Duration;
use tonic::transport::Channel;
use tonic::{Code, Status};

type Client = GrpcInferenceServiceClient<Channel>;

async fn client(server: &TestServer) -> Client {
    GrpcInferenceServiceClient::connect(server.grpc_url())
        .await
        .expect("gRPC connects")
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX)
}

/// The proto input for `t`: typed contents, or (with `raw`) no contents.
fn proto_input(t: &Tensor, raw: bool) -> InferInputTensor {
    let mut c = pb::InferTensorContents::default();
    match &t.data {
        TensorData::F32(v) => c.fp32_contents = v.clone(),
        TensorData::I64(v) => c.int64_contents = v.clone(),
        TensorData::I32(v) => c.int_contents = v.clone(),
        other => panic!("unsupported {:?}", other.datatype()),
    }
    InferInputTensor {
        name: t.name.clone(),
        datatype: t.datatype().as_str().into(),
        shape: t.shape.clone(),
        contents: (!raw).then_some(c),
        ..Default::default()
    }
}

/// A ModelInfer request for `inputs`, raw or typed.
fn infer_request(model: &str, inputs: &[Tensor], raw: bool) -> pb::ModelInferRequest {
    pb::ModelInferRequest {
        model_name: model.into(),
        id: "req-7".into(),
        inputs: inputs.iter().map(|t| proto_input(t, raw)).collect(),
        raw_input_contents: if raw {
            inputs.iter().map(|t| t.data.to_le_bytes()).collect()
        } else {
            vec![]
        },
        ..Default::default()
    }
}

/// Output `i` of a response as f32 values, from raw or typed contents.
fn output_f32(resp: &pb::ModelInferResponse, i: usize) -> Vec<f32> {
    match resp.raw_output_contents.get(i) {
        Some(raw) => raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        None => {
            resp.outputs[i]
                .contents
                .clone()
                .expect("typed contents")
                .fp32_contents
        }
    }
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 + 1e-5 * w.abs(),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

/// Asserts `status` has `code` and a message containing every one of `needles`.
fn assert_status(status: &Status, code: Code, needles: &[&str]) {
    assert_eq!(
        status.code(),
        code,
        "unexpected code; message: {}",
        status.message()
    );
    for n in needles {
        assert!(
            status.message().contains(n),
            "message {:?} should name {n:?}",
            status.message()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_health_metadata_and_model_info() {
    let server = TestServer::start(|_| {}).await;
    let mut c = client(&server).await;
    assert!(
        c.server_live(pb::ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    assert!(
        c.server_ready(pb::ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let md = c
        .server_metadata(pb::ServerMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(md.name, "cohost");
    assert!(
        md.extensions.iter().any(|e| e == "model_repository"),
        "{:?}",
        md.extensions
    );

    let runtime = &server.handle().runtime;
    for family in [Family::Mlp, Family::Dlrm] {
        let model = server.model_of(family);
        let ready = |version: &str| pb::ModelReadyRequest {
            name: model.clone(),
            version: version.into(),
        };
        assert!(c.model_ready(ready("")).await.unwrap().into_inner().ready);
        assert!(!c.model_ready(ready("99")).await.unwrap().into_inner().ready);

        let want = runtime.metadata(&model, None).unwrap();
        let got = c
            .model_metadata(pb::ModelMetadataRequest {
                name: model.clone(),
                version: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.name, model);
        assert_eq!(got.platform, want.platform);
        assert_eq!(
            got.versions,
            want.versions.iter().map(u64::to_string).collect::<Vec<_>>()
        );
        assert_eq!(got.inputs.len(), want.inputs.len());
        for (g, w) in got.inputs.iter().zip(&want.inputs) {
            assert_eq!(
                (g.name.as_str(), g.datatype.as_str(), &g.shape),
                (w.name.as_str(), w.datatype.as_str(), &w.dims)
            );
            assert_eq!(g.shape[0], -1, "metadata keeps the batch dim");
        }

        let (_, cfg) = runtime.config(&model, None).unwrap();
        let got = c
            .model_config(pb::ModelConfigRequest {
                name: model.clone(),
                version: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .config
            .expect("config");
        assert_eq!(got.name, model);
        assert_eq!(got.max_batch_size as usize, cfg.max_batch_size);
        assert_eq!(got.input.len(), cfg.inputs.len());
        for (g, w) in got.input.iter().zip(&cfg.inputs) {
            assert_eq!(g.name, w.name);
            assert_eq!(g.data_type().as_str_name(), w.datatype.triton_name());
            assert_eq!(
                g.dims,
                w.dims[1..].to_vec(),
                "config dims drop the batch dim"
            );
        }
        for (g, w) in got.output.iter().zip(&cfg.outputs) {
            assert_eq!(g.data_type().as_str_name(), w.datatype.triton_name());
            assert_eq!(g.dims, w.dims[1..].to_vec());
        }
        let batching = cfg.batching.policy != cohost_models::BatchingPolicyKind::None;
        assert_eq!(
            got.scheduling_choice.is_some(),
            batching,
            "dynamic_batching iff batching"
        );
    }

    for (name, version) in [
        ("no-such-model", ""),
        (server.model_of(Family::Mlp).as_str(), "99"),
    ] {
        let req = pb::ModelMetadataRequest {
            name: name.into(),
            version: version.into(),
        };
        let e = c.model_metadata(req).await.unwrap_err();
        assert_status(&e, Code::NotFound, &[name]);
        let req = pb::ModelConfigRequest {
            name: name.into(),
            version: version.into(),
        };
        assert_eq!(
            c.model_config(req).await.unwrap_err().code(),
            Code::NotFound
        );
    }
    let req = pb::ModelMetadataRequest {
        name: "x".into(),
        version: "abc".into(),
    };
    assert_status(
        &c.model_metadata(req).await.unwrap_err(),
        Code::InvalidArgument,
        &["abc"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infer_typed_and_raw_match_the_runtime() {
    let server = TestServer::start(|_| {}).await;
    let reference = reference_runtime(server.repo.path());
    let mut c = client(&server).await;
    for family in [Family::Mlp, Family::Dlrm] {
        let model = server.model_of(family);
        let (_, cfg) = reference.config(&model, None).unwrap();
        let inputs = sample_inputs(&cfg, 3, 42);
        let want = reference
            .infer(
                &model,
                None,
                InferRequest {
                    inputs: inputs.clone(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        for raw in [true, false] {
            let resp = c
                .model_infer(infer_request(&model, &inputs, raw))
                .await
                .unwrap();
            let load = resp
                .metadata()
                .get("endpoint-load-metrics")
                .expect("load counter in trailing metadata")
                .to_str()
                .unwrap()
                .to_string();
            let (model_load, host_load) = parse_load_header(&load).expect("ORCA text form");
            assert!(model_load >= 0.0 && host_load >= 0.0, "{load}");
            let resp = resp.into_inner();
            assert_eq!(resp.model_name, model);
            assert_eq!(resp.id, "req-7");
            assert_eq!(resp.model_version, want.model_version.to_string());
            assert_eq!(
                resp.raw_output_contents.len(),
                if raw { want.outputs.len() } else { 0 }
            );
            assert_eq!(resp.outputs.len(), want.outputs.len());
            for (i, w) in want.outputs.iter().enumerate() {
                let o = &resp.outputs[i];
                assert_eq!((&o.name, &o.shape), (&w.name, &w.shape));
                assert_eq!(o.datatype, w.datatype().as_str());
                let TensorData::F32(wv) = &w.data else {
                    panic!("f32 outputs")
                };
                assert_close(
                    &output_f32(&resp, i),
                    wv,
                    &format!("{model} raw={raw} {}", w.name),
                );
            }
        }
        // A requested subset of outputs, and INT32 indices / the typed int field for DLRM.
        let mut req = infer_request(&model, &inputs, false);
        req.outputs = vec![InferRequestedOutputTensor {
            name: cfg.outputs[0].name.clone(),
            ..Default::default()
        }];
        let resp = c.model_infer(req).await.unwrap().into_inner();
        assert_eq!(resp.outputs.len(), 1);
        assert_eq!(resp.outputs[0].name, cfg.outputs[0].name);
    }
}

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
async fn statistics_index_and_refused_repository_control() {
    let server = TestServer::start(|_| {}).await;
    let mut c = client(&server).await;
    let mlp = server.model_of(Family::Mlp);
    let (_, cfg) = server.handle().runtime.config(&mlp, None).unwrap();
    for _ in 0..3 {
        c.model_infer(infer_request(&mlp, &sample_inputs(&cfg, 2, 9), true))
            .await
            .unwrap();
    }
    let stats = c
        .model_statistics(pb::ModelStatisticsRequest {
            name: mlp.clone(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .model_stats;
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].name, mlp);
    assert!(stats[0].inference_count >= 6, "{:?}", stats[0]);
    assert!(stats[0].execution_count >= 1);
    let inf = stats[0].inference_stats.unwrap();
    assert!(inf.success.unwrap().count >= 3);
    assert!(!stats[0].batch_stats.is_empty());
    let all = c
        .model_statistics(pb::ModelStatisticsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        all.model_stats.len() >= 2,
        "every model: {:?}",
        all.model_stats.len()
    );
    let e = c
        .model_statistics(pb::ModelStatisticsRequest {
            name: "nope".into(),
            version: String::new(),
        })
        .await
        .unwrap_err();
    assert_status(&e, Code::NotFound, &["nope"]);

    let index = c
        .repository_index(pb::RepositoryIndexRequest::default())
        .await
        .unwrap()
        .into_inner();
    let row = index
        .models
        .iter()
        .find(|m| m.name == mlp)
        .expect("model in index");
    assert_eq!(row.state, "READY");
    let ready_only = pb::RepositoryIndexRequest {
        ready: true,
        ..Default::default()
    };
    assert!(
        c.repository_index(ready_only)
            .await
            .unwrap()
            .into_inner()
            .models
            .iter()
            .all(|m| m.state == "READY")
    );

    let load = pb::RepositoryModelLoadRequest {
        model_name: mlp.clone(),
        ..Default::default()
    };
    let e = c.repository_model_load(load).await.unwrap_err();
    assert_status(&e, Code::FailedPrecondition, &["explicit", &mlp]);
    let unload = pb::RepositoryModelUnloadRequest {
        model_name: mlp.clone(),
        ..Default::default()
    };
    let e = c.repository_model_unload(unload).await.unwrap_err();
    assert_status(&e, Code::FailedPrecondition, &["explicit"]);
    assert!(
        c.model_ready(pb::ModelReadyRequest {
            name: mlp,
            version: String::new()
        })
        .await
        .unwrap()
        .into_inner()
        .ready
    );
}

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
async fn stream_infer_answers_each_request() {
    let server = TestServer::start(|_| {}).await;
    let mut c = client(&server).await;
    let mlp = server.model_of(Family::Mlp);
    let (_, cfg) = server.handle().runtime.config(&mlp, None).unwrap();
    let reqs = vec![
        infer_request(&mlp, &sample_inputs(&cfg, 1, 1), true),
        infer_request("no-such-model", &sample_inputs(&cfg, 1, 1), true),
        infer_request(&mlp, &sample_inputs(&cfg, 2, 2), false),
    ];
    let mut out = c
        .model_stream_infer(tokio_stream_iter(reqs))
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(item) = out.message().await.unwrap() {
        got.push(item);
    }
    assert_eq!(got.len(), 3);
    assert!(got[0].error_message.is_empty() && got[0].infer_response.is_some());
    assert!(
        got[1].error_message.contains("no-such-model"),
        "{:?}",
        got[1].error_message
    );
    assert_eq!(
        got[2].infer_response.as_ref().unwrap().outputs[0].shape[0],
        2
    );
}

/// A request stream from a vector (no extra dependency).
fn tokio_stream_iter(
    items: Vec<pb::ModelInferRequest>,
) -> impl tonic::codegen::tokio_stream::Stream<Item = pb::ModelInferRequest> + Send + 'static {
    tonic::codegen::tokio_stream::iter(items)
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
    let start = std::time::Instant::now();
    while seen() < 16 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "requests never reached the runtime"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
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
        GrpcInferenceServiceClient::connect(url).await.is_err(),
        "stopped server still accepts"
    );
}
