//! The binary tensor extension: the first two bytes are the
//! `Inference-Header-Content-Length` (little-endian), the rest the body. No panic; what
//! decodes re-encodes (binary) to the same tensors; every datatype's raw form
//! (`binary_data_size` bytes, BYTES length prefixes) reads and writes back the same.
#![no_main]

use cohost_fuzz::{check_le_round_trip, same_tensors};
use cohost_protocol::codec::{RequestEncoding, decode_request, encode_request};
use cohost_runtime::{DataType, Tensor};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let n = u16::from_le_bytes([data[0], data[1]]);
    let body = &data[2..];
    // 0xffff: a header value that is not a plain number, taken from the body's start.
    let header = if n == u16::MAX {
        String::from_utf8_lossy(&body[..body.len().min(24)]).into_owned()
    } else {
        n.to_string()
    };
    if let Ok(d) = decode_request(body, Some(&header)) {
        let req = &d.request;
        for t in &req.inputs {
            assert_eq!(Tensor::shape_elements(&t.shape), Some(t.data.len()));
        }
        let enc = encode_request(
            req,
            RequestEncoding {
                binary_inputs: true,
                binary_outputs: true,
            },
        );
        let n = enc
            .header_length
            .expect("binary inputs set a header length");
        let again = decode_request(&enc.body, Some(&n.to_string())).expect("re-encoded decodes");
        assert!(same_tensors(&req.inputs, &again.request.inputs));
    }
    // The tail as the raw data of each datatype.
    let raw = body
        .get(usize::from(n).min(body.len())..)
        .unwrap_or_default();
    for dt in DataType::ALL {
        check_le_round_trip(dt, raw);
    }
});
