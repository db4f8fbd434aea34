//! Client side: a typed request encoded as a JSON or binary-extension body, and a response
//! body decoded back into typed tensors (the inverses of [`super::decode_request`] and
//! [`super::ResponseEncoding::encode`]).

use super::Encoded;
use super::binary;
use super::tensor::{TensorHead, TensorJson};
use cohost_runtime::{Error, InferRequest, InferResponse};
use serde::{Deserialize, Serialize};

/// How a client sends its inputs and asks for its outputs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestEncoding {
    /// Inputs as binary data after the JSON header (else inline JSON `data`).
    pub binary_inputs: bool,
    /// Every output asked for as binary data (`binary_data_output`).
    pub binary_outputs: bool,
}

/// The request JSON (keys sorted, as the harness's `serde_json::Value` bodies wrote them).
#[derive(Serialize)]
struct RequestHead<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    inputs: Vec<TensorHead<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    outputs: Vec<OutputHead<'a>>,
    #[serde(skip_serializing_if = "RequestParameters::is_empty")]
    parameters: RequestParameters,
}

/// One requested output, by name (its encoding follows `binary_data_output`).
#[derive(Serialize)]
struct OutputHead<'a> {
    name: &'a str,
}

/// The request-level parameters a client sets.
#[derive(Serialize)]
struct RequestParameters {
    #[serde(skip_serializing_if = "is_false")]
    binary_data_output: bool,
    /// Microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout: Option<u64>,
}

impl RequestParameters {
    fn is_empty(&self) -> bool {
        !self.binary_data_output && self.timeout.is_none()
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Encodes a request body; `header_length` is the `Inference-Header-Content-Length` to
/// send (set exactly when the inputs are binary). The timeout travels in whole
/// microseconds.
pub fn encode_request(request: &InferRequest, encoding: RequestEncoding) -> Encoded {
    let mut tail: Vec<u8> = Vec::new();
    let inputs = request
        .inputs
        .iter()
        .map(|t| TensorHead::new(t, encoding.binary_inputs.then_some(&mut tail)))
        .collect();
    let head = RequestHead {
        id: request.id.as_deref(),
        inputs,
        outputs: request
            .outputs
            .iter()
            .map(|name| OutputHead { name })
            .collect(),
        parameters: RequestParameters {
            binary_data_output: encoding.binary_outputs,
            // At least 1: 0 on the wire means no timeout.
            timeout: request
                .timeout
                .map(|t| u64::try_from(t.as_micros()).unwrap_or(u64::MAX).max(1)),
        },
    };
    let mut body = Vec::with_capacity(256 + tail.len());
    serde_json::to_writer(&mut body, &head).expect("the request head serialises");
    let header_length = encoding.binary_inputs.then(|| {
        let n = body.len();
        body.extend_from_slice(&tail);
        n
    });
    Encoded {
        body,
        header_length,
    }
}

#[derive(Deserialize)]
struct ResponseJson {
    #[serde(default)]
    id: Option<String>,
    model_name: String,
    #[serde(default)]
    model_version: Option<String>,
    outputs: Vec<TensorJson>,
}

/// Decodes a response body: JSON, or JSON header plus binary tensors when `header_length`
/// (the response's `Inference-Header-Content-Length`) is given. A missing `model_version`
/// is 0; the load report (a header, not the body) is left at its default.
pub fn decode_response(body: &[u8], header_length: Option<&str>) -> Result<InferResponse, Error> {
    let (json_part, mut tail) = binary::split(body, header_length)?;
    let resp: ResponseJson = serde_json::from_slice(json_part)
        .map_err(|e| Error::invalid(format!("malformed inference response JSON: {e}")))?;
    let model_version = match resp.model_version {
        None => 0,
        Some(v) => v.parse().map_err(|_| {
            Error::invalid(format!("model_version '{v}' is not a non-negative integer"))
        })?,
    };
    let mut outputs = Vec::with_capacity(resp.outputs.len());
    for output in resp.outputs {
        let what = format!("output '{}'", output.name);
        outputs.push(output.decode(&what, &mut tail)?);
    }
    tail.finish("output's")?;
    Ok(InferResponse {
        model_name: resp.model_name,
        model_version,
        id: resp.id,
        outputs,
        load: Default::default(),
    })
}
