//! Server side, request: a JSON or binary-extension body decoded into the runtime's
//! [`InferRequest`] and the [`ResponseEncoding`] its outputs asked for.

use super::binary;
use super::parameters::{self, Parameters};
use super::response::ResponseEncoding;
use super::tensor::TensorJson;
use cohost_runtime::{Error, InferRequest};
use serde::Deserialize;
use std::time::Duration;

#[derive(Deserialize)]
struct RequestJson {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Parameters,
    inputs: Vec<TensorJson>,
    #[serde(default)]
    outputs: Option<Vec<OutputJson>>,
}

#[derive(Deserialize)]
struct OutputJson {
    name: String,
    #[serde(default)]
    parameters: Parameters,
}

/// A decoded request plus how each output should be returned.
#[derive(Debug)]
pub struct DecodedRequest {
    /// The request for the runtime.
    pub request: InferRequest,
    /// How the response is to be encoded.
    pub encoding: ResponseEncoding,
}

/// Decodes a request body: JSON, or JSON header plus binary tensors when
/// `header_length` (the `Inference-Header-Content-Length` value) is given. Every error is
/// of kind invalid-argument.
pub fn decode_request(body: &[u8], header_length: Option<&str>) -> Result<DecodedRequest, Error> {
    let (json_part, mut tail) = binary::split(body, header_length)?;
    let req: RequestJson = serde_json::from_slice(json_part)
        .map_err(|e| Error::invalid(format!("malformed inference request JSON: {e}")))?;

    let mut inputs = Vec::with_capacity(req.inputs.len());
    for input in req.inputs {
        let what = format!("input '{}'", input.name);
        inputs.push(input.decode(&what, &mut tail)?);
    }
    tail.finish("input's")?;

    // 0 means no timeout, as Triton reads it (and as the gRPC transport does).
    let timeout = parameters::unsigned(&req.parameters, "timeout", "request")?
        .filter(|&us| us > 0)
        .map(Duration::from_micros);
    let all_binary =
        parameters::boolean(&req.parameters, "binary_data_output", "request")?.unwrap_or(false);
    let mut binary_outputs = Vec::new();
    let mut outputs = Vec::new();
    for out in req.outputs.unwrap_or_default() {
        let what = format!("output '{}'", out.name);
        let b = parameters::boolean(&out.parameters, "binary_data", &what)?.unwrap_or(all_binary);
        binary_outputs.push((out.name.clone(), b));
        outputs.push(out.name);
    }
    Ok(DecodedRequest {
        request: InferRequest {
            id: req.id,
            inputs,
            outputs,
            timeout,
        },
        encoding: ResponseEncoding {
            binary_outputs,
            all_binary,
        },
    })
}
