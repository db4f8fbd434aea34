//! `inference.GRPCInferenceService` end to end: a real server on 127.0.0.1, the generated
//! tonic client: health, metadata, config, typed and raw inference equal to an in-process
//! `Runtime` over the same weights, the load counter in trailing metadata, streaming,
//! statistics and the repository index.

mod grpc_common;

use cohost_models::Family;
use cohost_protocol::inference as pb;
use cohost_runtime::{InferRequest, TensorData};
use cohost_tests::{TestServer, parse_load_header, reference_runtime, sample_inputs};
use grpc_common::*;
use pb::model_infer_request::InferRequestedOutputTensor;
use tonic::Code;

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
