//! ModelMesh's model-runtime SPI (`mmesh.ModelRuntime`, `protocol/proto/model_runtime.proto`)
//! on its own port (`cohost serve --modelmesh-port`), over the runtime's loading and
//! memory accounting. Inference stays on the KServe v2 gRPC port, where the
//! `mm-model-id` header names the model (`crate::grpc`).
//!
//! * `service`: the RPCs and the models loaded through them; `folder`: what a
//!   `loadModel` request names (the model id as a cohost name, `modelPath` as a model
//!   folder). The contract and its figures are in docs/DEPLOY.md § ModelMesh.

mod folder;
mod service;

pub use folder::{model_folder, model_name};
pub use service::{
    DEFAULT_SIZE_DIVISOR, LOADING_TIMEOUT, ModelRuntimeService, UNLOAD_TIMEOUT, method_infos,
    model_size,
};

use cohost_protocol::mmesh::model_runtime_server::ModelRuntimeServer;
use futures::StreamExt;
use std::future::Future;

/// Serves the SPI on `listener` until `shutdown` resolves, then finishes the calls in flight.
pub async fn serve(
    service: ModelRuntimeService,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|conn| {
        conn.inspect(|stream| {
            let _ = stream.set_nodelay(true);
        })
    });
    tonic::transport::Server::builder()
        .add_service(ModelRuntimeServer::new(service))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
