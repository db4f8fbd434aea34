//! The cohost server: KServe v2 over HTTP (axum) and gRPC (tonic) on one `Runtime`.

pub mod grpc;
