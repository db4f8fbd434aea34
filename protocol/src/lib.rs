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

/// ORCA load reports (`xds.data.orca.v3.OrcaLoadReport`) and the out-of-band service
/// `xds.service.orca.v3.OpenRcaService`, from `proto/xds/` (cncf/xds field numbers).
#[allow(clippy::all, missing_docs)]
pub mod xds {
    pub mod data {
        pub mod orca {
            pub mod v3 {
                tonic::include_proto!("xds.data.orca.v3");
            }
        }
    }
    pub mod service {
        pub mod orca {
            pub mod v3 {
                tonic::include_proto!("xds.service.orca.v3");
            }
        }
    }
}

/// Generated messages, client (`model_runtime_client`) and server (`model_runtime_server`)
/// of package `mmesh`: ModelMesh's model-runtime SPI (`proto/model_runtime.proto`).
#[allow(clippy::all, missing_docs)]
pub mod mmesh {
    tonic::include_proto!("mmesh");
}

/// The fully qualified gRPC service name.
pub const SERVICE_NAME: &str = "inference.GRPCInferenceService";

pub mod codec;
pub mod wire;

/// The protobuf runtime the generated messages use (`prost::Message` for `encoded_len`).
pub use prost;
/// The well-known protobuf types the generated messages use (`Duration`).
pub use prost_types;
