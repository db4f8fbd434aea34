//! KServe v2 / Triton `inference.GRPCInferenceService` over tonic (placeholder).

use cohost_runtime::Runtime;
use std::future::Future;

/// gRPC transport options.
#[derive(Debug, Clone)]
pub struct GrpcOptions {
    /// Largest encoded or decoded message in bytes.
    pub max_message_size: usize,
    /// Repository control RPCs (load/unload) are allowed (`--model-control-mode explicit`).
    pub explicit_model_control: bool,
}

/// Serves the gRPC service on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    runtime: Runtime,
    listener: tokio::net::TcpListener,
    options: GrpcOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let _ = (runtime, listener, options);
    shutdown.await;
    Ok(())
}
