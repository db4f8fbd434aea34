//! KServe v2 / Triton `inference.GRPCInferenceService` over tonic, on one [`Runtime`].
//!
//! * `service`: the RPCs; `convert`: tensors at the edge; `model_info`: metadata, config,
//!   statistics and index messages; `status`: the one `ErrorKind` → gRPC code mapping.
//! * Every `ModelInfer` of a known model carries its load as trailing metadata: an ORCA
//!   `OrcaLoadReport` in `endpoint-load-metrics-bin` (what gRPC's `weighted_round_robin`
//!   reads) and the counter in text form,
//!   `endpoint-load-metrics: TEXT named_metrics.model_load=<f>, named_metrics.host_load=<f>`.
//! * `xds.service.orca.v3.OpenRcaService` streams the endpoint's reports out of band
//!   (`crate::orca`).
//! * ModelMesh's `mm-model-id` (or `mm-model-id-bin`) metadata, when present, names the
//!   model of `ModelInfer`, `ModelStreamInfer`, `ModelMetadata` and `ModelReady` in place
//!   of the request's own name (`crate::modelmesh`).

mod admitted;
pub mod convert;
mod cut;
mod model_info;
mod service;
mod status;

pub use service::{
    EXTENSIONS, InferenceService, LOAD_METADATA, MODEL_ID_METADATA, load_metadata_value,
};
pub use status::{code_for, to_status};

use crate::drain::Cut;
use crate::http::admission::Admission;
use crate::http::auth::ControlToken;
use crate::orca::{self, LoadReporter};
use cohost_protocol::inference::grpc_inference_service_server::GrpcInferenceServiceServer;
use cohost_protocol::wire::WireLayer;
use cohost_protocol::xds::service::orca::v3::open_rca_service_server::OpenRcaServiceServer;
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
    /// The ORCA reporter shared with HTTP (None: one of its own).
    pub load_reports: Option<LoadReporter>,
    /// Fires at the drain deadline: pending calls and open streams end UNAVAILABLE.
    pub cut: Cut,
}

impl Default for GrpcOptions {
    fn default() -> Self {
        GrpcOptions {
            max_message_size: 64 << 20,
            explicit_model_control: false,
            control_token: ControlToken::default(),
            admission: None,
            load_reports: None,
            cut: Cut::default(),
        }
    }
}

/// Serves the gRPC service on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    runtime: Runtime,
    listener: tokio::net::TcpListener,
    mut options: GrpcOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let max = options.max_message_size;
    let admission = options.admission.clone();
    let reporter = options
        .load_reports
        .get_or_insert_with(|| LoadReporter::new(runtime.clone(), orca::Format::default()))
        .clone();
    // ORCA streams never end by themselves: shutdown ends them, or the drain would wait.
    let (stop_reports, reports_stopping) = tokio::sync::watch::channel(false);
    let out_of_band = OpenRcaServiceServer::new(orca::OutOfBand::new(reporter, reports_stopping));
    let cut = options.cut.clone();
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
        let _ = stop_reports.send(true);
        tracing::info!("gRPC: shutting down, finishing in-flight calls");
    };
    let load_header = tonic::codegen::http::HeaderName::from_static(LOAD_METADATA);
    let report_header = tonic::codegen::http::HeaderName::from_static(orca::BIN_METADATA);
    tonic::transport::Server::builder()
        .layer(WireLayer::new(vec![load_header, report_header], max))
        .add_service(cut::CutAtDeadline::new(
            admitted::Admitted::new(server, admission),
            cut,
        ))
        // Not admitted: a report stream lasts as long as its connection.
        .add_service(out_of_band)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
