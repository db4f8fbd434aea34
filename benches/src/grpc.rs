//! KServe v2 over gRPC (Triton's `inference.GRPCInferenceService`), tensors sent as
//! `raw_input_contents`.

use crate::target::{FailKind, Target};
use crate::workload::GenRequest;
use cohost_protocol::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use cohost_protocol::inference::{ModelInferRequest, model_infer_request::InferInputTensor};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// A gRPC target over a few HTTP/2 connections, used round-robin.
pub struct GrpcTarget {
    clients: Vec<GrpcInferenceServiceClient<Channel>>,
    next: AtomicUsize,
}

impl GrpcTarget {
    /// Connects `connections` channels to `url` (e.g. `http://127.0.0.1:8001`).
    pub async fn connect(url: &str, connections: usize, timeout: Duration) -> anyhow::Result<Self> {
        let mut clients = Vec::new();
        for _ in 0..connections.max(1) {
            let channel = Endpoint::from_shared(url.to_string())?
                .timeout(timeout)
                .tcp_nodelay(true)
                .connect()
                .await
                .map_err(|e| anyhow::anyhow!("gRPC connect to {url}: {e}"))?;
            clients.push(
                GrpcInferenceServiceClient::new(channel)
                    .max_decoding_message_size(usize::MAX)
                    .max_encoding_message_size(usize::MAX),
            );
        }
        Ok(GrpcTarget {
            clients,
            next: AtomicUsize::new(0),
        })
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
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len();
        let mut client = self.clients[i].clone();
        match client.model_infer(request.clone()).await {
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
