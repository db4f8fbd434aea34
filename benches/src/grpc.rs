//! KServe v2 over gRPC (Triton's `inference.GRPCInferenceService`), tensors sent as
//! `raw_input_contents`.

use crate::http_client::server_address;
use crate::target::{FailKind, Target};
use crate::workload::GenRequest;
use cohost_protocol::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use cohost_protocol::inference::{
    ModelInferRequest, ModelInferResponse, model_infer_request::InferInputTensor,
};
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;

/// A gRPC target over a few HTTP/2 connections, used round-robin; one the server closed
/// is opened again on its next call.
///
/// Each call goes straight to its connection's hyper `SendRequest`; tonic's `Channel`
/// would put a buffer task (one more task hand-off per call) in between, which a load
/// generator on the server's cores pays for in latency and CPU.
pub struct GrpcTarget {
    /// `host:port` to connect to.
    addr: String,
    /// The `http://host:port` the requests name.
    origin: hyper::Uri,
    /// The connections, one per slot.
    slots: Vec<Mutex<H2Connection>>,
    next: AtomicUsize,
    timeout: Duration,
}

/// One HTTP/2 connection as a tower service (what tonic's generated client calls).
#[derive(Clone)]
struct H2Connection(SendRequest<tonic::body::Body>);

impl tower::Service<hyper::Request<tonic::body::Body>> for H2Connection {
    type Response = hyper::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, hyper::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: hyper::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(req))
    }
}

/// Opens one HTTP/2 connection to `addr`.
async fn open(addr: &str) -> std::io::Result<H2Connection> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    // The connection task ends when every sender is dropped or the server closes it.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(H2Connection(sender))
}

impl GrpcTarget {
    /// Connects `connections` HTTP/2 connections to `url` (e.g. `http://127.0.0.1:8001`);
    /// each call times out after `timeout`.
    pub async fn connect(url: &str, connections: usize, timeout: Duration) -> anyhow::Result<Self> {
        let (addr, authority) = server_address(url)?;
        let origin = hyper::Uri::builder()
            .scheme("http")
            .authority(authority)
            .path_and_query("/")
            .build()?;
        let mut slots = Vec::new();
        for _ in 0..connections.max(1) {
            let conn = open(&addr)
                .await
                .map_err(|e| anyhow::anyhow!("gRPC connect to {url}: {e}"))?;
            slots.push(Mutex::new(conn));
        }
        Ok(GrpcTarget {
            addr,
            origin,
            slots,
            next: AtomicUsize::new(0),
            timeout,
        })
    }

    /// Slot `i`'s connection, opened again first if the server closed it.
    async fn connection(&self, i: usize) -> Result<H2Connection, FailKind> {
        let conn = self.slots[i].lock().expect("slot lock").clone();
        if !conn.0.is_closed() {
            return Ok(conn);
        }
        let fresh = open(&self.addr).await.map_err(|_| FailKind::Transport)?;
        *self.slots[i].lock().expect("slot lock") = fresh.clone();
        Ok(fresh)
    }

    /// One `ModelInfer` call on slot `i`.
    async fn call(
        &self,
        i: usize,
        request: &ModelInferRequest,
    ) -> Result<Result<tonic::Response<ModelInferResponse>, tonic::Status>, FailKind> {
        let conn = self.connection(i).await?;
        let mut client = GrpcInferenceServiceClient::with_origin(conn, self.origin.clone())
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        Ok(client.model_infer(request.clone()).await)
    }
}

/// A `ModelInferRequest` with raw little-endian input contents.
pub fn infer_request(model: &str, request: &GenRequest) -> ModelInferRequest {
    ModelInferRequest {
        model_name: model.to_string(),
        inputs: request
            .inputs
            .iter()
            .map(|t| InferInputTensor {
                name: t.name.clone(),
                datatype: t.datatype().as_str().to_string(),
                shape: t.shape.clone(),
                ..Default::default()
            })
            .collect(),
        raw_input_contents: request
            .inputs
            .iter()
            .map(|t| t.data.to_le_bytes())
            .collect(),
        ..Default::default()
    }
}

/// The snake-case name of a gRPC code ("unavailable", "resource_exhausted").
pub fn code_name(code: tonic::Code) -> String {
    let mut out = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

impl Target for GrpcTarget {
    type Encoded = ModelInferRequest;

    fn name(&self) -> &'static str {
        "grpc"
    }

    fn encode(&self, model: &str, request: &GenRequest) -> anyhow::Result<ModelInferRequest> {
        Ok(infer_request(model, request))
    }

    async fn infer(&self, _model: &str, request: &ModelInferRequest) -> Result<(), FailKind> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let Ok(answer) = tokio::time::timeout(self.timeout, self.call(i, request)).await else {
            return Err(FailKind::Timeout);
        };
        match answer? {
            Ok(resp) if !resp.get_ref().outputs.is_empty() => Ok(()),
            Ok(_) => Err(FailKind::Grpc("empty_response".into())),
            Err(s) if s.code() == tonic::Code::DeadlineExceeded => Err(FailKind::Timeout),
            Err(s) if s.code() == tonic::Code::Unknown || s.code() == tonic::Code::Internal => {
                // tonic reports broken connections as Unknown/Internal with a transport source.
                if std::error::Error::source(&s).is_some() {
                    Err(FailKind::Transport)
                } else {
                    Err(FailKind::Grpc(code_name(s.code())))
                }
            }
            Err(s) => Err(FailKind::Grpc(code_name(s.code()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names_are_snake_case() {
        assert_eq!(code_name(tonic::Code::Unavailable), "unavailable");
        assert_eq!(
            code_name(tonic::Code::ResourceExhausted),
            "resource_exhausted"
        );
        assert_eq!(code_name(tonic::Code::InvalidArgument), "invalid_argument");
    }
}
