//! The KServe v2 / Open Inference Protocol wire types: the gRPC service
//! `inference.GRPCInferenceService` (Triton-compatible names and field numbers), generated
//! from `proto/grpc_service.proto` and `proto/model_config.proto` with client and server;
//! and the HTTP [`codec`] of inference bodies (JSON and the binary tensor extension).

/// Generated messages, client (`grpc_inference_service_client`) and server
/// (`grpc_inference_service_server`) of package `inference`.
#[allow(clippy::all, missing_docs)]
pub mod inference {
    tonic::include_proto!("inference");
}

/// The fully qualified gRPC service name.
pub const SERVICE_NAME: &str = "inference.GRPCInferenceService";

pub mod codec;
pub mod wire;

/// The protobuf runtime the generated messages use (`prost::Message` for `encoded_len`).
pub use prost;
