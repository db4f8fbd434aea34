//! The gRPC twin of `null_server`: KServe v2's `inference.GRPCInferenceService` on the
//! same stack as `cohost serve` (tokio, tonic over hyper, the generated service from
//! `cohost-protocol`; TCP_NODELAY) that answers every `ModelInfer` with a well-formed
//! response of the shape mlp-tiny gives (one FP32 output of 4 values a row, in
//! `raw_output_contents`) and does no other work. Every other RPC is tonic's default
//! `UNIMPLEMENTED`, except the health checks.
//!
//! ```text
//! cargo run --release -p cohost-bench --example null_grpc_server -- 127.0.0.1:18091 &
//! cohost bench --target grpc --url http://127.0.0.1:18091 \
//!   --model-repository REPO --model mlp-tiny --rate 2000 --warmup 1 --duration 5
//! ```
//!
//! `scripts/server-cost.sh front-end` runs it next to the real server.

use cohost_protocol::inference::grpc_inference_service_server::{
    GrpcInferenceService, GrpcInferenceServiceServer,
};
use cohost_protocol::inference::model_infer_response::InferOutputTensor;
use cohost_protocol::inference::{
    ModelInferRequest, ModelInferResponse, ServerLiveRequest, ServerLiveResponse,
    ServerReadyRequest, ServerReadyResponse,
};
use std::net::SocketAddr;
use tonic::{Request, Response, Status};

#[path = "null/runner.rs"]
mod runner;

/// Values per row of the answer (mlp-tiny's output width).
const OUTPUT_WIDTH: i64 = 4;

/// The null service: answers without work.
struct Null;

#[tonic::async_trait]
impl GrpcInferenceService for Null {
    async fn server_live(
        &self,
        _: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse { ready: true }))
    }

    async fn model_infer(
        &self,
        req: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let req = req.into_inner();
        // As many rows as the request's first input has (1 when it has none).
        let rows = req
            .inputs
            .first()
            .and_then(|t| t.shape.first().copied())
            .unwrap_or(1)
            .max(1);
        Ok(Response::new(ModelInferResponse {
            model_name: req.model_name,
            model_version: "1".into(),
            id: req.id,
            outputs: vec![InferOutputTensor {
                name: "output".into(),
                datatype: "FP32".into(),
                shape: vec![rows, OUTPUT_WIDTH],
                ..Default::default()
            }],
            raw_output_contents: vec![vec![0; (rows * OUTPUT_WIDTH) as usize * 4]],
            ..Default::default()
        }))
    }
}

/// Arguments: the address (`127.0.0.1:18091`) and the tokio worker threads.
fn main() -> anyhow::Result<()> {
    runner::run("127.0.0.1:18091", serve)
}

async fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    eprintln!("null gRPC server on {addr}");
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(GrpcInferenceServiceServer::new(Null))
        .serve(addr)
        .await?;
    Ok(())
}
