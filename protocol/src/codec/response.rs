//! Server side, response: the runtime's answer encoded the way its request asked, JSON
//! tensors or the binary extension, output by output.

use super::Encoded;
use super::tensor::TensorHead;
use cohost_runtime::InferResponse;
use serde::Serialize;

/// How a request asked for its outputs: binary data or JSON, by name, with a default for
/// the unnamed ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseEncoding {
    /// Outputs the request named, in its order, each with whether it wants binary data.
    pub(super) binary_outputs: Vec<(String, bool)>,
    /// The request's `binary_data_output`: binary data for outputs it did not name.
    pub(super) all_binary: bool,
}

/// The response JSON (keys sorted, see [`TensorHead`]).
#[derive(Serialize)]
struct ResponseHead<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    model_name: &'a str,
    model_version: String,
    outputs: Vec<TensorHead<'a>>,
}

impl ResponseEncoding {
    /// Whether output `name` is to be sent as binary data.
    pub(super) fn wants_binary(&self, name: &str) -> bool {
        self.binary_outputs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| *b)
            .unwrap_or(self.all_binary)
    }

    /// Encodes the runtime's response the way the request asked for.
    pub fn encode(&self, resp: &InferResponse) -> Encoded {
        let mut tail: Vec<u8> = Vec::new();
        let outputs = resp
            .outputs
            .iter()
            .map(|t| {
                let binary = self.wants_binary(&t.name);
                TensorHead::new(t, binary.then_some(&mut tail))
            })
            .collect();
        let head = ResponseHead {
            id: resp.id.as_deref(),
            model_name: &resp.model_name,
            model_version: resp.model_version.to_string(),
            outputs,
        };
        let mut body = Vec::with_capacity(256 + tail.len());
        serde_json::to_writer(&mut body, &head).expect("the response head serialises");
        let header_length = if tail.is_empty()
            && !self.binary_outputs.iter().any(|(_, b)| *b)
            && !self.all_binary
        {
            None
        } else {
            let n = body.len();
            body.extend_from_slice(&tail);
            Some(n)
        };
        Encoded {
            body,
            header_length,
        }
    }
}
