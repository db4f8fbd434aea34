//! KServe v2 inference bodies over HTTP: JSON tensors and the binary tensor extension
//! (`Inference-Header-Content-Length`, `binary_data_size`, little-endian data), both sides.
//!
//! * Server: [`decode_request`] turns a body into the runtime's request and the
//!   [`ResponseEncoding`] it asked for, whose [`ResponseEncoding::encode`] writes the answer.
//! * Client: [`encode_request`] writes a typed request as a body, [`decode_response`] reads
//!   an answer back into typed tensors.
//!
//! Every error is a `cohost_runtime::Error` of kind invalid-argument naming what is wrong.
//! Inside, `*Json` types are what is parsed and `*Head` types what is written (the JSON
//! header of a body).

mod binary;
mod client;
mod elements;
mod parameters;
mod request;
mod response;
mod tensor;

#[cfg(any(test, feature = "oracle"))]
pub mod oracle;

pub use client::{RequestEncoding, decode_response, encode_request};
pub use request::{DecodedRequest, decode_request};
pub use response::ResponseEncoding;

/// Header giving the length of the JSON part of a binary-extension body.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// An encoded body and, for the binary extension, its JSON header length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The body bytes.
    pub body: Vec<u8>,
    /// `Some(json_len)` when binary tensors follow the JSON (the
    /// `Inference-Header-Content-Length` value).
    pub header_length: Option<usize>,
}

#[cfg(test)]
mod client_tests;
#[cfg(test)]
mod tests;
