//! The cohost server: KServe v2 over HTTP (axum) and gRPC (tonic) on one `Runtime`.

pub mod bench;
pub mod cli;
pub mod demo;
pub mod drain;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod modelmesh;
pub mod orca;
pub mod poll;
mod serve;

pub use serve::{ModelControlMode, ServeOptions, ServerHandle, serve};
