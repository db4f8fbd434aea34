//! A gRPC `ModelInferRequest` from arbitrary protobuf bytes (`prost::Message::decode`)
//! through the server's conversion to a runtime request, typed contents or
//! `raw_input_contents`: no panic, element counts that match shapes, and typed inputs
//! that decode to the same tensors when sent again as raw contents.
#![no_main]

use cohost_fuzz::same_tensors;
use cohost_protocol::inference::ModelInferRequest;
use cohost_runtime::Tensor;
use cohost_server::grpc::convert::decode_request;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = ModelInferRequest::decode(data) else {
        return;
    };
    let raw = !req.raw_input_contents.is_empty();
    let header = Some(Duration::from_millis(250));
    let Ok(d) = decode_request(req.clone(), header) else {
        return;
    };
    let inputs = &d.request.inputs;
    assert_eq!(inputs.len(), req.inputs.len());
    for t in inputs {
        assert_eq!(Tensor::shape_elements(&t.shape), Some(t.data.len()));
    }
    assert!(
        d.request
            .timeout
            .is_some_and(|t| t <= Duration::from_millis(250))
    );
    if raw || inputs.is_empty() {
        return;
    }
    let mut as_raw = req;
    as_raw.raw_input_contents = inputs.iter().map(|t| t.data.to_le_bytes()).collect();
    for i in &mut as_raw.inputs {
        i.contents = None;
    }
    let again = decode_request(as_raw, header).expect("typed inputs sent raw decode");
    assert!(same_tensors(inputs, &again.request.inputs));
});
