//! What the harness sends requests to: the [`Target`] trait and its HTTP (JSON, binary)
//! and in-process implementations. Encoding happens in [`Target::encode`], off the
//! measured path; [`Target::infer`] only ships pre-encoded bytes and waits.

use crate::failure::FailKind;
use crate::http_client::HttpPool;
use crate::workload::GenRequest;
use cohost_protocol::codec::{RequestEncoding, encode_request};
use cohost_runtime::{InferRequest, ModelStats, Runtime};
use hyper::header::{HeaderName, HeaderValue};
use std::future::Future;
use std::time::Duration;

/// Something that serves inference: a remote server or the in-process runtime.
pub trait Target: Send + Sync + 'static {
    /// A request in this target's wire form, built once before measuring.
    type Encoded: Send + Sync + 'static;

    /// Short name for reports ("http-json", "in-process").
    fn name(&self) -> &'static str;

    /// Turns a generated request into this target's wire form.
    fn encode(&self, model: &str, request: &GenRequest) -> anyhow::Result<Self::Encoded>;

    /// Sends one encoded request to `model` and waits for its complete answer.
    fn infer(
        &self,
        model: &str,
        request: &Self::Encoded,
    ) -> impl Future<Output = Result<(), FailKind>> + Send;

    /// The server's per-model statistics now, where this target can read them.
    fn server_stats(&self) -> impl Future<Output = Option<Vec<ModelStats>>> + Send {
        async { None }
    }

    /// The server process's CPU seconds so far (`process_cpu_seconds_total`), where this
    /// target can read them.
    fn server_cpu_seconds(&self) -> impl Future<Output = Option<f64>> + Send {
        async { None }
    }

    /// True when the server runs inside this process, so the client's CPU includes it.
    fn shares_process(&self) -> bool {
        false
    }
}

/// A pre-encoded HTTP request: its body and, for the binary extension, the JSON length.
#[derive(Debug, Clone)]
pub struct HttpEncoded {
    /// `POST` path (`/v2/models/{m}/infer`).
    pub path: String,
    /// The full body.
    pub body: bytes::Bytes,
    /// `Inference-Header-Content-Length` when the body carries binary tensors.
    pub header_len: Option<usize>,
}

/// KServe v2 over HTTP, with JSON tensors or the binary tensor extension.
pub struct HttpTarget {
    pool: HttpPool,
    binary: bool,
    base: String,
}

impl HttpTarget {
    /// A target at `base` (e.g. `http://127.0.0.1:8000`); `binary` selects the binary extension.
    pub fn new(base: &str, binary: bool, timeout: Duration) -> anyhow::Result<Self> {
        Ok(HttpTarget {
            pool: HttpPool::new(base, timeout)?,
            binary,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    /// Opens at most `n` connections (0: one per request in flight).
    pub fn with_max_connections(mut self, n: usize) -> Self {
        self.pool = self.pool.with_max_connections(n);
        self
    }
}

impl Target for HttpTarget {
    type Encoded = HttpEncoded;

    fn name(&self) -> &'static str {
        if self.binary {
            "http-binary"
        } else {
            "http-json"
        }
    }

    fn encode(&self, model: &str, request: &GenRequest) -> anyhow::Result<HttpEncoded> {
        let path = format!("/v2/models/{model}/infer");
        let request = InferRequest {
            inputs: request.inputs.clone(),
            ..Default::default()
        };
        let encoding = RequestEncoding {
            binary_inputs: self.binary,
            binary_outputs: self.binary,
        };
        let encoded = encode_request(&request, encoding);
        Ok(HttpEncoded {
            path,
            body: encoded.body.into(),
            header_len: encoded.header_length,
        })
    }

    async fn server_stats(&self) -> Option<Vec<ModelStats>> {
        let url = format!("{}/v2/models/stats", self.base);
        let fetch = async { reqwest::get(&url).await.ok()?.json().await.ok() };
        let json: serde_json::Value =
            tokio::time::timeout(crate::server_stats::SCRAPE_TIMEOUT, fetch)
                .await
                .ok()??;
        crate::server_stats::from_triton_json(&json)
    }

    async fn server_cpu_seconds(&self) -> Option<f64> {
        crate::server_stats::scrape_cpu_seconds(&self.base).await
    }

    async fn infer(&self, _model: &str, request: &HttpEncoded) -> Result<(), FailKind> {
        let (content_type, extra) = match request.header_len {
            Some(n) => (
                "application/octet-stream",
                Some((
                    HeaderName::from_static("inference-header-content-length"),
                    HeaderValue::from(n),
                )),
            ),
            None => ("application/json", None),
        };
        let answer = self
            .pool
            .post(&request.path, content_type, extra, request.body.clone())
            .await?;
        if !answer.status.is_success() {
            return Err(FailKind::Http(answer.status.as_u16()));
        }
        // The whole answer was read: the latency includes receiving it.
        if answer.body.is_empty() {
            return Err(FailKind::Transport);
        }
        Ok(())
    }
}

/// The embedded [`Runtime`], called directly (no serialisation, no sockets).
pub struct InProcessTarget {
    runtime: Runtime,
}

impl InProcessTarget {
    /// Wraps an already-loaded runtime.
    pub fn new(runtime: Runtime) -> Self {
        InProcessTarget { runtime }
    }

    /// The runtime requests go to.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }
}

impl Target for InProcessTarget {
    type Encoded = InferRequest;

    fn name(&self) -> &'static str {
        "in-process"
    }

    fn encode(&self, _model: &str, request: &GenRequest) -> anyhow::Result<InferRequest> {
        Ok(InferRequest {
            inputs: request.inputs.clone(),
            ..InferRequest::default()
        })
    }

    async fn server_stats(&self) -> Option<Vec<ModelStats>> {
        self.runtime.stats(None, None).ok()
    }

    fn shares_process(&self) -> bool {
        true
    }

    async fn infer(&self, model: &str, request: &InferRequest) -> Result<(), FailKind> {
        // `Runtime::infer` takes ownership, so one clone of the tensors is on the path.
        match self.runtime.infer(model, None, request.clone()).await {
            Ok(resp) if !resp.outputs.is_empty() => Ok(()),
            Ok(_) => Err(FailKind::Runtime("empty_response")),
            Err(e) => Err(FailKind::Runtime(e.kind.label())),
        }
    }
}
