//! KServe v2 over gRPC (Triton's `inference.GRPCInferenceService`), tensors sent as
//! `raw_input_contents`, on the `h2` crate directly.
//!
//! A generated tonic client over hyper sends a call's HEADERS and its DATA frame in two
//! socket writes (hyper polls the body from a separate task), so the server is woken twice
//! per call; one write per call is what a gRPC client that sends its whole message at once
//! costs the server. Here a request is encoded and framed once before measuring, sent as
//! HEADERS and one DATA frame queued together, and the answer is read and decoded fully.

use crate::failure::FailKind;
use crate::http_client::server_address;
use crate::target::Target;
use crate::workload::GenRequest;
use bytes::{BufMut, Bytes, BytesMut};
use cohost_protocol::inference::{
    ModelInferRequest, ModelInferResponse, ModelStatisticsRequest, ModelStatisticsResponse,
    StatisticDuration, model_infer_request::InferInputTensor,
};
use cohost_runtime::ModelStats;
use h2::client::SendRequest;
use hyper::http::{HeaderMap, HeaderValue, Method, Request, Uri};
use prost::Message;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;

/// The `ModelInfer` method's path.
const MODEL_INFER: &str = "/inference.GRPCInferenceService/ModelInfer";
/// The `ModelStatistics` method's path.
const MODEL_STATISTICS: &str = "/inference.GRPCInferenceService/ModelStatistics";

/// A gRPC target over a few HTTP/2 connections, used round-robin; one the server closed
/// is opened again on its next call.
pub struct GrpcTarget {
    /// `host:port` to connect to.
    addr: String,
    /// `http://host:port/inference.GRPCInferenceService/ModelInfer`.
    uri: Uri,
    /// The same server's `ModelStatistics` method.
    stats_uri: Uri,
    /// The connections, one per slot.
    slots: Vec<Mutex<SendRequest<Bytes>>>,
    next: AtomicUsize,
    timeout: Duration,
    /// The server's HTTP base URL, for `process_cpu_seconds_total` on its `/metrics`.
    metrics_base: Option<String>,
}

/// Why a call failed before a gRPC status was read.
#[derive(Debug)]
enum CallError {
    /// The connection broke or could not be opened.
    Transport,
    /// The server answered with a non-OK gRPC status (its code).
    Status(tonic::Code),
    /// The answer was not a well-formed gRPC response.
    Protocol(&'static str),
}

/// An HTTP/2 error (a broken connection, or a stream reset): the call got no gRPC status.
impl From<h2::Error> for CallError {
    fn from(_: h2::Error) -> Self {
        CallError::Transport
    }
}

/// Opens one HTTP/2 connection to `addr`.
async fn open(addr: &str) -> std::io::Result<SendRequest<Bytes>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = h2::client::handshake(stream)
        .await
        .map_err(std::io::Error::other)?;
    // The connection task ends when every sender is dropped or the server closes it.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

impl GrpcTarget {
    /// Connects `connections` HTTP/2 connections to `url` (e.g. `http://127.0.0.1:8001`);
    /// each call times out after `timeout`.
    pub async fn connect(url: &str, connections: usize, timeout: Duration) -> anyhow::Result<Self> {
        let (addr, authority) = server_address(url)?;
        let method = |path: &str| {
            Uri::builder()
                .scheme("http")
                .authority(authority.clone())
                .path_and_query(path)
                .build()
        };
        let (uri, stats_uri) = (method(MODEL_INFER)?, method(MODEL_STATISTICS)?);
        let mut slots = Vec::new();
        for _ in 0..connections.max(1) {
            let conn = open(&addr)
                .await
                .map_err(|e| anyhow::anyhow!("gRPC connect to {url}: {e}"))?;
            slots.push(Mutex::new(conn));
        }
        Ok(GrpcTarget {
            addr,
            uri,
            stats_uri,
            slots,
            next: AtomicUsize::new(0),
            timeout,
            metrics_base: None,
        })
    }

    /// Reads the server's CPU total from `GET {base}/metrics` (its HTTP port), so reports
    /// carry the server's CPU per request as they do over HTTP.
    pub fn with_metrics(mut self, base: impl Into<String>) -> Self {
        self.metrics_base = Some(base.into().trim_end_matches('/').to_string());
        self
    }

    /// Slot `i`'s connection, ready for a new stream; opened again first if the server
    /// closed it.
    async fn connection(&self, i: usize) -> Result<SendRequest<Bytes>, CallError> {
        let conn = self.slots[i].lock().expect("slot lock").clone();
        if let Ok(ready) = conn.ready().await {
            return Ok(ready);
        }
        let fresh = open(&self.addr).await.map_err(|_| CallError::Transport)?;
        *self.slots[i].lock().expect("slot lock") = fresh.clone();
        Ok(fresh.ready().await?)
    }

    /// One unary call of the method at `uri` on slot `i` with a framed request; the
    /// decoded answer.
    async fn call<M: Message + Default>(
        &self,
        i: usize,
        uri: &Uri,
        framed: &Bytes,
    ) -> Result<M, CallError> {
        let mut conn = self.connection(i).await?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri.clone())
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .expect("static request parts");
        let (answer, mut send) = conn.send_request(request, false)?;
        // Queued with the HEADERS: the connection task writes both in one go.
        send.send_data(framed.clone(), true)?;
        let (head, mut body) = answer.await?.into_parts();
        if head.status != hyper::http::StatusCode::OK {
            return Err(CallError::Protocol("http_status"));
        }
        // A trailers-only answer carries its status in the headers.
        if let Some(code) = grpc_status(&head.headers).filter(|c| *c != tonic::Code::Ok) {
            return Err(CallError::Status(code));
        }
        let mut message = BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk?;
            let _ = body.flow_control().release_capacity(chunk.len());
            message.extend_from_slice(&chunk);
        }
        let trailers = body.trailers().await?.unwrap_or_default();
        match grpc_status(&trailers).or_else(|| grpc_status(&head.headers)) {
            Some(tonic::Code::Ok) => {}
            Some(code) => return Err(CallError::Status(code)),
            None => return Err(CallError::Protocol("missing_status")),
        }
        decode_framed(&message)
    }
}

/// The `grpc-status` in `headers`, if any.
fn grpc_status(headers: &HeaderMap<HeaderValue>) -> Option<tonic::Code> {
    let value = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .parse::<i32>()
        .ok()?;
    Some(tonic::Code::from_i32(value))
}

/// A message in gRPC framing: no compression, 4-byte big-endian length, the message.
pub fn frame(message: &impl Message) -> Bytes {
    let len = message.encoded_len();
    let mut out = BytesMut::with_capacity(5 + len);
    out.put_u8(0);
    out.put_u32(len as u32);
    message.encode(&mut out).expect("capacity reserved");
    out.freeze()
}

/// The one message in a gRPC-framed body.
fn decode_framed<M: Message + Default>(body: &[u8]) -> Result<M, CallError> {
    let Some((&[compressed, a, b, c, d], rest)) = body.split_first_chunk::<5>() else {
        return Err(CallError::Protocol("short_body"));
    };
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    if compressed != 0 || rest.len() != len {
        return Err(CallError::Protocol("bad_frame"));
    }
    M::decode(rest).map_err(|_| CallError::Protocol("bad_message"))
}

/// Every model's statistics from a `ModelStatisticsResponse`.
fn model_stats(response: ModelStatisticsResponse) -> Vec<ModelStats> {
    let dur = |d: Option<StatisticDuration>| {
        let d = d.unwrap_or_default();
        cohost_runtime::StatisticDuration {
            count: d.count,
            ns: d.ns,
        }
    };
    response
        .model_stats
        .into_iter()
        .map(|m| {
            let i = m.inference_stats.unwrap_or_default();
            ModelStats {
                name: m.name,
                version: m.version.parse().unwrap_or(0),
                inference_count: m.inference_count,
                execution_count: m.execution_count,
                success: dur(i.success),
                fail: dur(i.fail),
                queue: dur(i.queue),
                compute_input: dur(i.compute_input),
                compute_infer: dur(i.compute_infer),
                compute_output: dur(i.compute_output),
                ..Default::default()
            }
        })
        .collect()
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
    /// The `ModelInferRequest`, encoded and gRPC-framed.
    type Encoded = Bytes;

    fn name(&self) -> &'static str {
        "grpc"
    }

    fn encode(&self, model: &str, request: &GenRequest) -> anyhow::Result<Bytes> {
        Ok(frame(&infer_request(model, request)))
    }

    async fn server_cpu_seconds(&self) -> Option<f64> {
        crate::server_stats::scrape_cpu_seconds(self.metrics_base.as_ref()?).await
    }

    async fn server_stats(&self) -> Option<Vec<ModelStats>> {
        let framed = frame(&ModelStatisticsRequest::default());
        let call = self.call::<ModelStatisticsResponse>(0, &self.stats_uri, &framed);
        let answer = tokio::time::timeout(self.timeout, call).await.ok()?.ok()?;
        Some(model_stats(answer))
    }

    async fn infer(&self, _model: &str, request: &Bytes) -> Result<(), FailKind> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let call = self.call::<ModelInferResponse>(i, &self.uri, request);
        let Ok(answer) = tokio::time::timeout(self.timeout, call).await else {
            return Err(FailKind::Timeout);
        };
        match answer {
            Ok(resp) if !resp.outputs.is_empty() => Ok(()),
            Ok(_) => Err(FailKind::Grpc("empty_response".into())),
            Err(CallError::Transport) => Err(FailKind::Transport),
            Err(CallError::Status(tonic::Code::DeadlineExceeded)) => Err(FailKind::Timeout),
            Err(CallError::Status(code)) => Err(FailKind::Grpc(code_name(code))),
            Err(CallError::Protocol(what)) => Err(FailKind::Grpc(what.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_framed_message_decodes_back_and_bad_frames_are_refused() {
        let response = ModelInferResponse {
            model_name: "m".into(),
            id: "7".into(),
            raw_output_contents: vec![vec![1, 2, 3]],
            ..Default::default()
        };
        let framed = frame(&response);
        assert_eq!(framed[0], 0, "uncompressed");
        assert_eq!(
            u32::from_be_bytes(framed[1..5].try_into().unwrap()) as usize,
            framed.len() - 5
        );
        assert_eq!(
            decode_framed::<ModelInferResponse>(&framed).unwrap(),
            response
        );
        let short = decode_framed::<ModelInferResponse>(&framed[..3]);
        assert!(
            matches!(short, Err(CallError::Protocol("short_body"))),
            "{short:?}"
        );
        let cut = decode_framed::<ModelInferResponse>(&framed[..framed.len() - 1]);
        assert!(
            matches!(cut, Err(CallError::Protocol("bad_frame"))),
            "{cut:?}"
        );
        let mut compressed = framed.to_vec();
        compressed[0] = 1;
        let refused = decode_framed::<ModelInferResponse>(&compressed);
        assert!(
            matches!(refused, Err(CallError::Protocol("bad_frame"))),
            "{refused:?}"
        );
    }

    #[test]
    fn grpc_status_reads_the_code_and_ignores_garbage() {
        let mut headers = HeaderMap::new();
        assert_eq!(grpc_status(&headers), None);
        headers.insert("grpc-status", HeaderValue::from_static("8"));
        assert_eq!(grpc_status(&headers), Some(tonic::Code::ResourceExhausted));
        headers.insert("grpc-status", HeaderValue::from_static("x"));
        assert_eq!(grpc_status(&headers), None);
    }

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
