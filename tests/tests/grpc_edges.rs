//! Hardened gRPC edges (issue 18): `grpc-timeout` parsed as the protocol defines it, the
//! model looked up before its tensors, model names checked before they are stored, and
//! the control token.

mod grpc_common;

use cohost_models::Family;
use cohost_protocol::inference as pb;
use cohost_tests::*;
use grpc_common::*;
use pb::infer_parameter::ParameterChoice;
use tonic::Code;
use tonic::metadata::MetadataValue;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_timeouts_follow_the_protocol() {
    let s = TestServer::start(|_| {}).await;
    let mut c = client(&s).await;
    let mlp = s.model_of(Family::Mlp);
    let (_, cfg) = s.handle().runtime.config(&mlp, None).unwrap();
    let good = infer_request(&mlp, &sample_inputs(&cfg, 2, 1), true);

    // More digits than the protocol's 8 (before: a Duration whose addition to an Instant
    // overflowed and panicked the handler).
    for bad in ["10000000000000000000S", "123456789m", "5x", "-1S"] {
        let mut req = tonic::Request::new(good.clone());
        req.metadata_mut()
            .insert("grpc-timeout", MetadataValue::from_static(bad));
        let e = c.model_infer(req).await.unwrap_err();
        assert_status(&e, Code::InvalidArgument, &["grpc-timeout"]);
    }
    // The largest valid one is no overflow either.
    let mut req = tonic::Request::new(good.clone());
    req.metadata_mut()
        .insert("grpc-timeout", MetadataValue::from_static("99999999H"));
    c.model_infer(req).await.expect("a far deadline is served");

    // A timeout parameter of 0 is none, as over HTTP (and in Triton).
    let mut req = good.clone();
    req.parameters.insert(
        "timeout".into(),
        pb::InferParameter {
            parameter_choice: Some(ParameterChoice::Int64Param(0)),
        },
    );
    c.model_infer(req).await.expect("timeout 0 is no timeout");
    // The server still serves on the same connection.
    c.model_infer(good).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_model_is_not_found_whatever_its_inputs() {
    let s = TestServer::start(|_| {}).await;
    let mut c = client(&s).await;
    let mlp = s.model_of(Family::Mlp);
    let (_, cfg) = s.handle().runtime.config(&mlp, None).unwrap();
    let mut req = infer_request("no-such-model", &sample_inputs(&cfg, 2, 1), true);
    // Incomplete: one raw_input_contents entry too few.
    req.raw_input_contents.pop();
    let e = c.model_infer(req.clone()).await.unwrap_err();
    assert_status(&e, Code::NotFound, &["no-such-model"]);
    req.model_name = mlp.clone();
    req.model_version = "42".into();
    let e = c.model_infer(req).await.unwrap_err();
    assert_status(&e, Code::NotFound, &[&mlp]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_load_checks_names_before_storing_them() {
    let s = TestServer::start(|o| o.model_control = ModelControlMode::Explicit).await;
    let mut c = client(&s).await;
    let huge = "n".repeat(4 << 20);
    for name in [huge.as_str(), "../escape", ".hidden", "a b"] {
        let e = c
            .repository_model_load(pb::RepositoryModelLoadRequest {
                model_name: name.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            e.code(),
            Code::InvalidArgument,
            "{}",
            &e.message()[..80.min(e.message().len())]
        );
        assert!(e.message().len() < 300, "the refusal quotes a bounded name");
        let e = c
            .repository_model_unload(pb::RepositoryModelUnloadRequest {
                model_name: name.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
    }
    let index = c
        .repository_index(pb::RepositoryIndexRequest::default())
        .await
        .unwrap()
        .into_inner();
    for m in &index.models {
        assert!(
            cohost_runtime::validate_model_name(&m.name).is_ok(),
            "an invalid name was stored: {}",
            &m.name[..m.name.len().min(80)]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_needs_the_bearer_token() {
    let s = TestServer::start(|o| {
        o.model_control = ModelControlMode::Explicit;
        o.control_token = Some("t0ken".into());
    })
    .await;
    let mut c = client(&s).await;
    let mlp = s.model_of(Family::Mlp);
    let with = |auth: Option<&'static str>| {
        move |mut req: tonic::Request<()>| {
            if let Some(a) = auth {
                req.metadata_mut()
                    .insert("authorization", MetadataValue::from_static(a));
            }
            req
        }
    };
    let index =
        |auth| with(auth)(tonic::Request::new(())).map(|_| pb::RepositoryIndexRequest::default());
    let load = |auth| {
        with(auth)(tonic::Request::new(())).map(|_| pb::RepositoryModelLoadRequest {
            model_name: mlp.clone(),
            ..Default::default()
        })
    };
    let unload = |auth| {
        with(auth)(tonic::Request::new(())).map(|_| pb::RepositoryModelUnloadRequest {
            model_name: mlp.clone(),
            ..Default::default()
        })
    };
    for auth in [None, Some("Bearer wrong"), Some("t0ken")] {
        let e = c.repository_index(index(auth)).await.unwrap_err();
        assert_status(&e, Code::Unauthenticated, &["--control-token"]);
        let e = c.repository_model_load(load(auth)).await.unwrap_err();
        assert_status(&e, Code::Unauthenticated, &["--control-token"]);
        let e = c.repository_model_unload(unload(auth)).await.unwrap_err();
        assert_status(&e, Code::Unauthenticated, &["--control-token"]);
    }
    let ok = Some("Bearer t0ken");
    c.repository_index(index(ok)).await.unwrap();
    c.repository_model_load(load(ok)).await.unwrap();
    // Inference stays open.
    let (_, cfg) = s.handle().runtime.config(&mlp, None).unwrap();
    c.model_infer(infer_request(&mlp, &sample_inputs(&cfg, 1, 1), true))
        .await
        .unwrap();
    c.repository_model_unload(unload(ok)).await.unwrap();
}
