//! An HTTP inference body (JSON, no binary part) through the server's decoder: no panic,
//! tensors whose element count matches their shape, and what decodes re-encodes (the
//! client encoder) to a body that decodes to the same request.
#![no_main]

use cohost_fuzz::{finite, same_tensors};
use cohost_protocol::codec::{RequestEncoding, decode_request, encode_request};
use cohost_runtime::Tensor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let Ok(d) = decode_request(body, None) else {
        return;
    };
    let req = &d.request;
    for t in &req.inputs {
        assert_eq!(Tensor::shape_elements(&t.shape), Some(t.data.len()));
    }
    if !req.inputs.iter().all(|t| finite(&t.data)) {
        return;
    }
    for binary_inputs in [false, true] {
        let enc = encode_request(
            req,
            RequestEncoding {
                binary_inputs,
                binary_outputs: false,
            },
        );
        let n = enc.header_length.map(|n| n.to_string());
        let again = decode_request(&enc.body, n.as_deref()).expect("an encoded request decodes");
        assert!(same_tensors(&req.inputs, &again.request.inputs));
        assert_eq!(req.id, again.request.id);
        assert_eq!(req.outputs, again.request.outputs);
        assert_eq!(req.timeout, again.request.timeout);
    }
});
