//! KServe v2 / Triton `inference.GRPCInferenceService` over tonic, on one [`Runtime`].
//!
//! * `service`: the RPCs; `convert`: tensors at the edge; `model_info`: metadata, config,
//!   statistics and index messages; `status`: the one `ErrorKind` → gRPC code mapping.
//! * Every successful `ModelInfer` carries the load counter as trailing metadata
//!   `endpoint-load-metrics: TEXT named_metrics.model_load=<f>, named_metrics.host_load=<f>`.

mod admitted;
mod convert;
mod model_info;
mod service;
mod status;

pub use service::{EXTENSIONS, InferenceService, LOAD_METADATA, load_metadata_value};
pub use status::{code_for, to_status};

use crate::http::admission::Admission;
use crate::http::auth::ControlToken;
use cohost_protocol::inference::grpc_inference_service_server::GrpcInferenceServiceServer;
use cohost_protocol::wire::WireLayer;
use cohost_runtime::Runtime;
use futures::StreamExt;
use std::future::Future;
use std::sync::atomic::Ordering;
use tonic::codec::CompressionEncoding;

/// gRPC transport options.
#[derive(Debug, Clone)]
pub struct GrpcOptions {
    /// Largest encoded or decoded message in bytes.
    pub max_message_size: usize,
    /// Repository control RPCs (load/unload) are allowed (`--model-control-mode explicit`).
    pub explicit_model_control: bool,
    /// The token repository control and the index need (`authorization` metadata).
    pub control_token: ControlToken,
    /// The in-flight limit shared with HTTP (None: unlimited).
    pub admission: Option<Admission>,
}

impl Default for GrpcOptions {
    fn default() -> Self {
        GrpcOptions {
            max_message_size: 64 << 20,
            explicit_model_control: false,
            control_token: ControlToken::default(),
            admission: None,
        }
    }
}

/// Serves the gRPC service on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    runtime: Runtime,
    listener: tokio::net::TcpListener,
    options: GrpcOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let max = options.max_message_size;
    let admission = options.admission.clone();
    let service = InferenceService::new(runtime, options);
    let draining = service.draining();
    let server = GrpcInferenceServiceServer::new(service)
        .max_decoding_message_size(max)
        // Responses are checked against the limit in the handler (with a clearer message);
        // tonic's own check is a backstop.
        .max_encoding_message_size(max.saturating_add(1024))
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip);
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|conn| {
        conn.inspect(|stream| {
            let _ = stream.set_nodelay(true);
        })
    });
    let shutdown = async move {
        shutdown.await;
        draining.store(true, Ordering::Relaxed);
        tracing::info!("gRPC: shutting down, finishing in-flight calls");
    };
    let load_header = tonic::codegen::http::HeaderName::from_static(LOAD_METADATA);
    tonic::transport::Server::builder()
        .layer(WireLayer::new(vec![load_header], max))
        .add_service(admitted::Admitted::new(server, admission))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
