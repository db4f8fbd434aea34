//! Shared by the `grpc_*` tests: the generated tonic client for a test server, proto
//! tensors from runtime tensors, and status assertions.

#![allow(dead_code)]

use cohost_protocol::inference as pb;
use cohost_protocol::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use cohost_runtime::{Tensor, TensorData};
use cohost_tests::TestServer;
use pb::model_infer_request::InferInputTensor;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// The generated client over one channel.
pub type Client = GrpcInferenceServiceClient<Channel>;

/// A client connected to `server`'s gRPC port, without message size limits.
pub async fn client(server: &TestServer) -> Client {
    GrpcInferenceServiceClient::connect(server.grpc_url())
        .await
        .expect("gRPC connects")
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX)
}

/// The proto input for `t`: typed contents, or (with `raw`) no contents.
pub fn proto_input(t: &Tensor, raw: bool) -> InferInputTensor {
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
pub fn infer_request(model: &str, inputs: &[Tensor], raw: bool) -> pb::ModelInferRequest {
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
pub fn output_f32(resp: &pb::ModelInferResponse, i: usize) -> Vec<f32> {
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

/// Asserts element-wise closeness (1e-5 absolute plus relative).
pub fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 + 1e-5 * w.abs(),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

/// Asserts `status` has `code` and a message containing every one of `needles`.
pub fn assert_status(status: &Status, code: Code, needles: &[&str]) {
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
