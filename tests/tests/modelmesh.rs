//! ModelMesh's model-runtime SPI end to end, as ModelMesh drives it: a real server on
//! 127.0.0.1 with `--modelmesh-port`, a tonic client generated from the same
//! `model_runtime.proto`: runtimeStatus READY → predictModelSize → loadModel → modelSize →
//! v2 gRPC inference named by `mm-model-id` (values equal to the model run directly) →
//! unloadModel → memory and capacity back to before → inference NOT_FOUND; bad requests
//! answered with clear statuses and nothing left loaded; runtimeStatus purging what
//! ModelMesh loaded while the repository's models stay.

mod grpc_common;

use cohost_models::Family;
use cohost_protocol::inference as pb;
use cohost_protocol::mmesh;
use cohost_protocol::mmesh::model_runtime_client::ModelRuntimeClient;
use cohost_runtime::{InferRequest, Runtime, TensorData};
use cohost_tests::{TestServer, generate, reference_runtime, sample_inputs};
use grpc_common::*;
use mmesh::runtime_status_response::Status as RuntimeState;
use std::path::{Path, PathBuf};
use tonic::Code;
use tonic::transport::Channel;

/// The slice's budget in the test server.
const BUDGET: u64 = 256 << 20;

/// A ModelMesh-style id (`<InferenceService>__isvc-<hash>`): a valid cohost name.
const ID: &str = "ctr-dlrm__isvc-6b2f1a09";

/// What clients put in `model_name`: the InferenceService name, not the id.
const ISVC: &str = "ctr-dlrm";

type Mesh = ModelRuntimeClient<Channel>;

async fn mesh_client(server: &TestServer) -> Mesh {
    let addr = server
        .handle()
        .modelmesh_addr
        .expect("ModelMesh port bound");
    ModelRuntimeClient::connect(format!("http://{addr}"))
        .await
        .expect("ModelMesh port connects")
}

async fn start() -> TestServer {
    TestServer::start(|o| {
        o.modelmesh_port = Some(0);
        o.memory_budget = Some(BUDGET);
    })
    .await
}

/// A folder outside the repository with one generated DLRM model folder in it (as
/// ModelMesh's puller would place it); returns the folder and the model folder.
fn mesh_models() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), "dlrm-tiny", 1, 23);
    let model = dir.path().join("dlrm-tiny");
    (dir, model)
}

fn load_request(id: &str, path: &Path) -> mmesh::LoadModelRequest {
    mmesh::LoadModelRequest {
        model_id: id.into(),
        model_type: "cohost-dlrm".into(),
        model_path: path.to_str().unwrap().into(),
        model_key: r#"{"model_type":{"name":"cohost-dlrm","version":"1"}}"#.into(),
    }
}

async fn status(mesh: &mut Mesh) -> mmesh::RuntimeStatusResponse {
    mesh.runtime_status(mmesh::RuntimeStatusRequest {})
        .await
        .expect("runtimeStatus")
        .into_inner()
}

/// A ModelInfer request that names the model in `mm-model-id` (model_name: the isvc).
fn mesh_infer(
    id: &str,
    inputs: &[cohost_runtime::Tensor],
    bin: bool,
) -> tonic::Request<pb::ModelInferRequest> {
    let mut req = tonic::Request::new(infer_request(ISVC, inputs, true));
    if bin {
        req.metadata_mut().insert_bin(
            "mm-model-id-bin",
            tonic::metadata::MetadataValue::from_bytes(id.as_bytes()),
        );
    } else {
        req.metadata_mut()
            .insert("mm-model-id", id.parse().expect("ASCII id"));
    }
    req
}

/// The reference output of the ModelMesh model run directly in-process.
async fn direct(reference: &Runtime, inputs: &[cohost_runtime::Tensor]) -> Vec<f32> {
    let want = reference
        .infer(
            "dlrm-tiny",
            None,
            InferRequest {
                inputs: inputs.to_vec(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let TensorData::F32(v) = &want.outputs[0].data else {
        panic!("f32 output")
    };
    v.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_infer_by_mm_model_id_unload_and_the_memory_returns() {
    let server = start().await;
    let runtime = &server.handle().runtime;
    let (models, folder) = mesh_models();
    let reference = reference_runtime(models.path());
    let mut mesh = mesh_client(&server).await;
    let mut v2 = client(&server).await;

    // runtimeStatus: READY, capacity = the budget less what the repository's models hold.
    let before_used = runtime.memory_used();
    assert!(before_used > 0, "the repository's models hold memory");
    let st = status(&mut mesh).await;
    assert_eq!(st.status, RuntimeState::Ready as i32);
    assert_eq!(st.capacity_in_bytes, BUDGET - before_used);
    assert_eq!(st.default_model_size_in_bytes, st.capacity_in_bytes / 8);
    assert_eq!(st.max_loading_concurrency, 1);
    assert_eq!(st.model_loading_timeout_ms, 300_000);
    assert_eq!(st.runtime_version, env!("CARGO_PKG_VERSION"));
    assert!(!st.limit_model_concurrency && !st.allow_any_method);
    let infer_info = &st.method_infos["inference.GRPCInferenceService/ModelInfer"];
    assert_eq!(infer_info.id_injection_path, vec![1]);
    assert_eq!(st.method_infos.len(), 3, "{:?}", st.method_infos.keys());

    // predictModelSize, then loadModel (from the folder holding the model folder, as the
    // puller copies a repository path) and modelSize.
    let predicted = mesh
        .predict_model_size(mmesh::PredictModelSizeRequest {
            model_id: ID.into(),
            model_path: folder.to_str().unwrap().into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .size_in_bytes;
    let loaded = mesh
        .load_model(load_request(ID, models.path()))
        .await
        .expect("loadModel")
        .into_inner();
    let (device, host) = runtime.model_bytes(ID).unwrap();
    assert!(device > 0);
    assert_eq!(loaded.size_in_bytes, device + host);
    assert_eq!(loaded.max_concurrency, 0);
    assert!(
        predicted >= loaded.size_in_bytes,
        "predicted {predicted} < loaded {}",
        loaded.size_in_bytes
    );
    assert_eq!(runtime.memory_used(), before_used + device);
    let sized = mesh
        .model_size(mmesh::ModelSizeRequest {
            model_id: ID.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sized.size_in_bytes, loaded.size_in_bytes);

    // Inference named by mm-model-id (and its -bin form): the model run directly.
    let (_, cfg) = reference.config("dlrm-tiny", None).unwrap();
    let inputs = sample_inputs(&cfg, 3, 5);
    let want = direct(&reference, &inputs).await;
    for bin in [false, true] {
        let resp = v2
            .model_infer(mesh_infer(ID, &inputs, bin))
            .await
            .unwrap_or_else(|s| panic!("infer by mm-model-id (bin={bin}): {s:?}"))
            .into_inner();
        assert_eq!(resp.model_name, ID);
        assert_close(&output_f32(&resp, 0), &want, "mm-model-id infer");
    }
    // ModelMesh's id injection puts the id in model_name itself: same answer.
    let resp = v2
        .model_infer(infer_request(ID, &inputs, false))
        .await
        .unwrap()
        .into_inner();
    assert_close(&output_f32(&resp, 0), &want, "model_name = id");
    let mut ready = tonic::Request::new(pb::ModelReadyRequest {
        name: ISVC.into(),
        version: String::new(),
    });
    ready
        .metadata_mut()
        .insert("mm-model-id", ID.parse().unwrap());
    assert!(v2.model_ready(ready).await.unwrap().into_inner().ready);
    let (code, _) = server.get_json(&format!("/v2/models/{ID}/ready")).await;
    assert_eq!(code, 200);

    // unloadModel: answered once the memory is back; capacity as before.
    mesh.unload_model(mmesh::UnloadModelRequest {
        model_id: ID.into(),
    })
    .await
    .expect("unloadModel");
    assert_eq!(runtime.memory_used(), before_used);
    assert_eq!(
        status(&mut mesh).await.capacity_in_bytes,
        st.capacity_in_bytes
    );
    let gone = v2
        .model_infer(mesh_infer(ID, &inputs, false))
        .await
        .unwrap_err();
    assert_status(&gone, Code::NotFound, &[ID]);
    let gone = mesh
        .model_size(mmesh::ModelSizeRequest {
            model_id: ID.into(),
        })
        .await
        .unwrap_err();
    assert_status(&gone, Code::NotFound, &[ID, "not loaded"]);

    // The same id loads again after its unload.
    mesh.load_model(load_request(ID, &folder))
        .await
        .expect("second loadModel");
    mesh.unload_model(mmesh::UnloadModelRequest {
        model_id: ID.into(),
    })
    .await
    .unwrap();
    assert_eq!(runtime.memory_used(), before_used);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_statuses_and_leave_nothing_loaded() {
    let server = start().await;
    let runtime = &server.handle().runtime;
    let (models, folder) = mesh_models();
    let mut mesh = mesh_client(&server).await;
    let used = runtime.memory_used();
    let repo_model = server.model_of(Family::Mlp);

    let missing = models.path().join("no-such-model");
    let err = mesh
        .load_model(load_request(ID, &missing))
        .await
        .unwrap_err();
    assert_status(&err, Code::InvalidArgument, &["modelPath", "no-such-model"]);
    let err = mesh
        .load_model(load_request("ns/ctr:model", &folder))
        .await
        .unwrap_err();
    assert_status(&err, Code::InvalidArgument, &["modelId", "ns/ctr:model"]);
    let err = mesh
        .load_model(load_request(ID, Path::new("")))
        .await
        .unwrap_err();
    assert_status(&err, Code::InvalidArgument, &["modelPath is empty"]);
    // A folder that is not a cohost model folder (a version folder).
    let err = mesh
        .load_model(load_request(ID, &folder.join("1")))
        .await
        .unwrap_err();
    assert_status(&err, Code::InvalidArgument, &["not a cohost model folder"]);
    // An id the repository already serves is not taken over.
    let err = mesh
        .load_model(load_request(&repo_model, &folder))
        .await
        .unwrap_err();
    assert_status(&err, Code::FailedPrecondition, &[&repo_model, "repository"]);
    assert_eq!(runtime.memory_used(), used, "failed loads hold nothing");
    assert!(runtime.model_bytes(ID).is_err());

    // Double load: the second is refused, the first stays.
    mesh.load_model(load_request(ID, &folder)).await.unwrap();
    let held = runtime.memory_used();
    let err = mesh
        .load_model(load_request(ID, &folder))
        .await
        .unwrap_err();
    assert_status(&err, Code::AlreadyExists, &[ID, "already loaded"]);
    assert_eq!(runtime.memory_used(), held);
    assert!(runtime.model_ready(ID, None));

    // Unloading an unknown id (or one that is no cohost name) answers at once, without
    // error, as the SPI asks; a repository model is not ModelMesh's to unload.
    for id in ["never-loaded", "ns/ctr:model", repo_model.as_str()] {
        mesh.unload_model(mmesh::UnloadModelRequest {
            model_id: id.into(),
        })
        .await
        .unwrap_or_else(|s| panic!("unload {id}: {s:?}"));
    }
    assert!(runtime.model_ready(&repo_model, None));
    let err = mesh
        .model_size(mmesh::ModelSizeRequest {
            model_id: "never-loaded".into(),
        })
        .await
        .unwrap_err();
    assert_status(&err, Code::NotFound, &["never-loaded"]);
    let err = mesh
        .predict_model_size(mmesh::PredictModelSizeRequest {
            model_id: ID.into(),
            model_path: missing.to_str().unwrap().into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_status(&err, Code::InvalidArgument, &["modelPath"]);

    // runtimeStatus purges what ModelMesh loaded (it restarted and forgot), keeps the
    // repository's models, and reports the same capacity as before any load.
    let st = status(&mut mesh).await;
    assert_eq!(st.status, RuntimeState::Ready as i32);
    assert!(!runtime.model_ready(ID, None), "purged");
    assert!(runtime.model_ready(&repo_model, None));
    assert_eq!(runtime.memory_used(), used);
    assert_eq!(st.capacity_in_bytes, BUDGET - used);
}
