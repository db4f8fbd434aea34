//! `inference.GRPCInferenceService` over a [`Runtime`].

use super::GrpcOptions;
use super::convert::{decode_request, encode_response, parse_grpc_timeout, parse_version};
use super::model_info::{self, Placement};
use super::status::{invalid, to_status};
use crate::http::auth::ControlToken;
use crate::http::errors::{invalid_name_message, quoted};
use crate::orca::{self, LoadReporter};
use cohost_protocol::inference as pb;
use cohost_protocol::inference::grpc_inference_service_server::GrpcInferenceService;
use cohost_protocol::prost::Message;
use cohost_runtime::{LoadReport, ModelState, Runtime};
use futures::{Stream, StreamExt};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Response, Status, Streaming};

/// The trailing-metadata key carrying the load counter (ORCA text form).
pub const LOAD_METADATA: &str = "endpoint-load-metrics";

/// The metadata ModelMesh names the model by on inference calls (`mm-model-id-bin`:
/// the id's UTF-8 bytes); when present it takes the place of the request's model name.
pub const MODEL_ID_METADATA: &str = "mm-model-id";

/// Extensions this transport implements, as `ServerMetadata` lists them.
pub const EXTENSIONS: &[&str] = &[
    "model_configuration",
    "model_repository",
    "statistics",
    "endpoint_load_metrics",
];

/// Requests in flight at once on one `ModelStreamInfer` stream.
const STREAM_CONCURRENCY: usize = 64;

type Res<T> = Result<Response<T>, Status>;

/// The response stream of `ModelStreamInfer`.
type InferStream =
    Pin<Box<dyn Stream<Item = Result<pb::ModelStreamInferResponse, Status>> + Send + 'static>>;

/// The service state: the runtime, the options, and whether the server is draining.
#[derive(Clone)]
pub struct InferenceService {
    runtime: Runtime,
    options: GrpcOptions,
    draining: Arc<AtomicBool>,
    reporter: LoadReporter,
}

impl InferenceService {
    /// A service over `runtime`.
    pub fn new(runtime: Runtime, options: GrpcOptions) -> Self {
        let reporter = options
            .load_reports
            .clone()
            .unwrap_or_else(|| LoadReporter::new(runtime.clone(), Default::default()));
        InferenceService {
            runtime,
            options,
            draining: Arc::new(AtomicBool::new(false)),
            reporter,
        }
    }

    /// Adds the load of a call to `metadata`: the ORCA report (binary) and the text form.
    fn put_reports(&self, metadata: &mut MetadataMap, load: &LoadReport) {
        let report = self.reporter.report(Some(load)).encode_to_vec();
        metadata.insert_bin(orca::BIN_METADATA, MetadataValue::from_bytes(&report));
        put_load(metadata, load);
    }

    /// The flag `serve` sets when shutdown begins (ServerReady then answers false).
    pub fn draining(&self) -> Arc<AtomicBool> {
        self.draining.clone()
    }

    /// Runs one inference; the response carries its encoded form's size check.
    async fn infer(
        &self,
        req: pb::ModelInferRequest,
        header_timeout: Option<std::time::Duration>,
    ) -> Result<(pb::ModelInferResponse, LoadReport), Status> {
        let name = req.model_name.clone();
        let version = parse_version(&name, &req.model_version)?;
        // The model is looked up before any work on the tensors (an unknown model is
        // NOT_FOUND whatever else is wrong, as over HTTP), and a full queue refuses then.
        if !self.runtime.model_ready(&name, version) {
            self.runtime.metadata(&name, version).map_err(to_status)?;
        }
        self.runtime
            .refuse_if_full(&name, version)
            .map_err(to_status)?;
        let raw_bytes: usize = req.raw_input_contents.iter().map(Vec::len).sum();
        let decoded = if raw_bytes > crate::http::admission::BLOCKING_DECODE_BYTES {
            // Large tensors are converted on the blocking pool, off the async workers.
            tokio::task::spawn_blocking(move || decode_request(req, header_timeout))
                .await
                .map_err(|e| Status::internal(format!("request decoding task failed: {e}")))??
        } else {
            decode_request(req, header_timeout)?
        };
        let resp = self
            .runtime
            .infer(&name, decoded.version, decoded.request)
            .await
            .map_err(to_status)?;
        let load = resp.load;
        let out = encode_response(resp, decoded.raw_outputs);
        let len = out.encoded_len();
        if len > self.options.max_message_size {
            return Err(Status::resource_exhausted(format!(
                "model '{name}': response of {len} bytes exceeds the server's maximum gRPC message size of {} bytes; request fewer rows or raise --max-body-bytes",
                self.options.max_message_size
            )));
        }
        Ok((out, load))
    }

    fn repository_control(&self, what: &str) -> Result<(), Status> {
        if self.options.explicit_model_control {
            Ok(())
        } else {
            Err(Status::failed_precondition(format!(
                "{what} refused: repository control is disabled; start cohost with --model-control-mode explicit"
            )))
        }
    }
}

/// `stream`, ended with UNAVAILABLE when `cut` fires (the drain deadline) before it ends.
fn cut_at_deadline(stream: InferStream, cut: &crate::drain::Cut) -> InferStream {
    let message = cut.message();
    let fired: Pin<Box<dyn std::future::Future<Output = ()> + Send>> = Box::pin(cut.fired());
    Box::pin(futures::stream::unfold(
        Some((stream, fired, message)),
        |state| async move {
            let (mut stream, mut fired, message) = state?;
            tokio::select! {
                item = stream.next() => item.map(|item| (item, Some((stream, fired, message)))),
                () = &mut fired => Some((Err(Status::unavailable(message)), None)),
            }
        },
    ))
}

/// The ORCA text form of a load report.
pub fn load_metadata_value(load: &LoadReport) -> String {
    orca::load_text(load)
}

/// Adds the load counter to `metadata` under [`LOAD_METADATA`].
fn put_load(metadata: &mut MetadataMap, load: &LoadReport) {
    if let Ok(v) = MetadataValue::try_from(load_metadata_value(load)) {
        metadata.insert(LOAD_METADATA, v);
    }
}

/// The call's `grpc-timeout`; one that is not 1 to 8 digits and a unit (the gRPC HTTP/2
/// protocol's form) is INVALID_ARGUMENT rather than silently no deadline.
fn header_timeout<T>(req: &Request<T>) -> Result<Option<std::time::Duration>, Status> {
    let Some(value) = req.metadata().get("grpc-timeout") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(parse_grpc_timeout)
        .map(Some)
        .ok_or_else(|| {
            invalid(format!(
                "malformed grpc-timeout '{}': send 1 to 8 digits and a unit (H, M, S, m, u or n)",
                quoted(&String::from_utf8_lossy(value.as_bytes()))
            ))
        })
}

/// The model a ModelMesh call names in `mm-model-id` (or `mm-model-id-bin`), if any. It
/// replaces the request's own name: ModelMesh's clients put the InferenceService name
/// there, while the header carries the id the model was loaded under.
fn mesh_model<T>(req: &Request<T>) -> Result<Option<String>, Status> {
    let md = req.metadata();
    let id = if let Some(v) = md.get(MODEL_ID_METADATA) {
        v.to_str()
            .map_err(|_| invalid("mm-model-id is not ASCII; send the id as mm-model-id-bin"))?
            .to_string()
    } else if let Some(v) = md.get_bin("mm-model-id-bin") {
        let bytes = v
            .to_bytes()
            .map_err(|_| invalid("mm-model-id-bin is not base64"))?;
        String::from_utf8(bytes.to_vec()).map_err(|_| invalid("mm-model-id-bin is not UTF-8"))?
    } else {
        return Ok(None);
    };
    Ok((!id.is_empty()).then_some(id))
}

/// Refuses a repository call without the control token (when one is configured).
fn require_token<T>(token: &ControlToken, req: &Request<T>) -> Result<(), Status> {
    let given = req.metadata().get("authorization").map(|v| v.as_bytes());
    if token.admits(given) {
        Ok(())
    } else {
        Err(Status::unauthenticated(
            "this call needs 'authorization: Bearer <token>' metadata with the server's --control-token",
        ))
    }
}

/// Checks a model name with the repository's rule before it is used, stored or logged.
fn check_name(name: &str) -> Result<(), Status> {
    cohost_runtime::validate_model_name(name).map_err(|_| invalid(invalid_name_message(name)))
}

fn opt_name(name: &str) -> Option<&str> {
    (!name.is_empty()).then_some(name)
}

#[tonic::async_trait]
impl GrpcInferenceService for InferenceService {
    async fn server_live(&self, _: Request<pb::ServerLiveRequest>) -> Res<pb::ServerLiveResponse> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Res<pb::ServerReadyResponse> {
        let ready = !self.draining.load(Ordering::Relaxed) && self.runtime.is_ready();
        Ok(Response::new(pb::ServerReadyResponse { ready }))
    }

    async fn model_ready(
        &self,
        req: Request<pb::ModelReadyRequest>,
    ) -> Res<pb::ModelReadyResponse> {
        let mesh = mesh_model(&req)?;
        let mut req = req.into_inner();
        req.name = mesh.unwrap_or(req.name);
        let version = parse_version(&req.name, &req.version)?;
        let ready = self.runtime.model_ready(&req.name, version);
        Ok(Response::new(pb::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Res<pb::ServerMetadataResponse> {
        Ok(Response::new(pb::ServerMetadataResponse {
            name: "cohost".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: EXTENSIONS.iter().map(|s| s.to_string()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        req: Request<pb::ModelMetadataRequest>,
    ) -> Res<pb::ModelMetadataResponse> {
        let mesh = mesh_model(&req)?;
        let mut req = req.into_inner();
        req.name = mesh.unwrap_or(req.name);
        let version = parse_version(&req.name, &req.version)?;
        let m = self
            .runtime
            .metadata(&req.name, version)
            .map_err(to_status)?;
        Ok(Response::new(model_info::metadata(m)))
    }

    async fn model_infer(
        &self,
        req: Request<pb::ModelInferRequest>,
    ) -> Res<pb::ModelInferResponse> {
        let timeout = header_timeout(&req)?;
        let mesh = mesh_model(&req)?;
        let mut req = req.into_inner();
        req.model_name = mesh.unwrap_or(req.model_name);
        let name = req.model_name.clone();
        match self.infer(req, timeout).await {
            Ok((out, load)) => {
                let mut resp = Response::new(out);
                // Moved from the headers into the trailers by `cohost_protocol::wire::WireLayer`.
                self.put_reports(resp.metadata_mut(), &load);
                Ok(resp)
            }
            Err(mut status) => {
                // Errors of a model that exists carry its load too (a trailers-only response).
                if let Ok(load) = self.runtime.load(&name) {
                    self.put_reports(status.metadata_mut(), &load);
                }
                Err(status)
            }
        }
    }

    async fn model_stream_infer(
        &self,
        req: Request<Streaming<pb::ModelInferRequest>>,
    ) -> Res<InferStream> {
        let timeout = header_timeout(&req)?;
        let mesh = mesh_model(&req)?;
        let svc = self.clone();
        let out = req
            .into_inner()
            .map(move |item| {
                let (svc, mesh) = (svc.clone(), mesh.clone());
                async move {
                    let mut req = item?;
                    req.model_name = mesh.unwrap_or(req.model_name);
                    Ok(match svc.infer(req, timeout).await {
                        Ok((resp, _)) => pb::ModelStreamInferResponse {
                            error_message: String::new(),
                            infer_response: Some(resp),
                        },
                        Err(status) => pb::ModelStreamInferResponse {
                            error_message: status.message().to_string(),
                            infer_response: None,
                        },
                    })
                }
            })
            .buffered(STREAM_CONCURRENCY);
        Ok(Response::new(cut_at_deadline(
            Box::pin(out),
            &self.options.cut,
        )))
    }

    async fn model_config(
        &self,
        req: Request<pb::ModelConfigRequest>,
    ) -> Res<pb::ModelConfigResponse> {
        let req = req.into_inner();
        let version = parse_version(&req.name, &req.version)?;
        let (_, cfg) = self.runtime.config(&req.name, version).map_err(to_status)?;
        let platform = self
            .runtime
            .metadata(&req.name, version)
            .map_err(to_status)?
            .platform;
        let at = Placement {
            gpu: self.runtime.backend_name() == "cuda",
            lanes: self.runtime.lane_count(),
        };
        Ok(Response::new(pb::ModelConfigResponse {
            config: Some(model_info::config(&req.name, &platform, &cfg, at)),
        }))
    }

    async fn model_statistics(
        &self,
        req: Request<pb::ModelStatisticsRequest>,
    ) -> Res<pb::ModelStatisticsResponse> {
        let req = req.into_inner();
        let version = parse_version(&req.name, &req.version)?;
        let stats = self
            .runtime
            .stats(opt_name(&req.name), version)
            .map_err(to_status)?;
        Ok(Response::new(pb::ModelStatisticsResponse {
            model_stats: stats.into_iter().map(model_info::statistics).collect(),
        }))
    }

    async fn repository_index(
        &self,
        req: Request<pb::RepositoryIndexRequest>,
    ) -> Res<pb::RepositoryIndexResponse> {
        require_token(&self.options.control_token, &req)?;
        let req = req.into_inner();
        if !req.repository_name.is_empty() {
            // cohost serves one repository; any name other than empty is unknown.
            return Err(Status::not_found(format!(
                "unknown repository '{}'",
                quoted(&req.repository_name)
            )));
        }
        let entries = self.runtime.repository_index().map_err(to_status)?;
        let models = entries
            .into_iter()
            .filter(|e| !req.ready || e.state == ModelState::Ready)
            .map(model_info::index_entry)
            .collect();
        Ok(Response::new(pb::RepositoryIndexResponse { models }))
    }

    async fn repository_model_load(
        &self,
        req: Request<pb::RepositoryModelLoadRequest>,
    ) -> Res<pb::RepositoryModelLoadResponse> {
        require_token(&self.options.control_token, &req)?;
        let req = req.into_inner();
        check_name(&req.model_name)?;
        self.repository_control(&format!("loading model '{}'", req.model_name))?;
        if let Some(key) = req.parameters.keys().next() {
            return Err(invalid(format!(
                "model '{}': load parameter '{key}' is not supported; cohost loads models from the repository folder",
                req.model_name
            )));
        }
        let runtime = self.runtime.clone();
        let name = req.model_name;
        tokio::task::spawn_blocking(move || runtime.load_model(&name))
            .await
            .map_err(|e| Status::internal(format!("model load task failed: {e}")))?
            .map_err(to_status)?;
        Ok(Response::new(pb::RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        req: Request<pb::RepositoryModelUnloadRequest>,
    ) -> Res<pb::RepositoryModelUnloadResponse> {
        require_token(&self.options.control_token, &req)?;
        let req = req.into_inner();
        check_name(&req.model_name)?;
        self.repository_control(&format!("unloading model '{}'", req.model_name))?;
        let runtime = self.runtime.clone();
        let name = req.model_name;
        tokio::task::spawn_blocking(move || runtime.unload_model(&name))
            .await
            .map_err(|e| Status::internal(format!("model unload task failed: {e}")))?
            .map_err(to_status)?;
        Ok(Response::new(pb::RepositoryModelUnloadResponse {}))
    }
}
